//! The Kubernetes phase's orchestration against stand-in kubeadm, kubelet
//! and kubectl. TEST DOUBLES: the real binaries cannot be downloaded here
//! (the Kubernetes release hosts are unreachable), so shell scripts play
//! them, doing what the real ones do to the filesystem at the same points,
//! each behaviour from the kubeadm source named beside it. What they check
//! is kina-init's side: the kubelet is started while kubeadm still waits for
//! it (the deadlock a systemd-less node would otherwise hit), with the
//! drop-in's command line; the admin kubeconfig is published while kubeadm
//! is still running, but only once kubeadm has bound its group; the
//! controller approves serving certificates before init returns, drops a
//! one-node cluster's load-balancer label and recreates a missing join
//! token; the kubelet is restarted after init; a restart does not run
//! kubeadm again and follows a new address; an init that failed is reset
//! and run again on the next boot, the kubelet never started from its stale
//! files; joins are retried after `kubeadm reset` and bounded by the
//! timeout; and an image without the binaries fails naming them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kina_contract::node_spec::{
    CertificateAuthority, KubeProxyMode, KubernetesSettings, NodeSpec, Role, Secret,
};
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
    // kubeadm (kubeadm 1.36's behaviour, cmd/kubeadm/app/...):
    // - init runs its phases in order (cmd/init.go): preflight refuses
    //   static pod manifests and a non-empty etcd data directory
    //   (preflight/checks.go InitNodeChecks: FileAvailable--etc-kubernetes-
    //   manifests-*, DirAvailable--var-lib-etcd); certs keeps a CA already
    //   in pki/ and makes one otherwise (phases/certs); kubeconfig writes
    //   admin.conf, super-admin.conf, kubelet.conf, controller-manager.conf,
    //   scheduler.conf; etcd and control-plane write the static pods;
    //   kubelet-start writes config.yaml and kubeadm-flags.env; wait-control-
    //   plane waits for the kubelet and the API server; the next phase
    //   creates the kubeadm:cluster-admins binding (initData.Client(),
    //   EnsureAdminClusterRoleBinding) and the rest of init takes a while.
    // - With $T/fail-init-once present, the first init fails in wait-
    //   control-plane after the kubelet ran (an image pull that timed out).
    // - reset (cmd/phases/reset/cleanupnode.go, removeetcdmember.go): cannot
    //   stop the kubelet without an init system, empties manifests/, pki/ and
    //   /var/lib/kubelet, deletes the kubeconfigs, and empties the etcd data
    //   directory the etcd manifest names.
    // - join writes the kubelet's files like kubelet-start and waits for it.
    script(
        &bin.join("kubeadm"),
        &format!(
            r#"T={t}; R={root}; K=$R/etc/kubernetes
echo "$*" >> $T/kubeadm-calls
echo "kubeadm $1" >> $T/events
case "$1" in
  version) echo v1.36.4; exit 0 ;;
  reset)
    echo "[reset] WARNING: The kubelet service could not be stopped by kubeadm. Unable to detect a supported init system!"
    if grep -q 'path: /var/lib/etcd' $K/manifests/etcd.yaml 2>/dev/null; then rm -rf $R/var/lib/etcd/*; fi
    rm -rf $K/manifests/* $K/pki/* $R/var/lib/kubelet/*
    rm -f $K/admin.conf $K/super-admin.conf $K/kubelet.conf $K/bootstrap-kubelet.conf $K/controller-manager.conf $K/scheduler.conf
    rm -f $T/cluster-admins-bound
    exit 0 ;;
  join)
    n=$(grep -c '^join' $T/kubeadm-calls)
    if [ "$n" -le {join_failures} ]; then echo "error execution phase preflight: couldn't validate the identity of the API Server" >&2; exit 1; fi ;;
esac
config=${{2#--config=}}
[ "$(stat -c %a $config)" = 600 ] || {{ echo "config $config is not 0600" >&2; exit 1; }}
grep -q {TOKEN} $config || {{ echo "no token in $config" >&2; exit 1; }}
if [ "$1" = init ]; then
  errors=""
  for m in $K/manifests/*.yaml; do [ -e "$m" ] && errors="$errors\n[ERROR FileAvailable--etc-kubernetes-manifests-$(basename $m)]: $m already exists"; done
  [ -n "$(ls -A $R/var/lib/etcd 2>/dev/null)" ] && errors="$errors\n[ERROR DirAvailable--var-lib-etcd]: /var/lib/etcd is not empty"
  if [ -n "$errors" ]; then printf "error execution phase preflight: [preflight] Some fatal errors occurred:$errors\n" >&2; exit 1; fi
  mkdir -p $K/pki $K/manifests $R/var/lib/etcd/member
  [ -e $K/pki/ca.crt ] || echo "CA made by kubeadm" > $K/pki/ca.crt
  for f in admin super-admin kubelet controller-manager scheduler; do echo "server: https://10.0.2.15:6443" > $K/$f.conf; done
  printf 'spec:\n  volumes:\n  - hostPath:\n      path: /var/lib/etcd\n    name: etcd-data\n' > $K/manifests/etcd.yaml
  for c in kube-apiserver kube-controller-manager kube-scheduler; do echo "- --advertise-address=10.0.2.15" > $K/manifests/$c.yaml; done
fi
mkdir -p $R/var/lib/kubelet $K
echo "kind: KubeletConfiguration" > $R/var/lib/kubelet/config.yaml
echo 'KUBELET_KUBEADM_ARGS="--node-ip=10.0.2.15 --v=2"' > $R/var/lib/kubelet/kubeadm-flags.env
for i in $(seq 200); do [ -e $T/kubelet-running ] && break; sleep 0.1; done
[ -e $T/kubelet-running ] || {{ echo "timed out waiting for the kubelet" >&2; exit 1; }}
if [ "$1" = init ]; then
  echo etcd > $R/var/lib/etcd/member/db
  if [ -e $T/fail-init-once ]; then
    rm $T/fail-init-once
    echo "error execution phase wait-control-plane: could not initialize a Kubernetes cluster" >&2; exit 1
  fi
  touch $T/cluster-admins-bound
  for i in $(seq 200); do grep -q admin_kubeconfig $T/status.json 2>/dev/null && break; sleep 0.1; done
  grep -q admin_kubeconfig $T/status.json || {{ echo "the admin kubeconfig was not published while kubeadm ran" >&2; exit 1; }}
  sleep 1
  echo "kubeadm init done" >> $T/events
fi
[ "$1" = join ] && echo kubelet > $K/kubelet.conf
exit 0"#
        ),
    );
    script(
        &bin.join("kubelet"),
        &format!(
            r#"echo "$*" > {t}/kubelet-args; echo start >> {t}/kubelet-starts; echo "kubelet start" >> {t}/events; touch {t}/kubelet-running; exec sleep 1000"#
        ),
    );
    // kubectl: the API answers once the kubelet runs (it runs the static
    // pods); admin.conf is refused with 403 until kubeadm created the
    // kubeadm:cluster-admins binding; the node is Ready with kubeadm's
    // control-plane labels and CoreDNS available; no CSRs; the join token's
    // Secret is gone (`--ignore-not-found` prints nothing).
    script(
        &bin.join("kubectl"),
        &format!(
            r#"T={t}
echo "$*" >> $T/kubectl-calls
echo "kubectl $*" >> $T/events
case "$*" in
  *"get clusterrolebinding kubeadm:cluster-admins"*)
    [ -e $T/kubelet-running ] || {{ echo "The connection to the server was refused" >&2; exit 1; }}
    [ -e $T/cluster-admins-bound ] || {{ echo 'Error from server (Forbidden): clusterrolebindings.rbac.authorization.k8s.io "kubeadm:cluster-admins" is forbidden' >&2; exit 1; }}
    echo clusterrolebinding.rbac.authorization.k8s.io/kubeadm:cluster-admins ;;
  *"get csr"*) echo '{{"items":[]}}' ;;
  *"get nodes"*)
    lb='"node.kubernetes.io/exclude-from-external-load-balancers":"",'
    [ -e $T/lb-label-removed ] && lb=""
    echo "{{\"items\":[{{\"metadata\":{{\"name\":\"n1\",\"labels\":{{$lb\"node-role.kubernetes.io/control-plane\":\"\"}}}},\"spec\":{{}},\"status\":{{\"conditions\":[{{\"type\":\"Ready\",\"status\":\"True\"}}]}}}}]}}" ;;
  *"label node n1 node.kubernetes.io/exclude-from-external-load-balancers-"*) touch $T/lb-label-removed ;;
  *"get secret bootstrap-token-abcdef --ignore-not-found"*) ;;
  *"create -f -"*) cat > $T/created-secret ;;
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
    run_with(node, role, k, "10.0.2.15", None)
}

/// One boot of the phase at `ip`; with `controller`, the control plane's
/// controller runs until that flag is set.
fn run_with(
    node: &Node,
    role: Role,
    k: KubernetesSettings,
    ip: &str,
    controller: Option<Arc<AtomicBool>>,
) -> (Result<String, String>, NodeStatus) {
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
        node_ip: Some(ip.parse().unwrap()),
        run_controller: controller.is_some(),
        controller_stop: controller.unwrap_or_default(),
        poll: Duration::from_millis(100),
    };
    let result = phase
        .run(&mut ctx)
        .map_err(|f| format!("{} | {}", f.message, f.hint));
    (result, ctx.status.snapshot())
}

/// A reboot: the services stop, and what lived in /run is gone.
fn reboot(node: &Node) {
    node.supervisor
        .lock()
        .unwrap()
        .stop_all(Duration::from_secs(2));
    *node.supervisor.lock().unwrap() = Supervisor::new(Backoff::default());
    let _ = std::fs::remove_file(node.file("kubelet-running"));
}

fn wait_for(what: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !what() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    what()
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

    // The address kubeadm's files name is recorded for a later restart.
    assert_eq!(
        std::fs::read_to_string(node.root().join("var/lib/kina/node-address")).unwrap(),
        "10.0.2.15\n"
    );

    // A reboot: kubeadm is not run again, the kubelet is.
    reboot(&node);
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
fn the_controller_starts_while_init_runs_and_tends_a_one_node_cluster() {
    let node = node(0);
    let stop = Arc::new(AtomicBool::new(false));
    let (result, _) = run_with(
        &node,
        Role::ControlPlane,
        settings(60, "10.0.2.15:6443"),
        "10.0.2.15",
        Some(stop.clone()),
    );
    result.unwrap();
    let removed = wait_for(|| node.file("lb-label-removed").exists());
    let created = wait_for(|| node.file("created-secret").exists());
    stop.store(true, Ordering::Relaxed);
    let events = node.read("events");
    let position = |needle: &str| events.lines().position(|l| l.contains(needle));
    // Serving certificates are looked at before `kubeadm init` returns.
    let first_csr_look = position("get csr -o json").expect(&events);
    let init_done = position("kubeadm init done").expect(&events);
    assert!(first_csr_look < init_done, "{events}");
    // A one-node cluster's only node is taken back into load balancing.
    assert!(removed, "{events}");
    // The join token's Secret was missing: recreated, as kubeadm writes it,
    // through stdin (the secret is never on a command line).
    assert!(created, "{events}");
    let secret: serde_json::Value = serde_json::from_str(&node.read("created-secret")).unwrap();
    assert_eq!(secret["metadata"]["name"], "bootstrap-token-abcdef");
    assert_eq!(secret["type"], "bootstrap.kubernetes.io/token");
    assert_eq!(secret["stringData"]["token-secret"], "0123456789abcdef");
    assert!(!node.read("kubectl-calls").contains("0123456789abcdef"));
}

#[test]
fn an_init_that_failed_is_reset_and_run_again_on_the_next_boot() {
    let node = node(0);
    std::fs::write(node.file("fail-init-once"), "").unwrap();
    let mut k = settings(60, "10.0.2.15:6443");
    k.certificate_authority = Some(CertificateAuthority {
        cert_pem: "THE CLUSTER CA FROM THE SPEC\n".into(),
        key_pem: Secret::new("THE CLUSTER CA KEY\n"),
    });
    let (result, _) = run(&node, Role::ControlPlane, k.clone());
    let err = result.unwrap_err();
    assert!(err.contains("wait-control-plane"), "{err}");
    let root = node.root();
    assert!(root.join("etc/kubernetes/manifests/etcd.yaml").exists());
    assert!(root.join("var/lib/etcd/member/db").exists());
    assert!(root.join("var/lib/kubelet/kubeadm-flags.env").exists());
    assert!(!root.join("var/lib/kina/kubeadm.done").exists());

    reboot(&node);
    let before = node.read("events").lines().count();
    let (result, _) = run(&node, Role::ControlPlane, k);
    assert!(result.unwrap().contains("Ready"));
    let events = node.read("events");
    let this_boot: Vec<&str> = events
        .lines()
        .skip(before)
        .filter(|l| l.starts_with("kubeadm ") || *l == "kubelet start")
        .collect();
    // Reset before init, and the kubelet started only from init's files.
    assert_eq!(
        &this_boot[..4],
        [
            "kubeadm version",
            "kubeadm reset",
            "kubeadm init",
            "kubelet start"
        ],
        "{events}"
    );
    // Reset wiped pki/: the cluster's CA was written again before init.
    assert_eq!(
        std::fs::read_to_string(root.join("etc/kubernetes/pki/ca.crt")).unwrap(),
        "THE CLUSTER CA FROM THE SPEC\n"
    );
    assert!(root.join("var/lib/kina/kubeadm.done").exists());
}

#[test]
fn a_restart_at_another_address_moves_kubeadms_files_before_the_kubelet_starts() {
    let node = node(0);
    let (result, _) = run(&node, Role::ControlPlane, settings(60, "10.0.2.15:6443"));
    result.unwrap();
    reboot(&node);
    let (result, _) = run_with(
        &node,
        Role::ControlPlane,
        settings(60, "10.0.2.15:6443"),
        "10.0.2.16",
        None,
    );
    let summary = result.unwrap();
    assert!(summary.contains("node n1 (10.0.2.16) Ready"), "{summary}");
    assert!(summary.contains("restarted"), "{summary}");
    assert!(node.read("kubelet-args").contains("--node-ip=10.0.2.16 "));
    let root = node.root();
    for file in [
        "etc/kubernetes/admin.conf",
        "etc/kubernetes/kubelet.conf",
        "etc/kubernetes/manifests/kube-apiserver.yaml",
        "var/lib/kubelet/kubeadm-flags.env",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(text.contains("10.0.2.16"), "{file}: {text}");
        assert!(!text.contains("10.0.2.15"), "{file}: {text}");
    }
    assert_eq!(
        std::fs::read_to_string(root.join("var/lib/kina/node-address")).unwrap(),
        "10.0.2.16\n"
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
