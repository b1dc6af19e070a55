//! The cluster config file (`kina create cluster --config FILE`): kind's own
//! `kind: Cluster`, `apiVersion: kind.x-k8s.io/v1alpha4` schema, read as
//! is, so a kind config works unchanged.
//!
//! Every field of kind's v1alpha4 types (`pkg/apis/config/v1alpha4/types.go`)
//! is read: `name`; `nodes[]` with `role`, `image`, `labels`, `extraMounts`,
//! `extraPortMappings`, `kubeadmConfigPatches` and
//! `kubeadmConfigPatchesJSON6902`; `networking`; `featureGates`;
//! `runtimeConfig`; the cluster-level kubeadm patches; and the containerd
//! patches. Decoding is strict as kind's is (kind decodes with
//! `KnownFields(true)`): an unknown field is an error naming its path and,
//! where one is close, the field that was meant
//! (`nodes[1].extraPortMapping: unknown field, did you mean
//! extraPortMappings?`). As in kind (whose YAML library sets Go's zero value
//! for them), a field written as null or `""` counts as not written.
//!
//! Defaults are kind's (`default.go`): one control-plane node when `nodes`
//! is empty, role `control-plane`, ipFamily `ipv4`, apiServerAddress
//! `127.0.0.1`, apiServerPort 0 (kina picks a free port), podSubnet
//! `10.244.0.0/16`, serviceSubnet `10.96.0.0/16`, kubeProxyMode `iptables`,
//! a port mapping's listenAddress `0.0.0.0` and protocol `TCP`, mount
//! propagation `None`. Two differ on purpose: an unset `name` is kina's
//! `kina` where kind's is `kind`, and an unset node `image` stays unset so
//! that the command picks kina's default node image (kind's default,
//! `kindest/node`, is a container image for kind, not a kina node image).
//!
//! # kina's own settings: a second document in the same file
//!
//! What kind's schema has no field for (a node's CPUs and memory, the node
//! kernel, the kernel profiles nodes must pass) cannot go into the Cluster
//! document: kind rejects unknown fields, so the file would stop being a
//! kind config. It goes in a second YAML document of the same file, after
//! the Cluster document:
//!
//! ```yaml
//! kind: Cluster
//! apiVersion: kind.x-k8s.io/v1alpha4
//! nodes:
//! - role: control-plane
//! - role: worker
//! ---
//! kind: Kina
//! apiVersion: kina.dev/v1alpha1
//! cpus: 2                # every node (default 2)
//! memory: 4Gi            # every node: MiB as a number, or Mi/Gi (default 2048)
//! kernel: kernels/debian-cloud.toml          # kernel recipe (default: kina's)
//! kernelProfiles: [kubernetes-base, ptp]     # default: kubernetes-base, ptp
//! nodes:                 # optional, by position in the Cluster's nodes
//! - {}
//! - cpus: 4
//!   memory: 8Gi
//! ```
//!
//! One file rather than a second one, because kind reads only the first
//! document of its config file (`encoding.Parse` decodes one document with
//! `yaml.Unmarshal` and `Decoder.Decode`), so the same file still works with
//! `kind create cluster --config`, and the settings that size the nodes
//! stay next to the nodes they size, with no second flag or file to keep in
//! step. That is also why the Kina document must come after the Cluster
//! document: kina refuses the other order, which kind could not read.
//!
//! # What kina cannot do
//!
//! [`ClusterConfig::parse`] refuses, naming the field, what kina cannot do
//! on any provider (IPv6 and dual-stack, a second control-plane node) along
//! with kind's own checks. [`ClusterConfig::unsupported_on`] lists what a
//! given provider cannot honour (a mount's propagation across a VM boundary,
//! SCTP port forwarding, ...), so `create` can refuse before booting
//! anything instead of silently ignoring a field.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use kina_contract::cidr::Ipv4Cidr;
use std::path::{Path, PathBuf};

use kina_contract::node_spec::{Json6902Patch, KubeProxyMode, Role};
use serde::de::{DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_norway::Value as Yaml;

/// kind's config API version, the only one kind itself still reads.
pub const KIND_API_VERSION: &str = "kind.x-k8s.io/v1alpha4";
pub const KIND_KIND: &str = "Cluster";
/// The API version and kind of kina's own settings document.
pub const KINA_API_VERSION: &str = "kina.dev/v1alpha1";
pub const KINA_KIND: &str = "Kina";

/// The cluster name when the config names none (kind's is `kind`).
pub const DEFAULT_CLUSTER_NAME: &str = "kina";
/// A node's CPUs and memory when the Kina document sets none; the same as
/// `kina node create`'s defaults.
pub const DEFAULT_CPUS: u32 = 2;
pub const DEFAULT_MEMORY_MIB: u32 = 2048;

/// Where kina runs nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// QEMU VMs on a Linux host, on QEMU's user-mode network.
    Qemu,
    /// Apple's `container` VMs on macOS.
    AppleContainer,
}

/// Which document of the file a [`FieldError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Document {
    /// The file as a whole, or its `kind: Cluster` document.
    Cluster,
    /// The `kind: Kina` document.
    Kina,
}

/// One problem with the config, at the field it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub document: Document,
    /// kind's field path, e.g. `nodes[1].extraPortMappings[0].hostPort`;
    /// empty for the file or document as a whole.
    pub path: String,
    pub message: String,
}

impl FieldError {
    fn cluster(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            document: Document::Cluster,
            path: path.into(),
            message: message.into(),
        }
    }

    fn kina(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            document: Document::Kina,
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.document == Document::Kina {
            f.write_str("Kina document: ")?;
        }
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read cluster config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cluster config {source_name} is not valid:{}", list(errors))]
    Invalid {
        source_name: String,
        errors: Vec<FieldError>,
    },
}

fn list(errors: &[FieldError]) -> String {
    errors.iter().map(|e| format!("\n  {e}")).collect()
}

// ---------------------------------------------------------------------------
// kind's schema (v1alpha4), field for field.

