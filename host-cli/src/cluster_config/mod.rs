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
//!
//! # Where things are
//!
//! This file holds kind's schema and [`ClusterConfig::parse`], which reads
//! a file in steps, each in a file of its own: `documents` splits the file
//! into its documents and reports unknown fields, `validate` runs kind's and
//! kina's checks on the decoded values, `patches` turns kind's patch strings
//! into the JSON the node spec carries. `kina_document` holds the Kina
//! document's types, and `provider_refusals` says what each provider cannot
//! honour.

mod documents;
mod kina_document;
mod patches;
mod provider_refusals;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use kina_contract::node_spec::{Json6902Patch, KubeProxyMode, Role};
use serde::Deserialize;
use serde_json::Value;

use documents::{check_cluster_fields, check_kina_fields, decode, scalar_map, split_documents};
pub use kina_document::{KinaNode, KinaSettings, MemoryMib, NodeResources};
use patches::{PatchSet, Patches};
pub use validate::check_cluster_name;
use validate::validate;

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
    pub fn cluster(path: impl Into<String>, message: impl Into<String>) -> Self {
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
    /// TOML merge patches for containerd's config, applied by kina-init as
    /// kind applies them (`kina_contract::containerd_config::patch`).
    pub containerd_config_patches: Vec<String>,
    /// RFC 6902 patches for the JSON form of containerd's config, as YAML
    /// or JSON strings.
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
    /// Search domains for the nodes' resolv.conf; `None`: the node's own
    /// (kind: inherited from the host); an empty list means none.
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
// The parsed file.

/// A checked cluster config: kind's Cluster document with kind's defaults
/// applied, kina's settings, and the kubeadm patches already turned into
/// JSON for the node spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    pub cluster: Cluster,
    pub kina: KinaSettings,
    patches: Patches,
    /// `containerdConfigPatchesJSON6902`, each turned into its JSON
    /// operations at parse time.
    containerd_json6902: Vec<Value>,
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
            containerd_json6902: vec![],
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
        let (patches, containerd_json6902) = validate(&cluster, &kina, &mut errors);
        if errors.is_empty() {
            Ok(Self {
                cluster,
                kina,
                patches,
                containerd_json6902,
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

    /// kind's `containerdConfigPatchesJSON6902` as the node spec carries
    /// them (`NodeSpec::containerd_config_patches_json6902`): each patch's
    /// operations as JSON.
    pub fn containerd_patches_json6902(&self) -> Vec<Value> {
        self.containerd_json6902.clone()
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
}

#[cfg(test)]
mod tests;
