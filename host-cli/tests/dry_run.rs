//! `kina up --dry-run` through the library: kind's documented configs, read
//! by kina's config parser, planned as `up` plans them and turned into the
//! documents kina-init would write, for 1.34, 1.35 and 1.36. Whatever the
//! patches, kina's node IP, certificate SANs and CIDR setting survive; a
//! patch kubeadm could not decode is refused naming the node and the patch;
//! and nothing is created.
//!
//! The configs are kind's docs' (site/content/docs/user: ingress.md,
//! configuration.md, auditing.md, kind-example-config.yaml), written out
//! here from their documented behaviour.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kina::cluster::dry_run::{DryRun, DryRunRequest, NodeOutput, dry_run, render};
use kina::cluster_config::ClusterConfig;
use kina::dirs::KinaDirs;
use kina::provider::{AnyProvider, ProviderKind};
use kina_contract::kubeadm::KubeVersion;
use serde_json::Value;

const VERSIONS: [&str; 3] = ["v1.34.11", "v1.35.8", "v1.36.4"];

/// kind's ingress guide, as a user pastes it: the control plane labelled
/// through its InitConfiguration's kubelet arguments, ports 80 and 443.
const INGRESS: &str = r#"kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
  kubeadmConfigPatches:
  - |
    kind: InitConfiguration
    nodeRegistration:
      kubeletExtraArgs:
        node-labels: "ingress-ready=true"
  extraPortMappings:
  - containerPort: 80
    hostPort: 8080
    protocol: TCP
  - containerPort: 443
    hostPort: 8443
    protocol: TCP
"#;

/// The other documented patches together: an apiServer extraArgs map and
/// extra volume (auditing guide), a v1beta4 list-form patch, certSANs, a
/// JSON 6902 patch on the arguments, and node labels on a worker.
const EVERYTHING: &str = r#"kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
kubeadmConfigPatches:
- |
  kind: ClusterConfiguration
  apiServer:
    extraArgs:
      enable-admission-plugins: NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook
      audit-policy-file: /etc/kubernetes/policies/audit-policy.yaml
    extraVolumes:
      - name: audit-policies
        hostPath: /etc/kubernetes/policies
        mountPath: /etc/kubernetes/policies
        readOnly: true
        pathType: "DirectoryOrCreate"
    certSANs:
    - my-hostname
- |
  apiVersion: kubeadm.k8s.io/v1beta4
  kind: ClusterConfiguration
  controllerManager:
    extraArgs:
    - name: v
      value: "2"
kubeadmConfigPatchesJSON6902:
- group: kubeadm.k8s.io
  version: v1beta4
  kind: ClusterConfiguration
  patch: |
    - op: add
      path: /scheduler/extraArgs
      value: [{name: v, value: "3"}]
nodes:
- role: control-plane
- role: worker
  labels:
    tier: frontend
    ingress-ready: "true"
  kubeadmConfigPatches:
  - |
    kind: JoinConfiguration
    nodeRegistration:
      kubeletExtraArgs:
        register-with-taints: "my-taint=presence:NoSchedule"
"#;

fn run(
    config: &str,
    provider: ProviderKind,
    version: &str,
) -> anyhow::Result<(DryRun, tempfile::TempDir)> {
    let config = ClusterConfig::parse(config).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dirs = KinaDirs::at(tmp.path().join("data"), tmp.path().join("cache"));
    let request = DryRunRequest {
        name: "kina".into(),
        config: &config,
        image: "kina.local/node:kubernetes".into(),
        kubernetes_version: KubeVersion::parse(version).unwrap(),
        version_source: "test".into(),
        cwd: tmp.path().to_path_buf(),
    };
    let out = dry_run(&AnyProvider::of(provider, &dirs), &dirs, &request)?;
    Ok((out, tmp))
}

fn docs(node: &NodeOutput) -> Vec<Value> {
    node.sections[0]
        .body
        .split("\n---\n")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn doc<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter().find(|d| d["kind"] == kind).unwrap()
}

fn arg<'a>(list: &'a Value, name: &str) -> Option<&'a str> {
    list.as_array()?
        .iter()
        .find(|a| a["name"] == name)
        .and_then(|a| a["value"].as_str())
}

fn flags(node: &NodeOutput) -> Vec<&str> {
    node.sections[1].body.lines().collect()
}

/// kina's own settings, present in every node's documents.
fn kinas_own_survive(node: &NodeOutput, what: &str) {
    let ip = node.node_ip.to_string();
    let docs = docs(node);
    assert!(
        flags(node).contains(&format!("--node-ip={ip}").as_str()),
        "{what}: {:?}",
        flags(node)
    );
    if let Some(cluster) = docs.iter().find(|d| d["kind"] == "ClusterConfiguration") {
        let sans = cluster["apiServer"]["certSANs"].as_array().unwrap();
        for san in [ip.as_str(), "127.0.0.1", "localhost"] {
            assert!(
                sans.iter().any(|s| s == san),
                "{what}: {san} not in {sans:?}"
            );
        }
        assert_eq!(
            arg(
                &cluster["controllerManager"]["extraArgs"],
                "allocate-node-cidrs"
            ),
            Some("false"),
            "{what}"
        );
    }
}