/// kind's `Cluster`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Cluster {
    // Checked before decoding; fields so that strict decoding knows them.
    kind: String,
    api_version: String,
    /// Overridden by `--name`; [`ClusterConfig::name`] applies the default.
    pub name: Option<String>,
    /// One control-plane node when the config lists none.
    pub nodes: Vec<Node>,
    pub networking: Networking,
    /// Feature gates for every Kubernetes component.
    pub feature_gates: BTreeMap<String, bool>,
    /// kube-apiserver's `--runtime-config`, e.g. `api/alpha: "false"`.
    #[serde(deserialize_with = "scalar_map")]
    pub runtime_config: BTreeMap<String, String>,
    /// RFC 7386 merge patches for the kubeadm config, as YAML strings that
    /// may hold several documents; applied before the nodes' own.
    pub kubeadm_config_patches: Vec<String>,
    #[serde(rename = "kubeadmConfigPatchesJSON6902")]
    pub kubeadm_config_patches_json6902: Vec<PatchJson6902>,
    /// TOML merge patches for containerd's config.
    pub containerd_config_patches: Vec<String>,
    /// RFC 6902 patches for containerd's config, as YAML or JSON strings.
    #[serde(rename = "containerdConfigPatchesJSON6902")]
    pub containerd_config_patches_json6902: Vec<String>,
}

impl Default for Cluster {
    fn default() -> Self {
        Self {
            kind: KIND_KIND.into(),
            api_version: KIND_API_VERSION.into(),
            name: None,
            nodes: vec![],
            networking: Networking::default(),
            feature_gates: BTreeMap::new(),
            runtime_config: BTreeMap::new(),
            kubeadm_config_patches: vec![],
            kubeadm_config_patches_json6902: vec![],
            containerd_config_patches: vec![],
            containerd_config_patches_json6902: vec![],
        }
    }
}

/// kind's `Node`: one VM of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Node {
    pub role: Role,
    /// The node image; `None`: the command's default kina node image.
    pub image: Option<String>,
    /// Labels the node registers with (kubelet `--node-labels`).
    #[serde(deserialize_with = "scalar_map")]
    pub labels: BTreeMap<String, String>,
    pub extra_mounts: Vec<Mount>,
    pub extra_port_mappings: Vec<PortMapping>,
    /// Applied after the cluster's patches.
    pub kubeadm_config_patches: Vec<String>,
    #[serde(rename = "kubeadmConfigPatchesJSON6902")]
    pub kubeadm_config_patches_json6902: Vec<PatchJson6902>,
}

impl Default for Node {
    fn default() -> Self {
        Self {
            role: Role::ControlPlane,
            image: None,
            labels: BTreeMap::new(),
            extra_mounts: vec![],
            extra_port_mappings: vec![],
            kubeadm_config_patches: vec![],
            kubeadm_config_patches_json6902: vec![],
        }
    }
}

/// kind's `Mount`: a host directory inside the node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Mount {
    /// A relative path is relative to the directory kina runs in, as in
    /// kind ([`Mount::absolute_host_path`]).
    pub host_path: String,
    pub container_path: String,
    pub read_only: bool,
    pub selinux_relabel: bool,
    pub propagation: Propagation,
}

impl Mount {
    /// `hostPath` made absolute against `cwd`, as kind's providers do.
    pub fn absolute_host_path(&self, cwd: &Path) -> PathBuf {
        cwd.join(&self.host_path)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum Propagation {
    /// Private: mounts made later under it stay on their side.
    #[default]
    None,
    /// rslave: later host mounts under it appear in the node.
    HostToContainer,
    /// rshared: later mounts under it appear on both sides.
    Bidirectional,
}

/// kind's `PortMapping`: a host port forwarded to a node port.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct PortMapping {
    pub container_port: i32,
    /// 0 (and kind's -1, "the backend picks"): kina picks a free port.
    pub host_port: i32,
    pub listen_address: String,
    pub protocol: Protocol,
}

impl Default for PortMapping {
    fn default() -> Self {
        Self {
            container_port: 0,
            host_port: 0,
            listen_address: "0.0.0.0".into(),
            protocol: Protocol::Tcp,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        }
    }
}

/// kind's `PatchJSON6902`: an RFC 6902 patch for the kubeadm document of
/// this group, version and kind; `patch` is YAML (or JSON) text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PatchJson6902 {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub patch: String,
}

/// kind's `Networking`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Networking {
    pub ip_family: IpFamily,
    pub api_server_address: String,
    /// 0 (and kind's -1): kina picks a free port.
    pub api_server_port: i32,
    pub pod_subnet: String,
    pub service_subnet: String,
    #[serde(rename = "disableDefaultCNI")]
    pub disable_default_cni: bool,
    pub kube_proxy_mode: KubeProxyMode,
    /// Search domains for the nodes; `None`: inherited (kind distinguishes
    /// unset from an empty list, which means none).
    pub dns_search: Option<Vec<String>>,
}

