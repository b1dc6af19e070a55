//! Which Kubernetes release a node runs, and which kubeadm config API that
//! release reads.
//!
//! API versions (kubeadm's own release notes): `kubeadm.k8s.io/v1beta4` is
//! served from 1.31 and is the only one 1.36 accepts (v1beta3 was removed);
//! 1.30 only takes v1beta3. v1beta4 turned every `extraArgs` and
//! `kubeletExtraArgs` map into a list of `{name, value}` and moved the
//! discovery timeout into `timeouts`.

use std::fmt;

/// Oldest minor kina generates configuration for.
pub const OLDEST_MINOR: u32 = 30;

/// The first minor for which kind writes v1beta4 (kind's
/// `pkg/cluster/internal/kubeadm/config.go`, commit 22573271 "start using
/// v1beta4 in v1.36.0+"); before it kind writes v1beta3, so kind users'
/// patches that name `kubeadm.k8s.io/v1beta3` apply there.
pub const KIND_V1BETA4_FROM_MINOR: u32 = 36;

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

    /// Whether kind would write v1beta3 for this release (see
    /// [`KIND_V1BETA4_FROM_MINOR`]).
    pub fn kind_writes_v1beta3(self) -> bool {
        self.major == 1 && self.minor < KIND_V1BETA4_FROM_MINOR
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

    /// The kubeadm API a document's `apiVersion` names, if it is one.
    pub fn of_document(api_version: &str) -> Option<Self> {
        [Self::V1Beta3, Self::V1Beta4]
            .into_iter()
            .find(|a| a.as_str() == api_version)
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
