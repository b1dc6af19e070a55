//! The modules phase: load what the kernel phase found built as modules.
//!
//! Apple's kernels have no module support: the phase does nothing and says
//! so. On a distro kernel (QEMU) each module is loaded with its dependencies
//! from modules.dep (nothing autoloads br_netfilter, for example), in this
//! process with `finit_module(2)`: each `modprobe` start cost more under
//! TCG than the loading. The kernel decompresses Debian's `.ko.xz` itself
//! (`MODULE_INIT_COMPRESSED_FILE`, `CONFIG_MODULE_DECOMPRESS`). `modprobe`
//! remains the fallback for what modules.dep cannot answer (an alias) or a
//! kernel that cannot decompress, so the phase never does less than before.
//!
//! Soft dependencies (`modules.softdep`) are not loaded ahead: the ones of
//! the modules kina needs name crypto algorithms (libcrc32c's crc32c),
//! which the kernel requests itself through its modprobe helper when first
//! used.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};

use nix::errno::Errno;
use nix::kmod::{ModuleInitFlags, finit_module};

use kina_contract::kernel::Presence;
use kina_contract::status::PhaseId;

use super::modules_dep::{self, ModulesDep};
use super::{BootContext, Phase, PhaseFailure};

/// `MODULE_INIT_COMPRESSED_FILE` from `include/uapi/linux/module.h` (Linux
/// 6.0+), which nix 0.30 does not name: the kernel decompresses the file.
const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

pub struct ModulesPhase {
    /// `/lib/modules`, or a test directory.
    pub modules_root: PathBuf,
    /// `/sys/module`, where a loaded (or built-in) module appears.
    pub sys_module: PathBuf,
    pub kernel_release: String,
}

