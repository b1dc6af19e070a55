//! A two-node cluster for real: `kina up --provider qemu` boots two QEMU
//! VMs from the base image built from Debian's archive (the host's mirror),
//! each with Debian's cloud kernel under TCG, joined on the cluster's own
//! loopback multicast segment. Kubernetes binaries cannot be downloaded
//! here, so the nodes boot up to containerd (`--stop-after containerd`),
//! and everything a user does with such a cluster is checked through
//! `kina`: listing, pod traffic between nodes through the real ptp plugin
//! and the peer routes, loading an image archive into every containerd,
//! exporting logs, stop and start, and `kina down` leaving nothing behind.
//! A second `up` is interrupted with Ctrl-C and must leave nothing either.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::node::{build_base_image, exec, exec_ok, kernel_recipe, require_node_tools};
use common::{kina, require_tool, run_ok};

const CLUSTER: &str = "duo";
const CONTROL_PLANE: &str = "duo-control-plane";
const WORKER: &str = "duo-worker";

const TWO_NODES: &str = "kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
- role: worker
";

/// Removes the cluster whatever happened, so a failed test leaves no VM.
struct ClusterGuard<'a> {
    env: &'a Path,
    name: &'a str,
}

impl Drop for ClusterGuard<'_> {
    fn drop(&mut self) {
        let _ = kina(self.env).args(["down", "--name", self.name]).output();
    }
}

fn up(env: &Path, name: &str, config: &Path) -> Command {
    let mut cmd = kina(env);
    cmd.args(["up", "--name", name, "--config"])
        .arg(config)
        .args(["--stop-after", "containerd", "--accel", "tcg", "--kernel"])
        .arg(kernel_recipe())
        .env("KUBECONFIG", env.join("kubeconfig"));
    cmd
}

/// Every QEMU process whose command line mentions `env` (the test's data
/// directory holds every node's disk).
fn qemu_processes_of(env: &Path) -> Vec<String> {
    let needle = env.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("qemu-system") && c.contains(&needle))
        .collect()
}

fn assert_nothing_left(env: &Path, name: &str) {
    let nodes: Vec<PathBuf> = std::fs::read_dir(env.join("data/nodes"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(nodes.is_empty(), "node directories left: {nodes:?}");
    assert!(
        !env.join("data/clusters").join(name).exists(),
        "the cluster record of {name} is left"
    );
    let processes = qemu_processes_of(env);
    assert!(processes.is_empty(), "VMs left running: {processes:?}");
    let out = run_ok(kina(env).args(["get", "clusters", "--json"]));
    let names: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!names.contains(&name.to_string()), "{names:?}");
}

/// A one-layer OCI image archive made with umoci (an independent OCI
/// writer), named `kina.local/test:tiny` the way containerd reads names.
/// Returns the archive and its manifest digest.
fn tiny_image_archive(dir: &Path) -> (PathBuf, String) {
    require_tool("umoci");
    let layout = dir.join("tiny-layout");
    let ok = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{cmd:?}: {out:?}");
    };
    ok(Command::new("umoci")
        .arg("init")
        .arg("--layout")
        .arg(&layout));
    ok(Command::new("umoci")
        .args(["new", "--image"])
        .arg(format!("{}:tiny", layout.display())));
    let file = dir.join("hello.txt");
    std::fs::write(&file, "hello from the host\n").unwrap();
    ok(Command::new("umoci")
        .args(["insert", "--image"])
        .arg(format!("{}:tiny", layout.display()))
        .arg(&file)
        .arg("/hello.txt"));
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let manifest = &mut index["manifests"][0];
    let digest = manifest["digest"].as_str().unwrap().to_string();
    manifest["annotations"] = serde_json::json!({
        "org.opencontainers.image.ref.name": "kina.local/test:tiny",
        "io.containerd.image.name": "kina.local/test:tiny",
    });
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let archive = dir.join("tiny.tar");
    ok(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg("."));
    (archive, digest)
}

/// Attaches a scratch pod through the node's CNI chain; returns its address.
fn attach_pod(env: &Path, node: &str, pod: &str) -> String {
    let out = exec_ok(env, node, &["kina-init", "pod", "attach", pod]);
    let pod: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    pod["address"].as_str().unwrap().to_string()
}

fn ping_from_pod(env: &Path, node: &str, pod: &str, to: &str) -> std::process::Output {
    exec(
        env,
        node,
        &["ip", "netns", "exec", pod, "ping", "-c", "2", "-W", "3", to],
        b"",
    )
}

