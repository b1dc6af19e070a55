//! `modules.dep` as depmod(8) writes it and modprobe(8) reads it: which file
//! holds each module and every module it needs loaded first. The modules
//! phase loads from it in-process (`finit_module`), because starting
//! `modprobe` costs more under emulation than the loading itself.
//!
//! Written by hand: the kmod crates bind libkmod (C), which the static
//! kina-init does not link, and the format is one line per module:
//! `kernel/net/bridge/br_netfilter.ko.xz: kernel/net/bridge/bridge.ko.xz
//! kernel/net/802/stp.ko.xz kernel/net/llc/llc.ko.xz`, the dependencies
//! already closed transitively and ordered so that loading them from the
//! last to the first works (kmod's `libkmod-module.c`,
//! `kmod_module_get_dependencies`, and modprobe's `--show-depends`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One parsed `modules.dep`: module name to its line.
#[derive(Debug, Default)]
pub struct ModulesDep {
    by_name: HashMap<String, Line>,
}

#[derive(Debug)]
struct Line {
    file: PathBuf,
    depends: Vec<PathBuf>,
}

/// The module name a file holds: its base name without `.ko` and any
/// compression suffix, with `-` read as `_` (the kernel's own rule,
/// `scripts/Makefile.modfinal` and kmod's `modname_normalize`).
pub fn module_name(file: &Path) -> Option<String> {
    let base = file.file_name()?.to_str()?;
    let stem = [".ko.xz", ".ko.gz", ".ko.zst", ".ko"]
        .iter()
        .find_map(|suffix| base.strip_suffix(suffix))?;
    Some(normalize(stem))
}

/// `-` and `_` are the same in a module name.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Whether the kernel must decompress the file (`MODULE_INIT_COMPRESSED_FILE`).
pub fn is_compressed(file: &Path) -> bool {
    file.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "xz" | "gz" | "zst"))
}

impl ModulesDep {
    /// Parses the text of `modules.dep`; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, String> {
        let mut by_name = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((file, depends)) = line.split_once(':') else {
                return Err(format!(
                    "{} line {}: no ':' in {line:?}; regenerate it with depmod",
                    origin.display(),
                    n + 1
                ));
            };
            let file = PathBuf::from(file.trim());
            let Some(name) = module_name(&file) else {
                return Err(format!(
                    "{} line {}: {} is not a kernel module file",
                    origin.display(),
                    n + 1,
                    file.display()
                ));
            };
            let depends = depends.split_whitespace().map(PathBuf::from).collect();
            by_name.insert(name, Line { file, depends });
        }
        Ok(Self { by_name })
    }

    /// The files to load for `module`, each dependency before what needs it
    /// and `module`'s own file last; `None` when no line names it (an alias
    /// or a built-in module).
    pub fn load_order(&self, module: &str) -> Option<Vec<&Path>> {
        let line = self.by_name.get(&normalize(module))?;
        let mut files: Vec<&Path> = line.depends.iter().rev().map(PathBuf::as_path).collect();
        files.push(&line.file);
        Some(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines from Debian trixie's linux-image-6.12.117+deb13-cloud-amd64
    /// (`/lib/modules/6.12.117+deb13-cloud-amd64/modules.dep`).
    const TRIXIE: &str = "\
kernel/fs/overlayfs/overlay.ko.xz:
kernel/net/bridge/br_netfilter.ko.xz: kernel/net/bridge/bridge.ko.xz kernel/net/802/stp.ko.xz kernel/net/llc/llc.ko.xz
kernel/net/netfilter/xt_MASQUERADE.ko.xz: kernel/net/netfilter/x_tables.ko.xz kernel/net/netfilter/nf_nat.ko.xz kernel/net/netfilter/nf_conntrack.ko.xz kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko.xz kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko.xz kernel/lib/libcrc32c.ko.xz
";

    #[test]
    fn dependencies_load_from_the_last_listed_to_the_first_then_the_module() {
        let dep = ModulesDep::parse(TRIXIE, Path::new("modules.dep")).unwrap();
        let order: Vec<String> = dep
            .load_order("br_netfilter")
            .unwrap()
            .iter()
            .map(|p| module_name(p).unwrap())
            .collect();
        assert_eq!(order, ["llc", "stp", "bridge", "br_netfilter"]);
        let masq = dep.load_order("xt_MASQUERADE").unwrap();
        assert_eq!(module_name(masq[0]).unwrap(), "libcrc32c");
        assert_eq!(module_name(masq.last().unwrap()).unwrap(), "xt_MASQUERADE");
        assert_eq!(
            dep.load_order("overlay").unwrap(),
            [Path::new("kernel/fs/overlayfs/overlay.ko.xz")]
        );
        assert!(dep.load_order("veth").is_none());
    }

    #[test]
    fn names_are_normalized_and_compression_is_read_off_the_suffix() {
        assert_eq!(
            module_name(Path::new("kernel/drivers/x/nf-foo.ko.zst")).as_deref(),
            Some("nf_foo")
        );
        assert_eq!(module_name(Path::new("a/b.txt")), None);
        assert!(is_compressed(Path::new("a/b.ko.xz")));
        assert!(!is_compressed(Path::new("a/b.ko")));
        let dep = ModulesDep::parse("kernel/a/nf-foo.ko:\n", Path::new("m")).unwrap();
        assert!(dep.load_order("nf-foo").is_some() && dep.load_order("nf_foo").is_some());
    }

    #[test]
    fn a_damaged_file_is_refused_with_its_line() {
        let err = ModulesDep::parse(
            "kernel/a.ko: \ngarbage\n",
            Path::new("/lib/modules/x/modules.dep"),
        )
        .unwrap_err();
        assert!(
            err.contains("modules.dep line 2") && err.contains("depmod"),
            "{err}"
        );
    }
}