impl Default for Networking {
    fn default() -> Self {
        Self {
            ip_family: IpFamily::Ipv4,
            api_server_address: "127.0.0.1".into(),
            api_server_port: 0,
            pod_subnet: "10.244.0.0/16".into(),
            service_subnet: "10.96.0.0/16".into(),
            disable_default_cni: false,
            kube_proxy_mode: KubeProxyMode::Iptables,
            dns_search: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    #[default]
    Ipv4,
    Ipv6,
    Dual,
}

// ---------------------------------------------------------------------------
// kina's own document.

/// The `kind: Kina` document: what kind's schema has no place for.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct KinaSettings {
    kind: String,
    api_version: String,
    /// CPUs of every node without its own `nodes[i].cpus`.
    pub cpus: u32,
    /// Memory of every node without its own `nodes[i].memory`.
    pub memory: MemoryMib,
    /// The kernel recipe nodes boot (relative to the directory kina runs
    /// in); `None`: the command's default.
    pub kernel: Option<PathBuf>,
    /// The kernel profiles every node must pass; `None`: the node spec's
    /// default (kubernetes-base and ptp).
    pub kernel_profiles: Option<Vec<String>>,
    /// Per-node settings, by position in the Cluster document's `nodes`.
    pub nodes: Vec<KinaNode>,
}

impl Default for KinaSettings {
    fn default() -> Self {
        Self {
            kind: KINA_KIND.into(),
            api_version: KINA_API_VERSION.into(),
            cpus: DEFAULT_CPUS,
            memory: MemoryMib(DEFAULT_MEMORY_MIB),
            kernel: None,
            kernel_profiles: None,
            nodes: vec![],
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KinaNode {
    pub cpus: Option<u32>,
    pub memory: Option<MemoryMib>,
}

/// A memory size in MiB, written as a number of MiB (`2048`) or as a
/// Kubernetes-style quantity in `Mi` or `Gi` (`2048Mi`, `4Gi`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryMib(pub u32);

impl<'de> Deserialize<'de> for MemoryMib {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = MemoryMib;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a memory size: MiB as a number (2048) or a quantity (2048Mi, 4Gi)")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<MemoryMib, E> {
                u32::try_from(v)
                    .map(MemoryMib)
                    .map_err(|_| E::custom(format!("{v} MiB is more than kina can give a node")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<MemoryMib, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("{v} is not a memory size")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MemoryMib, E> {
                parse_memory(v).map(MemoryMib).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

fn parse_memory(text: &str) -> Result<u32, String> {
    let bad = || {
        format!(
            "`{text}` is not a memory size: write MiB as a number (2048) or a quantity in Mi or Gi (2048Mi, 4Gi)"
        )
    };
    let t = text.trim();
    let (digits, factor) = if let Some(n) = t.strip_suffix("Gi") {
        (n, 1024)
    } else if let Some(n) = t.strip_suffix("Mi") {
        (n, 1)
    } else {
        (t, 1)
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    digits
        .parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("`{text}` is more than kina can give a node"))
}

/// What one node gets from the Kina document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeResources {
    pub cpus: u32,
    pub memory_mib: u32,
}

// ---------------------------------------------------------------------------
// The parsed file.

/// A checked cluster config: kind's Cluster document with kind's defaults
/// applied, kina's settings, and the kubeadm patches already turned into
/// JSON for the node spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    pub cluster: Cluster,
    pub kina: KinaSettings,
    patches: Patches,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Patches {
    cluster: PatchSet,
    /// One per node of `cluster.nodes`.
    nodes: Vec<PatchSet>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PatchSet {
    merge: Vec<Value>,
    json6902: Vec<Json6902Patch>,
}

impl Default for ClusterConfig {
    /// kind's config when none is given: one control-plane node.
    fn default() -> Self {
        let mut cluster = Cluster::default();
        cluster.nodes.push(Node::default());
        Self {
            cluster,
            kina: KinaSettings::default(),
            patches: Patches {
                cluster: PatchSet::default(),
                nodes: vec![PatchSet::default()],
            },
        }
    }
}

impl ClusterConfig {
    /// Reads `path` (`-`: standard input, as kind's `--config -`).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let read = if path == Path::new("-") {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(path)
        };
        let text = read.map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|errors| ConfigError::Invalid {
            source_name: path.display().to_string(),
            errors,
        })
    }

    /// Parses, defaults and checks a config file's text; every problem
    /// found is returned, each naming its field.
    pub fn parse(text: &str) -> Result<Self, Vec<FieldError>> {
        let (cluster_doc, kina_doc) = split_documents(text)?;
        let mut errors = Vec::new();
        let mut cluster_doc = cluster_doc;
        check_cluster_fields(&mut cluster_doc, &mut errors);
        let mut kina_doc = kina_doc;
        if let Some(doc) = kina_doc.as_mut() {
            check_kina_fields(doc, &mut errors);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut cluster: Cluster = decode(cluster_doc, Document::Cluster).map_err(|e| vec![e])?;
        let kina: KinaSettings = match kina_doc {
            Some(doc) => decode(doc, Document::Kina).map_err(|e| vec![e])?,
            None => KinaSettings::default(),
        };
        if cluster.nodes.is_empty() {
            cluster.nodes.push(Node::default());
        }
        let patches = validate(&cluster, &kina, &mut errors);
        if errors.is_empty() {
            Ok(Self {
                cluster,
                kina,
                patches,
            })
        } else {
            Err(errors)
        }
    }

    /// The cluster's name: the config's, else `kina`.
    pub fn name(&self) -> &str {
        self.cluster.name.as_deref().unwrap_or(DEFAULT_CLUSTER_NAME)
    }

    /// The CPUs and memory of node `index` (of `cluster.nodes`).
    pub fn node_resources(&self, index: usize) -> NodeResources {
        let own = self.kina.nodes.get(index);
        NodeResources {
            cpus: own.and_then(|n| n.cpus).unwrap_or(self.kina.cpus),
            memory_mib: own.and_then(|n| n.memory).unwrap_or(self.kina.memory).0,
        }
    }

    /// The cluster-level kubeadm patches as the node spec carries them
    /// (`KubernetesSettings::kubeadm_config_patches` and
    /// `kubeadm_config_patches_json6902`): the merge patches, one JSON value
    /// per YAML document of kind's patch strings, and the JSON 6902 patches.
    pub fn cluster_kubeadm_patches(&self) -> (Vec<Value>, Vec<Json6902Patch>) {
        (
            self.patches.cluster.merge.clone(),
            self.patches.cluster.json6902.clone(),
        )
    }

    /// Node `node_index`'s own kubeadm patches, for the node spec's
    /// `kubeadm_config_patches` and `kubeadm_config_patches_json6902`;
    /// kina-init applies them after the cluster's, so each document sees
    /// kind's order: cluster merge, cluster JSON 6902, node merge, node
    /// JSON 6902. An index past the nodes has none.
    pub fn node_kubeadm_patches(&self, node_index: usize) -> (Vec<Value>, Vec<Json6902Patch>) {
        self.patches
            .nodes
            .get(node_index)
            .map(|node| (node.merge.clone(), node.json6902.clone()))
            .unwrap_or_default()
    }

    /// The fields `provider` cannot honour, each saying why; empty when the
    /// config can be created as written.
    pub fn unsupported_on(&self, provider: Provider) -> Vec<FieldError> {
        let mut out = Vec::new();
        let c = &self.cluster;
        if c.networking.disable_default_cni {
            out.push(FieldError::cluster(
                "networking.disableDefaultCNI",
                "kina's ptp CNI is part of the node: kina-init writes its config, the routes to \
                 the other nodes' pods and the masquerading at every boot, so there is no \
                 default CNI to leave out and another CNI would run alongside it",
            ));
        }
        if c.networking.dns_search.is_some() {
            out.push(FieldError::cluster(
                "networking.dnsSearch",
                "kina cannot set the nodes' DNS search domains yet: the node spec carries \
                 nameservers only",
            ));
        }
        if !c.containerd_config_patches.is_empty() {
            out.push(FieldError::cluster(
                "containerdConfigPatches",
                "kina cannot patch containerd's config yet: kina-init writes it itself and the \
                 node spec carries no containerd patches",
            ));
        }
        if !c.containerd_config_patches_json6902.is_empty() {
            out.push(FieldError::cluster(
                "containerdConfigPatchesJSON6902",
                "kina cannot patch containerd's config yet: kina-init writes it itself and the \
                 node spec carries no containerd patches",
            ));
        }
        if provider == Provider::AppleContainer && self.kina.kernel.is_some() {
            out.push(FieldError::kina(
                "kernel",
                "a kernel recipe is for QEMU nodes: Apple's `container --kernel` takes a kernel \
                 image, and kina does not turn its recipe's Debian kernel into one yet; leave \
                 `kernel` out to boot Apple's default kernel, which kina-init checks at boot",
            ));
        }
        if provider == Provider::Qemu {
            let node_nets = [
                (
                    qemu_node_network(),
                    "the QEMU provider's user network (each node's eth0)",
                ),
                (
                    Ipv4Cidr::parse(crate::provider::qemu::SEGMENT_SUBNET).ok(),
                    "the segment the QEMU provider's nodes meet each other on (eth1)",
                ),
            ];
            for (field, subnet) in [
                ("networking.podSubnet", &c.networking.pod_subnet),
                ("networking.serviceSubnet", &c.networking.service_subnet),
            ] {
                for (net, what) in &node_nets {
                    if let (Some(net), Ok(s)) = (net, Ipv4Cidr::parse(subnet))
                        && s.overlaps(net)
                    {
                        out.push(FieldError::cluster(
                            field,
                            format!(
                                "{subnet} overlaps {net}, {what}: a node could not tell its own \
                                 network from the cluster's addresses"
                            ),
                        ));
                    }
                }
            }
        }
        for (n, node) in c.nodes.iter().enumerate() {
            if let Some(image) = &node.image
                && is_kindest_image(image)
            {
                out.push(FieldError::cluster(
                    format!("nodes[{n}].image"),
                    format!(
                        "{image} is one of kind's node images, made to run as a container under \
                         systemd; a kina node boots a kina node image (`kina image list`; leave \
                         `image` out for kina's default)"
                    ),
                ));
            }
            for (m, mount) in node.extra_mounts.iter().enumerate() {
                let path = format!("nodes[{n}].extraMounts[{m}]");
                if provider == Provider::Qemu {
                    out.push(FieldError::cluster(
                        path,
                        format!(
                            "the QEMU provider cannot share host directories with a node yet \
                             (its VMs have no virtiofs or 9p device), so {} cannot appear at {}",
                            mount.host_path, mount.container_path
                        ),
                    ));
                    continue;
                }
                if mount.propagation != Propagation::None {
                    out.push(FieldError::cluster(
                        format!("{path}.propagation"),
                        format!(
                            "{:?} propagation needs the host and the node to share a kernel; a \
                             kina node is a VM with its own, so mounts made later on either side \
                             never reach the other (use None)",
                            mount.propagation
                        ),
                    ));
                }
                if mount.selinux_relabel {
                    out.push(FieldError::cluster(
                        format!("{path}.selinuxRelabel"),
                        "relabelling gives the host directory the SELinux label of the \
                         container using it (docker's `:Z`); macOS has no SELinux and a kina node \
                         is a VM, not a container with a label",
                    ));
                }
            }
            for (p, mapping) in node.extra_port_mappings.iter().enumerate() {
                if mapping.protocol == Protocol::Sctp {
                    let why = match provider {
                        Provider::Qemu => "QEMU's user-mode network forwards TCP and UDP only",
                        Provider::AppleContainer => {
                            "Apple's container forwards TCP and UDP ports only"
                        }
                    };
                    out.push(FieldError::cluster(
                        format!("nodes[{n}].extraPortMappings[{p}].protocol"),
                        format!("SCTP cannot be forwarded: {why}"),
                    ));
                }
            }
        }
        out
    }
}

fn is_kindest_image(image: &str) -> bool {
    let repo = image
        .strip_prefix("docker.io/")
        .or_else(|| image.strip_prefix("index.docker.io/"))
        .unwrap_or(image);
    repo.starts_with("kindest/node:") || repo.starts_with("kindest/node@") || repo == "kindest/node"
}

/// The network QEMU's user-mode networking puts a node on.
fn qemu_node_network() -> Option<Ipv4Cidr> {
    Ipv4Cidr::parse(&kina_qemu::node::user_network_interface().address).ok()
}

// ---------------------------------------------------------------------------
// Documents and unknown fields.

/// The file's Cluster document and its Kina document, if any.
fn split_documents(text: &str) -> Result<(Yaml, Option<Yaml>), Vec<FieldError>> {
    let mut cluster: Option<(usize, Yaml)> = None;
    let mut kina: Option<(usize, Yaml)> = None;
    let mut errors = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        let n = i + 1;
        let mut doc = match Yaml::deserialize(de) {
            Ok(doc) => doc,
            Err(e) => return Err(vec![FieldError::cluster("", format!("not YAML: {e}"))]),
        };
        if let Err(e) = doc.apply_merge() {
            return Err(vec![FieldError::cluster("", format!("document {n}: {e}"))]);
        }
        if doc.is_null() {
            continue;
        }
        if !doc.is_mapping() {
            errors.push(FieldError::cluster(
                "",
                format!("document {n} is not a mapping of fields"),
            ));
            continue;
        }
        let api_version = doc.get("apiVersion").and_then(Yaml::as_str).unwrap_or("");
        let kind = doc.get("kind").and_then(Yaml::as_str).unwrap_or("");
        match (api_version, kind) {
            (KIND_API_VERSION, KIND_KIND) => match &cluster {
                Some((first, _)) => errors.push(FieldError::cluster(
                    "",
                    format!("documents {first} and {n} are both `kind: Cluster`; a config has one"),
                )),
                None => cluster = Some((n, doc)),
            },
            (KINA_API_VERSION, KINA_KIND) => match &kina {
                Some((first, _)) => errors.push(FieldError::kina(
                    "",
                    format!("documents {first} and {n} are both `kind: Kina`; a config has one"),
                )),
                None => kina = Some((n, doc)),
            },
            ("", _) => errors.push(FieldError::cluster(
                "",
                format!(
                    "document {n} has no apiVersion: a cluster config is `apiVersion: \
                     {KIND_API_VERSION}`, `kind: {KIND_KIND}`"
                ),
            )),
            (KIND_API_VERSION, other) => errors.push(FieldError::cluster(
                "kind",
                format!(
                    "unknown kind `{other}` for apiVersion {KIND_API_VERSION} (it is {KIND_KIND})"
                ),
            )),
            (v, _) if v.starts_with("kind.x-k8s.io/") => errors.push(FieldError::cluster(
                "apiVersion",
                format!("{v}: kina reads kind's current config version, {KIND_API_VERSION}"),
            )),
            (KINA_API_VERSION, other) => errors.push(FieldError::kina(
                "kind",
                format!(
                    "unknown kind `{other}` for apiVersion {KINA_API_VERSION} (it is {KINA_KIND})"
                ),
            )),
            (v, _) if v.starts_with("kina.dev/") => errors.push(FieldError::kina(
                "apiVersion",
                format!("{v}: this kina reads {KINA_API_VERSION}"),
            )),
            (v, k) => errors.push(FieldError::cluster(
                "",
                format!(
                    "document {n} is `apiVersion: {v}`, `kind: {k}`: a cluster config holds one \
                     `{KIND_API_VERSION}` {KIND_KIND} document, then optionally one \
                     `{KINA_API_VERSION}` {KINA_KIND} document"
                ),
            )),
        }
    }
    if let (Some((c, _)), Some((k, _))) = (&cluster, &kina)
        && k < c
    {
        errors.push(FieldError::kina(
            "",
            format!(
                "document {k} comes before the Cluster document ({c}): kind reads only the \
                 first document of a file, so put the Cluster first and the file still works \
                 with kind"
            ),
        ));
    }
    match cluster {
        Some((_, doc)) if errors.is_empty() => Ok((doc, kina.map(|(_, d)| d))),
        None if errors.is_empty() => Err(vec![FieldError::cluster(
            "",
            format!("no `apiVersion: {KIND_API_VERSION}`, `kind: {KIND_KIND}` document"),
        )]),
        _ => Err(errors),
    }
}

/// Where a field that is unknown at one level does belong.
struct Elsewhere<'a> {
    fields: &'static [&'static str],
    hint: &'a str,
}

const KINA_DOC_HINT: &str = "is one of kina's own settings, which kind's schema has no place \
                             for: put it in a `kind: Kina`, `apiVersion: kina.dev/v1alpha1` \
                             document after the Cluster document in the same file";

fn check_cluster_fields(doc: &mut Yaml, errors: &mut Vec<FieldError>) {
    let d = Document::Cluster;
    check_fields(
        doc,
        d,
        "",
        "the Cluster document",
        fields_of::<Cluster>(),
        &[
            Elsewhere {
                fields: fields_of::<Networking>(),
                hint: "belongs under `networking:`",
            },
            Elsewhere {
                fields: fields_of::<Node>(),
                hint: "is a node's field: put it in an entry of `nodes:`",
            },
            Elsewhere {
                fields: fields_of::<KinaSettings>(),
                hint: KINA_DOC_HINT,
            },
        ],
        errors,
    );
    if let Some(networking) = doc.get_mut("networking") {
        check_fields(
            networking,
            d,
            "networking",
            "networking",
            fields_of::<Networking>(),
            &[],
            errors,
        );
    }
    check_json6902_fields(doc, "", errors);
    for list in [
        "kubeadmConfigPatches",
        "containerdConfigPatches",
        "containerdConfigPatchesJSON6902",
    ] {
        check_patch_texts(doc, "", list, errors);
    }
    if let Some(Yaml::Sequence(nodes)) = doc.get_mut("nodes") {
        for (i, node) in nodes.iter_mut().enumerate() {
            let path = format!("nodes[{i}]");
            check_fields(
                node,
                d,
                &path,
                "a node",
                fields_of::<Node>(),
                &[
                    Elsewhere {
                        fields: fields_of::<KinaNode>(),
                        hint: "is one of kina's own settings, which kind's schema has no place \
                               for: put it in the same entry of the `nodes:` of a `kind: Kina` \
                               document after the Cluster document",
                    },
                    Elsewhere {
                        fields: fields_of::<Mount>(),
                        hint: "belongs in an entry of `extraMounts:`",
                    },
                    Elsewhere {
                        fields: fields_of::<PortMapping>(),
                        hint: "belongs in an entry of `extraPortMappings:`",
                    },
                ],
                errors,
            );
            let nested = [
                ("extraMounts", "an extra mount", fields_of::<Mount>()),
                (
                    "extraPortMappings",
                    "a port mapping",
                    fields_of::<PortMapping>(),
                ),
            ];
            for (list, what, fields) in nested {
                if let Some(Yaml::Sequence(items)) = node.get_mut(list) {
                    for (j, item) in items.iter_mut().enumerate() {
                        check_fields(
                            item,
                            d,
                            &format!("{path}.{list}[{j}]"),
                            what,
                            fields,
                            &[Elsewhere {
                                fields: fields_of::<Node>(),
                                hint: "is a node's field: check the indentation",
                            }],
                            errors,
                        );
                    }
                }
            }
            check_json6902_fields(node, &path, errors);
            check_patch_texts(node, &path, "kubeadmConfigPatches", errors);
        }
    }
}

/// kind's patches are text holding YAML (or TOML); a patch written as
/// YAML structure instead (no `|`) is a common slip worth its own words.
fn check_patch_texts(parent: &Yaml, path: &str, list: &str, errors: &mut Vec<FieldError>) {
    if let Some(Yaml::Sequence(items)) = parent.get(list) {
        for (i, item) in items.iter().enumerate() {
            if item.is_mapping() || item.is_sequence() {
                errors.push(FieldError::cluster(
                    format!("{}[{i}]", join(path, list)),
                    "a patch is YAML text, not YAML structure: write `- |` and the patch \
                     indented below it",
                ));
            }
        }
    }
}

fn check_json6902_fields(parent: &mut Yaml, path: &str, errors: &mut Vec<FieldError>) {
    let list = "kubeadmConfigPatchesJSON6902";
    if let Some(Yaml::Sequence(items)) = parent.get_mut(list) {
        for (j, item) in items.iter_mut().enumerate() {
            let item_path = format!("{}[{j}]", join(path, list));
            if let Some(patch) = item.get("patch")
                && (patch.is_mapping() || patch.is_sequence())
            {
                errors.push(FieldError::cluster(
                    format!("{item_path}.patch"),
                    "a patch is YAML text, not YAML structure: write `patch: |` and the \
                     operations indented below it",
                ));
            }
            check_fields(
                item,
                Document::Cluster,
                &item_path,
                "a JSON 6902 patch",
                fields_of::<PatchJson6902>(),
                &[],
                errors,
            );
        }
    }
}

fn check_kina_fields(doc: &mut Yaml, errors: &mut Vec<FieldError>) {
    let d = Document::Kina;
    check_fields(
        doc,
        d,
        "",
        "the Kina document",
        fields_of::<KinaSettings>(),
        &[Elsewhere {
            fields: fields_of::<Cluster>(),
            hint: "is a field of kind's schema: it belongs in the Cluster document",
        }],
        errors,
    );
    if let Some(Yaml::Sequence(nodes)) = doc.get_mut("nodes") {
        for (i, node) in nodes.iter_mut().enumerate() {
            check_fields(
                node,
                d,
                &format!("nodes[{i}]"),
                "a Kina node",
                fields_of::<KinaNode>(),
                &[Elsewhere {
                    fields: fields_of::<Node>(),
                    hint: "is a field of kind's schema: it belongs in the Cluster document's node",
                }],
                errors,
            );
        }
    }
}

/// Drops fields written as null or `""` (kind's YAML decoding leaves
/// those at Go's zero value, i.e. unset) and reports fields `fields` does
/// not have. Values that are not mappings are left to typed decoding.
fn check_fields(
    value: &mut Yaml,
    document: Document,
    path: &str,
    what: &str,
    fields: &[&str],
    elsewhere: &[Elsewhere<'_>],
    errors: &mut Vec<FieldError>,
) {
    let Yaml::Mapping(map) = value else {
        return;
    };
    map.retain(|_, v| !(v.is_null() || v.as_str() == Some("")));
    for key in map.keys() {
        let Some(key) = key.as_str() else {
            errors.push(FieldError {
                document,
                path: path.to_string(),
                message: format!("{what} has a key that is not a string: {key:?}"),
            });
            continue;
        };
        if fields.contains(&key) {
            continue;
        }
        let message = if let Some(e) = elsewhere.iter().find(|e| e.fields.contains(&key)) {
            format!("unknown field: `{key}` {}", e.hint)
        } else if let Some(near) = nearest(key, fields) {
            format!("unknown field, did you mean {near}?")
        } else {
            format!("unknown field: {what} has {}", fields.join(", "))
        };
        errors.push(FieldError {
            document,
            path: join(path, key),
            message,
        });
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The field `key` most likely meant: the same but for case, or within a
/// small edit distance.
fn nearest<'a>(key: &str, fields: &[&'a str]) -> Option<&'a str> {
    if let Some(f) = fields.iter().find(|f| f.eq_ignore_ascii_case(key)) {
        return Some(f);
    }
    let limit = match key.chars().count() {
        0..=4 => 1,
        5..=10 => 2,
        _ => 3,
    };
    fields
        .iter()
        .map(|f| (edit_distance(key, f), *f))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, f)| f)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The field names serde's derive gives a struct (renames applied): the
/// derive hands them to `deserialize_struct`, which this deserializer
/// records before failing on purpose.
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _refused = T::deserialize(FieldNames(&mut fields));
    fields
}

struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("only structs have field names"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(serde::de::Error::custom("field names recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// Typed decoding; a failure names the field's path.
fn decode<T: DeserializeOwned>(doc: Yaml, document: Document) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let mut path = String::new();
        for segment in e.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => path.push_str(&format!("[{index}]")),
                serde_path_to_error::Segment::Map { key } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                serde_path_to_error::Segment::Enum { .. } => {}
                serde_path_to_error::Segment::Unknown => path.push_str(".?"),
            }
        }
        FieldError {
            document,
            path,
            message: e.inner().to_string(),
        }
    })
}

