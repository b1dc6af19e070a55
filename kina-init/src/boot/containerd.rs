//! The containerd phase: its configuration for this node, a snapshotter the
//! root filesystem can carry, then containerd started under supervision and
//! waited for until its socket answers.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::containerd_config::{Snapshotter, cni_bin_dirs, config_toml, containerd_major};
use kina_contract::status::PhaseId;

use super::{BootContext, Phase, PhaseFailure};
use crate::children;
use crate::supervise::{ServiceSpec, Supervisor};

/// The pause image containerd pins; kubeadm pulls the same one for the
/// Kubernetes version when a node has Kubernetes.
pub const SANDBOX_IMAGE: &str = "registry.k8s.io/pause:3.10";

pub const SOCKET: &str = "/run/containerd/containerd.sock";

/// crictl's configuration, so `crictl ps` in a node talks to containerd
/// without flags or its warnings about guessing endpoints, as in kind's
/// node image.
pub const CRICTL_CONFIG: &str = "/etc/crictl.yaml";

/// Writes [`CRICTL_CONFIG`] under `root`, pointing crictl's runtime and
/// image endpoints at [`SOCKET`].
pub fn write_crictl_config(root: &Path) -> Result<(), String> {
    let path = root.join(CRICTL_CONFIG.trim_start_matches('/'));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let text = format!("runtime-endpoint: unix://{SOCKET}\nimage-endpoint: unix://{SOCKET}\n");
    std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

pub struct ContainerdPhase {
    pub root: PathBuf,
    pub supervisor: Arc<Mutex<Supervisor>>,
    /// How long containerd may take to answer; TCG boots are slow.
    pub timeout: Duration,
}

/// Whether an overlay mount works with its directories on the filesystem
/// of `dir` (it does not on overlay or some network filesystems, and not
/// without the overlay module): tried for real, as containerd's own check
/// does, and cleaned up.
pub fn overlay_works(dir: &Path) -> Result<(), String> {
    let base = dir.join(".kina-overlay-check");
    let _ = std::fs::remove_dir_all(&base);
    let (lower, upper, work, merged) = (
        base.join("lower"),
        base.join("upper"),
        base.join("work"),
        base.join("merged"),
    );
    for d in [&lower, &upper, &work, &merged] {
        std::fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let result = mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| format!("overlay mount on {}: {e}", dir.display()));
    if result.is_ok() {
        let _ = umount2(&merged, MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir_all(&base);
    result
}

impl Phase for ContainerdPhase {
    fn id(&self) -> PhaseId {
        PhaseId::Containerd
    }

    fn run(&mut self, _ctx: &mut BootContext) -> Result<String, PhaseFailure> {
        let version =
            children::output(Command::new("containerd").arg("--version")).map_err(|e| {
                PhaseFailure {
                    message: format!("cannot run containerd: {e}"),
                    hint: "the node image needs containerd (recipes/base.toml installs Debian's)"
                        .into(),
                }
            })?;
        let version_text = String::from_utf8_lossy(&version.stdout).trim().to_string();
        let major = containerd_major(&version_text).ok_or_else(|| PhaseFailure {
            message: format!("cannot read containerd's version from `{version_text}`"),
            hint: "install a containerd 1.7 or 2.x in the node image".into(),
        })?;
        let state = self.root.join("var/lib/containerd");
        std::fs::create_dir_all(&state).map_err(|e| PhaseFailure {
            message: format!("creating {}: {e}", state.display()),
            hint: "the node's root filesystem must be writable".into(),
        })?;
        let (snapshotter, why) = match overlay_works(&state) {
            Ok(()) => (Snapshotter::Overlayfs, String::new()),
            Err(e) => (Snapshotter::Native, format!(" (overlay unusable: {e})")),
        };
        let dirs = cni_bin_dirs(&self.root);
        if dirs.is_empty() {
            return Err(PhaseFailure {
                message: "no CNI plugins (ptp) in /opt/cni/bin or /usr/lib/cni".into(),
                hint: "the node image needs the CNI plugins (containernetworking-plugins)".into(),
            });
        }
        let config = self.root.join("etc/containerd/config.toml");
        let text = config_toml(major, snapshotter, SANDBOX_IMAGE, &dirs);
        if let Some(dir) = config.parent() {
            std::fs::create_dir_all(dir).map_err(|e| PhaseFailure {
                message: format!("creating {}: {e}", dir.display()),
                hint: "the node's /etc must be writable".into(),
            })?;
        }
        std::fs::write(&config, text).map_err(|e| PhaseFailure {
            message: format!("writing {}: {e}", config.display()),
            hint: "the node's /etc must be writable".into(),
        })?;
        write_crictl_config(&self.root).map_err(|message| PhaseFailure {
            message,
            hint: "the node's /etc must be writable".into(),
        })?;
        let log = self.root.join("var/log/kina/containerd.log");
        self.supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(ServiceSpec {
                name: "containerd".into(),
                program: "containerd".into(),
                args: vec!["--config".into(), config.display().to_string()],
                log: log.clone(),
            });
        let socket = self.root.join(SOCKET.trim_start_matches('/'));
        let started = Instant::now();
        while UnixStream::connect(&socket).is_err() {
            if started.elapsed() > self.timeout {
                return Err(PhaseFailure {
                    message: format!(
                        "containerd did not answer on {} within {} s",
                        socket.display(),
                        self.timeout.as_secs()
                    ),
                    hint: format!(
                        "read {} (kina-init keeps restarting it with backoff)",
                        log.display()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(format!(
            "{version_text}: {} snapshotter{why}, answering after {} ms",
            match snapshotter {
                Snapshotter::Overlayfs => "overlayfs",
                Snapshotter::Native => "native",
            },
            started.elapsed().as_millis()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crictl_finds_containerd_without_flags() {
        let root = tempfile::tempdir().unwrap();
        write_crictl_config(root.path()).unwrap();
        let text = std::fs::read_to_string(root.path().join("etc/crictl.yaml")).unwrap();
        assert_eq!(
            text,
            "runtime-endpoint: unix:///run/containerd/containerd.sock\n\
             image-endpoint: unix:///run/containerd/containerd.sock\n"
        );
        // The same socket kubelet is given.
        assert!(text.contains(kina_contract::kubeadm::CRI_SOCKET));
        // A restarted kina-init rewrites it in place.
        write_crictl_config(root.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.path().join("etc/crictl.yaml")).unwrap(),
            text
        );
    }
}
