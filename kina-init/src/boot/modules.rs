//! The modules phase: load what the kernel phase found built as modules.
//!
//! Apple's kernels have no module support: the phase does nothing and says
//! so. On a distro kernel (QEMU), `modprobe` from the node image loads each
//! module with its dependencies from modules.dep, compressed or not; nothing
//! autoloads br_netfilter, for example.

use std::path::{Path, PathBuf};
use std::process::Command;

use kina_contract::kernel::Presence;
use kina_contract::status::PhaseId;

use super::{BootContext, Phase, PhaseFailure};

pub struct ModulesPhase {
    /// `/lib/modules`, or a test directory.
    pub modules_root: PathBuf,
    /// `/sys/module`, where a loaded (or built-in) module appears.
    pub sys_module: PathBuf,
    pub kernel_release: String,
}

impl ModulesPhase {
    pub fn for_running_kernel() -> Self {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            modules_root: PathBuf::from("/lib/modules"),
            sys_module: PathBuf::from("/sys/module"),
            kernel_release: release,
        }
    }

    fn loaded(&self, module: &str) -> bool {
        self.sys_module.join(module.replace('-', "_")).exists()
    }
}

/// The modules the kernel report says are needed and built as modules.
pub fn wanted_modules(ctx: &BootContext) -> Vec<String> {
    let mut wanted: Vec<String> = ctx
        .kernel_report
        .iter()
        .flat_map(|r| r.profiles.iter())
        .flat_map(|p| p.options.iter())
        .filter(|o| o.presence == Presence::Module)
        .flat_map(|o| o.modules.iter().cloned())
        .collect();
    wanted.sort();
    wanted.dedup();
    wanted
}

impl Phase for ModulesPhase {
    fn id(&self) -> PhaseId {
        PhaseId::Modules
    }

    fn run(&mut self, ctx: &mut BootContext) -> Result<String, PhaseFailure> {
        if ctx.kernel_report.as_ref().and_then(|r| r.modules_supported) == Some(false) {
            return Ok(
                "the kernel has no module support (CONFIG_MODULES unset): nothing to load".into(),
            );
        }
        let wanted = wanted_modules(ctx);
        let missing: Vec<&String> = wanted.iter().filter(|m| !self.loaded(m)).collect();
        if missing.is_empty() {
            return Ok(format!("{} needed module(s) already present", wanted.len()));
        }
        let dir = self.modules_root.join(&self.kernel_release);
        if !dir.join("modules.dep").exists() {
            return Err(PhaseFailure {
                message: format!(
                    "modules {} are needed but {} has no modules.dep",
                    missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    dir.display()
                ),
                hint: "boot with the modules of this kernel under /lib/modules (kina's QEMU provider adds them to the node disk), or a kernel with these options built in".into(),
            });
        }
        // One modprobe for all (each start costs most of the time under
        // TCG); only if that fails, one per module to name the culprit.
        let base = self
            .modules_root
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("/"))
            .to_path_buf();
        let modprobe = |modules: &[&String]| {
            crate::children::output(
                Command::new("modprobe")
                    // -d takes the root that holds lib/modules.
                    .arg("-d")
                    .arg(&base)
                    .arg("-S")
                    .arg(&self.kernel_release)
                    .arg("-a")
                    .args(modules.iter().map(|m| m.as_str())),
            )
        };
        let mut failed = Vec::new();
        if !matches!(modprobe(&missing), Ok(o) if o.status.success()) {
            for module in &missing {
                match modprobe(&[*module]) {
                    Ok(o) if o.status.success() => {}
                    Ok(o) => failed.push(format!(
                        "{module}: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    )),
                    Err(e) => failed.push(format!("{module}: cannot run modprobe: {e}")),
                }
            }
        }
        if failed.is_empty() {
            Ok(format!(
                "loaded {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        } else {
            Err(PhaseFailure {
                message: format!("cannot load {}", failed.join("; ")),
                hint: "check that /lib/modules matches the running kernel (uname -r)".into(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::tests_support::ctx;
    use kina_contract::kernel::{KernelConfig, ProfileSet, check};

    fn with_report(config: &str) -> BootContext {
        let mut c = ctx();
        let config = KernelConfig::from_bytes(config.as_bytes(), "test.config").unwrap();
        let set = ProfileSet::shipped().unwrap();
        c.kernel_report = Some(check(&set, &["bridge".into()], Some(&config), None).unwrap());
        c
    }

    fn phase(root: &Path) -> ModulesPhase {
        ModulesPhase {
            modules_root: root.join("lib/modules"),
            sys_module: root.join("sys/module"),
            kernel_release: "6.1.0-test".into(),
        }
    }

    #[test]
    fn a_kernel_without_module_support_loads_nothing_and_says_so() {
        let mut c = with_report("CONFIG_BRIDGE=y\nCONFIG_BRIDGE_NETFILTER=y\n");
        let dir = tempfile::tempdir().unwrap();
        let msg = phase(dir.path()).run(&mut c).unwrap();
        assert!(msg.contains("no module support"), "{msg}");
    }

    #[test]
    fn needed_modules_come_from_the_options_built_as_modules() {
        let c = with_report(
            "CONFIG_MODULES=y\nCONFIG_BRIDGE=m\nCONFIG_BRIDGE_NETFILTER=m\nCONFIG_VETH=y\n",
        );
        let wanted = wanted_modules(&c);
        assert!(
            wanted.contains(&"br_netfilter".to_string()) && wanted.contains(&"bridge".to_string()),
            "{wanted:?}"
        );
        assert!(!wanted.contains(&"veth".to_string()));
    }

    #[test]
    fn without_the_kernels_modules_directory_the_phase_names_what_it_needed() {
        let mut c = with_report("CONFIG_MODULES=y\nCONFIG_BRIDGE=m\nCONFIG_BRIDGE_NETFILTER=m\n");
        let dir = tempfile::tempdir().unwrap();
        let err = phase(dir.path()).run(&mut c).unwrap_err();
        assert!(
            err.message.contains("br_netfilter") && err.message.contains("6.1.0-test"),
            "{err:?}"
        );
        // Already loaded (present in /sys/module): nothing to do.
        for m in wanted_modules(&c) {
            std::fs::create_dir_all(dir.path().join("sys/module").join(m.replace('-', "_")))
                .unwrap();
        }
        assert!(
            phase(dir.path())
                .run(&mut c)
                .unwrap()
                .contains("already present")
        );
    }
}
