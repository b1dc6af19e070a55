//! kind's node-shaping fields on a real two-node QEMU cluster: two VMs from
//! the base image built from Debian's archive, Debian's cloud kernel under
//! TCG, booted up to containerd (Kubernetes binaries cannot be downloaded
//! here), with `disableDefaultCNI`, `dnsSearch` and kind's local-registry
//! `containerdConfigPatches` set. One cluster checks all of it (QEMU under
//! TCG is slow): no ptp configuration, no routes to the peer's pod CIDR
//! and no masquerading in either node, `kina status` saying a CNI is
//! expected, resolv.conf's search line, the patch in the configuration
//! the node's real containerd (Debian's 1.7) runs, as `containerd config
//! dump` shows it, and kind's local-registry recipe end to end: an image
//! pushed with `kina image push` to Debian's docker-registry on the host is
//! pulled inside a node by its `localhost:PORT` name through containerd's
//! CRI (as the kubelet pulls), routed by the `hosts.toml` the recipe's
//! third step writes into the node.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::node::{build_base_image, exec, exec_ok, kernel_recipe, require_node_tools};
use common::registry::{Registry, make_image, push, skopeo_raw};
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

    local_registry_recipe(env);
    run_ok(kina(env).args(["down", "--name", CLUSTER]));
}

/// kind's local-registry recipe, in the three steps of kind's
/// `site/static/examples/kind-with-registry.sh`: a registry on the host's
/// loopback; the `config_path` patch (set in [`CONFIG`]); a `hosts.toml`
/// under `/etc/containerd/certs.d/localhost:PORT` in each node naming where
/// the registry really is, written with an exec into the node as kind's
/// script does with `docker exec`. From a QEMU node the host's loopback is
/// 10.0.2.2 (QEMU's user-mode network).
fn local_registry_recipe(env: &Path) {
    let registry = Registry::start();
    let pushed = make_image(env, "local/app:v1", 4096);
    run_ok(&mut push(
        env,
        &format!("{}/kina/app:v1", registry.host()),
        "local/app:v1",
    ));
    // What the node should get: the index kina pushed, and its amd64
    // image's config (the CRI's image ID), read back from the registry by
    // skopeo, an independent reader.
    let index: serde_json::Value = serde_json::from_slice(&skopeo_raw(
        &format!("{}/kina/app:v1", registry.host()),
        &[],
    ))
    .unwrap();
    let amd64_manifest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "amd64")
        .and_then(|m| m["digest"].as_str())
        .unwrap()
        .to_string();
    let manifest: serde_json::Value = serde_json::from_slice(&skopeo_raw(
        &format!("{}/kina/app@{amd64_manifest}", registry.host()),
        &[],
    ))
    .unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();

    let name = format!("localhost:{}", registry.port);
    let image = format!("{name}/kina/app:v1");
    let node = NODES[0];
    let pull = |image: &str| {
        exec(
            env,
            node,
            &["kina-init", "cri", "pull", image, "--json"],
            b"",
        )
    };
    // Without the node's hosts.toml, `localhost` is the node itself, where
    // no registry listens: the pull fails, so what follows is the recipe's
    // doing.
    let before = pull(&image);
    assert!(
        !before.status.success(),
        "{image} was pulled before any hosts.toml named the host:\n{}",
        String::from_utf8_lossy(&before.stdout)
    );
    let hosts_toml = format!("[host.\"http://10.0.2.2:{}\"]\n", registry.port);
    for node in NODES {
        let dir = format!("/etc/containerd/certs.d/{name}");
        let write = exec(
            env,
            node,
            &[
                "sh",
                "-c",
                &format!("mkdir -p '{dir}' && cat > '{dir}/hosts.toml'"),
            ],
            hosts_toml.as_bytes(),
        );
        assert!(write.status.success(), "{node}: {write:?}");
    }

    let out = pull(&image);
    assert!(
        out.status.success(),
        "the CRI could not pull {image} through the registry mirror:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pulled: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pulled["imageRef"], config_digest.as_str(), "{pulled}");
    assert_eq!(pulled["status"]["id"], config_digest.as_str(), "{pulled}");
    let repo_digest = format!("{name}/kina/app@{}", pushed.digest.oci());
    assert!(
        pulled["status"]["repoDigests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == repo_digest.as_str()),
        "the pulled image is not the pushed index {repo_digest}: {pulled}"
    );
    assert!(
        pulled["status"]["repoTags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == image.as_str()),
        "{pulled}"
    );
    // The registry on the host served the node the image's config and
    // layers (a push only asks whether blobs exist).
    let served = registry.requests("GET", 200);
    for blob in manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .chain([&manifest["config"]])
    {
        let path = format!("/v2/kina/app/blobs/{}", blob["digest"].as_str().unwrap());
        assert!(served.contains(&path), "no GET of {path} in {served:?}");
    }
    // The kubelet's view of the node's images lists it.
    let images = exec_ok(env, node, &["kina-init", "cri", "images"]);
    assert!(
        images
            .lines()
            .any(|l| l.starts_with(&format!("{image}  {config_digest}"))),
        "{images}"
    );

    // A tag the registry does not have is refused by the CRI, named, after
    // the host's registry said so. (The recipe's hosts.toml sets no
    // `server`, so containerd then tries the name's own host too, the
    // node's https://localhost:PORT, as containerd docs/hosts.md says of a
    // host that fails; the refusal names that last try.)
    let missing = format!("{name}/kina/app:never-pushed");
    let out = pull(&missing);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{missing} was pulled: {stderr}");
    assert!(
        stderr.contains(&format!("refused to pull {missing}")),
        "{stderr}"
    );
    // The registry logs a refused request as "response completed with
    // error", which `requests` leaves out; asking it anything first makes
    // its log hold every request answered so far.
    registry.requests("HEAD", 404);
    let log = std::fs::read_to_string(registry.dir.path().join("registry.log")).unwrap();
    let asked: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("/v2/kina/app/manifests/never-pushed"))
        .collect();
    assert!(
        asked
            .iter()
            .any(|l| l.contains(" http.request.method=HEAD ")
                && l.contains(" http.response.status=404 ")),
        "the host's registry did not answer 404 for {missing}: {asked:#?}"
    );
}
