//! kubeadm configuration per supported Kubernetes minor: golden files, and
//! every generated field checked against the json names of kubeadm's
//! published API types (cmd/kubeadm/app/apis/kubeadm/v1beta3 and v1beta4
//! types.go, kubelet.config.k8s.io/v1beta1, kubeproxy.config.k8s.io/v1alpha1),
//! so a field kubeadm would reject as unknown fails here first.
//!
//! `KINA_UPDATE_GOLDEN=1 cargo test -p kina-init --test kubeadm_config`
//! rewrites the golden files; review the diff like code.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use kina_contract::node_spec::{
    Json6902Patch, KubeProxyMode, KubernetesSettings, NodeSpec, Peer, Role, Secret,
};
use kina_init::kubernetes::kubeadm_config::{
    ApiVersion, IgnoredCheck, Inputs, KubeVersion, apply_patches, for_node, render,
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

fn settings() -> KubernetesSettings {
    KubernetesSettings {
        pod_subnet: "10.244.0.0/16".into(),
        service_subnet: "10.96.0.0/16".into(),
        dns_domain: "cluster.local".into(),
        control_plane_endpoint: "10.0.2.15:6443".into(),
        api_server_cert_sans: vec!["127.0.0.1".into(), "kina.local".into()],
        kube_proxy_mode: KubeProxyMode::Iptables,
        feature_gates: BTreeMap::from([("InPlacePodVerticalScaling".into(), true)]),
        runtime_config: BTreeMap::from([("api/alpha".into(), "false".into())]),
        kubeadm_config_patches: vec![],
        kubeadm_config_patches_json6902: vec![],
        bootstrap_token: Some(Secret::new(TOKEN)),
        certificate_authority: None,
        ca_cert_hash: Some(HASH.into()),
        wait_for_coredns: true,
        timeout_seconds: 300,
    }
}

fn generate(version: &str, role: Role, peers: bool, k: &KubernetesSettings) -> Vec<Value> {
    let spec = spec(role, peers);
    let ignored = [IgnoredCheck {
        name: "NumCPU",
        why: "test".into(),
    }];
    for_node(&Inputs {
        spec: &spec,
        kubernetes: k,
        version: KubeVersion::parse(version).unwrap(),
        node_ip: "10.0.2.15".parse().unwrap(),
        ignored_checks: &ignored,
    })
    .unwrap()
}

/// The json field names of kubeadm's types for the paths kina writes, per
/// API version (facts from the types.go files named above).
fn allowed(api: ApiVersion, kind: &str, path: &str) -> Option<&'static [&'static str]> {
    let beta4 = api == ApiVersion::V1Beta4;
    Some(match (kind, path) {
        ("InitConfiguration", "") if beta4 => &[
            "apiVersion",
            "kind",
            "bootstrapTokens",
            "dryRun",
            "nodeRegistration",
            "localAPIEndpoint",
            "certificateKey",
            "skipPhases",
            "patches",
            "timeouts",
        ],
        ("InitConfiguration", "") => &[
            "apiVersion",
            "kind",
            "bootstrapTokens",
            "nodeRegistration",
            "localAPIEndpoint",
            "certificateKey",
            "skipPhases",
            "patches",
        ],
        ("InitConfiguration", "bootstrapTokens[]") => {
            &["token", "description", "ttl", "expires", "usages", "groups"]
        }
        ("InitConfiguration", "localAPIEndpoint") => &["advertiseAddress", "bindPort"],
        ("InitConfiguration" | "JoinConfiguration", "nodeRegistration") if beta4 => &[
            "name",
            "criSocket",
            "taints",
            "kubeletExtraArgs",
            "ignorePreflightErrors",
            "imagePullPolicy",
            "imagePullSerial",
        ],
        ("InitConfiguration" | "JoinConfiguration", "nodeRegistration") => &[
            "name",
            "criSocket",
            "taints",
            "kubeletExtraArgs",
            "ignorePreflightErrors",
            "imagePullPolicy",
        ],
        ("ClusterConfiguration", "") if beta4 => &[
            "apiVersion",
            "kind",
            "etcd",
            "networking",
            "kubernetesVersion",
            "controlPlaneEndpoint",
            "apiServer",
            "controllerManager",
            "scheduler",
            "dns",
            "proxy",
            "certificatesDir",
            "imageRepository",
            "featureGates",
            "clusterName",
            "encryptionAlgorithm",
            "certificateValidityPeriod",
            "caCertificateValidityPeriod",
        ],
        ("ClusterConfiguration", "") => &[
            "apiVersion",
            "kind",
            "etcd",
            "networking",
            "kubernetesVersion",
            "controlPlaneEndpoint",
            "apiServer",
            "controllerManager",
            "scheduler",
            "dns",
            "certificatesDir",
            "imageRepository",
            "featureGates",
            "clusterName",
        ],
        ("ClusterConfiguration", "networking") => &["serviceSubnet", "podSubnet", "dnsDomain"],
        ("ClusterConfiguration", "apiServer") if beta4 => {
            &["extraArgs", "extraVolumes", "extraEnvs", "certSANs"]
        }
        ("ClusterConfiguration", "apiServer") => &[
            "extraArgs",
            "extraVolumes",
            "certSANs",
            "timeoutForControlPlane",
        ],
        ("ClusterConfiguration", "controllerManager" | "scheduler") if beta4 => {
            &["extraArgs", "extraVolumes", "extraEnvs"]
        }
        ("ClusterConfiguration", "controllerManager" | "scheduler") => {
            &["extraArgs", "extraVolumes"]
        }
        ("JoinConfiguration", "") if beta4 => &[
            "apiVersion",
            "kind",
            "dryRun",
            "nodeRegistration",
            "caCertPath",
            "discovery",
            "controlPlane",
            "skipPhases",
            "patches",
            "timeouts",
        ],
        ("JoinConfiguration", "") => &[
            "apiVersion",
            "kind",
            "nodeRegistration",
            "caCertPath",
            "discovery",
            "controlPlane",
            "skipPhases",
            "patches",
        ],
        ("JoinConfiguration", "discovery") if beta4 => {
            &["bootstrapToken", "file", "tlsBootstrapToken"]
        }
        ("JoinConfiguration", "discovery") => {
            &["bootstrapToken", "file", "tlsBootstrapToken", "timeout"]
        }
        ("JoinConfiguration", "discovery.bootstrapToken") => &[
            "token",
            "apiServerEndpoint",
            "caCertHashes",
            "unsafeSkipCAVerification",
        ],
        ("InitConfiguration" | "JoinConfiguration", "timeouts") => &[
            "controlPlaneComponentHealthCheck",
            "kubeletHealthCheck",
            "kubernetesAPICall",
            "etcdAPICall",
            "tlsBootstrap",
            "discovery",
            "upgradeManifests",
        ],
        (_, p) if p.ends_with("extraArgs[]") || p.ends_with("kubeletExtraArgs[]") => {
            &["name", "value"]
        }
        ("KubeletConfiguration", "") => &[
            "apiVersion",
            "kind",
            "cgroupDriver",
            "serverTLSBootstrap",
            "rotateCertificates",
            "failSwapOn",
            "featureGates",
            "evictionHard",
            "imageGCHighThresholdPercent",
            "containerRuntimeEndpoint",
        ],
        ("KubeProxyConfiguration", "") => {
            &["apiVersion", "kind", "mode", "featureGates", "conntrack"]
        }
        ("KubeProxyConfiguration", "conntrack") => &[
            "maxPerCore",
            "min",
            "tcpBeLiberal",
            "tcpEstablishedTimeout",
            "tcpCloseWaitTimeout",
        ],
        _ => return None,
    })
}

