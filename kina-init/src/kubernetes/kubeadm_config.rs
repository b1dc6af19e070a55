//! The kubeadm configuration kina-init writes for the Kubernetes version in
//! the node image, then the cluster's kubeadm patches on top.
//!
//! Documents are built as JSON values (JSON is YAML, and kubeadm reads each
//! `---` document as YAML), so kina-init needs no YAML library and patches
//! apply to the same values kubeadm will read.
//!
//! API versions (kubeadm's own release notes): `kubeadm.k8s.io/v1beta4` is
//! served from 1.31 and is the only one 1.36 accepts (v1beta3 was removed);
//! 1.30 only takes v1beta3. v1beta4 turned every `extraArgs` and
//! `kubeletExtraArgs` map into a list of `{name, value}` and moved the
//! discovery timeout into `timeouts`.

use std::net::Ipv4Addr;

use kina_contract::node_spec::{Json6902Patch, KubeProxyMode, KubernetesSettings, NodeSpec, Role};
use serde_json::{Map, Value, json};

/// The CRI socket kina-init's containerd phase serves.
pub const CRI_SOCKET: &str = "unix:///run/containerd/containerd.sock";

/// Oldest minor kina generates configuration for.
pub const OLDEST_MINOR: u32 = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KubeVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl KubeVersion {
    /// Reads `kubeadm version -o short` output such as `v1.36.4`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let core = t.strip_prefix('v').unwrap_or(t);
        let core = core.split(['-', '+']).next().unwrap_or(core);
        let mut parts = core.split('.').map(str::parse::<u32>);
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Ok(major)), Some(Ok(minor)), Some(Ok(patch)), None) => Ok(Self {
                major,
                minor,
                patch,
            }),
            _ => Err(format!("`{t}` is not a Kubernetes version like v1.36.4")),
        }
    }
}

impl std::fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiVersion {
    V1Beta3,
    V1Beta4,
}

impl ApiVersion {
    pub fn for_version(v: KubeVersion) -> Result<Self, String> {
        match (v.major, v.minor) {
            (1, m) if m < OLDEST_MINOR => Err(format!(
                "Kubernetes {v} is older than kina supports (1.{OLDEST_MINOR} or newer)"
            )),
            (1, 30) => Ok(Self::V1Beta3),
            (1, _) => Ok(Self::V1Beta4),
            _ => Err(format!("Kubernetes {v}: kina knows only the 1.x line")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1Beta3 => "kubeadm.k8s.io/v1beta3",
            Self::V1Beta4 => "kubeadm.k8s.io/v1beta4",
        }
    }

    /// `extraArgs`/`kubeletExtraArgs` in this API version's shape.
    fn args(self, args: &[(&str, String)]) -> Value {
        match self {
            Self::V1Beta3 => Value::Object(
                args.iter()
                    .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
                    .collect(),
            ),
            Self::V1Beta4 => Value::Array(
                args.iter()
                    .map(|(k, v)| json!({"name": k, "value": v}))
                    .collect(),
            ),
        }
    }
}

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

impl Inputs<'_> {
    fn api(&self) -> Result<ApiVersion, String> {
        ApiVersion::for_version(self.version)
    }

