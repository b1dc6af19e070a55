//! The node spec: everything the host tells a node, in one versioned schema
//! shared by the `kina` CLI (which writes it) and kina-init (which reads it).
//!
//! Providers deliver it as a file inside the node (never in argv or the
//! environment, which the host can list), so the secrets added by later
//! schema versions (bootstrap token, PKI) stay private.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::kubernetes_spec::{
    CertificateAuthority, Json6902Patch, KubeProxyMode, KubernetesSettings, Secret,
};
pub use crate::role::Role;
use crate::status::{PhaseId, UnknownPhase};

pub const NODE_SPEC_VERSION: u32 = 1;

/// Where kina-init looks for the spec inside a node.
pub const NODE_SPEC_PATH: &str = "/etc/kina/node.json";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub name: String,
    /// The peer's node address on the cluster's L2 segment.
    pub address: String,
    pub pod_cidr: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub version: u32,
    pub name: String,
    pub cluster: String,
    pub role: Role,
    /// This node's pod CIDR; the ptp CNI's host-local range.
    pub pod_cidr: String,
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// Kernel profiles the node must pass before it goes on booting.
    #[serde(default = "default_profiles")]
    pub required_kernel_profiles: Vec<String>,
    /// Kubernetes settings; absent for nodes of a base image.
    #[serde(default)]
    pub kubernetes: Option<KubernetesSettings>,
    /// kind's `networking.disableDefaultCNI`: kina-init writes no CNI
    /// configuration, routes no peer's pod CIDR and masquerades nothing;
    /// the user's CNI does all of that. Here rather than in `kubernetes`
    /// because it shapes every node's network, with Kubernetes or without.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable_default_cni: bool,
    /// kind's `networking.dnsSearch`: the search line of the node's
    /// /etc/resolv.conf. `None` keeps what the node has (kind: inherited
    /// from the host); an empty list removes every search line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_search: Option<Vec<String>>,
    /// kind's `containerdConfigPatches`: TOML merge patches for the
    /// containerd configuration kina-init writes, applied in order
    /// (`crate::containerd_config::patch`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containerd_config_patches: Vec<String>,
    /// kind's `containerdConfigPatchesJSON6902`: RFC 6902 patches (each an
    /// array of operations, turned into JSON by the host) for the JSON form
    /// of that configuration, applied after the merge patches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containerd_config_patches_json6902: Vec<serde_json::Value>,
    /// The node's own address, for providers whose VMs come up with an
    /// unconfigured interface (QEMU). Apple's vminitd configures eth0
    /// itself, so its specs leave this out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<InterfaceConfig>,
    /// This node's own kubeadm patches (kind's per-node
    /// `kubeadmConfigPatches` and `kubeadmConfigPatchesJSON6902`), applied
    /// after the cluster's in `kubernetes`, as kind applies them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kubeadm_config_patches: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kubeadm_config_patches_json6902: Vec<Json6902Patch>,
    /// The node's link to the cluster's own L2 segment when that is not
    /// eth0: QEMU nodes keep eth0 on QEMU's user-mode network (egress, the
    /// API server's forward from the host) and meet each other on a second
    /// NIC. Its address is the node IP, and peers' pod CIDRs are routed
    /// through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_interface: Option<ClusterInterface>,
    /// Ends the boot after this phase (`kina up --stop-after`, for
    /// debugging): later phases are marked skipped and the node stays up.
    /// A [`PhaseId`]'s name, checked by [`NodeSpec::from_json`];
    /// [`NodeSpec::stop_after_phase`] reads it typed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_after: Option<String>,
    /// kind's `nodes[].labels`: the labels the kubelet registers the node
    /// with (its `node-labels` flag). Absent in specs written before kina
    /// carried them, which therefore still read.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterInterface {
    /// The kernel's name for the link, e.g. `eth1`.
    pub device: String,
    /// IPv4 address with prefix length, e.g. `10.89.0.2/24`.
    pub address: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    /// IPv4 address with prefix length, e.g. `10.0.2.15/24`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Written to /etc/resolv.conf when not empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
}

fn default_profiles() -> Vec<String> {
    vec!["kubernetes-base".into(), "ptp".into()]
}

#[derive(Debug, thiserror::Error)]
pub enum NodeSpecError {
    #[error("node spec {source_name}: {message}")]
    Invalid {
        source_name: String,
        message: String,
    },
    #[error(
        "node spec {source_name} has version {found}; this kina-init reads version {NODE_SPEC_VERSION}: use a node image built by the same kina as the CLI"
    )]
    Version { source_name: String, found: u32 },
}

impl NodeSpec {
    /// A spec naming no node, for running single phases by hand (and for
    /// the phases before the spec has been read).
    pub fn unnamed() -> Self {
        Self {
            version: NODE_SPEC_VERSION,
            name: String::new(),
            cluster: String::new(),
            role: Role::Worker,
            pod_cidr: String::new(),
            peers: vec![],
            required_kernel_profiles: vec![],
            kubernetes: None,
            disable_default_cni: false,
            dns_search: None,
            containerd_config_patches: vec![],
            containerd_config_patches_json6902: vec![],
            interface: None,
            kubeadm_config_patches: vec![],
            kubeadm_config_patches_json6902: vec![],
            cluster_interface: None,
            stop_after: None,
            node_labels: BTreeMap::new(),
        }
    }