/// Maps whose keys are data, not field names.
fn is_free_map(kind: &str, path: &str, api: ApiVersion) -> bool {
    path.ends_with("featureGates")
        || path == "evictionHard"
        || (api == ApiVersion::V1Beta3
            && (path.ends_with("extraArgs") || path.ends_with("kubeletExtraArgs")))
        || (kind == "KubeletConfiguration" && path == "evictionHard")
}

fn check_fields(api: ApiVersion, kind: &str, path: &str, value: &Value, errors: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if is_free_map(kind, path, api) {
                for v in map.values() {
                    assert!(v.is_string() || v.is_boolean(), "{kind} {path}: {v}");
                }
                return;
            }
            match allowed(api, kind, path) {
                Some(fields) => {
                    for key in map.keys() {
                        if !fields.contains(&key.as_str()) {
                            errors.push(format!(
                                "{kind} {}: `{key}` is not a field of kubeadm {api:?}",
                                if path.is_empty() { "<top>" } else { path }
                            ));
                        }
                    }
                }
                None => errors.push(format!("{kind} {path}: no type known for this object")),
            }
            for (key, v) in map {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                check_fields(api, kind, &child, v, errors);
            }
        }
        Value::Array(items) => {
            for item in items {
                check_fields(api, kind, &format!("{path}[]"), item, errors);
            }
        }
        _ => {}
    }
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
            let docs = generate(version, role.clone(), true, &settings());
            let mut errors = Vec::new();
            for doc in &docs {
                let kind = doc["kind"].as_str().unwrap();
                if kind.ends_with("Configuration")
                    && doc["apiVersion"].as_str().unwrap().starts_with("kubeadm")
                {
                    assert_eq!(doc["apiVersion"], api.as_str(), "{version} {kind}");
                }
                check_fields(api, kind, "", doc, &mut errors);
            }
            assert!(
                errors.is_empty(),
                "{version} {label}:\n{}",
                errors.join("\n")
            );
            golden(&format!("kubeadm-{minor}-{label}.yaml"), &render(&docs));
        }
    }
}

