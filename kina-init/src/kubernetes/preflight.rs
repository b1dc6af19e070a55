//! What the node offers Kubernetes before kubeadm runs: the image's
//! programs, and which of kubeadm's preflight checks this node cannot pass.

use std::path::{Path, PathBuf};

use kina_contract::kubeadm::IgnoredCheck;
use kina_contract::node_spec::Role;

/// The programs the phase runs, all from the node image.
pub const REQUIRED_BINARIES: [&str; 3] = ["kubeadm", "kubelet", "kubectl"];

/// Looks `names` up in `dirs`; the missing ones are named all at once.
pub fn find_binaries(dirs: &[PathBuf], names: &[&str]) -> Result<Vec<PathBuf>, Vec<String>> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in names {
        match dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            Some(path) => found.push(path),
            None => missing.push(name.to_string()),
        }
    }
    if missing.is_empty() {
        Ok(found)
    } else {
        Err(missing)
    }
}

/// The preflight checks that cannot pass on this node, each with its
/// reason; everything else kubeadm checks as usual.
pub fn ignored_checks(
    role: &Role,
    cpus: usize,
    memory_mb: u64,
    kernel_config_found: bool,
) -> Vec<IgnoredCheck> {
    let mut ignored = Vec::new();
    if *role == Role::ControlPlane && cpus < 2 {
        ignored.push(IgnoredCheck {
            name: "NumCPU",
            why: format!(
                "the node has {cpus} CPU; kubeadm asks 2 of a production control plane, a local one runs on fewer"
            ),
        });
    }
    if *role == Role::ControlPlane && memory_mb < 1700 {
        ignored.push(IgnoredCheck {
            name: "Mem",
            why: format!(
                "the node has {memory_mb} MB; kubeadm asks 1700 MB of a production control plane"
            ),
        });
    }
    if !kernel_config_found {
        ignored.push(IgnoredCheck {
            name: "SystemVerification",
            why: "kubeadm's validator cannot read this kernel's configuration (none in /proc/config.gz or /boot); kina-init's kernel phase checked the running kernel against its profiles instead".into(),
        });
    }
    ignored
}

/// The node's CPUs and memory in MB, as kubeadm's preflight counts them.
pub(super) fn node_resources() -> (usize, u64) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024);
    (cpus, memory_mb)
}

/// Whether kubeadm's system validator will find the kernel's configuration.
pub(super) fn kernel_config_found() -> bool {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    [
        "/proc/config.gz".to_string(),
        format!("/boot/config-{release}"),
        format!("/lib/modules/{release}/config"),
    ]
    .iter()
    .any(|p| Path::new(p).exists())
}
