//! The kubeadm patches kind's documentation tells users to write, applied
//! to the documents kina generates for 1.34, 1.35 and 1.36 (all v1beta4),
//! and what kind's merge (pkg/internal/patch/kubeadm_merge.go) makes of
//! them: map-form arguments converted to v1beta4's list, arguments merged
//! by name, `certSANs` unioned, nulls removing. Whatever the patch, kina's
//! own node IP, SANs and CIDR setting stay, and a patch kubeadm could not
//! decode is refused naming it.
//!
//! The cases are written from kind's docs (site/content/docs/user:
//! ingress.md, configuration.md, auditing.md, kind-example-config.yaml)
//! and kubeadm's v1beta4 types, not copied from kind's tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kina_contract::kubeadm::shapes::check;
use kina_contract::kubeadm::{Generated, IgnoredCheck, Inputs, KubeVersion, generate};
use kina_contract::node_spec::{Json6902Patch, KubernetesSettings, NodeSpec, Peer, Role};
use serde_json::{Value, json};

const VERSIONS: [&str; 3] = ["v1.34.11", "v1.35.8", "v1.36.4"];
const NODE_IP: &str = "10.89.0.2";

fn settings(merge: Vec<Value>, json6902: Vec<Json6902Patch>) -> KubernetesSettings {
    let mut k: KubernetesSettings = serde_json::from_value(json!({
        "pod_subnet": "10.244.0.0/16",
        "service_subnet": "10.96.0.0/16",
        "control_plane_endpoint": "10.89.0.2:6443",
        "api_server_cert_sans": ["127.0.0.1", "localhost", "192.168.1.5"],
        "feature_gates": {"InPlacePodVerticalScaling": true},
        "bootstrap_token": "abcdef.0123456789abcdef",
        "ca_cert_hash": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    }))
    .unwrap();
    k.kubeadm_config_patches = merge;
    k.kubeadm_config_patches_json6902 = json6902;
    k
}

fn node(role: Role) -> NodeSpec {
    let mut spec = NodeSpec::unnamed();
    spec.name = match role {
        Role::ControlPlane => "kina-control-plane".into(),
        Role::Worker => "kina-worker".into(),
    };
    spec.cluster = "kina".into();
    spec.role = role;
    spec.pod_cidr = "10.244.0.0/24".into();
    spec.peers = vec![Peer {
        name: "other".into(),
        address: "10.89.0.3".into(),
        pod_cidr: "10.244.1.0/24".into(),
    }];
    spec
}

fn run(version: &str, spec: &NodeSpec, k: &KubernetesSettings) -> Result<Generated, String> {
    let ignored: [IgnoredCheck; 0] = [];
    generate(&Inputs {
        spec,
        kubernetes: k,
        version: KubeVersion::parse(version).unwrap(),
        node_ip: NODE_IP.parse().unwrap(),
        ignored_checks: &ignored,
    })
}

fn doc<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter().find(|d| d["kind"] == kind).unwrap()
}

/// The value of argument `name` in a v1beta4 list.
fn arg<'a>(list: &'a Value, name: &str) -> Option<&'a str> {
    list.as_array()?
        .iter()
        .find(|a| a["name"] == name)
        .and_then(|a| a["value"].as_str())
}

/// What kina writes for itself and no documented kind patch may lose.
fn kinas_own_survive(docs: &[Value], what: &str) {
    for d in docs {
        let checked = check(d);
        assert!(checked.errors.is_empty(), "{what}: {:?}", checked.errors);
    }
    let reg = docs
        .iter()
        .find(|d| d["kind"] == "InitConfiguration" || d["kind"] == "JoinConfiguration")
        .unwrap();
    assert_eq!(
        arg(&reg["nodeRegistration"]["kubeletExtraArgs"], "node-ip"),
        Some(NODE_IP),
        "{what}"
    );
    if let Some(cluster) = docs.iter().find(|d| d["kind"] == "ClusterConfiguration") {
        let sans = cluster["apiServer"]["certSANs"].as_array().unwrap();
        for san in [NODE_IP, "127.0.0.1", "localhost", "192.168.1.5"] {
            assert!(
                sans.contains(&json!(san)),
                "{what}: {san} lost from {sans:?}"
            );
        }
        let cm = &cluster["controllerManager"]["extraArgs"];
        assert_eq!(arg(cm, "allocate-node-cidrs"), Some("false"), "{what}");
        assert_eq!(
            arg(cm, "feature-gates"),
            Some("InPlacePodVerticalScaling=true"),
            "{what}"
        );
    }
}

