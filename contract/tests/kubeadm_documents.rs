//! kubeadm configuration per supported Kubernetes minor: golden files, and
//! every generated document checked against the field shapes of kubeadm's
//! published API types (`kina_contract::kubeadm::shapes`), so a field
//! kubeadm would reject or ignore fails here first.
//!
//! `KINA_UPDATE_GOLDEN=1 cargo test -p kina-contract --test kubeadm_documents`
//! rewrites the golden files; review the diff like code.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use kina_contract::kubeadm::shapes::{Checked, check};
use kina_contract::kubeadm::{
    ApiVersion, IgnoredCheck, Inputs, KubeVersion, PatchSet, apply_patch_sets, for_node, generate,
    kubelet_flags, render,
};
use kina_contract::node_spec::{
    Json6902Patch, KubeProxyMode, KubernetesSettings, NodeSpec, Peer, Role,
};
use serde_json::{Value, json};

const TOKEN: &str = "abcdef.0123456789abcdef";
const HASH: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn spec(role: Role, peers: bool) -> NodeSpec {
    let mut spec = NodeSpec::unnamed();
    spec.name = match role {
        Role::ControlPlane => "kina-control-plane".into(),
        Role::Worker => "kina-worker".into(),
    };
    spec.cluster = "kina".into();
    spec.role = role;
    spec.pod_cidr = "10.244.0.0/24".into();
    if peers {
        spec.peers.push(Peer {
            name: "kina-worker".into(),
            address: "10.0.2.16".into(),
            pod_cidr: "10.244.1.0/24".into(),
        });
    }
    spec
}

/// Built from JSON so fields added later with serde defaults need no edit.
fn settings() -> KubernetesSettings {
    serde_json::from_value(json!({
        "pod_subnet": "10.244.0.0/16",
        "service_subnet": "10.96.0.0/16",
        "control_plane_endpoint": "10.0.2.15:6443",
        "api_server_cert_sans": ["127.0.0.1", "kina.local"],
        "feature_gates": {"InPlacePodVerticalScaling": true},
        "runtime_config": {"api/alpha": "false"},
        "bootstrap_token": TOKEN,
        "ca_cert_hash": HASH,
        "timeout_seconds": 300,
    }))
    .unwrap()
}

fn inputs<'a>(
    spec: &'a NodeSpec,
    k: &'a KubernetesSettings,
    version: &str,
    ignored: &'a [IgnoredCheck],
) -> Inputs<'a> {
    Inputs {
        spec,
        kubernetes: k,
        version: KubeVersion::parse(version).unwrap(),
        node_ip: "10.0.2.15".parse().unwrap(),
        ignored_checks: ignored,
    }
}

fn generate_docs(version: &str, role: Role, peers: bool, k: &KubernetesSettings) -> Vec<Value> {
    let spec = spec(role, peers);
    let ignored = [IgnoredCheck {
        name: "NumCPU",
        why: "test".into(),
    }];
    for_node(&inputs(&spec, k, version, &ignored)).unwrap()
}

fn golden(name: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("KINA_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (KINA_UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        text,
        want,
        "{} differs from what kina generates",
        path.display()
    );
}

#[test]
fn each_supported_minor_gets_its_api_version_and_only_fields_kubeadm_knows() {
    for (version, api) in [
        ("v1.30.14", ApiVersion::V1Beta3),
        ("v1.34.11", ApiVersion::V1Beta4),
        ("v1.35.8", ApiVersion::V1Beta4),
        ("v1.36.4", ApiVersion::V1Beta4),
    ] {
        let minor = &version[1..5];
        for (role, label) in [(Role::ControlPlane, "init"), (Role::Worker, "join")] {
            let docs = generate_docs(version, role.clone(), true, &settings());
            for doc in &docs {
                let kind = doc["kind"].as_str().unwrap();
                if doc["apiVersion"].as_str().unwrap().starts_with("kubeadm") {
                    assert_eq!(doc["apiVersion"], api.as_str(), "{version} {kind}");
                }
                assert_eq!(check(doc), Checked::default(), "{version} {label} {kind}");
            }
            golden(&format!("kubeadm-{minor}-{label}.yaml"), &render(&docs));
        }
    }
}