#[test]
fn init_carries_what_the_issue_lists() {
    let docs = generate("v1.36.4", Role::ControlPlane, false, &settings());
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
    let docs = generate("v1.36.4", Role::ControlPlane, true, &settings());
    assert!(docs[0]["nodeRegistration"].get("taints").is_none());
}

#[test]
fn v1beta3_uses_maps_and_the_discovery_timeout() {
    let docs = generate("v1.30.14", Role::Worker, true, &settings());
    let join = &docs[0];
    assert_eq!(
        join["nodeRegistration"]["kubeletExtraArgs"],
        json!({"node-ip": "10.0.2.15"})
    );
    assert_eq!(join["discovery"]["timeout"], "300s");
    assert_eq!(
        join["discovery"]["bootstrapToken"]["caCertHashes"],
        json!([HASH])
    );
    let docs = generate("v1.35.8", Role::Worker, true, &settings());
    assert_eq!(docs[0]["timeouts"]["discovery"], "300s");
    assert!(docs[0]["discovery"].get("timeout").is_none());
}

#[test]
fn kube_proxy_none_skips_its_addon_and_nftables_needs_131() {
    let mut k = settings();
    k.kube_proxy_mode = KubeProxyMode::None;
    let docs = generate("v1.36.4", Role::ControlPlane, false, &k);
    assert_eq!(docs.len(), 3);
    assert_eq!(docs[0]["skipPhases"], json!(["addon/kube-proxy"]));
    k.kube_proxy_mode = KubeProxyMode::Nftables;
    let spec = spec(Role::ControlPlane, false);
    let err = for_node(&Inputs {
        spec: &spec,
        kubernetes: &k,
        version: KubeVersion::parse("v1.30.2").unwrap(),
        node_ip: "10.0.2.15".parse().unwrap(),
        ignored_checks: &[],
    })
    .unwrap_err();
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

#[test]
fn merge_patches_apply_before_json6902_in_order_and_by_kind_and_version() {
    let mut docs = generate("v1.36.4", Role::ControlPlane, false, &settings());
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
        // Sees the merge patches' result: it tests, then replaces.
        patch: json!([
            {"op": "test", "path": "/networking/dnsDomain", "value": "second.local"},
            {"op": "add", "path": "/apiServer/certSANs/-", "value": "patched.example"}
        ]),
    }];
    apply_patches(&mut docs, &merge, &json6902).unwrap();
    assert_eq!(docs[1]["networking"]["dnsDomain"], "second.local");
    assert_eq!(docs[1]["clusterName"], "kina");
    assert_eq!(docs[1]["apiServer"]["certSANs"][4], "patched.example");
    assert_eq!(docs[2]["maxPods"], 50);
    assert!(
        docs[2].get("failSwapOn").is_none(),
        "null removes a field (RFC 7386)"
    );

    // Patches for kinds kina never writes, malformed ones, and ones that do
    // not apply are errors naming the patch.
    let mut docs = generate("v1.36.4", Role::ControlPlane, false, &settings());
    let err = apply_patches(&mut docs, &[json!({"kind": "ClusterConfig"})], &[]).unwrap_err();
    assert!(
        err.contains("patch 1") && err.contains("kind ClusterConfig,"),
        "{err}"
    );
    let err = apply_patches(&mut docs, &[json!({"networking": {}})], &[]).unwrap_err();
    assert!(err.contains("no `kind`"), "{err}");
    let bad = Json6902Patch {
        group: "kubeadm.k8s.io".into(),
        version: "v1beta4".into(),
        kind: "InitConfiguration".into(),
        patch: json!([{"op": "remove", "path": "/nothing/here"}]),
    };
    let err = apply_patches(&mut docs, &[], &[bad]).unwrap_err();
    assert!(
        err.contains("6902 patch 1") && err.contains("InitConfiguration"),
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
    let docs = for_node(&Inputs {
        spec: &node,
        kubernetes: &k,
        version: KubeVersion::parse("v1.36.4").unwrap(),
        node_ip: "10.0.2.15".parse().unwrap(),
        ignored_checks: &[],
    })
    .unwrap();
    assert_eq!(docs[1]["networking"]["dnsDomain"], "node.local");

    // A broken node patch is named as the node's.
    node.kubeadm_config_patches = vec![json!({"kind": "Nonsense"})];
    let err = for_node(&Inputs {
        spec: &node,
        kubernetes: &k,
        version: KubeVersion::parse("v1.36.4").unwrap(),
        node_ip: "10.0.2.15".parse().unwrap(),
        ignored_checks: &[],
    })
    .unwrap_err();
    assert!(
        err.starts_with("node kina-control-plane's kubeadm config patch 1"),
        "{err}"
    );
}
