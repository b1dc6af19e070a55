//! The sysctls phase: what kubelet, kube-proxy and the pod network expect,
//! written and read back.
//!
//! Apple's `container` mounts /proc/sys read-only unless the node was started
//! with `--read-only-path NONE`; that is reported precisely instead of as a
//! generic write error.

use std::path::{Path, PathBuf};

use kina_contract::status::PhaseId;

use super::{BootContext, Phase, PhaseFailure};

/// (key, value, required). Bridge keys exist only when br_netfilter is loaded.
pub const NODE_SYSCTLS: &[(&str, &str, bool)] = &[
    ("net.ipv4.ip_forward", "1", true),
    ("net.ipv6.conf.all.forwarding", "1", false),
    ("net.bridge.bridge-nf-call-iptables", "1", false),
    ("net.bridge.bridge-nf-call-ip6tables", "1", false),
    ("fs.inotify.max_user_watches", "524288", true),
    ("fs.inotify.max_user_instances", "512", true),
    // kubelet's --protect-kernel-defaults expects these values.
    ("vm.overcommit_memory", "1", true),
    ("vm.panic_on_oom", "0", true),
    ("kernel.panic", "10", true),
    ("kernel.panic_on_oops", "1", true),
    ("kernel.keys.root_maxkeys", "1000000", false),
    ("kernel.keys.root_maxbytes", "25000000", false),
];

pub struct SysctlsPhase {
    /// `/proc/sys`, or a test directory.
    pub root: PathBuf,
}

fn path_of(root: &Path, key: &str) -> PathBuf {
    root.join(key.replace('.', "/"))
}

impl Phase for SysctlsPhase {
    fn id(&self) -> PhaseId {
        PhaseId::Sysctls
    }

    fn run(&mut self, _ctx: &mut BootContext) -> Result<String, PhaseFailure> {
        let mut set = 0;
        let mut skipped = Vec::new();
        let mut read_only_ok = 0;
        let mut read_only_wrong = Vec::new();
        for (key, value, required) in NODE_SYSCTLS {
            let path = path_of(&self.root, key);
            if !path.exists() {
                if *required {
                    return Err(PhaseFailure {
                        message: format!("{key} does not exist in {}", self.root.display()),
                        hint: "the kernel lacks the feature behind it; `kina-init check-kernel` says which".into(),
                    });
                }
                skipped.push(*key);
                continue;
            }
            let same = |text: &str| {
                text.split_whitespace().collect::<Vec<_>>()
                    == value.split_whitespace().collect::<Vec<_>>()
            };
            if let Err(e) = std::fs::write(&path, format!("{value}\n")) {
                if e.raw_os_error() != Some(nix::errno::Errno::EROFS as i32) {
                    return Err(PhaseFailure {
                        message: format!("cannot set {key}={value}: {e}"),
                        hint: "kina-init needs CAP_SYS_ADMIN in its namespace (Apple container: --cap-add ALL)".into(),
                    });
                }
                // Apple's default: /proc/sys read-only. What already has the
                // needed value is fine; what does not is named.
                let current = std::fs::read_to_string(&path).unwrap_or_default();
                if same(&current) {
                    read_only_ok += 1;
                } else {
                    read_only_wrong.push(format!("{key} is {} (needs {value})", current.trim()));
                }
                continue;
            }
            let back = std::fs::read_to_string(&path).unwrap_or_default();
            if !same(&back) {
                return Err(PhaseFailure {
                    message: format!("{key}: wrote {value}, read back {}", back.trim()),
                    hint: "something else on the host overrides this value".into(),
                });
            }
            set += 1;
        }
        if !read_only_wrong.is_empty() {
            return Err(PhaseFailure {
                message: format!(
                    "{} is mounted read-only and {}",
                    self.root.display(),
                    read_only_wrong.join(", ")
                ),
                hint: "start the node with a writable /proc/sys (Apple container: --read-only-path NONE --masked-path NONE; kina does this)".into(),
            });
        }
        let mut summary = format!("{set} set and read back");
        if read_only_ok > 0 {
            summary.push_str(&format!(
                "; {} is read-only: {read_only_ok} already had the needed value",
                self.root.display()
            ));
        }
        if !skipped.is_empty() {
            summary.push_str(&format!("; absent: {}", skipped.join(", ")));
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::tests_support::ctx;

    fn fake_proc_sys(with_bridge: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (key, _, required) in NODE_SYSCTLS {
            if !required && key.starts_with("net.bridge") && !with_bridge {
                continue;
            }
            let p = path_of(dir.path(), key);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "0\n").unwrap();
        }
        dir
    }

    /// A directory standing in for /proc/sys (test double: the real one
    /// would change this machine's kernel settings).
    #[test]
    fn values_are_written_and_read_back_and_absent_bridge_keys_are_named() {
        let dir = fake_proc_sys(false);
        let mut phase = SysctlsPhase {
            root: dir.path().into(),
        };
        let msg = phase.run(&mut ctx()).unwrap();
        assert!(
            msg.contains("absent: net.bridge.bridge-nf-call-iptables"),
            "{msg}"
        );
        assert_eq!(
            std::fs::read_to_string(path_of(dir.path(), "net.ipv4.ip_forward")).unwrap(),
            "1\n"
        );
    }

    #[test]
    fn a_missing_required_key_fails_with_the_key_named() {
        let dir = fake_proc_sys(true);
        std::fs::remove_file(path_of(dir.path(), "net.ipv4.ip_forward")).unwrap();
        let err = SysctlsPhase {
            root: dir.path().into(),
        }
        .run(&mut ctx())
        .unwrap_err();
        assert!(err.message.contains("net.ipv4.ip_forward"), "{err:?}");
    }
}