#[test]
fn the_ingress_guides_node_labels_patch_adds_a_kubelet_argument() {
    // kind's ingress guide: a node patch on the control plane.
    let mut cp = node(Role::ControlPlane);
    cp.kubeadm_config_patches = vec![json!({
        "kind": "InitConfiguration",
        "nodeRegistration": {"kubeletExtraArgs": {"node-labels": "ingress-ready=true"}},
    })];
    for version in VERSIONS {
        let g = run(version, &cp, &settings(vec![], vec![])).unwrap();
        kinas_own_survive(&g.docs, version);
        let init = doc(&g.docs, "InitConfiguration");
        assert_eq!(
            init["nodeRegistration"]["kubeletExtraArgs"],
            json!([
                {"name": "node-ip", "value": NODE_IP},
                {"name": "node-labels", "value": "ingress-ready=true"}
            ]),
            "{version}"
        );
        assert!(g.notes.is_empty(), "{version}: {:?}", g.notes);
    }
}

#[test]
fn an_api_server_extra_args_map_merges_with_kinas_arguments() {
    // kind's configuration guide and auditing guide.
    let merge = vec![
        json!({"kind": "ClusterConfiguration", "apiServer": {"extraArgs": {
            "enable-admission-plugins": "NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook"
        }}}),
        json!({"kind": "ClusterConfiguration", "apiServer": {
            "extraArgs": {
                "audit-log-path": "/var/log/kubernetes/kube-apiserver-audit.log",
                "audit-policy-file": "/etc/kubernetes/policies/audit-policy.yaml",
            },
            "extraVolumes": [
                {"name": "audit-policies", "hostPath": "/etc/kubernetes/policies",
                 "mountPath": "/etc/kubernetes/policies", "readOnly": true, "pathType": "DirectoryOrCreate"},
            ],
        }}),
    ];
    for version in VERSIONS {
        let g = run(
            version,
            &node(Role::ControlPlane),
            &settings(merge.clone(), vec![]),
        )
        .unwrap();
        kinas_own_survive(&g.docs, version);
        let api = &doc(&g.docs, "ClusterConfiguration")["apiServer"];
        let names: Vec<&str> = api["extraArgs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "feature-gates",
                "enable-admission-plugins",
                "audit-log-path",
                "audit-policy-file"
            ],
            "{version}"
        );
        assert_eq!(api["extraVolumes"][0]["name"], "audit-policies");
    }
}

#[test]
fn a_list_form_patch_updates_by_name_and_keeps_the_rest() {
    // v1beta4's own form, naming its apiVersion: `feature-gates` is replaced
    // (the user named it), `v` appended, allocate-node-cidrs kept.
    let merge = vec![json!({
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "ClusterConfiguration",
        "controllerManager": {"extraArgs": [
            {"name": "v", "value": "4"},
            {"name": "feature-gates", "value": "InPlacePodVerticalScaling=true,Foo=false"},
        ]},
    })];
    for version in VERSIONS {
        let g = run(
            version,
            &node(Role::ControlPlane),
            &settings(merge.clone(), vec![]),
        )
        .unwrap();
        let cm = &doc(&g.docs, "ClusterConfiguration")["controllerManager"]["extraArgs"];
        assert_eq!(
            cm,
            &json!([
                {"name": "feature-gates", "value": "InPlacePodVerticalScaling=true,Foo=false"},
                {"name": "allocate-node-cidrs", "value": "false"},
                {"name": "v", "value": "4"},
            ]),
            "{version}"
        );
    }
}

#[test]
fn a_null_removes_only_the_argument_it_names() {
    let merge = vec![
        json!({"kind": "ClusterConfiguration", "apiServer": {"extraArgs": {
            "runtime-config": null, "feature-gates": null, "never-there": null,
        }}}),
    ];
    let mut k = settings(merge, vec![]);
    k.runtime_config = [("api/alpha".to_string(), "false".to_string())].into();
    for version in VERSIONS {
        let g = run(version, &node(Role::ControlPlane), &k).unwrap();
        kinas_own_survive(&g.docs, version);
        let api = &doc(&g.docs, "ClusterConfiguration")["apiServer"];
        assert_eq!(api["extraArgs"], json!([]), "{version}");
    }
}

