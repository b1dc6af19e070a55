//! The field shapes kubeadm decodes each document with, per API version, so
//! a patched document kubeadm could not read is refused before kubeadm
//! runs, naming the field and what kubeadm expects.
//!
//! Facts from kubeadm's API types (cmd/kubeadm/app/apis/kubeadm/v1beta3 and
//! v1beta4 types.go, bootstraptoken/v1, corev1.Taint and EnvVar) and, for
//! the component configs, the fields kina writes and the ones kind's docs
//! patch (kubelet.config.k8s.io/v1beta1, kubeproxy.config.k8s.io/v1alpha1).
//!
//! kubeadm's decoding (cmd/kubeadm/app/util/config) is strict only as a
//! warning: an unknown field is reported and ignored ([`Checked::unknown`]),
//! while a value of the wrong type (an object where a list is expected, a
//! number where a string is) fails the decode ([`Checked::errors`]). A
//! null is read as "unset" everywhere, so it always passes.
//!
//! The file is long because most of it is data: one table per kubeadm type
//! for each of two API versions, kept side by side so a difference between
//! v1beta3 and v1beta4 is seen where it is.

use serde_json::{Map, Value};

use crate::kubernetes_spec::is_bootstrap_token;

#[derive(Clone, Copy, Debug)]
pub enum Shape {
    Str,
    Bool,
    /// A whole number (Go's integer fields).
    Int,
    /// Any JSON number (Go's float fields).
    Number,
    /// A `metav1.Duration`: a string Go's `time.ParseDuration` reads.
    Duration,
    /// A `BootstrapTokenString`, which kubeadm parses on decode.
    Token,
    List(&'static Shape),
    /// An object with string keys (flags, feature gates) and values of
    /// one shape.
    Map(&'static Shape),
    /// A kubeadm type whose fields are all listed; the first element names
    /// its values in messages ("taints", "{name, value} pairs").
    Fields(&'static str, &'static [(&'static str, Shape)]),
    /// A component config type of which only the listed fields are checked
    /// (it has many more).
    Partial(&'static [(&'static str, Shape)]),
    Any,
}

use Shape::*;

const STRINGS: Shape = List(&Str);
const TYPE_META: [(&str, Shape); 2] = [("apiVersion", Str), ("kind", Str)];

const ARGS_V1BETA3: Shape = Map(&Str);
const ARGS_V1BETA4: Shape = List(&Fields(
    "{name, value} pairs",
    &[("name", Str), ("value", Str)],
));

const TAINTS: Shape = List(&Fields(
    "taints",
    &[
        ("key", Str),
        ("value", Str),
        ("effect", Str),
        ("timeAdded", Str),
    ],
));
const VOLUMES: Shape = List(&Fields(
    "volumes",
    &[
        ("name", Str),
        ("hostPath", Str),
        ("mountPath", Str),
        ("readOnly", Bool),
        ("pathType", Str),
    ],
));
const ENVS: Shape = List(&Fields(
    "environment variables",
    &[("name", Str), ("value", Str), ("valueFrom", Any)],
));
const BOOTSTRAP_TOKENS: Shape = List(&Fields(
    "bootstrap tokens",
    &[
        ("token", Token),
        ("description", Str),
        ("ttl", Duration),
        ("expires", Str),
        ("usages", STRINGS),
        ("groups", STRINGS),
    ],
));
const API_ENDPOINT: Shape = Fields("", &[("advertiseAddress", Str), ("bindPort", Int)]);
const PATCHES: Shape = Fields("", &[("directory", Str)]);
const NETWORKING: Shape = Fields(
    "",
    &[
        ("serviceSubnet", Str),
        ("podSubnet", Str),
        ("dnsDomain", Str),
    ],
);
const EXTERNAL_ETCD: Shape = Fields(
    "",
    &[
        ("endpoints", STRINGS),
        ("caFile", Str),
        ("certFile", Str),
        ("keyFile", Str),
    ],
);
const BOOTSTRAP_DISCOVERY: Shape = Fields(
    "",
    &[
        ("token", Str),
        ("apiServerEndpoint", Str),
        ("caCertHashes", STRINGS),
        ("unsafeSkipCAVerification", Bool),
    ],
);
const FILE_DISCOVERY: Shape = Fields("", &[("kubeConfigPath", Str)]);
const JOIN_CONTROL_PLANE: Shape = Fields(
    "",
    &[("localAPIEndpoint", API_ENDPOINT), ("certificateKey", Str)],
);

mod v1beta3 {
    use super::*;

    const NODE_REGISTRATION: Shape = Fields(
        "",
        &[
            ("name", Str),
            ("criSocket", Str),
            ("taints", TAINTS),
            ("kubeletExtraArgs", ARGS_V1BETA3),
            ("ignorePreflightErrors", STRINGS),
            ("imagePullPolicy", Str),
        ],
    );
    const COMPONENT: Shape = Fields(
        "",
        &[("extraArgs", ARGS_V1BETA3), ("extraVolumes", VOLUMES)],
    );

    pub const INIT: Shape = Fields(
        "",
        &[
            TYPE_META[0],
            TYPE_META[1],
            ("bootstrapTokens", BOOTSTRAP_TOKENS),
            ("nodeRegistration", NODE_REGISTRATION),
            ("localAPIEndpoint", API_ENDPOINT),
            ("certificateKey", Str),
            ("skipPhases", STRINGS),
            ("patches", PATCHES),
        ],
    );
    pub const CLUSTER: Shape = Fields(
        "",
        &[
            TYPE_META[0],
            TYPE_META[1],
            (
                "etcd",
                Fields(
                    "",
                    &[
                        (
                            "local",
                            Fields(
                                "",
                                &[
                                    ("imageRepository", Str),
                                    ("imageTag", Str),
                                    ("dataDir", Str),
                                    ("extraArgs", ARGS_V1BETA3),
                                    ("serverCertSANs", STRINGS),
                                    ("peerCertSANs", STRINGS),
                                ],
                            ),
                        ),
                        ("external", EXTERNAL_ETCD),
                    ],
                ),
            ),
            ("networking", NETWORKING),
            ("kubernetesVersion", Str),
            ("controlPlaneEndpoint", Str),
            (
                "apiServer",
                Fields(
                    "",
                    &[
                        ("extraArgs", ARGS_V1BETA3),
                        ("extraVolumes", VOLUMES),
                        ("certSANs", STRINGS),
                        ("timeoutForControlPlane", Duration),
                    ],
                ),
            ),
            ("controllerManager", COMPONENT),
            ("scheduler", COMPONENT),
            (
                "dns",
                Fields("", &[("imageRepository", Str), ("imageTag", Str)]),
            ),
            ("certificatesDir", Str),
            ("imageRepository", Str),
            ("featureGates", Map(&Bool)),
            ("clusterName", Str),
        ],
    );
    pub const JOIN: Shape = Fields(
        "",
        &[
            TYPE_META[0],
            TYPE_META[1],
            ("nodeRegistration", NODE_REGISTRATION),
            ("caCertPath", Str),
            (
                "discovery",
                Fields(
                    "",
                    &[
                        ("bootstrapToken", BOOTSTRAP_DISCOVERY),
                        ("file", FILE_DISCOVERY),
                        ("tlsBootstrapToken", Str),
                        ("timeout", Duration),
                    ],
                ),
            ),
            ("controlPlane", JOIN_CONTROL_PLANE),
            ("skipPhases", STRINGS),
            ("patches", PATCHES),
        ],
    );
}

mod v1beta4 {
    use super::*;

    const NODE_REGISTRATION: Shape = Fields(
        "",
        &[
            ("name", Str),
            ("criSocket", Str),
            ("taints", TAINTS),
            ("kubeletExtraArgs", ARGS_V1BETA4),
            ("ignorePreflightErrors", STRINGS),
            ("imagePullPolicy", Str),
            ("imagePullSerial", Bool),
        ],
    );
    const COMPONENT: Shape = Fields(
        "",
        &[
            ("extraArgs", ARGS_V1BETA4),
            ("extraVolumes", VOLUMES),
            ("extraEnvs", ENVS),
        ],
    );
    const TIMEOUTS: Shape = Fields(
        "",
        &[
            ("controlPlaneComponentHealthCheck", Duration),
            ("kubeletHealthCheck", Duration),
            ("kubernetesAPICall", Duration),
            ("etcdAPICall", Duration),
            ("tlsBootstrap", Duration),
            ("discovery", Duration),
            ("upgradeManifests", Duration),
        ],
    );

    pub const INIT: Shape = Fields(
        "",
        &[
            TYPE_META[0],
            TYPE_META[1],
            ("bootstrapTokens", BOOTSTRAP_TOKENS),
            ("dryRun", Bool),
            ("nodeRegistration", NODE_REGISTRATION),
            ("localAPIEndpoint", API_ENDPOINT),
            ("certificateKey", Str),
            ("skipPhases", STRINGS),
            ("patches", PATCHES),
            ("timeouts", TIMEOUTS),
        ],
    );
    pub const CLUSTER: Shape = Fields(
        "",
        &[
            TYPE_META[0],
            TYPE_META[1],
            (
                "etcd",
                Fields(
                    "",
                    &[
                        (
                            "local",
                            Fields(
                                "",
                                &[
                                    ("imageRepository", Str),
                                    ("imageTag", Str),
                                    ("dataDir", Str),
                                    ("extraArgs", ARGS_V1BETA4),
                                    ("extraEnvs", ENVS),
                                    ("serverCertSANs", STRINGS),
                                    ("peerCertSANs", STRINGS),
                                ],
                            ),
                        ),
                        ("external", EXTERNAL_ETCD),
                    ],
                ),
            ),
            ("networking", NETWORKING),
            ("kubernetesVersion", Str),
            ("controlPlaneEndpoint", Str),
            (
                "apiServer",
                Fields(
                    "",
                    &[
                        ("extraArgs", ARGS_V1BETA4),
                        ("extraVolumes", VOLUMES),
                        ("extraEnvs", ENVS),
                        ("certSANs", STRINGS),
                    ],
                ),
            ),
            ("controllerManager", COMPONENT),
            ("scheduler", COMPONENT),
            (
                "dns",
                Fields(
                    "",
                    &[
                        ("imageRepository", Str),
                        ("imageTag", Str),
                        ("disabled", Bool),
                    ],
                ),
            ),
            ("proxy", Fields("", &[("disabled", Bool)])),
            ("certificatesDir", Str),
            ("imageRepository", Str),
            ("featureGates", Map(&Bool)),
            ("clusterName", Str),
            ("encryptionAlgorithm", Str),
            ("certificateValidityPeriod", Duration),
            ("caCertificateValidityPeriod", Duration),
        ],
    );
    pub const JOIN: Shape = Fields(
        "",
        &[
            TYPE_META[0],
            TYPE_META[1],
            ("dryRun", Bool),
            ("nodeRegistration", NODE_REGISTRATION),
            ("caCertPath", Str),
            (
                "discovery",
                Fields(
                    "",
                    &[
                        ("bootstrapToken", BOOTSTRAP_DISCOVERY),
                        ("file", FILE_DISCOVERY),
                        ("tlsBootstrapToken", Str),
                    ],
                ),
            ),
            ("controlPlane", JOIN_CONTROL_PLANE),
            ("skipPhases", STRINGS),
            ("patches", PATCHES),
            ("timeouts", TIMEOUTS),
        ],
    );
}

/// kubelet.config.k8s.io/v1beta1: what kina writes, what kind's docs
/// patch, and the commonly patched limits.
const KUBELET: Shape = Partial(&[
    TYPE_META[0],
    TYPE_META[1],
    ("cgroupDriver", Str),
    ("serverTLSBootstrap", Bool),
    ("rotateCertificates", Bool),
    ("failSwapOn", Bool),
    ("imageGCHighThresholdPercent", Int),
    ("imageGCLowThresholdPercent", Int),
    ("imageMinimumGCAge", Duration),
    ("imageMaximumGCAge", Duration),
    ("evictionHard", Map(&Str)),
    ("evictionSoft", Map(&Str)),
    ("evictionSoftGracePeriod", Map(&Str)),
    ("featureGates", Map(&Bool)),
    ("maxPods", Int),
    ("podPidsLimit", Int),
    ("containerRuntimeEndpoint", Str),
    ("clusterDNS", STRINGS),
    ("clusterDomain", Str),
    ("systemReserved", Map(&Str)),
    ("kubeReserved", Map(&Str)),
    ("cgroupRoot", Str),
    ("registerWithTaints", TAINTS),
    ("allowedUnsafeSysctls", STRINGS),
    ("containerLogMaxSize", Str),
    ("containerLogMaxFiles", Int),
    ("serializeImagePulls", Bool),
    ("maxParallelImagePulls", Int),
    ("nodeStatusUpdateFrequency", Duration),
    ("syncFrequency", Duration),
    ("shutdownGracePeriod", Duration),
    ("shutdownGracePeriodCriticalPods", Duration),
    ("cpuManagerPolicy", Str),
    ("topologyManagerPolicy", Str),
    ("protectKernelDefaults", Bool),
    ("readOnlyPort", Int),
    ("tlsCipherSuites", STRINGS),
    ("memorySwap", Partial(&[("swapBehavior", Str)])),
]);

const PROXY_SYNC: [(&str, Shape); 2] = [("syncPeriod", Duration), ("minSyncPeriod", Duration)];

/// kubeproxy.config.k8s.io/v1alpha1, likewise.
const KUBE_PROXY: Shape = Partial(&[
    TYPE_META[0],
    TYPE_META[1],
    ("mode", Str),
    ("featureGates", Map(&Bool)),
    ("clusterCIDR", Str),
    ("bindAddress", Str),
    ("healthzBindAddress", Str),
    ("metricsBindAddress", Str),
    ("nodePortAddresses", STRINGS),
    ("detectLocalMode", Str),
    ("configSyncPeriod", Duration),
    ("oomScoreAdj", Int),
    (
        "conntrack",
        Partial(&[
            ("maxPerCore", Int),
            ("min", Int),
            ("tcpEstablishedTimeout", Duration),
            ("tcpCloseWaitTimeout", Duration),
            ("tcpBeLiberal", Bool),
            ("udpTimeout", Duration),
            ("udpStreamTimeout", Duration),
        ]),
    ),
    (
        "iptables",
        Partial(&[
            ("masqueradeAll", Bool),
            ("masqueradeBit", Int),
            ("localhostNodePorts", Bool),
            PROXY_SYNC[0],
            PROXY_SYNC[1],
        ]),
    ),
    (
        "ipvs",
        Partial(&[
            ("scheduler", Str),
            ("strictARP", Bool),
            ("excludeCIDRs", STRINGS),
            ("tcpTimeout", Duration),
            ("tcpFinTimeout", Duration),
            ("udpTimeout", Duration),
            PROXY_SYNC[0],
            PROXY_SYNC[1],
        ]),
    ),
    (
        "nftables",
        Partial(&[
            ("masqueradeAll", Bool),
            ("masqueradeBit", Int),
            PROXY_SYNC[0],
            PROXY_SYNC[1],
        ]),
    ),
]);

/// The shape of a document of this apiVersion and kind, if kina knows it.
pub fn schema(api_version: &str, kind: &str) -> Option<&'static Shape> {
    Some(match (api_version, kind) {
        ("kubeadm.k8s.io/v1beta3", "InitConfiguration") => &v1beta3::INIT,
        ("kubeadm.k8s.io/v1beta3", "ClusterConfiguration") => &v1beta3::CLUSTER,
        ("kubeadm.k8s.io/v1beta3", "JoinConfiguration") => &v1beta3::JOIN,
        ("kubeadm.k8s.io/v1beta4", "InitConfiguration") => &v1beta4::INIT,
        ("kubeadm.k8s.io/v1beta4", "ClusterConfiguration") => &v1beta4::CLUSTER,
        ("kubeadm.k8s.io/v1beta4", "JoinConfiguration") => &v1beta4::JOIN,
        ("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration") => &KUBELET,
        ("kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration") => &KUBE_PROXY,
        _ => return None,
    })
}

/// What checking a document found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// Values kubeadm cannot decode, each with its path and what kubeadm
    /// reads there.
    pub errors: Vec<String>,
    /// Paths of fields kubeadm does not know (it warns and ignores them).
    pub unknown: Vec<String>,
}

/// Checks a document against its API version's shapes. A document of an
/// apiVersion and kind kina has no shapes for passes unchecked.
pub fn check(doc: &Value) -> Checked {
    let mut out = Checked::default();
    let api = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    if let Some(shape) = schema(api, kind) {
        walk(shape, doc, "", api, &mut out);
    }
    out
}

fn found(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn expected(shape: &Shape) -> String {
    match shape {
        Str => "a string".into(),
        Bool => "true or false".into(),
        Int => "a whole number".into(),
        Number => "a number".into(),
        Duration => "a duration such as \"5m0s\"".into(),
        Token => "a bootstrap token ([a-z0-9]{6}.[a-z0-9]{16})".into(),
        List(item) => format!("a list of {}", plural(item)),
        Map(value) => format!("a map of {}", plural(value)),
        Fields(..) | Partial(_) => "a map of fields".into(),
        Any => "anything".into(),
    }
}

fn plural(shape: &Shape) -> String {
    match shape {
        Str => "strings".into(),
        Bool => "true/false values".into(),
        Fields(what, _) if !what.is_empty() => (*what).into(),
        other => format!("values ({})", expected(other)),
    }
}

fn walk(shape: &Shape, value: &Value, path: &str, api: &str, out: &mut Checked) {
    if value.is_null() {
        return;
    }
    let at = if path.is_empty() { "<document>" } else { path };
    let ok = match shape {
        Any => true,
        Str => value.is_string(),
        Bool => value.is_boolean(),
        Int => value.is_i64() || value.is_u64(),
        Number => value.is_number(),
        Duration => value.as_str().is_some_and(is_go_duration),
        Token => value.as_str().is_some_and(is_bootstrap_token),
        List(item) => match value {
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(item, v, &format!("{path}[{i}]"), api, out);
                }
                true
            }
            _ => false,
        },
        Map(item) => match value {
            Value::Object(map) => {
                for (k, v) in map {
                    walk(item, v, &child(path, k), api, out);
                }
                true
            }
            _ => false,
        },
        Fields(_, fields) => match value {
            Value::Object(map) => {
                fields_of(fields, map, path, api, true, out);
                true
            }
            _ => false,
        },
        Partial(fields) => match value {
            Value::Object(map) => {
                fields_of(fields, map, path, api, false, out);
                true
            }
            _ => false,
        },
    };
    if !ok {
        let hint = match (shape, value) {
            (Str, Value::Number(_) | Value::Bool(_)) => {
                " (quote it: YAML reads 4, 1.5 and true as numbers and booleans)"
            }
            (List(_), Value::Object(_)) if path.ends_with("xtraArgs") => {
                " (in v1beta4 arguments are a list of {name, value})"
            }
            (Map(_), Value::Array(_)) if path.ends_with("xtraArgs") => {
                " (in v1beta3 arguments are a map of flag: value)"
            }
            (Duration, Value::String(_)) => " (Go's duration syntax: 300s, 5m, 1h30m)",
            _ => "",
        };
        out.errors.push(format!(
            "{at} is {} where {api} reads {}{hint}",
            found(value),
            expected(shape)
        ));
    }
}

