//! The Kubernetes part of the node spec: cluster-wide settings (the same in
//! every node's spec) and what this node needs to join.
//!
//! The host may generate the cluster's CA and bootstrap token before any node
//! boots, so workers join as soon as the API server answers instead of
//! waiting for the control plane to print a join command. Those secrets
//! travel in the spec file (0600 inside the node) and are wrapped in
//! [`Secret`], whose `Debug` never shows them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::role::Role;

/// A value that must never reach a log: `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for writing it where it belongs (a 0600 file).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// kube-proxy's mode; `None` deploys no kube-proxy at all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KubeProxyMode {
    #[default]
    Iptables,
    Nftables,
    Ipvs,
    None,
}

impl KubeProxyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Iptables => "iptables",
            Self::Nftables => "nftables",
            Self::Ipvs => "ipvs",
            Self::None => "none",
        }
    }
}

/// One of kind's `kubeadmConfigPatchesJSON6902` entries: an RFC 6902 patch
/// for the kubeadm document of that group, version and kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Json6902Patch {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    pub kind: String,
    /// The operations, as a JSON array.
    pub patch: serde_json::Value,
}

/// The cluster CA kubeadm signs everything with, as kubeadm expects it in
/// /etc/kubernetes/pki/ca.{crt,key}.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateAuthority {
    pub cert_pem: String,
    pub key_pem: Secret,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSettings {
    pub pod_subnet: String,
    pub service_subnet: String,
    #[serde(default = "default_dns_domain")]
    pub dns_domain: String,
    /// `host:port` at which every node reaches the API server: kubeadm's
    /// controlPlaneEndpoint and the address workers join.
    pub control_plane_endpoint: String,
    /// More names and addresses for the API server's certificate, such as
    /// the host-facing address a kubeconfig on the host uses. The node's own
    /// address, 127.0.0.1 and localhost are always added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_server_cert_sans: Vec<String>,
    #[serde(default)]
    pub kube_proxy_mode: KubeProxyMode,
    /// Kubernetes feature gates for every component.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub feature_gates: BTreeMap<String, bool>,
    /// The API server's `--runtime-config`, e.g. `api/alpha` = `false`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub runtime_config: BTreeMap<String, String>,
    /// kind's `kubeadmConfigPatches` (merge patches), converted from YAML to
    /// JSON by the host; applied in order, before the JSON 6902 patches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kubeadm_config_patches: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kubeadm_config_patches_json6902: Vec<Json6902Patch>,
    /// `[a-z0-9]{6}.[a-z0-9]{16}`: created by `kubeadm init`, used by
    /// `kubeadm join`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_token: Option<Secret>,
    /// Given to the control plane only; without it kubeadm makes its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<CertificateAuthority>,
    /// `sha256:<hex>` of the CA's public key, which a joining node pins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_hash: Option<String>,
    /// Whether the control plane's boot waits for CoreDNS to be available.
    #[serde(default = "default_true")]
    pub wait_for_coredns: bool,
    /// Bound on joining (retried until the API server answers) and on
    /// waiting for readiness.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
}

fn default_dns_domain() -> String {
    "cluster.local".into()
}

fn default_true() -> bool {
    true
}

fn default_timeout_seconds() -> u64 {
    600
}

impl KubernetesSettings {
    /// What a node of `role` cannot start without, named in the error.
    pub fn check_for(&self, role: &Role) -> Result<(), String> {
        if let Some(token) = &self.bootstrap_token
            && !is_bootstrap_token(token.expose())
        {
            return Err(
                "kubernetes.bootstrap_token is not of the form [a-z0-9]{6}.[a-z0-9]{16}".into(),
            );
        }
        if !self.control_plane_endpoint.contains(':') {
            return Err(format!(
                "kubernetes.control_plane_endpoint `{}` is not host:port",
                self.control_plane_endpoint
            ));
        }
        if *role == Role::Worker {
            if self.bootstrap_token.is_none() {
                return Err("a worker's kubernetes.bootstrap_token is missing".into());
            }
            match &self.ca_cert_hash {
                Some(hash) if is_ca_cert_hash(hash) => {}
                Some(hash) => {
                    return Err(format!(
                        "kubernetes.ca_cert_hash `{hash}` is not sha256:<64 hex digits>"
                    ));
                }
                None => return Err("a worker's kubernetes.ca_cert_hash is missing".into()),
            }
        }
        Ok(())
    }
}

/// kubeadm's bootstrap token syntax (k8s.io/cluster-bootstrap:
/// `^([a-z0-9]{6})\.([a-z0-9]{16})$`).
pub fn is_bootstrap_token(token: &str) -> bool {
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    matches!(token.split_once('.'), Some((id, secret)) if ok(id, 6) && ok(secret, 16))
}

fn is_ca_cert_hash(hash: &str) -> bool {
    hash.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> KubernetesSettings {
        serde_json::from_str(
            r#"{"pod_subnet":"10.244.0.0/16","service_subnet":"10.96.0.0/16",
                "control_plane_endpoint":"10.0.2.15:6443",
                "bootstrap_token":"abcdef.0123456789abcdef",
                "ca_cert_hash":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}"#,
        )
        .unwrap()
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let mut s = settings();
        s.certificate_authority = Some(CertificateAuthority {
            cert_pem: "CERT".into(),
            key_pem: Secret::new("-----BEGIN PRIVATE KEY-----KEYBYTES"),
        });
        let debug = format!("{s:?}");
        assert!(!debug.contains("abcdef.0123"), "{debug}");
        assert!(!debug.contains("KEYBYTES"), "{debug}");
        assert!(debug.contains("<redacted>"));
        // The file itself carries them.
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("abcdef.0123456789abcdef") && json.contains("KEYBYTES"));
    }

    #[test]
    fn defaults_are_those_of_kind() {
        let s = settings();
        assert_eq!(s.dns_domain, "cluster.local");
        assert_eq!(s.kube_proxy_mode, KubeProxyMode::Iptables);
        assert!(s.wait_for_coredns);
        assert!(s.check_for(&Role::Worker).is_ok());
    }

    #[test]
    fn a_worker_without_join_credentials_is_refused_by_field() {
        let mut s = settings();
        s.ca_cert_hash = Some("sha256:beef".into());
        assert!(
            s.check_for(&Role::Worker)
                .unwrap_err()
                .contains("ca_cert_hash")
        );
        s.ca_cert_hash = None;
        assert!(
            s.check_for(&Role::Worker)
                .unwrap_err()
                .contains("ca_cert_hash is missing")
        );
        // The control plane makes its own CA when given none.
        assert!(s.check_for(&Role::ControlPlane).is_ok());
        s.bootstrap_token = Some(Secret::new("ABCDEF.0123456789abcdef"));
        assert!(
            s.check_for(&Role::ControlPlane)
                .unwrap_err()
                .contains("bootstrap_token")
        );
    }

    #[test]
    fn bootstrap_token_syntax_is_kubeadms() {
        assert!(is_bootstrap_token("abcdef.0123456789abcdef"));
        for bad in [
            "abcdef0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcdeg0",
            "ABCDEF.0123456789abcdef",
            "abcdef.0123456789abcde_",
        ] {
            assert!(!is_bootstrap_token(bad), "{bad}");
        }
    }
}
