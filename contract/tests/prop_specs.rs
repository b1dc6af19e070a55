//! The node spec and node status, fuzzed: any JSON is read or refused
//! without a panic and with the spec's source in the message; generated
//! specs and statuses round-trip through their JSON; a spec broken in one
//! place is refused naming (or pointing at) that place; the join
//! credentials check agrees with kubeadm's syntax; and generated secrets
//! never reach Debug output.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kina_contract::node_spec::{
    CertificateAuthority, ClusterInterface, InterfaceConfig, Json6902Patch, KubeProxyMode,
    KubernetesSettings, NODE_SPEC_VERSION, NodeSpec, NodeSpecError, Peer, Role, Secret,
};
use kina_contract::status::{
    KubernetesStatus, NodeStatus, PhaseId, PhaseState, PhaseStatus, STATUS_VERSION,
};
use proptest::prelude::*;
use serde_json::Value;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Every secret generated here starts with this; nothing else contains it.
const MARK: &str = "🔑";

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9.:/-]{0,16}",
        1 => any::<String>().prop_filter("no secret mark", |s| !s.contains(MARK)),
    ]
}

fn secrets() -> impl Strategy<Value = Secret> {
    any::<String>().prop_map(|s| Secret::new(format!("{MARK}{s}")))
}

/// JSON without floats (whose text form need not come back bit for bit).
fn json_values() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Any JSON at all, floats included, shaped like a spec often enough to
/// get past the first field.
fn wild_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        Just(Value::from(1)),
        Just(Value::from("worker")),
        Just(Value::from("control-plane")),
    ];
    let mut names = spec_field_names();
    names.extend([
        "address",
        "bootstrap_token",
        "control_plane_endpoint",
        "pod_subnet",
        "service_subnet",
    ]);
    let key = prop_oneof![
        prop::sample::select(names).prop_map(String::from),
        any::<String>(),
    ];
    leaf.prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn patches_6902() -> impl Strategy<Value = Json6902Patch> {
    (text(), text(), text(), json_values()).prop_map(|(group, version, kind, patch)| {
        Json6902Patch {
            group,
            version,
            kind,
            patch,
        }
    })
}

fn kubernetes_settings() -> impl Strategy<Value = KubernetesSettings> {
    (
        (text(), text(), text(), text()),
        prop::collection::vec(text(), 0..3),
        prop::sample::select(vec![
            KubeProxyMode::Iptables,
            KubeProxyMode::Nftables,
            KubeProxyMode::Ipvs,
            KubeProxyMode::None,
        ]),
        prop::collection::btree_map(text(), any::<bool>(), 0..3),
        prop::collection::btree_map(text(), text(), 0..3),
        prop::collection::vec(json_values(), 0..3),
        prop::collection::vec(patches_6902(), 0..2),
        prop::option::of(secrets()),
        prop::option::of(
            (text(), secrets())
                .prop_map(|(cert_pem, key_pem)| CertificateAuthority { cert_pem, key_pem }),
        ),
        prop::option::of(text()),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(
                (pod_subnet, service_subnet, dns_domain, control_plane_endpoint),
                api_server_cert_sans,
                kube_proxy_mode,
                feature_gates,
                runtime_config,
                kubeadm_config_patches,
                kubeadm_config_patches_json6902,
                bootstrap_token,
                certificate_authority,
                ca_cert_hash,
                wait_for_coredns,
                timeout_seconds,
            )| KubernetesSettings {
                pod_subnet,
                service_subnet,
                dns_domain,
                control_plane_endpoint,
                api_server_cert_sans,
                kube_proxy_mode,
                feature_gates,
                runtime_config,
                kubeadm_config_patches,
                kubeadm_config_patches_json6902,
                bootstrap_token,
                certificate_authority,
                ca_cert_hash,
                wait_for_coredns,
                timeout_seconds,
            },
        )
}

