//! The Kubernetes phase's orchestration against stand-in kubeadm, kubelet
//! and kubectl. TEST DOUBLES: the real binaries cannot be downloaded here
//! (the Kubernetes release hosts are unreachable), so shell scripts play
//! them, doing what the real ones do to the filesystem at the same points
//! (kubeadm's kubelet-start phase writes config.yaml and kubeadm-flags.env,
//! then waits for the kubelet). What they check is kina-init's side: the
//! kubelet is started while kubeadm still waits for it (the deadlock a
//! systemd-less node would otherwise hit), with the drop-in's command line;
//! the admin kubeconfig is published while kubeadm is still running; the
//! kubelet is restarted after init; a restart does not run kubeadm again;
//! joins are retried after `kubeadm reset` and bounded by the timeout; and
//! an image without the binaries fails naming them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kina_contract::node_spec::{KubeProxyMode, KubernetesSettings, NodeSpec, Role, Secret};
use kina_contract::status::{NodeStatus, PhaseState};
use kina_init::boot::{BootContext, Phase, StatusFile};
use kina_init::kubernetes::KubernetesPhase;
use kina_init::kubernetes::kubelet::KubeletPaths;
use kina_init::supervise::{Backoff, Supervisor};

const TOKEN: &str = "abcdef.0123456789abcdef";

struct Node {
    dir: tempfile::TempDir,
    supervisor: Arc<Mutex<Supervisor>>,
    stop: Arc<AtomicBool>,
}

impl Node {
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }
    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name)).unwrap_or_default()
    }
    fn status_path(&self) -> PathBuf {
        self.dir.path().join("status.json")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.supervisor
            .lock()
            .unwrap()
            .stop_all(Duration::from_secs(2));
    }
}

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/bash\nset -u\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A scratch node with stand-ins; `join_failures` joins fail before one
/// succeeds.
fn node(join_failures: u32) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().display().to_string();
    let root = format!("{t}/root");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // kubeadm: writes the kubelet's files like its kubelet-start phase, then
    // waits for the kubelet like wait-control-plane / kubelet-wait-bootstrap.
    script(
        &bin.join("kubeadm"),
        &format!(
            r#"T={t}; R={root}
echo "$*" >> $T/kubeadm-calls
case "$1" in
  version) echo v1.36.4; exit 0 ;;
  reset) rm -rf $R/var/lib/kubelet $R/etc/kubernetes/bootstrap-kubelet.conf; exit 0 ;;
  join)
    n=$(grep -c '^join' $T/kubeadm-calls)
    if [ "$n" -le {join_failures} ]; then echo "error execution phase preflight: couldn't validate the identity of the API Server" >&2; exit 1; fi ;;
esac
config=${{2#--config=}}
[ "$(stat -c %a $config)" = 600 ] || {{ echo "config $config is not 0600" >&2; exit 1; }}
grep -q {TOKEN} $config || {{ echo "no token in $config" >&2; exit 1; }}
mkdir -p $R/var/lib/kubelet $R/etc/kubernetes
echo "kind: KubeletConfiguration" > $R/var/lib/kubelet/config.yaml
echo 'KUBELET_KUBEADM_ARGS="--node-ip=10.0.2.15 --v=2"' > $R/var/lib/kubelet/kubeadm-flags.env
if [ "$1" = init ]; then echo admin > $R/etc/kubernetes/admin.conf; fi
for i in $(seq 200); do [ -e $T/kubelet-running ] && break; sleep 0.1; done
[ -e $T/kubelet-running ] || {{ echo "timed out waiting for the kubelet" >&2; exit 1; }}
if [ "$1" = init ]; then
  for i in $(seq 200); do grep -q admin_kubeconfig $T/status.json 2>/dev/null && break; sleep 0.1; done
  grep -q admin_kubeconfig $T/status.json || {{ echo "the admin kubeconfig was not published while kubeadm ran" >&2; exit 1; }}
fi
echo kubelet > $R/etc/kubernetes/kubelet.conf
exit 0"#
        ),
    );
    script(
        &bin.join("kubelet"),
        &format!(
            r#"echo "$*" > {t}/kubelet-args; echo start >> {t}/kubelet-starts; touch {t}/kubelet-running; exec sleep 1000"#
        ),
    );
    // kubectl: the API answers once the kubelet runs (it runs the static
    // pods); the node is Ready and CoreDNS available.
    script(
        &bin.join("kubectl"),
        &format!(
            r#"echo "$*" >> {t}/kubectl-calls
case "$*" in
  *"get --raw /livez"*) [ -e {t}/kubelet-running ] ;;
  *"get node "*) echo '{{"status":{{"conditions":[{{"type":"Ready","status":"True"}}]}}}}' ;;
  *"get deployment coredns"*) echo '{{"status":{{"availableReplicas":1}}}}' ;;
  *) exit 1 ;;