/// A map whose values (and keys) may be written as any YAML scalar: kind's
/// YAML library reads `ingress-ready: true` into a string field as "true".
fn scalar_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let map = BTreeMap::<Scalar, Scalar>::deserialize(d)?;
    Ok(map.into_iter().map(|(k, v)| (k.0, v.0)).collect())
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar(String::new()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------
// Checks.

/// The longest cluster name: node names add up to 15 characters
/// (`-control-plane2`) and must stay valid hostnames and Apple container
/// names (63).
pub const MAX_CLUSTER_NAME: usize = 48;

/// A cluster name is kind's (lowercase letters, digits, `.` and `-`),
/// starting with a letter or digit, so it is never empty, `.`, `..` or a
/// flag: it names a directory kina removes on `kina down`.
pub fn check_cluster_name(name: &str) -> Result<(), String> {
    crate::cluster_name::check(name)
}

fn validate(cluster: &Cluster, kina: &KinaSettings, errors: &mut Vec<FieldError>) -> Patches {
    let e = |path: &str, message: String| FieldError::cluster(path, message);

    if let Some(name) = &cluster.name
        && let Err(problem) = check_cluster_name(name)
    {
        errors.push(e("name", problem));
    }

    let net = &cluster.networking;
    if net.ip_family != IpFamily::Ipv4 {
        let family = if net.ip_family == IpFamily::Ipv6 {
            "ipv6"
        } else {
            "dual"
        };
        errors.push(e(
            "networking.ipFamily",
            format!(
                "{family} is not supported: kina supports ipv4 only (nodes get IPv4 addresses, \
                 and kina's ptp CNI, routes between nodes and masquerading are IPv4)"
            ),
        ));
    }
    if net.api_server_address.parse::<IpAddr>().is_err() {
        errors.push(e(
            "networking.apiServerAddress",
            format!("`{}` is not an IP address", net.api_server_address),
        ));
    }
    if !(-1..=65535).contains(&net.api_server_port) {
        errors.push(e(
            "networking.apiServerPort",
            format!(
                "{} is not a port (0 lets kina pick one)",
                net.api_server_port
            ),
        ));
    }
    let pod = subnet(errors, "networking.podSubnet", &net.pod_subnet);
    let service = subnet(errors, "networking.serviceSubnet", &net.service_subnet);
    if let Some(pod) = pod {
        // kube-controller-manager gives every node a /24 of it
        // (--node-cidr-mask-size, 24 for IPv4).
        let per_node = if pod.prefix <= 24 {
            1u64 << (24 - pod.prefix)
        } else {
            0
        };
        if per_node < cluster.nodes.len() as u64 {
            errors.push(e(
                "networking.podSubnet",
                format!(
                    "{} is too small: every node gets a /24 of it, and there are {} node(s)",
                    net.pod_subnet,
                    cluster.nodes.len()
                ),
            ));
        }
    }
    if let Some(service) = service
        && service.prefix < 12
    {
        errors.push(e(
            "networking.serviceSubnet",
            format!(
                "{} is too large: kube-apiserver accepts an IPv4 service range of /12 or smaller",
                net.service_subnet
            ),
        ));
    }
    if let (Some(pod), Some(service)) = (pod, service)
        && pod.overlaps(&service)
    {
        errors.push(e(
            "networking.serviceSubnet",
            format!(
                "{} overlaps the pod subnet {}: a service address must never be a pod's",
                net.service_subnet, net.pod_subnet
            ),
        ));
    }

    // Roles: kind needs one control-plane node; kina runs exactly one.
    let control_planes: Vec<usize> = cluster
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.role == Role::ControlPlane)
        .map(|(i, _)| i)
        .collect();
    match control_planes.as_slice() {
        [] => errors.push(e(
            "nodes",
            "no control-plane node: a cluster needs one (`role: control-plane`)".into(),
        )),
        [_] => {}
        [first, rest @ ..] => {
            for i in rest {
                errors.push(e(
                    &format!("nodes[{i}].role"),
                    format!(
                        "a second control-plane node (nodes[{first}] is one): kina supports one \
                         control-plane node; kind's highly available control plane needs the \
                         external load balancer kind adds, which kina does not have"
                    ),
                ));
            }
        }
    }

    // Host ports: one listener per address, port and protocol, across
    // nodes; 0.0.0.0 and :: take the port on every address (kind's rule).
    let mut bindings: Vec<(String, IpAddr, i32, Protocol)> = Vec::new();
    if net.api_server_port > 0
        && let Ok(addr) = net.api_server_address.parse::<IpAddr>()
    {
        bindings.push((
            "networking.apiServerPort".into(),
            addr,
            net.api_server_port,
            Protocol::Tcp,
        ));
    }
    let mut patches = Patches {
        cluster: PatchSet {
            merge: merge_patches(
                &cluster.kubeadm_config_patches,
                "kubeadmConfigPatches",
                errors,
            ),
            json6902: json6902_patches(
                &cluster.kubeadm_config_patches_json6902,
                "kubeadmConfigPatchesJSON6902",
                errors,
            ),
        },
        nodes: Vec::new(),
    };
    for (n, node) in cluster.nodes.iter().enumerate() {
        for (m, mount) in node.extra_mounts.iter().enumerate() {
            let path = format!("nodes[{n}].extraMounts[{m}]");
            if mount.host_path.is_empty() {
                errors.push(e(
                    &format!("{path}.hostPath"),
                    "missing: the host path to mount".into(),
                ));
            }
            if !mount.container_path.starts_with('/') {
                errors.push(e(
                    &format!("{path}.containerPath"),
                    if mount.container_path.is_empty() {
                        "missing: where the node sees the mount".into()
                    } else {
                        format!("`{}` is not an absolute path", mount.container_path)
                    },
                ));
            }
        }
        for (p, mapping) in node.extra_port_mappings.iter().enumerate() {
            let path = format!("nodes[{n}].extraPortMappings[{p}]");
            if !(1..=65535).contains(&mapping.container_port) {
                errors.push(e(
                    &format!("{path}.containerPort"),
                    if mapping.container_port == 0 {
                        "missing: the node's port to forward to".into()
                    } else {
                        format!("{} is not a port", mapping.container_port)
                    },
                ));
            }
            if !(-1..=65535).contains(&mapping.host_port) {
                errors.push(e(
                    &format!("{path}.hostPort"),
                    format!("{} is not a port (0 lets kina pick one)", mapping.host_port),
                ));
                continue;
            }
            let Ok(addr) = mapping.listen_address.parse::<IpAddr>() else {
                errors.push(e(
                    &format!("{path}.listenAddress"),
                    format!("`{}` is not an IP address", mapping.listen_address),
                ));
                continue;
            };
            if mapping.host_port <= 0 {
                continue; // kina picks a free port
            }
            let taken = bindings.iter().find(|(_, a, port, proto)| {
                *port == mapping.host_port
                    && *proto == mapping.protocol
                    && (*a == addr || a.is_unspecified() || addr.is_unspecified())
            });
            if let Some((other, other_addr, _, _)) = taken {
                errors.push(e(
                    &format!("{path}.hostPort"),
                    format!(
                        "{}/{} on {} is already taken by {other} (on {other_addr})",
                        mapping.host_port,
                        mapping.protocol.as_str(),
                        addr,
                    ),
                ));
            } else {
                bindings.push((path.clone(), addr, mapping.host_port, mapping.protocol));
            }
        }
        patches.nodes.push(PatchSet {
            merge: merge_patches(
                &node.kubeadm_config_patches,
                &format!("nodes[{n}].kubeadmConfigPatches"),
                errors,
            ),
            json6902: json6902_patches(
                &node.kubeadm_config_patches_json6902,
                &format!("nodes[{n}].kubeadmConfigPatchesJSON6902"),
                errors,
            ),
        });
    }

    for (i, text) in cluster.containerd_config_patches.iter().enumerate() {
        if let Err(err) = text.parse::<toml::Table>() {
            let at = err.span().map_or(String::new(), |span| {
                let before = text.get(..span.start).unwrap_or(text);
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |n| n + 1) + 1;
                format!(" at line {line} column {column}")
            });
            errors.push(e(
                &format!("containerdConfigPatches[{i}]"),
                format!("not TOML: {}{at}", err.message().trim_end()),
            ));
        }
    }
    for (i, text) in cluster
        .containerd_config_patches_json6902
        .iter()
        .enumerate()
    {
        if let Err(message) = json_patch_ops(text) {
            errors.push(e(&format!("containerdConfigPatchesJSON6902[{i}]"), message));
        }
    }

    validate_kina(kina, cluster.nodes.len(), errors);
    patches
}

