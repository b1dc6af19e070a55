//! The mount phase: the filesystems a node needs, mounting only what is
//! missing. Under QEMU kina-init is the kernel's init and usually nothing is
//! mounted yet, except that a kernel built with `CONFIG_DEVTMPFS_MOUNT=y` and
//! booted without an initramfs has already put devtmpfs on /dev; under
//! Apple's `container`, vminitd has already mounted /proc, /sys, cgroup2 and
//! /dev, and mounting them again would hide its work.

use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};

use kina_contract::status::PhaseId;

use super::{BootContext, Phase, PhaseFailure};

/// (mount point, filesystem type, data), in the order they are mounted:
/// /proc first, so that mountinfo can be read for everything after it.
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

/// (mount point, filesystem type) of each line of `/proc/self/mountinfo`
/// text, in the file's order, so a later entry for the same point is the
/// one mounted over the earlier. The point is field 5 with the kernel's
/// octal escapes for spaces and tabs undone; the type is the first field
/// after the `-` that ends the optional fields.
pub fn mounts(mountinfo: &str) -> Vec<(String, String)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let point = fields.nth(4)?;
            let fstype = fields.skip_while(|f| *f != "-").nth(1)?;
            Some((
                point.replace("\\040", " ").replace("\\011", "\t"),
                fstype.to_string(),
            ))
        })
        .collect()
}

/// Whether `fs` still has to be mounted on `path`: not if mountinfo shows
/// the same filesystem type already on top there. Another type there is an
/// error naming both, since mounting over it would hide what someone else
/// put there on purpose. With no mountinfo (no /proc yet), nothing is
/// mounted as far as kina-init can tell.
pub fn needs_mount(path: &Path, fs: &str, mountinfo: Option<&str>) -> Result<bool, String> {
    let Some(mountinfo) = mountinfo else {
        return Ok(true);
    };
    match mounts(mountinfo)
        .into_iter()
        .rev()
        .find(|(point, _)| Path::new(point) == path)
    {
        None => Ok(true),
        Some((_, found)) if found == fs => Ok(false),
        Some((_, found)) => Err(format!(
            "{} already has {found} mounted on it, where kina-init mounts {fs}",
            path.display()
        )),
    }
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
        let mut done = Vec::new();
        for (point, fs, data) in NODE_MOUNTS {
            let path = self.root.join(point.trim_start_matches('/'));
            // Read again for every mount: as the kernel's init, what the
            // kernel mounted itself (devtmpfs) only shows once /proc is up.
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok();
            let missing = needs_mount(&path, fs, mountinfo.as_deref()).map_err(|message| {
                PhaseFailure {
                    message,
                    hint: "something mounted it before kina-init started (the kernel, an initramfs or the VM's init); kina-init does not mount over it".into(),
                }
            })?;
            if !missing {
                continue;
            }
            std::fs::create_dir_all(&path).map_err(|e| PhaseFailure {
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
26 24 0:8 / /sys/fs/cgroup rw,nosuid,nodev,noexec shared:4 master:1 - cgroup2 cgroup2 rw
27 22 0:9 / /tmp\\040dir rw - tmpfs tmpfs rw
";

    /// A kernel with `CONFIG_DEVTMPFS_MOUNT=y` booted with no initramfs, as
    /// mountinfo shows it once kina-init has mounted /proc.
    const DEVTMPFS_MOUNTED_BY_KERNEL: &str = "\
1 1 254:0 / / rw,relatime - ext4 /dev/root rw
2 1 0:5 / /dev rw,relatime - devtmpfs devtmpfs rw,size=1003312k,nr_inodes=250828,mode=755
21 1 0:20 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
";

    fn plan(mountinfo: Option<&str>) -> Result<Vec<&'static str>, String> {
        let mut todo = Vec::new();
        for (point, fs, _) in NODE_MOUNTS {
            if needs_mount(Path::new(point), fs, mountinfo)? {
                todo.push(*point);
            }
        }
        Ok(todo)
    }

    #[test]
    fn only_what_is_missing_is_mounted() {
        assert_eq!(
            plan(Some(APPLE_LIKE)).unwrap(),
            ["/dev/pts", "/dev/shm", "/run", "/tmp"]
        );
    }

    #[test]
    fn as_the_kernels_init_everything_is_mounted() {
        assert_eq!(plan(None).unwrap().len(), NODE_MOUNTS.len());
    }

    #[test]
    fn devtmpfs_the_kernel_mounted_is_kept() {
        let todo = plan(Some(DEVTMPFS_MOUNTED_BY_KERNEL)).unwrap();
        assert!(!todo.contains(&"/dev"), "{todo:?}");
        assert!(
            todo.contains(&"/dev/pts") && todo.contains(&"/sys"),
            "{todo:?}"
        );
    }

    #[test]
    fn another_filesystem_at_a_mount_point_is_an_error_naming_both() {
        let mountinfo = "\
21 1 0:20 / /proc rw - proc proc rw
30 1 0:31 / /dev rw,nosuid - tmpfs none rw,mode=755
";
        let err = plan(Some(mountinfo)).unwrap_err();
        assert!(
            err.contains("/dev") && err.contains("tmpfs") && err.contains("devtmpfs"),
            "{err}"
        );
    }

    #[test]
    fn the_filesystem_mounted_last_at_a_point_is_the_one_that_counts() {
        let stacked = "\
21 1 0:20 / /run rw - ext4 /dev/vda rw
22 21 0:21 / /run rw,nosuid - tmpfs tmpfs rw
";
        assert_eq!(
            needs_mount(Path::new("/run"), "tmpfs", Some(stacked)),
            Ok(false)
        );
    }

    #[test]
    fn escaped_mount_points_and_optional_fields_are_read() {
        let found = mounts(APPLE_LIKE);
        assert!(found.contains(&("/tmp dir".into(), "tmpfs".into())));
        assert!(found.contains(&("/sys/fs/cgroup".into(), "cgroup2".into())));
    }
}