fn fields_of(
    fields: &[(&str, Shape)],
    map: &Map<String, Value>,
    path: &str,
    api: &str,
    complete: bool,
    out: &mut Checked,
) {
    for (key, v) in map {
        match fields.iter().find(|(name, _)| name == key) {
            Some((_, shape)) => walk(shape, v, &child(path, key), api, out),
            None if complete => out.unknown.push(child(path, key)),
            None => {}
        }
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Go's `time.ParseDuration` syntax: an optional sign, then one or more
/// decimal numbers each with a unit (ns, us, µs, ms, s, m, h), or a bare
/// `0`. Hand-written: humantime and the other duration crates accept a
/// different syntax (spaces, `min`, no fractions), and kubeadm reads this
/// one.
pub fn is_go_duration(text: &str) -> bool {
    let s = text
        .strip_prefix('-')
        .or_else(|| text.strip_prefix('+'))
        .unwrap_or(text);
    if s == "0" {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_end];
        let digits = number.chars().filter(char::is_ascii_digit).count();
        if digits == 0 || number.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        if !["ns", "us", "µs", "μs", "ms", "s", "m", "h"].contains(&&rest[..unit_end]) {
            return false;
        }
        rest = &rest[unit_end..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_durations_are_read_as_go_reads_them() {
        for ok in [
            "0", "300s", "4m0s", "1h30m", "1.5h", "-2m", "250ms", "10us", "3µs",
        ] {
            assert!(is_go_duration(ok), "{ok}");
        }
        for bad in ["", "5", "5 m", "5min", "1..5s", "m", "s5", "1.5"] {
            assert!(!is_go_duration(bad), "{bad}");
        }
    }

    #[test]
    fn wrong_types_are_errors_and_unknown_fields_only_warnings() {
        let doc = json!({
            "apiVersion": "kubeadm.k8s.io/v1beta4",
            "kind": "ClusterConfiguration",
            "apiServer": {
                "extraArgs": {"v": "4"},
                "certSANs": ["a", 7],
                "timeoutForControlPlane": "4m",
            },
            "networking": {"podSubnet": null},
            "featureGates": {"Foo": "true"},
        });
        let checked = check(&doc);
        assert_eq!(checked.unknown, ["apiServer.timeoutForControlPlane"]);
        assert_eq!(checked.errors.len(), 3, "{:?}", checked.errors);
        assert!(checked.errors[0].starts_with("apiServer.certSANs[1] is a number where kubeadm.k8s.io/v1beta4 reads a string (quote it"), "{:?}", checked.errors);
        assert!(checked.errors[1].contains("apiServer.extraArgs is a map where kubeadm.k8s.io/v1beta4 reads a list of {name, value} pairs"), "{:?}", checked.errors);
        assert!(
            checked.errors[2].starts_with("featureGates.Foo is a string where"),
            "{:?}",
            checked.errors
        );
        // The same map is v1beta3's shape.
        let mut v3 = json!({
            "apiVersion": "kubeadm.k8s.io/v1beta3",
            "kind": "ClusterConfiguration",
            "apiServer": {"extraArgs": {"v": "4"}, "timeoutForControlPlane": "4m"},
        });
        assert_eq!(check(&v3), Checked::default());
        v3["apiServer"]["extraArgs"] = json!([{"name": "v", "value": "4"}]);
        assert!(check(&v3).errors[0].contains("in v1beta3 arguments are a map"));
    }

    #[test]
    fn component_configs_check_only_the_fields_kina_knows() {
        let doc = json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "maxPods": "50",
            "someNewField": {"x": 1},
        });
        let checked = check(&doc);
        assert!(checked.unknown.is_empty());
        assert_eq!(checked.errors.len(), 1);
        assert!(checked.errors[0].starts_with(
            "maxPods is a string where kubelet.config.k8s.io/v1beta1 reads a whole number"
        ));
    }
}
