//! The containerd phase: its configuration for this node, a snapshotter the
//! root filesystem can carry, then containerd started under supervision and
//! waited for until its socket answers.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use kina_contract::containerd_config::sandbox::{pause_from_kubeadm_images, pause_image};
use kina_contract::containerd_config::{
    CONFIG_PATH, NodeRuntime, Snapshotter, cni_bin_dirs, config_text,
};
use kina_contract::status::PhaseId;

use super::{BootContext, Phase, PhaseFailure, go_buildinfo};
use crate::children;
use crate::supervise::{ServiceSpec, Supervisor};

/// The pause image containerd pins, and where it was learnt: from the
/// image's kubeadm (`kubeadm config images list` for its own version), so
/// containerd pins the image kubeadm pulls; from kina's per-minor table
/// when that kubeadm does not answer; the table's newest for an image
/// without kubeadm (no Kubernetes).
pub fn sandbox_image(root: &Path) -> Result<(String, String), PhaseFailure> {
    let kubeadm = children::NODE_PATH
        .split(':')
        .map(|d| root.join(d.trim_start_matches('/')).join("kubeadm"))
        .find(|p| p.is_file());
    let Some(kubeadm) = kubeadm else {
        let image = pause_image(None).map_err(|e| PhaseFailure {
            message: e.to_string(),
            hint: "this is a bug in kina".into(),
        })?;
        return Ok((image, "no kubeadm in the image".into()));
    };
    let run = |args: &[&str]| -> Result<String, String> {
        let out = children::output(Command::new(&kubeadm).args(args))
            .map_err(|e| format!("cannot run {}: {e}", kubeadm.display()))?;
        if !out.status.success() {
            return Err(format!(
                "`kubeadm {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let version = run(&["version", "-o", "short"])
        .map(|v| v.trim().to_string())
        .map_err(|message| PhaseFailure {
            message,
            hint: "the node image's kubeadm must run on this architecture".into(),
        })?;
    let listed =
        run(&["config", "images", "list", "--kubernetes-version", &version]).and_then(|out| {
            pause_from_kubeadm_images(&out)
                .ok_or_else(|| format!("kubeadm {version} listed no pause image"))
        });
    match listed {
        Ok(image) => Ok((image, format!("kubeadm {version}'s"))),
        Err(why) => {
            let image = pause_image(Some(&version)).map_err(|e| PhaseFailure {
                message: format!("{why}; {e}"),
                hint: "use a node image whose kubeadm runs `kubeadm config images list`".into(),
            })?;
            Ok((image, format!("kina's table for {version}, as {why}")))
        }
    }
}

pub use crate::containerd_socket::SOCKET;

/// containerd's major version and how it was learnt: from the import path
/// its `.go.buildinfo` records (`go_buildinfo`), without starting it; from
/// `containerd --version` when that cannot be read (a binary from before
/// Go 1.18, or not containerd's own build).
fn containerd_version(root: &Path) -> Result<(u32, String), PhaseFailure> {
    let binary = ["usr/local/bin/containerd", "usr/bin/containerd"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.is_file());
    let recorded = binary.as_deref().map(go_buildinfo::main_package);
    if let Some(Ok(package)) = &recorded
        && let Some(major) = go_buildinfo::containerd_major_of_package(package)
    {
        return Ok((major, format!("containerd {major}.x ({package})")));
    }
    let version = children::output(Command::new("containerd").arg("--version")).map_err(|e| {
        PhaseFailure {
            message: format!("cannot run containerd: {e}"),
            hint: "the node image needs containerd (recipes/base.toml installs Debian's)".into(),
        }
    })?;
    let text = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let major =
        kina_contract::containerd_config::containerd_major(&text).ok_or_else(|| PhaseFailure {
            message: format!("cannot read containerd's version from `{text}`"),
            hint: "install a containerd 1.7 or 2.x in the node image".into(),
        })?;
    Ok((major, text))
}

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

    fn run(&mut self, ctx: &mut BootContext) -> Result<String, PhaseFailure> {
        let (major, version_text) = containerd_version(&self.root)?;
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
        let (sandbox, sandbox_source) = sandbox_image(&self.root)?;
        let node = NodeRuntime {
            containerd_major: major,
            snapshotter,
            sandbox_image: sandbox.clone(),
            cni_bin_dirs: dirs.iter().map(|d| d.to_string()).collect(),
        };
        let patched = config_text(&ctx.spec, &node).map_err(|e| PhaseFailure {
            message: format!("containerd's configuration: {e}"),
            hint: "fix that patch in the cluster config (`kina up --dry-run` prints the \
                   configuration it applies to) and create the cluster again"
                .into(),
        })?;
        let config = self.root.join(CONFIG_PATH.trim_start_matches('/'));
        let text = &patched.text;
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
        let patches = match (patched.applied, patched.skipped.as_slice()) {
            (0, []) => String::new(),
            (n, []) => format!(", {n} config patch(es) applied"),
            (n, skipped) => format!(
                ", {n} config patch(es) applied, {} skipped: {}",
                skipped.len(),
                skipped.join("; ")
            ),
        };
        Ok(format!(
            "{version_text}: {} snapshotter{why}, sandbox {sandbox} ({sandbox_source}){patches}, answering after {} ms",
            snapshotter.name(),
            started.elapsed().as_millis()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// TEST DOUBLE for the image's kubeadm (no Kubernetes release can be
    /// downloaded here): answers `version -o short` and `config images list
    /// --kubernetes-version V` in kubeadm's text output, one image per line
    /// (kubeadm's reference page kubeadm_config_images_list.md), here
    /// kubeadm v1.35.8's list; any other version fails as `list` would on
    /// an unparseable one. `listing` false: the list subcommand fails.
    fn stand_in_kubeadm(root: &Path, listing: bool) {
        let bin = root.join("usr/bin");
        std::fs::create_dir_all(&bin).unwrap();
        let script = format!(
            "#!/bin/sh\n\
             case \"$*\" in\n\
             'version -o short') echo v1.35.8 ;;\n\
             'config images list --kubernetes-version v1.35.8') {} ;;\n\
             *) echo \"unexpected: $*\" >&2; exit 1 ;;\n\
             esac\n",
            if listing {
                "printf '%s\\n' registry.k8s.io/kube-apiserver:v1.35.8 registry.k8s.io/coredns/coredns:v1.12.1 registry.k8s.io/pause:3.10.1 registry.k8s.io/etcd:3.6.5-0"
            } else {
                "echo 'this version is not supported' >&2; exit 1"
            }
        );
        let path = bin.join("kubeadm");
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn the_sandbox_image_is_the_one_the_images_kubeadm_lists() {
        let root = tempfile::tempdir().unwrap();
        // No kubeadm: an image without Kubernetes gets the newest pause.
        let (image, why) = sandbox_image(root.path()).unwrap();
        assert_eq!(image, "registry.k8s.io/pause:3.10.2");
        assert!(why.contains("no kubeadm"), "{why}");
        stand_in_kubeadm(root.path(), true);
        let (image, why) = sandbox_image(root.path()).unwrap();
        assert_eq!(image, "registry.k8s.io/pause:3.10.1");
        assert_eq!(why, "kubeadm v1.35.8's");
        // A kubeadm whose list fails: kina's table for its version.
        stand_in_kubeadm(root.path(), false);
        let (image, why) = sandbox_image(root.path()).unwrap();
        assert_eq!(image, "registry.k8s.io/pause:3.10.1");
        assert!(why.starts_with("kina's table for v1.35.8"), "{why}");
        assert!(why.contains("not supported"), "{why}");
    }

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