#[test]
fn cert_sans_are_added_to_kinas() {
    let merge = vec![json!({"kind": "ClusterConfiguration", "apiServer": {
        "certSANs": ["my-hostname", "127.0.0.1", "10.0.0.9"],
    }})];
    for version in VERSIONS {
        let g = run(
            version,
            &node(Role::ControlPlane),
            &settings(merge.clone(), vec![]),
        )
        .unwrap();
        kinas_own_survive(&g.docs, version);
        assert_eq!(
            doc(&g.docs, "ClusterConfiguration")["apiServer"]["certSANs"],
            json!([
                NODE_IP,
                "127.0.0.1",
                "localhost",
                "192.168.1.5",
                "my-hostname",
                "10.0.0.9"
            ]),
            "{version}"
        );
    }
}

#[test]
fn json6902_patches_on_arguments_and_sans_apply_as_written() {
    // An argument appended to v1beta4's list by JSON 6902.
    let on_args = Json6902Patch {
        group: "kubeadm.k8s.io".into(),
        version: "v1beta4".into(),
        kind: "ClusterConfiguration".into(),
        patch: json!([{"op": "add", "path": "/apiServer/extraArgs/-",
                       "value": {"name": "max-requests-inflight", "value": "800"}}]),
    };
    // kind-example-config.yaml: written for v1beta3, which kind writes
    // before 1.36; the path means the same in v1beta4.
    let example = Json6902Patch {
        group: "kubeadm.k8s.io".into(),
        version: "v1beta3".into(),
        kind: "ClusterConfiguration".into(),
        patch: json!([{"op": "add", "path": "/apiServer/certSANs/-", "value": "my-hostname"}]),
    };
    for version in VERSIONS {
        let k = settings(vec![], vec![on_args.clone(), example.clone()]);
        let g = run(version, &node(Role::ControlPlane), &k).unwrap();
        kinas_own_survive(&g.docs, version);
        let api = &doc(&g.docs, "ClusterConfiguration")["apiServer"];
        assert_eq!(arg(&api["extraArgs"], "max-requests-inflight"), Some("800"));
        let sans = api["certSANs"].as_array().unwrap();
        let kind_applies_v1beta3 = version != "v1.36.4";
        assert_eq!(
            sans.contains(&json!("my-hostname")),
            kind_applies_v1beta3,
            "{version}"
        );
        assert_eq!(
            g.notes.len(),
            usize::from(!kind_applies_v1beta3),
            "{version}: {:?}",
            g.notes
        );
    }
}

#[test]
fn a_v1beta3_merge_patch_applies_where_kind_would_write_v1beta3() {
    let merge = vec![json!({
        "apiVersion": "kubeadm.k8s.io/v1beta3",
        "kind": "ClusterConfiguration",
        "apiServer": {"extraArgs": {"v": "2"}},
    })];
    for version in VERSIONS {
        let g = run(
            version,
            &node(Role::ControlPlane),
            &settings(merge.clone(), vec![]),
        )
        .unwrap();
        kinas_own_survive(&g.docs, version);
        let cluster = doc(&g.docs, "ClusterConfiguration");
        assert_eq!(cluster["apiVersion"], "kubeadm.k8s.io/v1beta4", "{version}");
        let applied = arg(&cluster["apiServer"]["extraArgs"], "v") == Some("2");
        assert_eq!(applied, version != "v1.36.4", "{version}");
    }
}

#[test]
fn join_patches_reach_workers_and_node_labels_meet_a_users_patch_as_in_kind() {
    // kind's configuration guide: a worker's taint through its join.
    let mut worker = node(Role::Worker);
    worker.node_labels = [("tier".to_string(), "web".to_string())].into();
    worker.kubeadm_config_patches = vec![json!({
        "kind": "JoinConfiguration",
        "nodeRegistration": {"kubeletExtraArgs": {"register-with-taints": "my-taint=presence:NoSchedule"}},
    })];
    for version in VERSIONS {
        let g = run(version, &worker, &settings(vec![], vec![])).unwrap();
        kinas_own_survive(&g.docs, version);
        let args = &doc(&g.docs, "JoinConfiguration")["nodeRegistration"]["kubeletExtraArgs"];
        assert_eq!(arg(args, "node-labels"), Some("tier=web"));
        assert_eq!(
            arg(args, "register-with-taints"),
            Some("my-taint=presence:NoSchedule")
        );
    }
    // kind writes `nodes[].labels` as the template's node-labels entry, and
    // a patch naming node-labels replaces it (merge by name, or RFC 7386
    // on v1beta3): the user's value wins, as in kind.
    worker.kubeadm_config_patches = vec![json!({
        "kind": "JoinConfiguration",
        "nodeRegistration": {"kubeletExtraArgs": {"node-labels": "my-label2=true"}},
    })];
    let g = run("v1.35.8", &worker, &settings(vec![], vec![])).unwrap();
    let args = &doc(&g.docs, "JoinConfiguration")["nodeRegistration"]["kubeletExtraArgs"];
    assert_eq!(arg(args, "node-labels"), Some("my-label2=true"));
    assert_eq!(arg(args, "node-ip"), Some(NODE_IP));
}