#[test]
fn init_carries_what_the_issue_lists() {
    let docs = generate_docs("v1.36.4", Role::ControlPlane, false, &settings());
    let init = &docs[0];
    let cluster = &docs[1];
    let kubelet = &docs[2];
    let proxy = &docs[3];
    assert_eq!(init["bootstrapTokens"][0]["token"], TOKEN);
    assert_eq!(init["localAPIEndpoint"]["advertiseAddress"], "10.0.2.15");
    assert_eq!(
        init["nodeRegistration"]["kubeletExtraArgs"],
        json!([{"name": "node-ip", "value": "10.0.2.15"}])
    );
    assert_eq!(
        init["nodeRegistration"]["ignorePreflightErrors"],
        json!(["NumCPU"])
    );
    // A one-node cluster: no control-plane taint.
    assert_eq!(init["nodeRegistration"]["taints"], json!([]));
    assert_eq!(cluster["clusterName"], "kina");
    assert_eq!(cluster["kubernetesVersion"], "v1.36.4");
    assert_eq!(
        cluster["networking"],
        json!({"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/16", "dnsDomain": "cluster.local"})
    );
    assert_eq!(
        cluster["apiServer"]["certSANs"],
        json!(["10.0.2.15", "127.0.0.1", "localhost", "kina.local"])
    );
    assert_eq!(
        cluster["apiServer"]["extraArgs"],
        json!([{"name": "feature-gates", "value": "InPlacePodVerticalScaling=true"}, {"name": "runtime-config", "value": "api/alpha=false"}])
    );
    assert_eq!(kubelet["cgroupDriver"], "cgroupfs");
    assert_eq!(kubelet["serverTLSBootstrap"], true);
    assert_eq!(proxy["mode"], "iptables");
    // With workers the control plane keeps kubeadm's taint.
    let docs = generate_docs("v1.36.4", Role::ControlPlane, true, &settings());
    assert!(docs[0]["nodeRegistration"].get("taints").is_none());
}

#[test]
fn kubeadms_own_waits_follow_the_budget_and_discovery_leaves_room_for_a_retry() {
    // timeout_seconds is 300: kubeadm's 4-minute defaults would end first.
    let init = &generate_docs("v1.35.8", Role::ControlPlane, true, &settings())[0];
    assert_eq!(
        init["timeouts"],
        json!({"controlPlaneComponentHealthCheck": "300s", "kubeletHealthCheck": "300s"})
    );
    let join = &generate_docs("v1.35.8", Role::Worker, true, &settings())[0];
    assert_eq!(
        join["timeouts"],
        json!({"discovery": "150s", "kubeletHealthCheck": "300s", "tlsBootstrap": "300s"})
    );
    assert!(join["discovery"].get("timeout").is_none());

    // v1beta3 (1.30) has maps, a discovery timeout and the API server's.
    let join = &generate_docs("v1.30.14", Role::Worker, true, &settings())[0];
    assert_eq!(
        join["nodeRegistration"]["kubeletExtraArgs"],
        json!({"node-ip": "10.0.2.15"})
    );
    assert_eq!(join["discovery"]["timeout"], "150s");
    assert!(join.get("timeouts").is_none());
    assert_eq!(
        join["discovery"]["bootstrapToken"]["caCertHashes"],
        json!([HASH])
    );
    let cluster = &generate_docs("v1.30.14", Role::ControlPlane, true, &settings())[1];
    assert_eq!(cluster["apiServer"]["timeoutForControlPlane"], "300s");
}

#[test]
fn kube_proxy_none_skips_its_addon_and_nftables_needs_131() {
    let mut k = settings();
    k.kube_proxy_mode = KubeProxyMode::None;
    let docs = generate_docs("v1.36.4", Role::ControlPlane, false, &k);
    assert_eq!(docs.len(), 3);
    assert_eq!(docs[0]["skipPhases"], json!(["addon/kube-proxy"]));
    k.kube_proxy_mode = KubeProxyMode::Nftables;
    let spec = spec(Role::ControlPlane, false);
    let err = for_node(&inputs(&spec, &k, "v1.30.2", &[])).unwrap_err();
    assert!(err.contains("nftables") && err.contains("1.31"), "{err}");
}

#[test]
fn versions_outside_the_supported_range_are_refused_by_name() {
    let err = ApiVersion::for_version(KubeVersion::parse("v1.29.9").unwrap()).unwrap_err();
    assert!(err.contains("v1.29.9") && err.contains("1.30"), "{err}");
    assert!(KubeVersion::parse("1.36").is_err());
    assert_eq!(
        KubeVersion::parse("v1.36.0-rc.1\n").unwrap().to_string(),
        "v1.36.0"
    );
}

fn cluster_set<'a>(merge: &'a [Value], json6902: &'a [Json6902Patch]) -> [PatchSet<'a>; 1] {
    [PatchSet {
        origin: "cluster-level",
        merge,
        json6902,
    }]
}