#[test]
fn a_two_node_qemu_cluster_comes_up_carries_pod_traffic_and_goes_without_a_trace() {
    require_node_tools("amd64");
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path();
    build_base_image(env, "amd64");
    let config = env.join("two-nodes.yaml");
    std::fs::write(&config, TWO_NODES).unwrap();
    // The user's kubeconfig (with no kina entry: a base cluster has no
    // Kubernetes to merge) must come out of `up` and `down` byte for byte;
    // merging itself is tested in host-cli's kubeconfig module.
    let kubeconfig = env.join("kubeconfig");
    let kubeconfig_text = "# mine\napiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\ncurrent-context: \"\"\nusers: []\n";
    std::fs::write(&kubeconfig, kubeconfig_text).unwrap();

    // --- up: both nodes made in parallel and booted to containerd.
    let _guard = ClusterGuard { env, name: CLUSTER };
    let started = Instant::now();
    let out = up(env, CLUSTER, &config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kina up failed:\n{stderr}");
    eprintln!("kina up (2 nodes, to containerd): {:?}", started.elapsed());
    for step in [
        "✓ Preparing nodes 📦 📦",
        "✓ Booting nodes up to phase containerd",
    ] {
        assert!(stderr.contains(step), "no step `{step}` in:\n{stderr}");
    }

    // --- get clusters / get nodes.
    let out = run_ok(kina(env).args(["get", "clusters"]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), CLUSTER);
    let out = run_ok(kina(env).args(["get", "nodes", "--name", CLUSTER, "--json"]));
    let nodes: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    assert_eq!(nodes[0]["name"], CONTROL_PLANE);
    assert_eq!(nodes[0]["role"], "control-plane");
    assert_eq!(nodes[1]["name"], WORKER);
    assert_eq!(nodes[1]["role"], "worker");
    for n in &nodes {
        assert_eq!(n["running"], true, "{n}");
        assert_eq!(n["phase"], "containerd", "{n}");
    }
    let (cp_address, worker_address) = (
        nodes[0]["address"].as_str().unwrap().to_string(),
        nodes[1]["address"].as_str().unwrap().to_string(),
    );
    assert_ne!(nodes[0]["podCIDR"], nodes[1]["podCIDR"]);
    // The boot stopped where it was asked to: later phases skipped.
    let status = exec_ok(env, WORKER, &["kina-init", "status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let phase = |name: &str| {
        status["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(phase("containerd"), "ok");
    assert_eq!(phase("images"), "skipped");
    assert_eq!(phase("ready"), "skipped");

    // --- pod traffic between the nodes: a scratch pod on each, attached
    // through the real ptp plugin, reaches the other through the routes.
    let pod_a = attach_pod(env, CONTROL_PLANE, "scratch-a");
    let pod_b = attach_pod(env, WORKER, "scratch-b");
    let route = exec_ok(env, CONTROL_PLANE, &["ip", "route", "get", &pod_b]);
    assert!(
        route.contains(&format!("via {worker_address} dev eth1")),
        "the worker's pods are routed via its segment address: {route}"
    );
    // The worker's pod counts the echo requests that arrive from the
    // control plane's pod's own address: crossing nodes keeps the pod's
    // source (ptp's ipMasq is off; KINA-MASQ exempts peer pod CIDRs).
    let count_from_pod_a: Vec<&str> =
        "ip netns exec scratch-b iptables -w -I INPUT -p icmp --icmp-type echo-request -s"
            .split(' ')
            .chain([pod_a.as_str(), "-j", "ACCEPT"])
            .collect();
    exec_ok(env, WORKER, &count_from_pod_a);
    for (node, pod, to) in [
        (CONTROL_PLANE, "scratch-a", &pod_b),
        (WORKER, "scratch-b", &pod_a),
        (WORKER, "scratch-b", &cp_address),
    ] {
        let ping = ping_from_pod(env, node, pod, to);
        assert!(
            ping.status.success(),
            "{pod} on {node} cannot reach {to}:\n{}\n{}",
            String::from_utf8_lossy(&ping.stdout),
            String::from_utf8_lossy(&ping.stderr)
        );
    }
    let counters = exec_ok(
        env,
        WORKER,
        &[
            "ip",
            "netns",
            "exec",
            "scratch-b",
            "iptables",
            "-w",
            "-L",
            "INPUT",
            "-n",
            "-v",
            "-x",
        ],
    );
    let from_pod_a: u64 = counters
        .lines()
        .find(|l| l.contains(pod_a.as_str()))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|packets| packets.parse().ok())
        .unwrap_or_else(|| panic!("no counter for {pod_a} in:\n{counters}"));
    assert!(
        from_pod_a >= 2,
        "scratch-b saw {from_pod_a} echo requests from {pod_a}: the source was rewritten\n{counters}"
    );
    exec_ok(
        env,
        CONTROL_PLANE,
        &["kina-init", "pod", "detach", "scratch-a"],
    );
    exec_ok(env, WORKER, &["kina-init", "pod", "detach", "scratch-b"]);
    let netns = exec_ok(env, WORKER, &["ip", "netns", "list"]);
    assert!(!netns.contains("scratch-b"), "{netns}");

    // --- load image-archive: the image lands in every node's containerd.
    let (archive, manifest) = tiny_image_archive(env);
    let not_an_archive = env.join("not-an-image.tar");
    std::fs::write(&not_an_archive, b"plain text, not a tar").unwrap();
    let out = kina(env)
        .args(["load", "image-archive", "--name", CLUSTER])
        .arg(&not_an_archive)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("not-an-image.tar"), "{stderr}");
    let loaded = run_ok(
        kina(env)
            .args(["load", "image-archive", "--name", CLUSTER])
            .arg(&archive),
    );
    let said = String::from_utf8_lossy(&loaded.stderr);
    for node in [CONTROL_PLANE, WORKER] {
        assert!(
            said.contains(&format!(
                "{node}: imported kina.local/test:tiny ({manifest}), unpacked into overlayfs: 1 of 1 layer(s) applied"
            )),
            "{said}"
        );
        // The kubelet's view (the CRI), and the file the host put in the
        // layer, unpacked; the import's lease is gone by now, and its
        // release ran containerd's garbage collector, so what remains is
        // held by the image's own labels.
        let images = exec_ok(env, node, &["kina-init", "cri", "images"]);
        assert!(images.contains("kina.local/test:tiny"), "{node}: {images}");
        let unpacked = exec_ok(
            env,
            node,
            &[
                "sh",
                "-c",
                "cat /var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/*/fs/hello.txt",
            ],
        );
        assert_eq!(unpacked, "hello from the host\n", "{node}");
    }
    // A second load finds the layer unpacked already.
    let again = run_ok(
        kina(env)
            .args([
                "load",
                "image-archive",
                "--name",
                CLUSTER,
                "--nodes",
                WORKER,
            ])
            .arg(&archive),
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("0 of 1 layer(s) applied"),
        "{again:?}"
    );

    // --- export logs: per node status, console, containerd log, kernel report.
    let logs = env.join("logs");
    let out = run_ok(
        kina(env)
            .args(["export", "logs", "--name", CLUSTER])
            .arg(&logs),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        logs.display().to_string()
    );
    assert!(logs.join("cluster.json").is_file());
    for node in [CONTROL_PLANE, WORKER] {
        let n = logs.join(node);
        let status: serde_json::Value =
            serde_json::from_slice(&std::fs::read(n.join("status.json")).unwrap()).unwrap();
        assert_eq!(status["node"], node, "{status}");
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(n.join("kernel-report.json")).unwrap()).unwrap();
        assert!(report["profiles"].as_array().is_some_and(|p| !p.is_empty()));
        let console = std::fs::read_to_string(n.join("console.log")).unwrap();
        assert!(console.contains("containerd ok"), "{console}");
        let containerd = std::fs::read_to_string(n.join("kina/containerd.log")).unwrap();
        assert!(!containerd.is_empty());
        assert!(n.join("vm.json").is_file());
    }

    // --- stop and start: the nodes come back and still reach each other.
    run_ok(kina(env).args(["stop", "--name", CLUSTER]));
    assert!(qemu_processes_of(env).is_empty());
    run_ok(kina(env).args(["start", "--name", CLUSTER, "--wait", "10m"]));
    let ping = exec(
        env,
        WORKER,
        &["ping", "-c", "2", "-W", "3", &cp_address],
        b"",
    );
    assert!(ping.status.success(), "{ping:?}");

    // --- down: nothing is left, and the kubeconfig is untouched.
    run_ok(
        kina(env)
            .args(["down", "--name", CLUSTER])
            .env("KUBECONFIG", &kubeconfig),
    );
    assert_nothing_left(env, CLUSTER);
    assert_eq!(
        std::fs::read_to_string(&kubeconfig).unwrap(),
        kubeconfig_text
    );

    // --- Ctrl-C during up removes what was made.
    let interrupted = "cut";
    let _guard2 = ClusterGuard {
        env,
        name: interrupted,
    };
    let child = up(env, interrupted, &config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    // Interrupt once the nodes exist (their directories appear first).
    while std::fs::read_dir(env.join("data/nodes"))
        .map(|d| d.count())
        .unwrap_or(0)
        < 2
    {
        assert!(Instant::now() < deadline, "the nodes never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        stderr.contains("everything it made was removed"),
        "{stderr}"
    );
    assert_nothing_left(env, interrupted);
}
