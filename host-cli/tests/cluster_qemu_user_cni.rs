//! kind's node-shaping fields on a real two-node QEMU cluster: two VMs from
//! the base image built from Debian's archive, Debian's cloud kernel under
//! TCG, booted up to containerd (Kubernetes binaries cannot be downloaded
//! here), with `disableDefaultCNI`, `dnsSearch` and kind's local-registry
//! `containerdConfigPatches` set. One cluster checks all of it (QEMU under
//! TCG is slow): no ptp configuration, no routes to the peer's pod CIDR
//! and no masquerading in either node, `kina status` saying a CNI is
//! expected, resolv.conf's search line, and the patch in the configuration
//! the node's real containerd (Debian's 1.7) runs, as `containerd config
//! dump` shows it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::node::{build_base_image, exec_ok, kernel_recipe, require_node_tools};
use common::{kina, run_ok};

const CLUSTER: &str = "own-cni";
const NODES: [&str; 2] = ["own-cni-control-plane", "own-cni-worker"];

const CONFIG: &str = r#"kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
- role: worker
networking:
  disableDefaultCNI: true
  dnsSearch: [corp.example]
containerdConfigPatches:
- |-
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d"
"#;

/// Removes the cluster whatever happened, so a failed test leaves no VM.
struct ClusterGuard<'a> {
    env: &'a Path,
}

impl Drop for ClusterGuard<'_> {
    fn drop(&mut self) {
        let _ = kina(self.env).args(["down", "--name", CLUSTER]).output();
    }
}

#[test]
fn a_cluster_left_to_the_users_cni_has_no_kina_pod_network_and_runs_the_containerd_patch() {
    require_node_tools("amd64");
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path();
    build_base_image(env, "amd64");
    let config = env.join("own-cni.yaml");
    std::fs::write(&config, CONFIG).unwrap();

    let _guard = ClusterGuard { env };
    let out = kina(env)
        .args(["up", "--name", CLUSTER, "--config"])
        .arg(&config)
        .args(["--stop-after", "containerd", "--accel", "tcg", "--kernel"])
        .arg(kernel_recipe())
        .env("KUBECONFIG", env.join("kubeconfig"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kina up failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for node in NODES {
        let net_d = exec_ok(env, node, &["ls", "-A", "/etc/cni/net.d"]);
        assert!(
            !net_d.contains("kina"),
            "{node}: kina wrote a CNI config: {net_d}"
        );
        let routes = exec_ok(env, node, &["ip", "-4", "route", "show"]);
        assert!(
            !routes.contains("10.244."),
            "{node}: a pod CIDR is routed:\n{routes}"
        );
        let nat = exec_ok(env, node, &["iptables", "-t", "nat", "-S"]);
        assert!(!nat.contains("KINA-MASQ"), "{node}: masquerading:\n{nat}");
        let resolv = exec_ok(env, node, &["cat", "/etc/resolv.conf"]);
        assert!(
            resolv.starts_with("search corp.example\n"),
            "{node}: {resolv}"
        );
        // The configuration containerd itself runs (Debian's 1.7 reads
        // kina's version 2 file with the patch merged in).
        let dump = exec_ok(env, node, &["containerd", "config", "dump"]);
        assert!(
            dump.contains(r#"config_path = "/etc/containerd/certs.d""#),
            "{node}: containerd's live config lacks the patch:\n{dump}"
        );
        assert!(
            dump.contains(r#"sandbox_image = "registry.k8s.io/pause:3.10.2""#),
            "{node}: {dump}"
        );
        let status = exec_ok(env, node, &["kina-init", "status"]);
        assert!(status.contains("a CNI is expected"), "{node}: {status}");
    }
    let out = run_ok(kina(env).args(["status", "--name", CLUSTER]));
    let status = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        status.matches("pod network: a CNI is expected").count(),
        2,
        "kina status:\n{status}"
    );
    run_ok(kina(env).args(["down", "--name", CLUSTER]));
}