fn node_specs() -> impl Strategy<Value = NodeSpec> {
    (
        (
            text(),
            text(),
            prop::sample::select(vec![Role::ControlPlane, Role::Worker]),
            text(),
        ),
        prop::collection::vec(
            (text(), text(), text()).prop_map(|(name, address, pod_cidr)| Peer {
                name,
                address,
                pod_cidr,
            }),
            0..3,
        ),
        prop::collection::vec(text(), 0..3),
        prop::option::of(kubernetes_settings()),
        prop::option::of(
            (
                text(),
                prop::option::of(text()),
                prop::collection::vec(text(), 0..3),
            )
                .prop_map(|(address, gateway, nameservers)| InterfaceConfig {
                    address,
                    gateway,
                    nameservers,
                }),
        ),
        prop::collection::vec(json_values(), 0..3),
        prop::collection::vec(patches_6902(), 0..2),
        prop::option::of(
            (text(), text()).prop_map(|(device, address)| ClusterInterface { device, address }),
        ),
        prop::option::of(prop::sample::select(PhaseId::ALL.to_vec()).prop_map(|p| p.to_string())),
        (
            any::<bool>(),
            prop::option::of(prop::collection::vec(text(), 0..3)),
            prop::collection::vec(text(), 0..3),
            prop::collection::vec(json_values(), 0..2),
            prop::collection::btree_map(text(), text(), 0..3),
        ),
    )
        .prop_map(
            |(
                (name, cluster, role, pod_cidr),
                peers,
                required_kernel_profiles,
                kubernetes,
                interface,
                kubeadm_config_patches,
                kubeadm_config_patches_json6902,
                cluster_interface,
                stop_after,
                (
                    disable_default_cni,
                    dns_search,
                    containerd_config_patches,
                    containerd_config_patches_json6902,
                    node_labels,
                ),
            )| NodeSpec {
                version: NODE_SPEC_VERSION,
                name,
                cluster,
                role,
                pod_cidr,
                peers,
                required_kernel_profiles,
                kubernetes,
                disable_default_cni,
                dns_search,
                containerd_config_patches,
                containerd_config_patches_json6902,
                interface,
                kubeadm_config_patches,
                kubeadm_config_patches_json6902,
                cluster_interface,
                stop_after,
                node_labels,
            },
        )
}

const REQUIRED: [&str; 5] = ["version", "name", "cluster", "role", "pod_cidr"];

/// A value of the wrong type for each top-level field of a spec.
fn wrong_type(field: &str) -> Value {
    match field {
        "version" => Value::from("1"),
        "role" => Value::from(7),
        "peers" | "required_kernel_profiles" | "kubeadm_config_patches_json6902" => {
            Value::from("x")
        }
        "kubeadm_config_patches" => Value::from(true),
        "disable_default_cni" => Value::from("yes"),
        "kubernetes" | "interface" | "cluster_interface" | "node_labels" => Value::from(3),
        _ => Value::from(false),
    }
}

