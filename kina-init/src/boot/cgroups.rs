//! The cgroups phase: cgroup v2 with the controllers kubelet needs.
//!
//! cgroup v2 lets a cgroup hand controllers to its children only while it has
//! no processes of its own, and Apple's runtime enables controllers only above
//! the container's cgroup. So kina-init first moves its processes into a child
//! cgroup, then enables every controller it was given for its children, then
//! checks that cpu, cpuset, memory and pids are there.

use std::path::{Path, PathBuf};

use kina_contract::status::PhaseId;

use super::{BootContext, Phase, PhaseFailure};

pub const REQUIRED_CONTROLLERS: [&str; 4] = ["cpu", "cpuset", "memory", "pids"];

/// Where kina-init's own processes move, beside the kubepods hierarchy.
pub const INIT_CGROUP: &str = "kina-init";

pub struct CgroupsPhase {
    /// The cgroup2 mount, `/sys/fs/cgroup` in a node.
    pub mount: PathBuf,
    /// This process's cgroup relative to the mount (from /proc/self/cgroup).
    pub own: String,
}

impl CgroupsPhase {
    pub fn for_this_process() -> Self {
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("0::").map(str::to_string))
            })
            .unwrap_or_else(|| "/".into());
        Self {
            mount: PathBuf::from("/sys/fs/cgroup"),
            own,
        }
    }
}

fn read(path: &Path) -> Result<String, PhaseFailure> {
    std::fs::read_to_string(path).map_err(|e| PhaseFailure {
        message: format!("reading {}: {e}", path.display()),
        hint: "mount cgroup2 at /sys/fs/cgroup (the mount phase does); kina nodes need cgroup v2"
            .into(),
    })
}

fn write(path: &Path, value: &str) -> Result<(), PhaseFailure> {
    std::fs::write(path, value).map_err(|e| PhaseFailure {
        message: format!("writing `{}` to {}: {e}", value.trim(), path.display()),
        hint: "kina-init needs write access to its cgroup (Apple container: --cap-add ALL)".into(),
    })
}

/// A kernel thread has no command line and is a child of kthreadd (pid 2)
/// or kthreadd itself.
fn is_kernel_thread(pid: &str) -> bool {
    if pid == "2" {
        return true;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // `pid (comm) state ppid …`; comm may hold spaces, so split after `)`.
    let ppid = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1));
    ppid == Some("2")
}

impl Phase for CgroupsPhase {
    fn id(&self) -> PhaseId {
        PhaseId::Cgroups
    }

    fn run(&mut self, _ctx: &mut BootContext) -> Result<String, PhaseFailure> {
        let dir = self.mount.join(self.own.trim_start_matches('/'));
        let available = read(&dir.join("cgroup.controllers"))?;
        let available: Vec<&str> = available.split_whitespace().collect();
        let missing: Vec<&str> = REQUIRED_CONTROLLERS
            .iter()
            .copied()
            .filter(|c| !available.contains(c))
            .collect();
        if !missing.is_empty() {
            return Err(PhaseFailure {
                message: format!(
                    "cgroup {} lacks controller(s) {} (it has: {})",
                    self.own,
                    missing.join(", "),
                    available.join(" ")
                ),
                hint: "the parent cgroup must delegate them: under Apple container use a release that enables controllers for containers; under QEMU the kernel needs CONFIG_CPUSETS, CONFIG_MEMCG, CONFIG_CGROUP_PIDS, CONFIG_CGROUP_SCHED".into(),
            });
        }
        // Move every process of this cgroup into the child, so controllers
        // can be enabled for children ("no internal processes" rule).
        let child = dir.join(INIT_CGROUP);
        std::fs::create_dir_all(&child).map_err(|e| PhaseFailure {
            message: format!("creating {}: {e}", child.display()),
            hint: "kina-init needs write access to its cgroup".into(),
        })?;
        let procs = read(&dir.join("cgroup.procs"))?;
        let mut moved = 0;
        for pid in procs.split_whitespace() {
            // Kernel threads (listed in the root cgroup of a VM) cannot
            // move and need not: the root cgroup is exempt from the rule.
            if is_kernel_thread(pid) {
                continue;
            }
            match write(&child.join("cgroup.procs"), pid) {
                Ok(()) => moved += 1,
                // It exited between the listing and the move.
                Err(_) if !Path::new("/proc").join(pid).exists() => {}
                Err(e) => return Err(e),
            }
        }
        let enable: Vec<String> = available.iter().map(|c| format!("+{c}")).collect();
        write(&dir.join("cgroup.subtree_control"), &enable.join(" "))?;
        // The kernel lists enabled controllers by name; a `+` prefix (what
        // was written) is accepted too.
        let enabled = read(&dir.join("cgroup.subtree_control"))?;
        let not_enabled: Vec<&str> = REQUIRED_CONTROLLERS
            .iter()
            .copied()
            .filter(|c| {
                !enabled
                    .split_whitespace()
                    .any(|e| e.trim_start_matches('+') == *c)
            })
            .collect();
        if !not_enabled.is_empty() {
            return Err(PhaseFailure {
                message: format!(
                    "enabling {} for children of {} did not take",
                    not_enabled.join(", "),
                    self.own
                ),
                hint: "another process may still be in the cgroup; `cat cgroup.procs` in it".into(),
            });
        }
        Ok(format!(
            "moved {moved} process(es) to {}/{INIT_CGROUP}; enabled {}",
            self.own.trim_end_matches('/'),
            available.join(" ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::tests_support::ctx;

    /// A directory shaped like a cgroup2 directory (test double: this
    /// machine's own cgroups must not be rearranged by a test, and its
    /// controllers are bound to cgroup v1).
    fn fake_cgroup(controllers: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join("container/abc");
        std::fs::create_dir_all(&own).unwrap();
        std::fs::write(own.join("cgroup.controllers"), format!("{controllers}\n")).unwrap();
        // Real user-space pids: kernel threads are recognised through /proc
        // and left where they are.
        let pids = format!(
            "{}\n{}\n",
            std::process::id(),
            std::os::unix::process::parent_id()
        );
        std::fs::write(own.join("cgroup.procs"), pids).unwrap();
        std::fs::write(own.join("cgroup.subtree_control"), "").unwrap();
        dir
    }

    #[test]
    fn processes_move_to_a_child_and_the_controllers_are_enabled_for_children() {
        let dir = fake_cgroup("cpuset cpu io memory pids");
        let mut phase = CgroupsPhase {
            mount: dir.path().into(),
            own: "/container/abc".into(),
        };
        let msg = phase.run(&mut ctx()).unwrap();
        assert!(msg.contains("moved 2 process(es)"), "{msg}");
        let own = dir.path().join("container/abc");
        assert_eq!(
            std::fs::read_to_string(own.join("cgroup.subtree_control")).unwrap(),
            "+cpuset +cpu +io +memory +pids"
        );
        assert!(own.join("kina-init").is_dir());
    }

    #[test]
    fn a_missing_controller_is_named_with_what_the_cgroup_has() {
        let dir = fake_cgroup("cpu memory pids");
        let err = CgroupsPhase {
            mount: dir.path().into(),
            own: "/container/abc".into(),
        }
        .run(&mut ctx())
        .unwrap_err();
        assert!(
            err.message.contains("lacks controller(s) cpuset")
                && err.message.contains("cpu memory pids"),
            "{err:?}"
        );
    }
}