fn validate_kina(kina: &KinaSettings, nodes: usize, errors: &mut Vec<FieldError>) {
    if kina.cpus == 0 {
        errors.push(FieldError::kina("cpus", "a node needs at least 1 CPU"));
    }
    if kina.memory.0 == 0 {
        errors.push(FieldError::kina("memory", "a node needs memory"));
    }
    if let Some(profiles) = &kina.kernel_profiles {
        for (i, p) in profiles.iter().enumerate() {
            if p.trim().is_empty() {
                errors.push(FieldError::kina(
                    format!("kernelProfiles[{i}]"),
                    "empty: name a kernel profile (kernels/profiles)",
                ));
            }
        }
    }
    if kina.nodes.len() > nodes {
        errors.push(FieldError::kina(
            "nodes",
            format!(
                "{} entries, but the Cluster document has {nodes} node(s): entry i sets node i",
                kina.nodes.len()
            ),
        ));
    }
    for (i, node) in kina.nodes.iter().enumerate() {
        if node.cpus == Some(0) {
            errors.push(FieldError::kina(
                format!("nodes[{i}].cpus"),
                "a node needs at least 1 CPU",
            ));
        }
        if node.memory == Some(MemoryMib(0)) {
            errors.push(FieldError::kina(
                format!("nodes[{i}].memory"),
                "a node needs memory",
            ));
        }
    }
}