    /// The link the node meets its peers on: the cluster interface when
    /// the spec has one, else `default` (eth0).
    pub fn node_link<'a>(&'a self, default: &'a str) -> &'a str {
        self.cluster_interface
            .as_ref()
            .map_or(default, |c| c.device.as_str())
    }

    /// The phase the boot ends after, if the spec names one; an error for a
    /// name that is no phase (only a spec not read by `from_json` has one).
    pub fn stop_after_phase(&self) -> Result<Option<PhaseId>, UnknownPhase> {
        self.stop_after.as_deref().map(str::parse).transpose()
    }

    /// Reads a spec; an error names the field (`kubernetes.bootstrap_token`)
    /// as well as the line and column. A spec of another version that does
    /// not parse is reported as the version mismatch it is, which says
    /// what to do.
    pub fn from_json(bytes: &[u8], source_name: &str) -> Result<Self, NodeSpecError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let parsed: Result<NodeSpec, _> = serde_path_to_error::deserialize(&mut de);
        let spec = match parsed {
            Ok(spec) => spec,
            Err(e) => {
                #[derive(serde::Deserialize)]
                struct Versioned {
                    version: u32,
                }
                if let Ok(Versioned { version }) = serde_json::from_slice(bytes)
                    && version != NODE_SPEC_VERSION
                {
                    return Err(NodeSpecError::Version {
                        source_name: source_name.to_string(),
                        found: version,
                    });
                }
                let path = e.path().to_string();
                let inner = e.into_inner();
                let message = if path == "." {
                    inner.to_string()
                } else {
                    format!("field `{path}`: {inner}")
                };
                return Err(NodeSpecError::Invalid {
                    source_name: source_name.to_string(),
                    message,
                });
            }
        };
        if let Err(e) = spec.stop_after_phase() {
            return Err(NodeSpecError::Invalid {
                source_name: source_name.to_string(),
                message: format!("stop_after {e}"),
            });
        }
        if spec.version != NODE_SPEC_VERSION {
            return Err(NodeSpecError::Version {
                source_name: source_name.to_string(),
                found: spec.version,
            });
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_round_trips_and_defaults_its_kernel_profiles() {
        let text = br#"{"version":1,"name":"kina-worker","cluster":"kina","role":"worker","pod_cidr":"10.244.1.0/24","peers":[{"name":"kina-control-plane","address":"192.168.64.2","pod_cidr":"10.244.0.0/24"}]}"#;
        let spec = NodeSpec::from_json(text, "test").unwrap();
        assert_eq!(spec.role, Role::Worker);
        assert_eq!(spec.required_kernel_profiles, ["kubernetes-base", "ptp"]);
        let again = NodeSpec::from_json(&serde_json::to_vec(&spec).unwrap(), "again").unwrap();
        assert_eq!(again, spec);
    }

    #[test]
    fn a_stop_phase_must_be_a_boot_phase_and_the_cluster_link_defaults_to_eth0() {
        let text = br#"{"version":1,"name":"n","cluster":"c","role":"worker","pod_cidr":"10.244.1.0/24","stop_after":"kubelet"}"#;
        let err = NodeSpec::from_json(text, "/etc/kina/node.json").unwrap_err();
        assert!(err.to_string().contains("stop_after `kubelet`"), "{err}");
        assert!(err.to_string().contains("containerd"), "{err}");
        let text = br#"{"version":1,"name":"n","cluster":"c","role":"worker","pod_cidr":"10.244.1.0/24","stop_after":"containerd","cluster_interface":{"device":"eth1","address":"10.89.0.3/24"}}"#;
        let spec = NodeSpec::from_json(text, "test").unwrap();
        assert_eq!(spec.stop_after.as_deref(), Some("containerd"));
        assert_eq!(spec.stop_after_phase(), Ok(Some(PhaseId::Containerd)));
        assert_eq!(spec.node_link("eth0"), "eth1");
        assert_eq!(NodeSpec::unnamed().node_link("eth0"), "eth0");
    }

    #[test]
    fn another_schema_version_or_unknown_fields_are_refused_by_name() {
        let err = NodeSpec::from_json(
            br#"{"version":2,"name":"n","cluster":"c","role":"worker","pod_cidr":"x"}"#,
            "/etc/kina/node.json",
        )
        .unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
        let err = NodeSpec::from_json(br#"{"version":1,"name":"n","cluster":"c","role":"worker","pod_cidr":"x","podCidr":"y"}"#, "spec").unwrap_err();
        assert!(err.to_string().contains("podCidr"), "{err}");
    }

    #[test]
    fn a_spec_of_another_version_is_reported_as_such_even_when_it_does_not_parse() {
        // A newer kina's spec, with a field this kina-init does not know.
        let err = NodeSpec::from_json(
            br#"{"version":7,"name":"n","cluster":"c","role":"worker","pod_cidr":"x","gpu":true}"#,
            "/etc/kina/node.json",
        )
        .unwrap_err();
        assert!(
            matches!(err, NodeSpecError::Version { found: 7, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("same kina"), "{err}");
    }

    #[test]
    fn a_wrongly_typed_nested_field_is_named_by_its_path() {
        let err = NodeSpec::from_json(
            br#"{"version":1,"name":"n","cluster":"c","role":"worker","pod_cidr":"x","cluster_interface":{"device":"eth1","address":7}}"#,
            "spec",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("field `cluster_interface.address`"), "{err}");
        assert!(err.contains("line 1 column"), "{err}");
    }
}
