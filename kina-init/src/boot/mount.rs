//! The mount phase: the filesystems a node needs, mounting only what is
//! missing. Under QEMU kina-init is the kernel's init and nothing is mounted
//! yet; under Apple's `container`, vminitd has already mounted /proc, /sys,
//! cgroup2 and /dev, and mounting them again would hide its work.

use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};

use kina_contract::status::PhaseId;

use super::{BootContext, Phase, PhaseFailure};

/// (mount point, filesystem type, flags, data).
pub const NODE_MOUNTS: &[(&str, &str, &str)] = &[
    ("/proc", "proc", ""),
    ("/sys", "sysfs", ""),
    ("/dev", "devtmpfs", "mode=0755"),
    ("/dev/pts", "devpts", "gid=5,mode=0620,ptmxmode=0666"),
    ("/dev/shm", "tmpfs", "mode=1777"),
    ("/sys/fs/cgroup", "cgroup2", "nsdelegate"),
    ("/run", "tmpfs", "mode=0755"),
    ("/tmp", "tmpfs", "mode=1777"),
];

/// Mount points listed in `/proc/self/mountinfo` text (field 5, with the
/// kernel's octal escapes for spaces and tabs undone).
pub fn mounted_points(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(|p| p.replace("\\040", " ").replace("\\011", "\t"))
        .collect()
}

/// The mounts of `NODE_MOUNTS` not yet present, under `root` (`/` in a node).
pub fn plan(root: &Path, mountinfo: Option<&str>) -> Vec<(PathBuf, &'static str, &'static str)> {
    let present = mountinfo.map(mounted_points).unwrap_or_default();
    NODE_MOUNTS
        .iter()
        .map(|(point, fs, data)| (root.join(point.trim_start_matches('/')), *fs, *data))
        .filter(|(path, _, _)| !present.iter().any(|p| Path::new(p) == path.as_path()))
        .collect()
}

pub struct MountPhase {
    pub root: PathBuf,
}

impl Phase for MountPhase {
    fn id(&self) -> PhaseId {
        PhaseId::Mount
    }

    fn writes_status_file(&self) -> bool {
        false
    }

    fn run(&mut self, _ctx: &mut BootContext) -> Result<String, PhaseFailure> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok();
        let todo = plan(&self.root, mountinfo.as_deref());
        let mut done = Vec::new();
        for (path, fs, data) in &todo {
            std::fs::create_dir_all(path).map_err(|e| PhaseFailure {
                message: format!("cannot create {}: {e}", path.display()),
                hint: "the node's root filesystem must be writable".into(),
            })?;
            let flags = match *fs {
                "proc" | "sysfs" | "cgroup2" => {
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC
                }
                "devtmpfs" | "devpts" => MsFlags::MS_NOSUID,
                _ => MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            };
            let data = (!data.is_empty()).then_some(*data);
            mount(Some(*fs), path.as_path(), Some(*fs), flags, data).map_err(|e| PhaseFailure {
                message: format!("mount({fs} on {}): {}", path.display(), e.desc()),
                hint: match *fs {
                    "cgroup2" => "the kernel needs cgroup v2 (CONFIG_CGROUPS); kina does not support cgroup v1 nodes".into(),
                    _ => format!("the kernel needs the {fs} filesystem; `kina kernel check` shows what it lacks"),
                },
            })?;
            done.push(format!("{}", path.display()));
        }
        // kubelet requires shared mount propagation for volume mounts.
        mount(
            None::<&str>,
            self.root.as_path(),
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_SHARED,
            None::<&str>,
        )
        .map_err(|e| PhaseFailure {
            message: format!("making {} shared: {}", self.root.display(), e.desc()),
            hint: "kina-init needs CAP_SYS_ADMIN (Apple container: --cap-add ALL)".into(),
        })?;
        Ok(if done.is_empty() {
            "everything was already mounted".to_string()
        } else {
            format!("mounted {}", done.join(" "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APPLE_LIKE: &str = "\
22 1 253:1 / / rw,relatime - ext4 /dev/vdb rw
23 22 0:5 / /proc rw,nosuid,nodev,noexec - proc proc rw
24 22 0:6 / /sys rw,nosuid,nodev,noexec - sysfs sysfs rw
25 22 0:7 / /dev rw,nosuid - devtmpfs devtmpfs rw,mode=755
26 24 0:8 / /sys/fs/cgroup rw,nosuid,nodev,noexec - cgroup2 cgroup2 rw
27 22 0:9 / /tmp\\040dir rw - tmpfs tmpfs rw
";

    #[test]
    fn only_what_is_missing_is_mounted() {
        let todo = plan(Path::new("/"), Some(APPLE_LIKE));
        let points: Vec<String> = todo
            .iter()
            .map(|(p, _, _)| p.display().to_string())
            .collect();
        assert_eq!(points, ["/dev/pts", "/dev/shm", "/run", "/tmp"]);
    }

    #[test]
    fn as_the_kernels_init_everything_is_mounted() {
        assert_eq!(plan(Path::new("/"), None).len(), NODE_MOUNTS.len());
    }

    #[test]
    fn escaped_mount_points_are_decoded() {
        assert!(mounted_points(APPLE_LIKE).contains(&"/tmp dir".to_string()));
    }
}
