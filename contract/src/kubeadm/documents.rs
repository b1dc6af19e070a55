//! The kubeadm documents kina-init writes for a node: InitConfiguration,
//! ClusterConfiguration, KubeletConfiguration and KubeProxyConfiguration
//! on the control plane, JoinConfiguration on a worker; then the cluster's
//! and the node's patches on top ([`generate`]).
//!
//! Documents are built as JSON values (JSON is YAML, and kubeadm reads each
//! `---` document as YAML), so kina-init needs no YAML library and patches
//! apply to the same values kubeadm will read.

use std::net::Ipv4Addr;

use serde_json::{Map, Value, json};

use super::merge::{PatchSet, apply_patch_sets};
use super::version::{ApiVersion, KubeVersion};
use crate::kubernetes_spec::{KubeProxyMode, KubernetesSettings};
use crate::node_spec::NodeSpec;
use crate::role::Role;

/// The CRI socket kina-init's containerd phase serves.
pub const CRI_SOCKET: &str = "unix:///run/containerd/containerd.sock";

/// The kinds of document kina generates; a patch for any other kind could
/// never apply (a typo, or a kind kina does not write).
pub const PATCHABLE_KINDS: [&str; 5] = [
    "InitConfiguration",
    "ClusterConfiguration",
    "JoinConfiguration",
    "KubeletConfiguration",
    "KubeProxyConfiguration",
];

/// A preflight check kina-init tells kubeadm to ignore, and why; only checks
/// that cannot pass on this node are listed, never `all`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IgnoredCheck {
    pub name: &'static str,
    pub why: String,
}

/// What the configuration is made from.
pub struct Inputs<'a> {
    pub spec: &'a NodeSpec,
    pub kubernetes: &'a KubernetesSettings,
    pub version: KubeVersion,
    pub node_ip: Ipv4Addr,
    pub ignored_checks: &'a [IgnoredCheck],
}

/// A node's documents after every patch, and what a user should know about
/// them that is not an error (kubeadm's warnings, patches that matched
/// nothing).
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    pub docs: Vec<Value>,
    pub notes: Vec<String>,
}

/// `extraArgs`/`kubeletExtraArgs` in `api`'s shape.
fn args(api: ApiVersion, args: &[(&str, String)]) -> Value {
    match api {
        ApiVersion::V1Beta3 => Value::Object(
            args.iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
                .collect(),
        ),
        ApiVersion::V1Beta4 => Value::Array(
            args.iter()
                .map(|(k, v)| json!({"name": k, "value": v}))
                .collect(),
        ),
    }
}

/// A duration as kubeadm reads it (Go's `time.ParseDuration`).
fn seconds(n: u64) -> String {
    format!("{n}s")
}

impl Inputs<'_> {
    fn api(&self) -> Result<ApiVersion, String> {
        ApiVersion::for_version(self.version)
    }

    /// kina's own kubelet flags: the node IP (else the kubelet takes the
    /// default route's address, which on QEMU is 10.0.2.15 on every node)
    /// and kind's `nodes[].labels` as `node-labels`, written the way kind's
    /// template writes them (`key=value,...`; kind's
    /// `hashMapLabelsToCommaSeparatedLabels`). A user's patch naming
    /// `node-labels` replaces them, as it does in kind, where the template's
    /// entry is merged by name like any other.
    fn kubelet_args(&self) -> Vec<(&'static str, String)> {
        let mut list = vec![("node-ip", self.node_ip.to_string())];
        if !self.spec.node_labels.is_empty() {
            let labels: Vec<String> = self
                .spec
                .node_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            list.push(("node-labels", labels.join(",")));
        }
        list
    }

    fn node_registration(&self, api: ApiVersion) -> Map<String, Value> {
        let mut reg = Map::new();
        reg.insert("name".into(), json!(self.spec.name));
        reg.insert("criSocket".into(), json!(CRI_SOCKET));
        reg.insert("kubeletExtraArgs".into(), args(api, &self.kubelet_args()));
        if !self.ignored_checks.is_empty() {
            reg.insert(
                "ignorePreflightErrors".into(),
                self.ignored_checks.iter().map(|c| json!(c.name)).collect(),
            );
        }
        reg
    }

    fn feature_gates_arg(&self) -> Option<(&'static str, String)> {
        let gates = &self.kubernetes.feature_gates;
        (!gates.is_empty()).then(|| {
            let list: Vec<String> = gates.iter().map(|(k, v)| format!("{k}={v}")).collect();
            ("feature-gates", list.join(","))
        })
    }

    /// kina's budget for the phase (`timeout_seconds`). kubeadm's own waits
    /// default to 4-5 minutes (its constants.go), less than kina's budget on
    /// an emulated or loaded node, where kubeadm would then give up while
    /// kina still waits: they get the whole budget, and kina-init's
    /// deadline ends kubeadm when the budget is spent.
    fn budget(&self) -> u64 {
        self.kubernetes.timeout_seconds
    }

    /// A join's discovery gets half the budget: kina-init retries a failed
    /// join, and a first attempt stuck in discovery must leave time for the
    /// next one.
    fn discovery_budget(&self) -> u64 {
        (self.budget() / 2).max(1)
    }
}