/// kind's merge patches: each string is a YAML stream whose every document
/// is one patch, matched to the kubeadm document of its `kind` (and
/// `apiVersion`, when given).
fn merge_patches(list: &[String], path: &str, errors: &mut Vec<FieldError>) -> Vec<Value> {
    let mut out = Vec::new();
    for (i, text) in list.iter().enumerate() {
        let path = format!("{path}[{i}]");
        for (d, de) in serde_norway::Deserializer::from_str(text).enumerate() {
            let doc = match Yaml::deserialize(de).and_then(|mut v| v.apply_merge().map(|()| v)) {
                Ok(doc) => doc,
                Err(err) => {
                    errors.push(FieldError::cluster(&path, format!("not YAML: {err}")));
                    break;
                }
            };
            let which = if d == 0 {
                String::new()
            } else {
                format!("document {} ", d + 1)
            };
            if doc.is_null() {
                continue;
            }
            if !doc.is_mapping() {
                errors.push(FieldError::cluster(
                    &path,
                    format!("{which}is not a mapping of kubeadm fields"),
                ));
                continue;
            }
            let json = match serde_json::to_value(&doc) {
                Ok(json) => json,
                Err(err) => {
                    errors.push(FieldError::cluster(
                        &path,
                        format!("{which}cannot be turned into JSON: {err}"),
                    ));
                    continue;
                }
            };
            if json
                .get("kind")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                errors.push(FieldError::cluster(
                    &path,
                    format!(
                        "{which}has no `kind`: a patch applies to the kubeadm document of its kind \
                         (InitConfiguration, ClusterConfiguration, JoinConfiguration, \
                         KubeletConfiguration, KubeProxyConfiguration)"
                    ),
                ));
                continue;
            }
            out.push(json);
        }
    }
    out
}