fn spec_field_names() -> Vec<&'static str> {
    vec![
        "version",
        "name",
        "cluster",
        "role",
        "pod_cidr",
        "peers",
        "required_kernel_profiles",
        "kubernetes",
        "disable_default_cni",
        "dns_search",
        "containerd_config_patches",
        "containerd_config_patches_json6902",
        "interface",
        "kubeadm_config_patches",
        "kubeadm_config_patches_json6902",
        "cluster_interface",
        "stop_after",
        "node_labels",
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// Any JSON (or any bytes) given to the spec parser is read or refused
    /// without a panic, and a refusal names where the spec came from.
    #[test]
    fn any_json_is_read_or_refused_naming_the_source(
        input in prop_oneof![
            3 => wild_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            1 => prop::collection::vec(any::<u8>(), 0..64),
        ],
    ) {
        match NodeSpec::from_json(&input, "fuzz.json") {
            Ok(spec) => prop_assert_eq!(spec.version, NODE_SPEC_VERSION),
            Err(e) => {
                let text = e.to_string();
                prop_assert!(text.starts_with("node spec fuzz.json"), "{}", text);
            }
        }
        let _ = serde_json::from_slice::<NodeStatus>(&input);
    }

    /// A generated spec written as the CLI writes it (compact or pretty)
    /// is read back as itself.
    #[test]
    fn generated_specs_round_trip(spec in node_specs(), pretty in any::<bool>()) {
        let bytes = if pretty {
            serde_json::to_vec_pretty(&spec).unwrap()
        } else {
            serde_json::to_vec(&spec).unwrap()
        };
        let back = NodeSpec::from_json(&bytes, "gen.json").unwrap();
        prop_assert_eq!(back, spec);
    }

    /// A valid spec broken in one place is refused, and the message names
    /// the place: a missing required field or an unknown field by name, a
    /// stop phase that is not a boot phase by its value, another schema
    /// version by its number; a value of the wrong type by its name and the
    /// line and column of that field.
    #[test]
    fn a_spec_broken_in_one_place_is_refused_naming_it(
        spec in node_specs(),
        field in prop::sample::select(spec_field_names()),
        required in prop::sample::select(REQUIRED.to_vec()),
        unknown in "[a-zA-Z_]{1,12}".prop_filter("not a field", |k| !spec_field_names().contains(&k.as_str())),
        phase in "[a-z]{1,10}".prop_filter("not a phase", |p| p.parse::<PhaseId>().is_err()),
        version in any::<u32>().prop_filter("another version", |v| *v != NODE_SPEC_VERSION),
        how in 0..5u8,
    ) {
        let mut value = serde_json::to_value(&spec).unwrap();
        let object = value.as_object_mut().unwrap();
        let (needle, pointer): (String, Option<String>) = match how {
            0 => {
                object.remove(required);
                (format!("missing field `{required}`"), None)
            }
            1 => {
                object.insert(unknown.clone(), Value::from(1));
                (format!("unknown field `{unknown}`"), None)
            }
            2 => {
                object.insert("stop_after".into(), Value::from(phase.clone()));
                (format!("stop_after `{phase}` is not a boot phase"), None)
            }
            3 => {
                object.insert("version".into(), Value::from(version));
                (format!("has version {version}"), None)
            }
            _ => {
                object.insert(field.to_string(), wrong_type(field));
                // Named by its path, and located by line and column.
                (format!("field `{field}`"), Some(field.to_string()))
            }
        };
        let bytes = serde_json::to_vec(&value).unwrap();
        let err = NodeSpec::from_json(&bytes, "broken.json").unwrap_err();
        let text = err.to_string();
        prop_assert!(text.starts_with("node spec broken.json"), "{}", text);
        prop_assert!(text.contains(&needle), "want `{}` in: {} for {}", needle, text, String::from_utf8_lossy(&bytes));
        if how == 3 {
            let found = match err {
                NodeSpecError::Version { found, .. } => Some(found),
                NodeSpecError::Invalid { .. } => None,
            };
            prop_assert_eq!(found, Some(version));
        }
        if let Some(field) = pointer {
            // One line of JSON: the column must fall inside `"field":value`.
            // Objects are written in key order: add up what precedes it.
            let mut start = 1;
            let mut end = 0;
            for (k, v) in value.as_object().unwrap() {
                let len = serde_json::to_string(k).unwrap().len() + 1 + serde_json::to_string(v).unwrap().len();
                if *k == field {
                    end = start + len;
                    break;
                }
                start += len + 1;
            }
            let json = String::from_utf8(bytes).unwrap();
            prop_assert_eq!(&json[start..start + field.len() + 2], format!("\"{field}\""));
            let column: usize = text
                .rsplit_once("column ")
                .and_then(|(_, c)| c.parse().ok())
                .unwrap_or_else(|| panic!("no column in: {text}"));
            // serde_json counts columns in bytes from 1.
            prop_assert!(
                start < column && column <= end,
                "column {} outside {}..{} of `{}` in {}: {}", column, start, end, field, json, text
            );
        }
    }

    /// No generated secret (bootstrap token, CA key) shows in the Debug
    /// output of the spec, its Kubernetes settings or the secret itself,
    /// while the spec file carries each one and reads it back.
    #[test]
    fn secrets_never_reach_debug_output(
        spec in node_specs(),
        kubernetes in kubernetes_settings(),
        token in secrets(),
        key in secrets(),
    ) {
        let mut spec = spec;
        let mut kubernetes = kubernetes;
        kubernetes.bootstrap_token = Some(token.clone());
        kubernetes.certificate_authority = Some(CertificateAuthority {
            cert_pem: "CERT".into(),
            key_pem: key.clone(),
        });
        spec.kubernetes = Some(kubernetes);
        let debug = format!("{spec:?} {:?} {token:?} {key:?}", spec.kubernetes);
        prop_assert!(!debug.contains(MARK), "{}", debug);
        for s in [&token, &key] {
            let escaped: String = s.expose().escape_debug().collect();
            prop_assert!(!debug.contains(&escaped), "{}", debug);
        }
        prop_assert!(debug.contains("<redacted>"));
        let back = NodeSpec::from_json(&serde_json::to_vec(&spec).unwrap(), "spec").unwrap();
        let k = back.kubernetes.unwrap();
        let (back_token, back_ca) = (k.bootstrap_token.unwrap(), k.certificate_authority.unwrap());
        prop_assert_eq!(back_token.expose(), token.expose());
        prop_assert_eq!(back_ca.key_pem.expose(), key.expose());
    }

    /// The join credentials check agrees with kubeadm's syntax
    /// (`[a-z0-9]{6}.[a-z0-9]{16}`, `sha256:<64 hex>`, `host:port`) and
    /// names the first field that is wrong.
    #[test]
    fn join_credentials_are_checked_as_kubeadm_reads_them(
        mut settings in kubernetes_settings(),
        token in prop::option::of(prop_oneof![
            "[a-z0-9]{6}\\.[a-z0-9]{16}",
            "[a-zA-Z0-9_.]{0,24}",
            "[a-z0-9]{5,7}\\.[a-z0-9]{15,17}",
        ]),
        hash in prop::option::of(prop_oneof![
            "sha256:[0-9a-fA-F]{64}",
            "sha256:[0-9a-f]{60,66}",
            "(sha256|sha1|SHA256):[0-9a-g]{0,64}",
        ]),
        endpoint in prop_oneof!["[a-z0-9.]{1,12}:[0-9]{1,5}", "[a-z0-9.]{0,12}"],
        worker in any::<bool>(),
    ) {
        let token_ok = |t: &str| {
            let b = t.as_bytes();
            b.len() == 23
                && b[6] == b'.'
                && b.iter().enumerate().all(|(i, c)| i == 6 || c.is_ascii_lowercase() || c.is_ascii_digit())
        };
        let hash_ok = |h: &str| {
            h.len() == 71 && h.starts_with("sha256:") && h[7..].bytes().all(|b| b.is_ascii_hexdigit())
        };
        settings.bootstrap_token = token.clone().map(Secret::new);
        settings.ca_cert_hash = hash.clone();
        settings.control_plane_endpoint = endpoint.clone();
        let role = if worker { Role::Worker } else { Role::ControlPlane };
        let want = if token.as_deref().is_some_and(|t| !token_ok(t)) {
            Some("bootstrap_token")
        } else if !endpoint.contains(':') {
            Some("control_plane_endpoint")
        } else if worker && token.is_none() {
            Some("bootstrap_token")
        } else if worker && !hash.as_deref().is_some_and(hash_ok) {
            Some("ca_cert_hash")
        } else {
            None
        };
        match (settings.check_for(&role), want) {
            (Ok(()), None) => {}
            (Err(e), Some(field)) => {
                prop_assert!(e.contains(&format!("kubernetes.{field}")), "{}", e);
                if let Some(t) = token.as_deref().filter(|t| t.len() >= 8) {
                    prop_assert!(!e.contains(t), "token in error: {}", e);
                }
            }
            (got, want) => prop_assert!(false, "{:?}: got {:?}, want an error about {:?}", (token, hash, endpoint, worker), got, want),
        }
    }

    /// Generated node statuses round-trip through their JSON, and the
    /// rendered status shows every phase with its message and hint.
    #[test]
    fn statuses_round_trip_and_render_every_phase(
        node in "[a-z0-9-]{0,12}",
        mode in prop::sample::select(vec!["vm-pid1", "container-pid1"]),
        phases in prop::collection::vec(
            (
                prop::sample::select(vec![
                    PhaseState::Pending,
                    PhaseState::Running,
                    PhaseState::Ok,
                    PhaseState::Failed,
                    PhaseState::Skipped,
                ]),
                any::<u64>(),
                "[ -~]{0,30}",
                prop::option::of("[ -~]{1,30}"),
            ),
            PhaseId::ALL.len(),
        ),
        kubernetes in prop::option::of(
            (text(), text(), text(), prop::option::of(text()), any::<bool>(), any::<Option<bool>>())
                .prop_map(|(version, node_name, node_ip, admin_kubeconfig, ready, coredns_available)| {
                    KubernetesStatus { version, node_name, node_ip, admin_kubeconfig, ready, coredns_available }
                }),
        ),
    ) {
        let mut status = NodeStatus::new(&node, mode);
        for (p, (state, duration_ms, message, hint)) in status.phases.iter_mut().zip(phases) {
            *p = PhaseStatus { name: p.name.clone(), state, duration_ms, message, hint };
        }
        status.kubernetes = kubernetes;
        let back: NodeStatus = serde_json::from_slice(&serde_json::to_vec(&status).unwrap()).unwrap();
        prop_assert_eq!(&back, &status);
        prop_assert_eq!(back.version, STATUS_VERSION);
        let text = status.render();
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 1;
        for p in &status.phases {
            let line = lines[i];
            prop_assert!(line.starts_with(&p.name), "{}", line);
            prop_assert!(line.contains(&format!("{} ms", p.duration_ms)), "{}", line);
            prop_assert!(line.ends_with(&p.message), "{}", line);
            i += 1;
            if let Some(h) = &p.hint {
                prop_assert!(lines[i].ends_with(h.as_str()), "{}", lines[i]);
                i += 1;
            }
        }
        prop_assert_eq!(
            status.failed().map(|p| p.name.clone()),
            status.phases.iter().find(|p| p.state == PhaseState::Failed).map(|p| p.name.clone())
        );
    }
}