esac"#
        ),
    );
    let supervisor = Arc::new(Mutex::new(Supervisor::new(Backoff::default())));
    let stop = Arc::new(AtomicBool::new(false));
    // PID 1's main loop polls the supervisor; here a thread does.
    {
        let (supervisor, stop) = (supervisor.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                supervisor.lock().unwrap().poll(Instant::now());
                std::thread::sleep(Duration::from_millis(50));
            }
        });
    }
    Node {
        dir,
        supervisor,
        stop,
    }
}

fn settings(timeout_seconds: u64, endpoint: &str) -> KubernetesSettings {
    KubernetesSettings {
        pod_subnet: "10.244.0.0/16".into(),
        service_subnet: "10.96.0.0/16".into(),
        dns_domain: "cluster.local".into(),
        control_plane_endpoint: endpoint.into(),
        api_server_cert_sans: vec![],
        kube_proxy_mode: KubeProxyMode::Iptables,
        feature_gates: BTreeMap::new(),
        runtime_config: BTreeMap::new(),
        kubeadm_config_patches: vec![],
        kubeadm_config_patches_json6902: vec![],
        bootstrap_token: Some(Secret::new(TOKEN)),
        certificate_authority: None,
        ca_cert_hash: Some(format!("sha256:{}", "ab".repeat(32))),
        wait_for_coredns: true,
        timeout_seconds,
    }
}

fn run(node: &Node, role: Role, k: KubernetesSettings) -> (Result<String, String>, NodeStatus) {
    let mut spec = NodeSpec::unnamed();
    spec.name = "n1".into();
    spec.cluster = "kina".into();
    spec.role = role;
    spec.kubernetes = Some(k);
    let mut ctx = BootContext {
        spec,
        kernel_report: None,
        status: StatusFile::new(node.status_path(), NodeStatus::new("n1", "vm-pid1")),
    };
    let mut phase = KubernetesPhase {
        paths: KubeletPaths { root: node.root() },
        search_path: vec![node.bin()],
        supervisor: node.supervisor.clone(),
        uplink: "eth0".into(),
        node_ip: Some("10.0.2.15".parse().unwrap()),
        run_controller: false,
        poll: Duration::from_millis(100),
    };
    let result = phase
        .run(&mut ctx)
        .map_err(|f| format!("{} | {}", f.message, f.hint));
    (result, ctx.status.snapshot())
}