#[test]
fn the_ingress_guides_config_labels_the_control_plane() {
    for version in VERSIONS {
        let (out, tmp) = run(INGRESS, ProviderKind::Qemu, version).unwrap();
        let cp = &out.nodes[0];
        kinas_own_survive(cp, version);
        assert_eq!(
            flags(cp),
            [
                format!("--node-ip={}", cp.node_ip).as_str(),
                "--node-labels=ingress-ready=true"
            ]
        );
        let cp_docs = docs(cp);
        assert_eq!(
            doc(&cp_docs, "InitConfiguration")["apiVersion"],
            "kubeadm.k8s.io/v1beta4"
        );
        // Fixed QEMU addresses are the real ones: no note about them.
        assert!(cp.notes.is_empty(), "{:?}", cp.notes);
        let text = render(&out);
        assert!(
            text.starts_with("# kina up --dry-run: cluster \"kina\" on QEMU, Kubernetes"),
            "{text}"
        );
        assert!(
            text.contains("=== node kina-control-plane (control-plane, node IP 10.89."),
            "{text}"
        );
        assert!(
            text.contains("--- /etc/kina/kubeadm.yaml (kubeadm init --config) ---"),
            "{text}"
        );
        // Nothing was created: no data directory, no record, no store.
        assert!(!tmp.path().join("data").exists());
        assert!(!tmp.path().join("cache").exists());
    }
}

#[test]
fn every_documented_patch_lands_and_kinas_settings_stay() {
    for version in VERSIONS {
        let (out, _tmp) = run(EVERYTHING, ProviderKind::Qemu, version).unwrap();
        let (cp, worker) = (&out.nodes[0], &out.nodes[1]);
        kinas_own_survive(cp, version);
        kinas_own_survive(worker, version);
        let docs_cp = docs(cp);
        let cluster = doc(&docs_cp, "ClusterConfiguration");
        let api = &cluster["apiServer"];
        assert_eq!(
            arg(&api["extraArgs"], "enable-admission-plugins"),
            Some("NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook")
        );
        assert_eq!(api["extraVolumes"][0]["pathType"], "DirectoryOrCreate");
        assert!(
            api["certSANs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == "my-hostname")
        );
        assert_eq!(
            arg(&cluster["controllerManager"]["extraArgs"], "v"),
            Some("2")
        );
        assert_eq!(arg(&cluster["scheduler"]["extraArgs"], "v"), Some("3"));
        // The worker: kind's labels and its own join patch.
        assert_eq!(
            flags(worker),
            [
                format!("--node-ip={}", worker.node_ip).as_str(),
                "--node-labels=ingress-ready=true,tier=frontend",
                "--register-with-taints=my-taint=presence:NoSchedule",
            ]
        );
        assert!(render(&out).contains("--- /etc/kina/kubeadm.yaml (kubeadm join --config) ---"));
    }
}

#[test]
fn apple_addresses_known_only_at_start_are_shown_as_documentation_addresses() {
    let (out, _tmp) = run(EVERYTHING, ProviderKind::Apple, "v1.35.8").unwrap();
    let (cp, worker) = (&out.nodes[0], &out.nodes[1]);
    assert_eq!(cp.node_ip.to_string(), "192.0.2.2");
    assert_eq!(worker.node_ip.to_string(), "192.0.2.3");
    assert!(
        cp.notes[0].contains("documentation address"),
        "{:?}",
        cp.notes
    );
    // Nodes reach the control plane by its name there.
    let join = &docs(worker)[0];
    assert_eq!(
        join["discovery"]["bootstrapToken"]["apiServerEndpoint"],
        "kina-control-plane:6443"
    );
    kinas_own_survive(cp, "apple");
}

#[test]
fn a_patch_kubeadm_cannot_decode_is_refused_naming_node_and_patch() {
    let config = r#"kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
- role: worker
  kubeadmConfigPatches:
  - |
    kind: JoinConfiguration
    nodeRegistration:
      kubeletExtraArgs:
        v: 4
"#;
    let err = run(config, ProviderKind::Qemu, "v1.36.4")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "node kina-worker: node kina-worker's kubeadm config patch 1 leaves JoinConfiguration"
        ),
        "{err}"
    );
    assert!(err.contains("quote it"), "{err}");
}

/// kind's local-registry guide (local-registry.md): containerd told to read
/// registry hosts from /etc/containerd/certs.d. The dry run shows the
/// containerd configuration kina-init will write with the patch merged, the
/// pause image kubeadm of that release pulls pinned, and kina's CRI settings
/// kept.
#[test]
fn the_local_registry_guides_containerd_patch_is_in_the_printed_config() {
    const REGISTRY: &str = r#"kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
containerdConfigPatches:
- |-
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d"
"#;
    for (version, pause) in [
        ("v1.34.11", "pause:3.10.1"),
        ("v1.35.8", "pause:3.10.1"),
        ("v1.36.4", "pause:3.10.2"),
    ] {
        let (out, _tmp) = run(REGISTRY, ProviderKind::Qemu, version).unwrap();
        for node in &out.nodes {
            let section = node
                .sections
                .iter()
                .find(|s| s.title.starts_with("/etc/containerd/config.toml"))
                .expect("a containerd section");
            let config: toml::Table = section.body.parse().unwrap();
            let cri = &config["plugins"]["io.containerd.grpc.v1.cri"];
            assert_eq!(
                cri["registry"]["config_path"].as_str(),
                Some("/etc/containerd/certs.d"),
                "{version}: {}",
                section.body
            );
            assert!(
                cri["sandbox_image"].as_str().unwrap().ends_with(pause),
                "{version}: {}",
                section.body
            );
            assert!(render(&out).contains("--- /etc/containerd/config.toml"));
        }
    }
}