#[test]
fn an_undecodable_result_is_refused_naming_the_patch() {
    let version = "v1.35.8";
    let cp = node(Role::ControlPlane);
    // YAML's unquoted 4 is a number; kubeadm reads argument values as strings.
    let number =
        vec![json!({"kind": "ClusterConfiguration", "apiServer": {"extraArgs": {"v": 4}}})];
    let err = run(version, &cp, &settings(number, vec![])).unwrap_err();
    assert!(
        err.starts_with("cluster-level kubeadm config patch 1 leaves ClusterConfiguration"),
        "{err}"
    );
    assert!(
        err.contains("apiServer.extraArgs[1].value is a number"),
        "{err}"
    );
    assert!(err.contains("quote it"), "{err}");

    // A JSON 6902 patch that turns the list back into a map.
    let to_map = Json6902Patch {
        group: "kubeadm.k8s.io".into(),
        version: "v1beta4".into(),
        kind: "ClusterConfiguration".into(),
        patch: json!([{"op": "replace", "path": "/apiServer/extraArgs", "value": {"v": "4"}}]),
    };
    let err = run(version, &cp, &settings(vec![], vec![to_map])).unwrap_err();
    assert!(
        err.starts_with("cluster-level kubeadm JSON 6902 patch 1 leaves ClusterConfiguration"),
        "{err}"
    );
    assert!(err.contains("reads a list of {name, value} pairs"), "{err}");

    // A node's own patch is named as the node's.
    let mut cp2 = cp.clone();
    cp2.kubeadm_config_patches =
        vec![json!({"kind": "InitConfiguration", "nodeRegistration": {"taints": "none"}})];
    let err = run(version, &cp2, &settings(vec![], vec![])).unwrap_err();
    assert!(
        err.starts_with(
            "node kina-control-plane's kubeadm config patch 1 leaves InitConfiguration"
        ),
        "{err}"
    );

    // A patch that names v1beta4 but writes v1beta3's map is not converted.
    let versioned_map = vec![json!({
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "ClusterConfiguration",
        "apiServer": {"extraArgs": {"v": "4"}},
    })];
    let err = run(version, &cp, &settings(versioned_map, vec![])).unwrap_err();
    assert!(
        err.contains(
            "patch 1: apiServer.extraArgs is a map, but the patch names kubeadm.k8s.io/v1beta4"
        ),
        "{err}"
    );

    // On 1.30 (v1beta3) a list-form patch replaces the map, which kubeadm
    // 1.30 cannot read.
    let list = vec![
        json!({"kind": "ClusterConfiguration", "apiServer": {"extraArgs": [{"name": "v", "value": "4"}]}}),
    ];
    let err = run("v1.30.14", &cp, &settings(list, vec![])).unwrap_err();
    assert!(err.contains("in v1beta3 arguments are a map"), "{err}");

    // A later patch that repairs the document is fine: only the result
    // counts, as kubeadm reads only the result.
    let repaired = vec![
        json!({"kind": "ClusterConfiguration", "apiServer": {"extraArgs": {"v": 4}}}),
        json!({"kind": "ClusterConfiguration", "apiServer": {"extraArgs": {"v": "4"}}}),
    ];
    let g = run(version, &cp, &settings(repaired, vec![])).unwrap();
    kinas_own_survive(&g.docs, "repaired");
}

#[test]
fn unknown_fields_are_noted_as_kubeadm_warns_about_them() {
    // kubeadm warns about fields it does not know and goes on.
    let merge = vec![
        json!({"kind": "ClusterConfiguration", "apiServer": {"timeoutForControlPlane": "10m"}}),
    ];
    let g = run(
        "v1.36.4",
        &node(Role::ControlPlane),
        &settings(merge, vec![]),
    )
    .unwrap();
    assert_eq!(g.notes.len(), 1, "{:?}", g.notes);
    assert!(
        g.notes[0].contains(
            "`apiServer.timeoutForControlPlane` is not a field of kubeadm.k8s.io/v1beta4"
        ),
        "{:?}",
        g.notes
    );
}