#[test]
fn the_control_plane_starts_the_kubelet_while_kubeadm_waits_and_publishes_the_kubeconfig_early() {
    let node = node(0);
    let (result, status) = run(&node, Role::ControlPlane, settings(60, "10.0.2.15:6443"));
    let summary = result.unwrap();
    assert!(
        summary.contains("v1.36.4: node n1 (10.0.2.15) Ready, CoreDNS available"),
        "{summary}"
    );
    let root = node.root().display().to_string();
    assert_eq!(
        node.read("kubelet-args").trim(),
        format!(
            "--bootstrap-kubeconfig={root}/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig={root}/etc/kubernetes/kubelet.conf --config={root}/var/lib/kubelet/config.yaml --node-ip=10.0.2.15 --v=2"
        )
    );
    // Started during init, restarted after it (kubelet-finalize).
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.read("kubelet-starts").lines().count() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(node.read("kubelet-starts").lines().count(), 2);
    let k = status.kubernetes.unwrap();
    assert_eq!(k.version, "v1.36.4");
    assert!(k.ready);
    assert_eq!(k.coredns_available, Some(true));
    assert_eq!(
        k.admin_kubeconfig,
        Some(format!("{root}/etc/kubernetes/admin.conf"))
    );
    let config = std::fs::metadata(node.root().join("etc/kina/kubeadm.yaml")).unwrap();
    assert_eq!(config.permissions().mode() & 0o777, 0o600);

    // A reboot: kubeadm is not run again, the kubelet is.
    node.supervisor
        .lock()
        .unwrap()
        .stop_all(Duration::from_secs(2));
    *node.supervisor.lock().unwrap() = Supervisor::new(Backoff::default());
    let (result, _) = run(&node, Role::ControlPlane, settings(60, "10.0.2.15:6443"));
    assert!(result.unwrap().contains("kubeadm not run again"));
    let calls = node.read("kubeadm-calls");
    assert_eq!(
        calls.lines().filter(|l| l.starts_with("init")).count(),
        1,
        "{calls}"
    );
}

#[test]
fn a_worker_retries_the_join_after_a_reset_until_it_succeeds() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let node = node(1);
    let (result, _) = run(&node, Role::Worker, settings(60, &endpoint));
    assert!(result.unwrap().contains("Ready"));
    let calls = node.read("kubeadm-calls");
    let verbs: Vec<&str> = calls
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|v| *v != "version")
        .collect();
    assert_eq!(verbs, ["join", "reset", "join"], "{calls}");
    // A worker reads its own Node with its own credentials.
    assert!(node.read("kubectl-calls").contains("kubelet.conf"));
}

#[test]
fn a_join_that_keeps_failing_ends_at_the_timeout_with_the_reason() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let node = node(u32::MAX);
    let (result, status) = run(&node, Role::Worker, settings(4, &endpoint));
    let err = result.unwrap_err();
    assert!(
        err.contains(&format!("could not join through {endpoint} within 4 s")),
        "{err}"
    );
    assert!(
        err.contains("couldn't validate the identity of the API Server"),
        "{err}"
    );
    assert!(!status.kubernetes.unwrap().ready);
    assert!(!node.root().join("var/lib/kina/kubeadm.done").exists());
}

#[test]
fn an_unreachable_api_server_ends_at_the_timeout() {
    // Bound and dropped: nothing listens there.
    let endpoint = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let node = node(0);
    let (result, _) = run(&node, Role::Worker, settings(2, &endpoint));
    let err = result.unwrap_err();
    assert!(
        err.contains(&format!(
            "the API server at {endpoint} did not answer in time"
        )),
        "{err}"
    );
    assert!(!node.read("kubeadm-calls").contains("join"));
}

#[test]
fn an_image_without_kubernetes_binaries_fails_naming_them() {
    let node = node(0);
    for name in ["kubeadm", "kubelet", "kubectl"] {
        std::fs::remove_file(node.bin().join(name)).unwrap();
    }
    let (result, status) = run(&node, Role::ControlPlane, settings(60, "10.0.2.15:6443"));
    let err = result.unwrap_err();
    assert!(
        err.starts_with("the node image has no kubeadm, kubelet, kubectl (looked in "),
        "{err}"
    );
    assert!(err.contains("recipes/kubernetes-v1.36.toml"), "{err}");
    assert!(status.kubernetes.is_none());
    let _ = PhaseState::Failed;
}