#[test]
fn merge_patches_apply_before_json6902_in_order_and_by_kind_and_version() {
    let mut docs = generate_docs("v1.36.4", Role::ControlPlane, false, &settings());
    let merge = vec![
        json!({"kind": "ClusterConfiguration", "networking": {"dnsDomain": "first.local"}}),
        json!({"kind": "ClusterConfiguration", "apiVersion": "kubeadm.k8s.io/v1beta3", "clusterName": "never"}),
        json!({"kind": "ClusterConfiguration", "networking": {"dnsDomain": "second.local"}}),
        json!({"kind": "KubeletConfiguration", "maxPods": 50, "failSwapOn": null}),
    ];
    let json6902 = vec![Json6902Patch {
        group: "kubeadm.k8s.io".into(),
        version: "v1beta4".into(),
        kind: "ClusterConfiguration".into(),
        // Sees the merge patches' result: it tests, then adds.
        patch: json!([
            {"op": "test", "path": "/networking/dnsDomain", "value": "second.local"},
            {"op": "add", "path": "/apiServer/certSANs/-", "value": "patched.example"}
        ]),
    }];
    let notes = apply_patch_sets(
        &mut docs,
        KubeVersion::parse("v1.36.4").unwrap(),
        &cluster_set(&merge, &json6902),
    )
    .unwrap();
    assert_eq!(docs[1]["networking"]["dnsDomain"], "second.local");
    // kind writes v1beta4 from 1.36 too: a v1beta3 patch matches nothing,
    // and kina says so.
    assert_eq!(docs[1]["clusterName"], "kina");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("cluster-level kubeadm config patch 2")
            && notes[0].contains("changes nothing"),
        "{notes:?}"
    );
    assert_eq!(docs[1]["apiServer"]["certSANs"][4], "patched.example");
    assert_eq!(docs[2]["maxPods"], 50);
    assert!(
        docs[2].get("failSwapOn").is_none(),
        "null removes a field (RFC 7386)"
    );

    // Patches for kinds kina never writes, malformed ones, and ones that do
    // not apply are errors naming the patch.
    let version = KubeVersion::parse("v1.36.4").unwrap();
    let mut docs = generate_docs("v1.36.4", Role::ControlPlane, false, &settings());
    let err = apply_patch_sets(
        &mut docs,
        version,
        &cluster_set(&[json!({"kind": "ClusterConfig"})], &[]),
    )
    .unwrap_err();
    assert!(
        err.contains("patch 1") && err.contains("kind ClusterConfig,"),
        "{err}"
    );
    let err = apply_patch_sets(
        &mut docs,
        version,
        &cluster_set(&[json!({"networking": {}})], &[]),
    )
    .unwrap_err();
    assert!(err.contains("no `kind`"), "{err}");
    let bad = Json6902Patch {
        group: "kubeadm.k8s.io".into(),
        version: "v1beta4".into(),
        kind: "InitConfiguration".into(),
        patch: json!([{"op": "remove", "path": "/nothing/here"}]),
    };
    let err = apply_patch_sets(&mut docs, version, &cluster_set(&[], &[bad])).unwrap_err();
    assert!(
        err.contains("cluster-level kubeadm JSON 6902 patch 1")
            && err.contains("InitConfiguration"),
        "{err}"
    );
}

#[test]
fn node_patches_apply_after_the_clusters_json6902_as_in_kind() {
    // kind: cluster merge, cluster 6902, then node merge, node 6902. A
    // node's merge patch therefore wins over a cluster 6902 patch.
    let mut k = settings();
    k.kubeadm_config_patches_json6902 = vec![Json6902Patch {
        group: "kubeadm.k8s.io".into(),
        version: "v1beta4".into(),
        kind: "ClusterConfiguration".into(),
        patch: json!([{"op": "replace", "path": "/networking/dnsDomain", "value": "cluster6902.local"}]),
    }];
    let mut node = spec(Role::ControlPlane, false);
    node.kubeadm_config_patches =
        vec![json!({"kind": "ClusterConfiguration", "networking": {"dnsDomain": "node.local"}})];
    let docs = for_node(&inputs(&node, &k, "v1.36.4", &[])).unwrap();
    assert_eq!(docs[1]["networking"]["dnsDomain"], "node.local");

    // A broken node patch is named as the node's.
    node.kubeadm_config_patches = vec![json!({"kind": "Nonsense"})];
    let err = for_node(&inputs(&node, &k, "v1.36.4", &[])).unwrap_err();
    assert!(
        err.starts_with("node kina-control-plane's kubeadm config patch 1"),
        "{err}"
    );
}

#[test]
fn kubelet_flags_are_ordered_as_kubeadm_writes_them() {
    let mut node = spec(Role::Worker, true);
    node.node_labels = [("tier", "web"), ("ingress-ready", "true")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for version in ["v1.30.14", "v1.36.4"] {
        let docs = for_node(&inputs(&node, &settings(), version, &[])).unwrap();
        assert_eq!(
            kubelet_flags(&docs),
            [
                "--node-ip=10.0.2.15",
                "--node-labels=ingress-ready=true,tier=web"
            ],
            "{version}"
        );
    }
    // A generation notes nothing when there is nothing to say.
    let generated = generate(&inputs(&node, &settings(), "v1.36.4", &[])).unwrap();
    assert!(generated.notes.is_empty(), "{:?}", generated.notes);
}