/// `kubeadm init`'s documents: InitConfiguration, ClusterConfiguration,
/// KubeletConfiguration and (unless kube-proxy is off) KubeProxyConfiguration.
pub fn init_documents(inputs: &Inputs) -> Result<Vec<Value>, String> {
    let api = inputs.api()?;
    let k = inputs.kubernetes;
    if k.kube_proxy_mode == KubeProxyMode::Nftables
        && inputs.version.minor < 31
        && k.feature_gates.get("NFTablesProxyMode") != Some(&true)
    {
        return Err(format!(
            "kube-proxy's nftables mode needs Kubernetes 1.31 or newer (this image has {}), or the NFTablesProxyMode feature gate",
            inputs.version
        ));
    }
    let mut init = Map::new();
    init.insert("apiVersion".into(), json!(api.as_str()));
    init.insert("kind".into(), json!("InitConfiguration"));
    if let Some(token) = &k.bootstrap_token {
        init.insert(
            "bootstrapTokens".into(),
            json!([{
                "token": token.expose(),
                "description": format!("kina: joins nodes to cluster {}", inputs.spec.cluster),
            }]),
        );
    }
    init.insert(
        "localAPIEndpoint".into(),
        json!({"advertiseAddress": inputs.node_ip.to_string(), "bindPort": api_port(k)?}),
    );
    let mut reg = inputs.node_registration(api);
    // kubeadm taints a control plane when `taints` is absent; an empty list
    // is the documented way to get none, so a one-node cluster can run pods.
    if inputs.spec.peers.is_empty() {
        reg.insert("taints".into(), json!([]));
    }
    init.insert("nodeRegistration".into(), Value::Object(reg));
    if k.kube_proxy_mode == KubeProxyMode::None {
        init.insert("skipPhases".into(), json!(["addon/kube-proxy"]));
    }
    // init waits for the kubelet (kubelet-start) and for the static pods
    // (wait-control-plane); v1beta3 can only lengthen the second.
    if api == ApiVersion::V1Beta4 {
        init.insert(
            "timeouts".into(),
            json!({
                "controlPlaneComponentHealthCheck": seconds(inputs.budget()),
                "kubeletHealthCheck": seconds(inputs.budget()),
            }),
        );
    }

    let mut sans = vec![
        inputs.node_ip.to_string(),
        "127.0.0.1".to_string(),
        "localhost".to_string(),
    ];
    for extra in &k.api_server_cert_sans {
        if !sans.contains(extra) {
            sans.push(extra.clone());
        }
    }
    let gates = inputs.feature_gates_arg();
    let mut api_server_args: Vec<(&str, String)> = gates.clone().into_iter().collect();
    if !k.runtime_config.is_empty() {
        let list: Vec<String> = k
            .runtime_config
            .iter()
            .map(|(key, v)| format!("{key}={v}"))
            .collect();
        api_server_args.push(("runtime-config", list.join(",")));
    }
    let component_args: Vec<(&str, String)> = gates.into_iter().collect();
    // Every node's pod CIDR is the node spec's (ptp's host-local range, the
    // peers' routes), and kina-init's controller writes it into the Node
    // object. kube-controller-manager's allocator would hand out /24s of
    // podSubnet in the order nodes register, which need not be the spec's,
    // so it is turned off.
    let mut controller_manager_args = component_args.clone();
    controller_manager_args.push(("allocate-node-cidrs", "false".to_string()));
    let mut api_server = Map::new();
    api_server.insert("certSANs".into(), json!(sans));
    if !api_server_args.is_empty() {
        api_server.insert("extraArgs".into(), args(api, &api_server_args));
    }
    if api == ApiVersion::V1Beta3 {
        api_server.insert(
            "timeoutForControlPlane".into(),
            json!(seconds(inputs.budget())),
        );
    }
    let component = |list: &[(&str, String)]| {
        let mut c = Map::new();
        if !list.is_empty() {
            c.insert("extraArgs".into(), args(api, list));
        }
        Value::Object(c)
    };
    let cluster = json!({
        "apiVersion": api.as_str(),
        "kind": "ClusterConfiguration",
        "clusterName": inputs.spec.cluster,
        "kubernetesVersion": inputs.version.to_string(),
        "controlPlaneEndpoint": k.control_plane_endpoint,
        "networking": {
            "podSubnet": k.pod_subnet,
            "serviceSubnet": k.service_subnet,
            "dnsDomain": k.dns_domain,
        },
        "apiServer": api_server,
        "controllerManager": component(&controller_manager_args),
        "scheduler": component(&component_args),
    });

    let mut docs = vec![Value::Object(init), cluster, kubelet_document(inputs)];
    if k.kube_proxy_mode != KubeProxyMode::None {
        docs.push(kube_proxy_document(inputs));
    }
    Ok(docs)
}