/// Each modules.dep parsed once per process while it stays the same file
/// (length and modification time): the kernel check's probes load modules
/// from it before the modules phase does, and a parse is ~10 ms of a TCG
/// boot. A file that cannot be read or parsed is tried again next time.
fn parsed(path: &Path) -> Result<Arc<ModulesDep>, String> {
    type Parsed = HashMap<PathBuf, (u64, Option<std::time::SystemTime>, Arc<ModulesDep>)>;
    static PARSED: Mutex<Option<Parsed>> = Mutex::new(None);
    let unreadable = |e: std::io::Error| format!("{}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    let (len, modified) = (meta.len(), meta.modified().ok());
    let mut parsed = PARSED.lock().unwrap_or_else(PoisonError::into_inner);
    let parsed = parsed.get_or_insert_with(HashMap::new);
    if let Some((l, m, dep)) = parsed.get(path)
        && (*l, *m) == (len, modified)
    {
        return Ok(dep.clone());
    }
    let dep = std::fs::read_to_string(path)
        .map_err(unreadable)
        .and_then(|text| ModulesDep::parse(&text, path))
        .map(Arc::new)?;
    parsed.insert(path.to_path_buf(), (len, modified, dep.clone()));
    Ok(dep)
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

    /// The parsed modules.dep of `self.kernel_release` and the directory
    /// its paths are relative to, or why not.
    fn modules_dep(&self) -> Result<(PathBuf, Arc<ModulesDep>), String> {
        let dir = self.modules_root.join(&self.kernel_release);
        let dep = parsed(&dir.join("modules.dep"))?;
        Ok((dir, dep))
    }

    /// The file of `module` when the running kernel has it as a module
    /// that is not loaded yet and the file is there: what the kernel check
    /// reports instead of probing a feature the module provides. A probe
    /// would make the kernel request the module through its modprobe
    /// helper (80–150 ms under TCG) and loading it in the check would do
    /// the modules phase's work in the check, and leave modules loaded on
    /// a host where `check-kernel` only checks. `None` when it is loaded,
    /// built in, or modules.dep cannot say.
    pub fn loadable_file(&self, module: &str) -> Option<PathBuf> {
        if self.loaded(module) {
            return None;
        }
        let (dir, dep) = self.modules_dep().ok()?;
        let file = dir.join(dep.load_order(module)?.last()?);
        file.is_file().then_some(file)
    }

    /// Whether `module` is loaded (or built in with parameters):
    /// `/sys/module/NAME` exists.
    pub fn loaded(&self, module: &str) -> bool {
        self.sys_module
            .join(modules_dep::normalize(module))
            .exists()
    }

    /// Loads `module` and what it depends on with `finit_module`. `Err`
    /// holds why it could not, for the `modprobe` fallback to answer.
    fn load_in_process(&self, dep: &ModulesDep, dir: &Path, module: &str) -> Result<(), String> {
        let files = dep
            .load_order(module)
            .ok_or_else(|| format!("{module} is not in modules.dep"))?;
        for file in files {
            let name = modules_dep::module_name(file).unwrap_or_else(|| module.to_string());
            if self.loaded(&name) {
                continue;
            }
            let path = dir.join(file);
            let fd = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let flags = if modules_dep::is_compressed(file) {
                ModuleInitFlags::from_bits_retain(MODULE_INIT_COMPRESSED_FILE)
            } else {
                ModuleInitFlags::empty()
            };
            match finit_module(&fd, c"", flags) {
                // Loaded meanwhile (the kernel's own request_module, say).
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(format!("finit_module({}): {e}", path.display())),
            }
        }
        Ok(())
    }

    /// modprobe for what could not be loaded in-process: one run for all
    /// (each start costs most of the time under TCG), and only if that
    /// fails one per module to name the culprit. The failures, each named.
    fn modprobe_each(&self, modules: &[&String]) -> Vec<String> {
        // -d takes the root that holds lib/modules.
        let base = self
            .modules_root
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("/"))
            .to_path_buf();
        let modprobe = |modules: &[&String]| {
            crate::children::output(
                Command::new("modprobe")
                    .arg("-d")
                    .arg(&base)
                    .arg("-S")
                    .arg(&self.kernel_release)
                    .arg("-a")
                    .args(modules.iter().map(|m| m.as_str())),
            )
        };
        let mut failed = Vec::new();
        if !matches!(modprobe(modules), Ok(o) if o.status.success()) {
            for module in modules {
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
        failed
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
        let (dir, dep) = self.modules_dep().map_err(|e| PhaseFailure {
            message: format!("cannot read modules.dep: {e}"),
            hint: "the node's /lib/modules must match the running kernel (uname -r)".into(),
        })?;
        let mut via_modprobe = Vec::new();
        let mut notes = Vec::new();
        for module in &missing {
            if let Err(why) = self.load_in_process(&dep, &dir, module) {
                notes.push(why);
                via_modprobe.push(*module);
            }
        }
        let failed = if via_modprobe.is_empty() {
            Vec::new()
        } else {
            self.modprobe_each(&via_modprobe)
        };
        if failed.is_empty() {
            let mut msg = format!(
                "loaded {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if !via_modprobe.is_empty() {
                msg.push_str(&format!(
                    " ({} through modprobe: {})",
                    via_modprobe
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    notes.join("; ")
                ));
            }
            Ok(msg)
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

    #[test]
    fn a_module_is_loadable_only_when_modules_dep_names_its_file_and_it_is_there_unloaded() {
        let dir = tempfile::tempdir().unwrap();
        // No modules.dep: nothing to say.
        assert_eq!(phase(dir.path()).loadable_file("veth"), None);
        let modules = dir.path().join("lib/modules/6.1.0-test");
        std::fs::create_dir_all(modules.join("kernel/drivers/net")).unwrap();
        std::fs::write(
            modules.join("modules.dep"),
            "kernel/drivers/net/veth.ko.xz:\nkernel/drivers/net/vxlan/vxlan.ko.xz: kernel/net/ipv4/udp_tunnel.ko.xz\n",
        )
        .unwrap();
        let p = phase(dir.path());
        // Not in modules.dep (built in, or an alias).
        assert_eq!(p.loadable_file("bridge"), None);
        // Named, but its file is not on the disk: not loadable.
        assert_eq!(p.loadable_file("veth"), None);
        let veth = modules.join("kernel/drivers/net/veth.ko.xz");
        std::fs::write(&veth, b"module bytes").unwrap();
        assert_eq!(p.loadable_file("veth"), Some(veth));
        // The module's own file, not a dependency's.
        std::fs::create_dir_all(modules.join("kernel/drivers/net/vxlan")).unwrap();
        let vxlan = modules.join("kernel/drivers/net/vxlan/vxlan.ko.xz");
        std::fs::write(&vxlan, b"module bytes").unwrap();
        assert_eq!(p.loadable_file("vxlan"), Some(vxlan));
        // Loaded already: the probe answers, not the file.
        std::fs::create_dir_all(dir.path().join("sys/module/veth")).unwrap();
        assert_eq!(p.loadable_file("veth"), None);
    }

    #[test]
    fn what_modules_dep_cannot_load_goes_to_modprobe_and_a_failure_names_the_module() {
        // The files modules.dep names are absent, so nothing reaches
        // finit_module (a unit test must not load into the host's kernel).
        let mut c = with_report("CONFIG_MODULES=y\nCONFIG_BRIDGE=m\nCONFIG_BRIDGE_NETFILTER=m\n");
        let dir = tempfile::tempdir().unwrap();
        let modules = dir.path().join("lib/modules/6.1.0-test");
        std::fs::create_dir_all(&modules).unwrap();
        std::fs::write(
            modules.join("modules.dep"),
            "kernel/net/bridge/bridge.ko.xz: kernel/net/802/stp.ko.xz kernel/net/llc/llc.ko.xz\n",
        )
        .unwrap();
        let err = phase(dir.path()).run(&mut c).unwrap_err();
        assert!(
            err.message.contains("bridge:") && err.message.contains("br_netfilter:"),
            "{err:?}"
        );
        // A damaged modules.dep is named, not read around.
        std::fs::write(modules.join("modules.dep"), "garbage\n").unwrap();
        let err = phase(dir.path()).run(&mut c).unwrap_err();
        assert!(err.message.contains("modules.dep line 1"), "{err:?}");
    }
}