    fn node_registration(&self, api: ApiVersion) -> Map<String, Value> {
        let mut reg = Map::new();
        reg.insert("name".into(), json!(self.spec.name));
        reg.insert("criSocket".into(), json!(CRI_SOCKET));
        reg.insert(
            "kubeletExtraArgs".into(),
            api.args(&[("node-ip", self.node_ip.to_string())]),
        );
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
        api_server.insert("extraArgs".into(), api.args(&api_server_args));
    }
    let component = |args: &[(&str, String)]| {
        let mut c = Map::new();
        if !args.is_empty() {
            c.insert("extraArgs".into(), api.args(args));
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
pub fn join_documents(inputs: &Inputs, timeout_seconds: u64) -> Result<Vec<Value>, String> {
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
    let timeout = format!("{timeout_seconds}s");
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
            discovery["timeout"] = json!(timeout);
        }
        ApiVersion::V1Beta4 => {
            join.insert("timeouts".into(), json!({"discovery": timeout}));
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

/// The kinds of document kina generates; a patch for any other kind could
/// never apply (a typo, or a kind kina does not write).
pub const PATCHABLE_KINDS: [&str; 5] = [
    "InitConfiguration",
    "ClusterConfiguration",
    "JoinConfiguration",
    "KubeletConfiguration",
    "KubeProxyConfiguration",
];

/// Applies the cluster's patches the way kind does: to each document, every
/// merge patch (RFC 7386) whose `kind` matches (and `apiVersion`, when the
/// patch names one) in order, then every matching JSON 6902 patch. The
/// patches are cluster-wide, so a patch for InitConfiguration simply does
/// not apply on a worker; a patch for a kind kina never writes is an error
/// instead of being dropped without a word.
pub fn apply_patches(
    docs: &mut [Value],
    merge: &[Value],
    json6902: &[Json6902Patch],
) -> Result<(), String> {
    for (i, patch) in merge.iter().enumerate() {
        match patch.get("kind").and_then(Value::as_str) {
            Some(kind) if PATCHABLE_KINDS.contains(&kind) => {}
            Some(kind) => {
                return Err(format!(
                    "kubeadm config patch {} is for kind {kind}, which kina does not write (it writes {})",
                    i + 1,
                    PATCHABLE_KINDS.join(", ")
                ));
            }
            None => {
                return Err(format!(
                    "kubeadm config patch {} has no `kind`: kina cannot tell which document it patches",
                    i + 1
                ));
            }
        }
    }
    if let Some((i, p)) = json6902
        .iter()
        .enumerate()
        .find(|(_, p)| !PATCHABLE_KINDS.contains(&p.kind.as_str()))
    {
        return Err(format!(
            "kubeadm JSON 6902 patch {} is for kind {}, which kina does not write (it writes {})",
            i + 1,
            p.kind,
            PATCHABLE_KINDS.join(", ")
        ));
    }
    for doc in docs.iter_mut() {
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        let api_version = doc["apiVersion"].as_str().unwrap_or_default().to_string();
        for patch in merge {
            let patch_kind = patch
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let version_ok = patch
                .get("apiVersion")
                .and_then(Value::as_str)
                .is_none_or(|v| v == api_version);
            if patch_kind == kind && version_ok {
                json_patch::merge(doc, patch);
            }
        }
        for (i, patch) in json6902.iter().enumerate() {
            let want = if patch.group.is_empty() {
                patch.version.clone()
            } else {
                format!("{}/{}", patch.group, patch.version)
            };
            if patch.kind == kind && (patch.version.is_empty() || want == api_version) {
                let ops: json_patch::Patch =
                    serde_json::from_value(patch.patch.clone()).map_err(|e| {
                        format!(
                            "kubeadm JSON 6902 patch {} for {}: not a JSON patch: {e}",
                            i + 1,
                            patch.kind
                        )
                    })?;
                json_patch::patch(doc, &ops).map_err(|e| {
                    format!(
                        "kubeadm JSON 6902 patch {} does not apply to {kind}: {e}",
                        i + 1
                    )
                })?;
            }
        }
    }
    // The generated documents must keep their identity.
    for doc in docs.iter() {
        if doc["kind"].as_str().is_none() || doc["apiVersion"].as_str().is_none() {
            return Err("a kubeadm config patch removed a document's kind or apiVersion".into());
        }
    }
    Ok(())
}

/// The documents as one multi-document YAML file.
pub fn render(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| serde_json::to_string_pretty(d).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n---\n")
        + "\n"
}

/// The documents for this node's role, patched.
pub fn for_node(inputs: &Inputs) -> Result<Vec<Value>, String> {
    let mut docs = match inputs.spec.role {
        Role::ControlPlane => init_documents(inputs)?,
        Role::Worker => join_documents(inputs, inputs.kubernetes.timeout_seconds)?,
    };
    // kind's order: the cluster's patches (merge, then JSON 6902), then
    // the node's own.
    apply_patches(
        &mut docs,
        &inputs.kubernetes.kubeadm_config_patches,
        &inputs.kubernetes.kubeadm_config_patches_json6902,
    )
    .map_err(|e| format!("cluster-level {e}"))?;
    apply_patches(
        &mut docs,
        &inputs.spec.kubeadm_config_patches,
        &inputs.spec.kubeadm_config_patches_json6902,
    )
    .map_err(|e| format!("node {}'s {e}", inputs.spec.name))?;
    Ok(docs)
}