/// `kubeadm join`'s JoinConfiguration; joining nodes take the kubelet and
/// kube-proxy configuration the control plane uploaded.
pub fn join_documents(inputs: &Inputs) -> Result<Vec<Value>, String> {
    let api = inputs.api()?;
    let k = inputs.kubernetes;
    let token = k
        .bootstrap_token
        .as_ref()
        .ok_or("the node spec gives no kubernetes.bootstrap_token to join with")?;
    let hash = k
        .ca_cert_hash
        .as_ref()
        .ok_or("the node spec gives no kubernetes.ca_cert_hash to pin the cluster CA")?;
    let discovery_timeout = seconds(inputs.discovery_budget());
    let mut discovery = json!({
        "bootstrapToken": {
            "token": token.expose(),
            "apiServerEndpoint": k.control_plane_endpoint,
            "caCertHashes": [hash],
        }
    });
    let mut join = Map::new();
    join.insert("apiVersion".into(), json!(api.as_str()));
    join.insert("kind".into(), json!("JoinConfiguration"));
    match api {
        ApiVersion::V1Beta3 => {
            discovery["timeout"] = json!(discovery_timeout);
        }
        ApiVersion::V1Beta4 => {
            // join discovers the cluster, then waits for the kubelet's
            // health and its TLS bootstrap (kubelet-start).
            join.insert(
                "timeouts".into(),
                json!({
                    "discovery": discovery_timeout,
                    "kubeletHealthCheck": seconds(inputs.budget()),
                    "tlsBootstrap": seconds(inputs.budget()),
                }),
            );
        }
    }
    join.insert("discovery".into(), discovery);
    join.insert(
        "nodeRegistration".into(),
        Value::Object(inputs.node_registration(api)),
    );
    Ok(vec![Value::Object(join)])
}

fn api_port(k: &KubernetesSettings) -> Result<u16, String> {
    k.control_plane_endpoint
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .ok_or_else(|| {
            format!(
                "kubernetes.control_plane_endpoint `{}` has no port",
                k.control_plane_endpoint
            )
        })
}

