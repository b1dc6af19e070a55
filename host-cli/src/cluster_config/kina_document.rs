//! The `kind: Kina` document's types: a node's CPUs and memory, the node
//! kernel and the kernel profiles, which kind's schema has no field for.
//!
//! They are kept apart from kind's schema in the parent module so that what
//! is kind's (and must stay readable by kind) and what is kina's own stay
//! easy to tell apart.

use std::fmt;
use std::path::PathBuf;

use serde::de::Visitor;
use serde::{Deserialize, Deserializer};

use super::{DEFAULT_CPUS, DEFAULT_MEMORY_MIB, KINA_API_VERSION, KINA_KIND};

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
    /// The kernel nodes boot, on either provider: a kernel kina built or
    /// pulled (its directory), or a Debian kernel recipe file (QEMU only),
    /// paths relative to the directory kina runs in; `crate::node_kernel`
    /// tells them apart. `None`: the command's `--kernel`, else QEMU's
    /// built-in Debian kernel and Apple's default kernel.
    pub kernel: Option<PathBuf>,
    /// Any other kernel image Apple's `container run --kernel` boots
    /// instead of Apple's default kernel (relative to the directory kina
    /// runs in), for a CNI that kernel cannot carry (Cilium needs
    /// `CONFIG_BPF_JIT`). Not with `kernel`, which for Apple names the
    /// same thing; QEMU nodes boot what `kernel` names instead.
    pub kernel_image: Option<PathBuf>,
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
            kernel_image: None,
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