fn json6902_patches(
    list: &[PatchJson6902],
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Vec<Json6902Patch> {
    let mut out = Vec::new();
    for (i, p) in list.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let mut ok = true;
        if p.kind.is_empty() {
            errors.push(FieldError::cluster(
                format!("{path}.kind"),
                "missing: the patch applies to the kubeadm document of this kind",
            ));
            ok = false;
        }
        if p.version.is_empty() && !p.group.is_empty() {
            errors.push(FieldError::cluster(
                format!("{path}.version"),
                format!(
                    "missing while group is `{}`: the patch would match no document",
                    p.group
                ),
            ));
            ok = false;
        }
        match json_patch_ops(&p.patch) {
            Ok(patch) if ok => out.push(Json6902Patch {
                group: p.group.clone(),
                version: p.version.clone(),
                kind: p.kind.clone(),
                patch,
            }),
            Ok(_) => {}
            Err(message) => errors.push(FieldError::cluster(format!("{path}.patch"), message)),
        }
    }
    out
}

/// A JSON 6902 patch written as YAML or JSON text, as JSON.
fn json_patch_ops(text: &str) -> Result<Value, String> {
    let mut doc: Yaml = serde_norway::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    doc.apply_merge().map_err(|e| format!("not YAML: {e}"))?;
    if doc.is_null() {
        return Err(
            "empty: write the operations, e.g. `- op: add`, `path: ...`, `value: ...`".into(),
        );
    }
    let json =
        serde_json::to_value(&doc).map_err(|e| format!("cannot be turned into JSON: {e}"))?;
    serde_json::from_value::<json_patch::Patch>(json.clone()).map_err(|e| {
        format!("not a JSON 6902 patch (a list of operations with op, path and value): {e}")
    })?;
    Ok(json)
}

fn subnet(errors: &mut Vec<FieldError>, path: &str, text: &str) -> Option<Ipv4Cidr> {
    Ipv4Cidr::parse(text)
        .map_err(|message| errors.push(FieldError::cluster(path, message)))
        .ok()
}

#[cfg(test)]
mod tests;