/// kind's kubelet settings that matter on a VM without systemd: the
/// cgroupfs driver (kubeadm defaults to systemd's), serving certificates
/// requested from the cluster CA so `kubectl logs`/`exec` verify, and no
/// disk-pressure evictions on small node disks.
fn kubelet_document(inputs: &Inputs) -> Value {
    let mut doc = json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        "serverTLSBootstrap": true,
        "failSwapOn": false,
        "imageGCHighThresholdPercent": 100,
        "evictionHard": {
            "nodefs.available": "0%",
            "nodefs.inodesFree": "0%",
            "imagefs.available": "0%",
        },
    });
    if !inputs.kubernetes.feature_gates.is_empty() {
        doc["featureGates"] = json!(inputs.kubernetes.feature_gates);
    }
    doc
}

/// `conntrack.maxPerCore: 0` leaves the kernel's conntrack limit alone:
/// in Apple's container mode /proc/sys is read-only and kube-proxy would
/// fail writing it.
fn kube_proxy_document(inputs: &Inputs) -> Value {
    let mut doc = json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": inputs.kubernetes.kube_proxy_mode.as_str(),
        "conntrack": {"maxPerCore": 0},
    });
    if !inputs.kubernetes.feature_gates.is_empty() {
        doc["featureGates"] = json!(inputs.kubernetes.feature_gates);
    }
    doc
}

/// The documents as one multi-document YAML file.
pub fn render(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| serde_json::to_string_pretty(d).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n---\n")
        + "\n"
}

/// The documents for this node's role, patched, with what the patching
/// noted. kind's order: the cluster's patches (merge, then JSON 6902),
/// then the node's own; the result is checked against the field shapes of
/// each document's API version, so a patch kubeadm could not decode is an
/// error naming it before kubeadm runs.
pub fn generate(inputs: &Inputs) -> Result<Generated, String> {
    let mut docs = match inputs.spec.role {
        Role::ControlPlane => init_documents(inputs)?,
        Role::Worker => join_documents(inputs)?,
    };
    let node_origin = format!("node {}'s", inputs.spec.name);
    let sets = [
        PatchSet {
            origin: "cluster-level",
            merge: &inputs.kubernetes.kubeadm_config_patches,
            json6902: &inputs.kubernetes.kubeadm_config_patches_json6902,
        },
        PatchSet {
            origin: &node_origin,
            merge: &inputs.spec.kubeadm_config_patches,
            json6902: &inputs.spec.kubeadm_config_patches_json6902,
        },
    ];
    let notes = apply_patch_sets(&mut docs, inputs.version, &sets)?;
    Ok(Generated { docs, notes })
}

/// The documents for this node's role, patched (what kina-init writes).
pub fn for_node(inputs: &Inputs) -> Result<Vec<Value>, String> {
    generate(inputs).map(|g| g.docs)
}

/// The kubelet flags kubeadm derives from the documents'
/// `nodeRegistration.kubeletExtraArgs` and writes to
/// `/var/lib/kubelet/kubeadm-flags.env`: `--name=value`, sorted by name,
/// then value (kubeadm's `ArgumentsToCommand`,
/// cmd/kubeadm/app/util/arguments.go). kubeadm adds its own defaults
/// (the CRI socket or pause image, depending on the release), which a flag
/// of the same name here replaces.
pub fn kubelet_flags(docs: &[Value]) -> Vec<String> {
    let Some(args) = docs
        .iter()
        .filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some("InitConfiguration" | "JoinConfiguration")
            )
        })
        .find_map(|d| d.pointer("/nodeRegistration/kubeletExtraArgs"))
    else {
        return Vec::new();
    };
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut pairs: Vec<(String, String)> = match args {
        Value::Array(items) => items
            .iter()
            .filter_map(|item| Some((item.get("name")?.as_str()?.to_string(), item.get("value")?)))
            .map(|(name, value)| (name, text(value)))
            .collect(),
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        _ => Vec::new(),
    };
    pairs.sort();
    pairs
        .into_iter()
        .map(|(name, value)| format!("--{name}={value}"))
        .collect()
}
