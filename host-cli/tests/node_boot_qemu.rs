//! A node boots for real: the base image built from Debian's archive (the
//! host's mirror) becomes a QEMU VM with Debian's cloud kernel, under TCG
//! (or KVM where its boot probe passes), and kina-init takes it through
//! every phase to ready. Everything is checked from the host through
//! `kina`, as a user would: status, the kernel report, pod networking with
//! the real ptp plugin, containerd supervision, preloaded images, Apple's
//! way of starting an entrypoint, a failing kernel profile, and shutdown.
//!
//! One test, one VM, several steps: a boot costs tens of seconds under TCG.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::node::{
    NodeGuard, assert_kernel_report_matches_config, assert_pod_network_works, build_base_image,
    console, create_node, exec, exec_ok, node_dir, require_node_tools,
};
use common::{kina, run_ok, workspace_root};

fn status_json(env: &Path, name: &str) -> serde_json::Value {
    let out = run_ok(kina(env).args(["node", "status", name, "--json"]));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn phase<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no phase {name} in {status}"))
}

#[test]
fn an_amd64_base_image_boots_to_ready_in_qemu_and_behaves_as_a_node() {
    require_node_tools("amd64");
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path();
    build_base_image(env, "amd64");

    // --- Boot to ready (accelerator chosen by the boot probe).
    let _guard = NodeGuard { env, name: "n1" };
    let created = create_node(env, "n1", "amd64", &["--accel", "auto", "--wait", "ready"]);
    let stderr = String::from_utf8_lossy(&created.stderr);
    assert!(
        created.status.success(),
        "kina node create failed:\n{stderr}\nconsole:\n{}",
        console(env, "n1")
    );
    assert!(
        stderr.contains("under tcg (") || stderr.contains("under kvm ("),
        "the accelerator and why are reported: {stderr}"
    );
    let status = status_json(env, "n1");
    assert_eq!(status["mode"], "vm-pid1");
    for p in status["phases"].as_array().unwrap() {
        assert_eq!(p["state"], "ok", "phase {} did not pass: {p}", p["name"]);
    }
    let console_text = console(env, "n1");
    for line in [
        "kina-init[initramfs]: loaded",
        "kina-init: mount ok (",
        "kina-init: containerd ok (",
        "kina-init: ready ok (",
    ] {
        assert!(
            console_text.contains(line),
            "console lacks `{line}`:\n{console_text}"
        );
    }

    // --- The node's kernel report agrees with the kernel's own config,
    // checked on the host by the same engine.
    assert_kernel_report_matches_config(env, "n1");

    // --- Pod networking through the real ptp plugin and the generated config.
    assert_pod_network_works(env, "n1");

    // --- The base image carries no Kubernetes: the Kubernetes phase, run
    // with a spec that asks for it, names every missing binary and the way
    // out (kubeadm, kubelet and kubectl cannot be downloaded here, so this
    // is as far as the real image can go in this environment).
    let spec = serde_json::json!({
        "version": 1, "name": "n1", "cluster": "kina", "role": "control-plane",
        "pod_cidr": "10.244.0.0/24",
        "kubernetes": {
            "pod_subnet": "10.244.0.0/16", "service_subnet": "10.96.0.0/16",
            "control_plane_endpoint": "10.0.2.15:6443"
        }
    });
    let script = "cat > /run/k8s-spec.json && kina-init phase kubernetes --spec /run/k8s-spec.json";
    let out = exec(
        env,
        "n1",
        &["sh", "-c", script],
        spec.to_string().as_bytes(),
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("kubernetes FAILED: the node image has no kubeadm, kubelet, kubectl (looked in /usr/local/sbin:")
            && said.contains("recipes/kubernetes-v1.36.toml"),
        "{said}"
    );

    // --- Routes follow the spec: a peer appears, then comes back at
    // another address, and this node's route to its pod CIDR, its
    // /etc/hosts entry and the masquerading exemption follow.
    for address in ["10.0.2.99", "10.0.2.98"] {
        let mut spec: serde_json::Value =
            serde_json::from_str(&exec_ok(env, "n1", &["cat", "/etc/kina/node.json"])).unwrap();
        spec["peers"] = serde_json::json!([
            {"name": "n2", "address": address, "pod_cidr": "10.244.9.0/24"}
        ]);
        let write =
            "cat > /etc/kina/node.json.new && mv /etc/kina/node.json.new /etc/kina/node.json";
        let out = exec(env, "n1", &["sh", "-c", write], spec.to_string().as_bytes());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let route = exec_ok(env, "n1", &["ip", "route", "show", "10.244.9.0/24"]);
            let hosts = exec_ok(env, "n1", &["cat", "/etc/hosts"]);
            let masq = exec_ok(env, "n1", &["iptables", "-t", "nat", "-S", "KINA-MASQ"]);
            if route.contains(&format!("via {address} dev eth0"))
                && hosts.contains(&format!("{address}\tn2"))
                && masq.contains("-d 10.244.9.0/24 -j RETURN")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the node did not follow peer n2 to {address}:\nroute: {route}\nhosts: {hosts}\nmasquerading: {masq}\n{}",
                console(env, "n1")
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    // --- containerd killed repeatedly comes back, each time a little later.
    let kill_containerd = "for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = containerd ] && kill -9 ${p#/proc/}; done; true";
    for round in 1..=3 {
        let before = console(env, "n1").matches("containerd started").count();
        exec_ok(env, "n1", &["sh", "-c", kill_containerd]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while console(env, "n1").matches("containerd started").count() <= before {
            assert!(
                Instant::now() < deadline,
                "containerd not restarted (round {round}):\n{}",
                console(env, "n1")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let text = console(env, "n1");
    let delays: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("containerd exited"))
        .filter_map(|l| l.split("restarting in ").nth(1))
        .collect();
    assert_eq!(delays, ["250 ms", "500 ms", "1000 ms"], "{text}");
    // "started" is the process; its socket answers a moment later.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !exec(env, "n1", &["kina-init", "cri", "images"], b"")
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "containerd does not answer after its restarts:\n{}",
            console(env, "n1")
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // --- Apple's way of starting an entrypoint, inside this VM: kina-init
    // detects container mode and reaches containerd there too, with a
    // read-only /proc/sys that already holds what the node needs.
    let script =
        std::fs::read(workspace_root().join("host-cli/tests/fixtures/apple-vmexec.sh")).unwrap();
    let started = exec(env, "n1", &["sh", "-s", "--", "ro"], &script);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let pid = String::from_utf8_lossy(&started.stdout).trim().to_string();
    assert!(!pid.is_empty(), "no container init pid");
    let deadline = Instant::now() + Duration::from_secs(300);
    let sim = loop {
        let out = exec(
            env,
            "n1",
            &[
                "nsenter",
                "-t",
                &pid,
                "-m",
                "-r",
                "cat",
                "/run/kina/status.json",
            ],
            b"",
        );
        if let Ok(s) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            && s["mode"] == "container-pid1"
        {
            let done = ["ready", "containerd"]
                .iter()
                .all(|p| phase(&s, p)["state"] == "ok");
            let failed = s["phases"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["state"] == "failed");
            if done || failed {
                break s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "container-mode kina-init never finished:\n{}",
            exec_ok(env, "n1", &["cat", "/run/apple-sim/console.log"])
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(sim["mode"], "container-pid1", "{sim}");
    for p in sim["phases"].as_array().unwrap() {
        assert_eq!(
            p["state"], "ok",
            "container mode: phase {} failed: {p}",
            p["name"]
        );
    }
    let sysctls = phase(&sim, "sysctls")["message"].as_str().unwrap();
    assert!(sysctls.contains("/proc/sys is read-only"), "{sysctls}");
    let mount = phase(&sim, "mount")["message"].as_str().unwrap();
    assert!(
        !mount.contains("/proc ") && !mount.contains("/sys/fs/cgroup"),
        "remounted what vminitd mounted: {mount}"
    );
    let containerd = phase(&sim, "containerd")["message"].as_str().unwrap();
    assert!(
        containerd.contains("native snapshotter (overlay unusable"),
        "overlay on overlay must fall back: {containerd}"
    );
    // SIGTERM (what `container stop` sends) stops it in order, and it exits.
    exec_ok(env, "n1", &["kill", "-TERM", &pid]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while exec(env, "n1", &["test", "-d", &format!("/proc/{pid}")], b"")
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "container-mode kina-init did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let sim_console = exec_ok(env, "n1", &["cat", "/run/apple-sim/console.log"]);
    assert!(
        sim_console.contains("SIGTERM: shutting down")
            && sim_console.contains("containerd stopped"),
        "{sim_console}"
    );

    // --- Shutdown: services in order, then power off; the disk is clean.
    let stopped = run_ok(kina(env).args(["node", "stop", "n1"]));
    assert!(String::from_utf8_lossy(&stopped.stdout).contains("powered off"));
    let text = console(env, "n1");
    let term = text
        .rfind("SIGTERM: shutting down")
        .expect("shutdown logged");
    let tail = &text[term..];
    assert!(
        tail.contains("containerd stopped") && tail.contains("power off"),
        "{tail}"
    );
    let fsck = std::process::Command::new("e2fsck")
        .args(["-fn"])
        .arg(node_dir(env, "n1").join("disk.img"))
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "the root disk is not clean after shutdown:\n{}",
        String::from_utf8_lossy(&fsck.stdout)
    );

    // --- Preloaded images: a node image's OCI layout at /var/lib/kina/images
    // is imported on the next boot, once; the machine-id survives restarts.
    let layout = preload_layout(env);
    let started = run_ok(kina(env).args([
        "node",
        "start",
        "n1",
        "--wait",
        "containerd",
        "--timeout",
        "600",
    ]));
    drop(started);
    let id_before = exec_ok(env, "n1", &["cat", "/etc/machine-id"]);
    exec_ok(env, "n1", &["mkdir", "-p", "/var/lib/kina/images"]);
    let put = exec(
        env,
        "n1",
        &["tar", "-x", "-C", "/var/lib/kina/images"],
        &layout,
    );
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    run_ok(kina(env).args(["node", "stop", "n1"]));
    run_ok(kina(env).args(["node", "start", "n1", "--wait", "ready", "--timeout", "600"]));
    let images = phase(&status_json(env, "n1"), "images")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        images,
        "imported 1 preloaded image(s) (1 layer(s) unpacked)"
    );
    // What the kubelet sees, through the CRI; and the layer unpacked into
    // the CRI's snapshotter, kept after the import's lease went (its
    // release ran containerd's garbage collector).
    let listed = exec_ok(env, "n1", &["kina-init", "cri", "images"]);
    assert!(listed.contains("kina.local/preload-test:1"), "{listed}");
    let unpacked = exec_ok(
        env,
        "n1",
        &[
            "sh",
            "-c",
            "cat /var/lib/containerd/io.containerd.snapshotter.v1.*/snapshots/*/fs/hello.txt",
        ],
    );
    assert_eq!(unpacked, "hello\n", "the preloaded layer's file, unpacked");
    assert_eq!(
        exec_ok(env, "n1", &["cat", "/etc/machine-id"]),
        id_before,
        "machine-id changed across restarts"
    );
    run_ok(kina(env).args(["node", "stop", "n1"]));
    run_ok(kina(env).args(["node", "start", "n1", "--wait", "ready", "--timeout", "600"]));
    let images = phase(&status_json(env, "n1"), "images")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(images, "1 preloaded image(s) already imported");

    // --- A required profile the kernel fails: the kernel phase names the
    // missing option and the node still answers.
    run_ok(kina(env).args(["node", "rm", "n1"]));
    assert!(!node_dir(env, "n1").exists(), "node rm left files behind");
    let profile = env.join("site-dsa.toml");
    // A site profile written for this test: no profile kina ships fails on
    // Debian's cloud kernel, which lacks CONFIG_NET_DSA.
    std::fs::write(
        &profile,
        "name = \"site-dsa\"\ndescription = \"switch ports managed by the node\"\n[[option]]\nsymbols = [\"NET_DSA\"]\nwhy = \"the site's DSA switch\"\nprobe = { kind = \"config-only\" }\n",
    )
    .unwrap();
    let _guard2 = NodeGuard { env, name: "n2" };
    let failed = create_node(
        env,
        "n2",
        "amd64",
        &[
            "--accel",
            "tcg",
            "--profile-file",
            profile.to_str().unwrap(),
            "--profile",
            "kubernetes-base",
            "--profile",
            "site-dsa",
        ],
    );
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(
        stderr.contains("phase kernel failed") && stderr.contains("site-dsa needs CONFIG_NET_DSA"),
        "{stderr}"
    );
    let status = status_json(env, "n2");
    assert_eq!(phase(&status, "kernel")["state"], "failed");
    assert_eq!(phase(&status, "containerd")["state"], "skipped");
    run_ok(kina(env).args(["node", "rm", "n2"]));
}

/// A one-layer OCI image layout (as `kina image build` preloads them), as a
/// tar stream.
fn preload_layout(env: &Path) -> Vec<u8> {
    use kina_builder::digest::Sha256Digest;
    let mut layer = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(6);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    layer
        .append_data(&mut header, "hello.txt", &b"hello\n"[..])
        .unwrap();
    let layer = layer.into_inner().unwrap();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", Sha256Digest::of(&layer).hex())]},
        "config": {}
    }))
    .unwrap();
    let desc = |media: &str, bytes: &[u8]| {
        serde_json::json!({
            "mediaType": media, "digest": format!("sha256:{}", Sha256Digest::of(bytes).hex()), "size": bytes.len()
        })
    };
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc("application/vnd.oci.image.config.v1+json", &config),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar", &layer)],
    }))
    .unwrap();
    let mut top = desc("application/vnd.oci.image.manifest.v1+json", &manifest);
    top["platform"] = serde_json::json!({"architecture": "amd64", "os": "linux"});
    top["annotations"] = serde_json::json!({
        "io.containerd.image.name": "kina.local/preload-test:1",
        "org.opencontainers.image.ref.name": "kina.local/preload-test:1"
    });
    let index =
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [top]})).unwrap();
    let root = env.join("preload");
    let blobs = root.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    for bytes in [&layer, &config, &manifest] {
        std::fs::write(blobs.join(Sha256Digest::of(bytes).hex()), bytes).unwrap();
    }
    std::fs::write(root.join("index.json"), &index).unwrap();
    std::fs::write(
        root.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    tar.append_dir_all(".", &root).unwrap();
    tar.into_inner().unwrap()
}
