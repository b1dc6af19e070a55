//! Compiling a `[build]` kernel recipe: the pieces `kina kernel build` runs
//! in order — the verified source tree, kina's config fragment, `make
//! olddefconfig` and what it dropped, the compile — so that the profile
//! check (kina's contract engine, which the caller runs on the configured
//! `.config`) sits between configuring and compiling.
//!
//! Reproducible as docs.kernel.org's "Reproducible builds" asks: the build
//! timestamp is the source's date (the newest modification time in the
//! source tarball, which for a release tarball made by `git archive` is the
//! release commit's time, and for Debian's orig tarball the upstream one it
//! repacks), user and host are fixed, the build number is 1, and the source
//! and build directories are out of the output (Kbuild maps the source
//! tree with `-fmacro-prefix-map`; kina adds `-ffile-prefix-map` for both
//! trees). The configured tree is built out of tree (`O=`), so one unpacked
//! source serves every architecture and build.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::digest::Sha256Digest;
use crate::platform::Arch;

use super::KernelFormat;
use super::kconfig::{KconfigIndex, kernel_arch, read_config_values};

/// Fixed identity the kernel records (`uname -v`, `/proc/version`).
pub const BUILD_USER: &str = "kina";
pub const BUILD_HOST: &str = "kina";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unpacking the Linux source {tarball}: {problem}")]
    Unpack { tarball: PathBuf, problem: String },
    #[error(
        "`{program}` is not available ({problem}); install Debian's kernel build toolchain: apt-get install {packages}"
    )]
    Tool {
        program: String,
        problem: String,
        packages: String,
    },
    #[error("`{step}` failed ({status}); the build log is {log}; its last lines:\n{tail}")]
    Make {
        step: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("the build wrote no {path}; the build log is {log}")]
    NoImage { path: PathBuf, log: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An unpacked Linux source tree, shared by every build of that tarball.
#[derive(Clone, Debug)]
pub struct SourceTree {
    /// The tree's top directory (`linux-6.18.5`).
    pub dir: PathBuf,
    /// The newest modification time in the tarball, Unix seconds: the
    /// source's date, and the build's `KBUILD_BUILD_TIMESTAMP`.
    pub date_epoch: u64,
}

const DATE_FILE: &str = "source-date";

/// The tree of `tarball` (verified to have `sha256`) under
/// `<kernels_dir>/source/<sha256>/`, unpacked unless it already is. The
/// directory is built in a temporary sibling and renamed into place, under
/// a lock, so concurrent builds unpack it once and never see half a tree.
pub fn unpack_source(
    tarball: &Path,
    sha256: &Sha256Digest,
    kernels_dir: &Path,
) -> Result<SourceTree, BuildError> {
    let sources = kernels_dir.join("source");
    std::fs::create_dir_all(&sources).map_err(io_err(&sources))?;
    let root = sources.join(sha256.hex());
    if let Some(tree) = open_tree(&root)? {
        return Ok(tree);
    }
    let lock_path = sources.join(format!(".{}.lock", sha256.hex()));
    let _lock = crate::fsutil::lock_file(&lock_path).map_err(io_err(&lock_path))?;
    if let Some(tree) = open_tree(&root)? {
        return Ok(tree);
    }
    let staging = tempfile::Builder::new()
        .prefix(".unpacking-")
        .tempdir_in(&sources)
        .map_err(io_err(&sources))?;
    let unpack_err = |problem: String| BuildError::Unpack {
        tarball: tarball.to_path_buf(),
        problem,
    };
    let mut file = std::fs::File::open(tarball).map_err(io_err(tarball))?;
    // Cache entries are named by digest: the compression is read from the magic.
    let mut magic = [0u8; 6];
    file.read_exact(&mut magic).map_err(io_err(tarball))?;
    let file = std::fs::File::open(tarball).map_err(io_err(tarball))?;
    let buffered = std::io::BufReader::new(file);
    let reader: Box<dyn Read> = match magic {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(buffered)),
        [0xfd, b'7', b'z', b'X', b'Z', 0] => Box::new(liblzma::read::XzDecoder::new(buffered)),
        _ => {
            return Err(unpack_err(
                "it is neither xz nor gzip; kina builds from .tar.xz and .tar.gz source tarballs"
                    .into(),
            ));
        }
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_mtime(true);
    archive.set_preserve_permissions(true);
    let tree_dir = staging.path().join("tree");
    std::fs::create_dir_all(&tree_dir).map_err(io_err(&tree_dir))?;
    let mut newest = 0u64;
    for entry in archive.entries().map_err(|e| unpack_err(e.to_string()))? {
        let mut entry = entry.map_err(|e| unpack_err(e.to_string()))?;
        // pax_global_header and the like carry no file.
        if matches!(
            entry.header().entry_type(),
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        }
        newest = newest.max(entry.header().mtime().unwrap_or(0));
        // `unpack_in` refuses paths that leave the directory.
        entry
            .unpack_in(&tree_dir)
            .map_err(|e| unpack_err(e.to_string()))?;
    }
    // A release tarball holds one top directory (`linux-6.18.5/`).
    let tops: Vec<PathBuf> = std::fs::read_dir(&tree_dir)
        .map_err(io_err(&tree_dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    let top = match tops.as_slice() {
        [one] if one.join("Makefile").is_file() => one.clone(),
        _ if tree_dir.join("Makefile").is_file() => tree_dir.clone(),
        _ => {
            return Err(unpack_err(
                "it holds no Linux tree (no top-level Makefile)".into(),
            ));
        }
    };
    let rel = top
        .strip_prefix(staging.path())
        .unwrap_or(&top)
        .to_path_buf();
    let date = staging.path().join(DATE_FILE);
    std::fs::write(&date, format!("{newest}\n{}\n", rel.display())).map_err(io_err(&date))?;
    let staged = staging.keep();
    std::fs::rename(&staged, &root).map_err(|source| {
        let _ = std::fs::remove_dir_all(&staged);
        BuildError::Io {
            path: root.clone(),
            source,
        }
    })?;
    open_tree(&root)?.ok_or_else(|| unpack_err("the unpacked tree vanished".into()))
}

fn open_tree(root: &Path) -> Result<Option<SourceTree>, BuildError> {
    let date = root.join(DATE_FILE);
    let text = match std::fs::read_to_string(&date) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&date)(e)),
    };
    let mut lines = text.lines();
    let (Some(epoch), Some(rel)) = (lines.next().and_then(|l| l.parse().ok()), lines.next()) else {
        return Ok(None);
    };
    Ok(Some(SourceTree {
        dir: root.join(rel),
        date_epoch: epoch,
    }))
}

/// One profile option, reduced to what the fragment needs: its symbols,
/// and whether every one (`all`) or any one is needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub symbols: Vec<String>,
    pub all: bool,
}

/// The symbols kina sets `=y` on top of `base`: for each requirement, those
/// the base does not already build in (`=m` counts as missing: a built
/// kernel ships no modules). Of alternatives (`any`), the first one Kconfig
/// defines for this tree is set. Sorted and without repeats.
pub fn fragment(
    base: &BTreeMap<String, String>,
    requirements: &[Requirement],
    kconfig: &KconfigIndex,
) -> Vec<String> {
    let builtin = |s: &String| base.get(s).map(String::as_str) == Some("y");
    let mut out = Vec::new();
    for req in requirements {
        if req.all {
            out.extend(req.symbols.iter().filter(|s| !builtin(s)).cloned());
        } else if !req.symbols.iter().any(builtin) {
            let pick = req
                .symbols
                .iter()
                .find(|s| kconfig.definitions.contains_key(s.as_str()))
                .or_else(|| req.symbols.first());
            out.extend(pick.cloned());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The fragment as config lines, as it is appended and hashed.
pub fn fragment_text(symbols: &[String]) -> String {
    symbols.iter().map(|s| format!("CONFIG_{s}=y\n")).collect()
}

/// A fragment symbol `olddefconfig` did not keep at `=y`, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    pub symbol: String,
    /// What it ended as (`not set`, `m`).
    pub now: String,
    /// The unmet `depends on` terms (or the missing `select`).
    pub unmet: Vec<String>,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CONFIG_{} ({}): {}",
            self.symbol,
            self.now,
            if self.unmet.is_empty() {
                "Kconfig shows no unmet dependency; a `choice` or a range may exclude it".into()
            } else {
                format!("needs {}", self.unmet.join("; "))
            }
        )
    }
}

/// Which fragment symbols the configured `.config` lost.
pub fn dropped(
    fragment: &[String],
    configured: &BTreeMap<String, String>,
    kconfig: &KconfigIndex,
) -> Vec<Dropped> {
    fragment
        .iter()
        .filter(|s| configured.get(s.as_str()).map(String::as_str) != Some("y"))
        .map(|s| Dropped {
            symbol: s.clone(),
            now: match configured.get(s.as_str()).map(String::as_str) {
                None | Some("n") => "not set".into(),
                Some(v) => format!("={v}"),
            },
            unmet: kconfig.unmet(s, configured),
        })
        .collect()
}

/// How `make` is run for one architecture on this host.
#[derive(Clone, Debug)]
pub struct Toolchain {
    pub arch: Arch,
    /// `aarch64-linux-gnu-` when cross-compiling, else empty.
    pub cross_compile: String,
    /// `gcc --version`'s first line.
    pub gcc: String,
    /// `ld --version`'s first line.
    pub ld: String,
}

impl Toolchain {
    /// The host's Debian toolchain for `arch`: native gcc, or
    /// `gcc-aarch64-linux-gnu` for arm64 on an amd64 host (and
    /// `gcc-x86-64-linux-gnu` the other way round).
    pub fn detect(arch: Arch) -> Result<Self, BuildError> {
        let host_is = |a: Arch| match a {
            Arch::Amd64 => std::env::consts::ARCH == "x86_64",
            Arch::Arm64 => std::env::consts::ARCH == "aarch64",
        };
        let (cross_compile, gcc_package) = if host_is(arch) {
            (String::new(), "gcc")
        } else {
            match arch {
                Arch::Arm64 => ("aarch64-linux-gnu-".to_string(), "gcc-aarch64-linux-gnu"),
                Arch::Amd64 => ("x86_64-linux-gnu-".to_string(), "gcc-x86-64-linux-gnu"),
            }
        };
        let packages =
            format!("{gcc_package} make flex bison bc libelf-dev libssl-dev xz-utils cpio");
        for tool in ["make", "flex", "bison", "bc", "perl"] {
            first_line(tool, &packages)?;
        }
        let gcc = first_line(&format!("{cross_compile}gcc"), &packages)?;
        let ld = first_line(&format!("{cross_compile}ld"), &packages)?;
        Ok(Self {
            arch,
            cross_compile,
            gcc,
            ld,
        })
    }

    /// The `make` variables that pick the architecture and compiler.
    fn make_args(&self) -> Vec<String> {
        let mut args = vec![format!("ARCH={}", kernel_arch(self.arch))];
        if !self.cross_compile.is_empty() {
            args.push(format!("CROSS_COMPILE={}", self.cross_compile));
        }
        args
    }
}

fn first_line(program: &str, packages: &str) -> Result<String, BuildError> {
    let output = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BuildError::Tool {
            program: program.to_string(),
            problem: e.to_string(),
            packages: packages.to_string(),
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text.lines().next().unwrap_or_default().trim().to_string())
}

/// The cache key of a built kernel: everything that decides its bytes.
pub struct BuildKey<'a> {
    pub source_sha256: Sha256Digest,
    pub base_config_sha256: Sha256Digest,
    pub fragment: &'a str,
    pub toolchain: &'a Toolchain,
    pub format: KernelFormat,
    /// The profiles checked: they decide the report kept with the kernel.
    pub profiles: &'a [String],
}

impl BuildKey<'_> {
    pub fn digest(&self) -> Sha256Digest {
        let text = format!(
            "kina-kernel-build-v1\nsource {}\nbase-config {}\narch {}\nformat {:?}\ngcc {}\nld {}\nprofiles {}\nfragment\n{}",
            self.source_sha256.hex(),
            self.base_config_sha256.hex(),
            self.toolchain.arch,
            self.format,
            self.toolchain.gcc,
            self.toolchain.ld,
            self.profiles.join(","),
            self.fragment
        );
        Sha256Digest::of(text.as_bytes())
    }
}

/// An out-of-tree build directory with its log.
pub struct BuildDir {
    pub source: SourceTree,
    pub objdir: PathBuf,
    pub toolchain: Toolchain,
    /// Every command's output, appended.
    pub log: PathBuf,
    pub jobs: usize,
}

impl BuildDir {
    /// The `.config` of the build.
    pub fn config_path(&self) -> PathBuf {
        self.objdir.join(".config")
    }

    fn make(&self, targets: &[&str], extra_env: &[(&str, String)]) -> Result<(), BuildError> {
        let mut log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io_err(&self.log))?;
        let mut args: Vec<String> = vec![
            "-C".into(),
            self.source.dir.display().to_string(),
            format!("O={}", self.objdir.display()),
        ];
        args.extend(self.toolchain.make_args());
        args.push(format!("-j{}", self.jobs.max(1)));
        args.extend(targets.iter().map(|t| (*t).to_string()));
        let step = format!("make {}", args.join(" "));
        writeln!(log, "$ {step}").map_err(io_err(&self.log))?;
        let stderr = log.try_clone().map_err(io_err(&self.log))?;
        let mut command = Command::new("make");
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .env("LC_ALL", "C")
            .env("TZ", "UTC");
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let status = command.status().map_err(|e| BuildError::Tool {
            program: "make".into(),
            problem: e.to_string(),
            packages: "make".into(),
        })?;
        if !status.success() {
            return Err(BuildError::Make {
                step,
                status: status.to_string(),
                log: self.log.clone(),
                tail: tail(&self.log, 25),
            });
        }
        Ok(())
    }

    /// Writes `base` plus the fragment as `.config` and runs `make
    /// olddefconfig`; returns the resulting `.config` text.
    pub fn configure(&self, base: &[u8], fragment: &str) -> Result<String, BuildError> {
        std::fs::create_dir_all(&self.objdir).map_err(io_err(&self.objdir))?;
        let config = self.config_path();
        let mut text = base.to_vec();
        if !text.ends_with(b"\n") {
            text.push(b'\n');
        }
        text.extend_from_slice(b"# kina: the profiles' fragment\n");
        text.extend_from_slice(fragment.as_bytes());
        std::fs::write(&config, &text).map_err(io_err(&config))?;
        self.make(&["olddefconfig"], &[])?;
        std::fs::read_to_string(&config).map_err(io_err(&config))
    }

    /// Compiles the boot image; returns its path and `make kernelrelease`.
    pub fn compile(&self, format: KernelFormat) -> Result<(PathBuf, String), BuildError> {
        let (target, image) = format.make_target();
        let timestamp = crate::civil_time::rfc2822(self.source.date_epoch);
        let prefix_maps = format!(
            "-ffile-prefix-map={}/= -ffile-prefix-map={}/=",
            self.source.dir.display(),
            self.objdir.display()
        );
        let env = [
            ("KBUILD_BUILD_TIMESTAMP", timestamp),
            ("KBUILD_BUILD_USER", BUILD_USER.to_string()),
            ("KBUILD_BUILD_HOST", BUILD_HOST.to_string()),
            ("KBUILD_BUILD_VERSION", "1".to_string()),
            ("SOURCE_DATE_EPOCH", self.source.date_epoch.to_string()),
            ("KCFLAGS", prefix_maps.clone()),
            ("KAFLAGS", prefix_maps),
        ];
        self.make(&[target], &env)?;
        let path = self.objdir.join(image);
        if !path.is_file() {
            return Err(BuildError::NoImage {
                path,
                log: self.log.clone(),
            });
        }
        let release_file = self.objdir.join("include/config/kernel.release");
        let release = std::fs::read_to_string(&release_file)
            .map_err(io_err(&release_file))?
            .trim()
            .to_string();
        Ok((path, release))
    }
}

/// The last `n` lines of a log, for an error message.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Reads a `.config`'s values (for the fragment and the drop check).
pub fn config_values(text: &str) -> BTreeMap<String, String> {
    read_config_values(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> BTreeMap<String, String> {
        read_config_values(text)
    }

    #[test]
    fn the_fragment_holds_only_what_the_base_does_not_build_in() {
        let base = values(
            "CONFIG_BPF=y\nCONFIG_VXLAN=m\n# CONFIG_BPF_JIT is not set\nCONFIG_NF_TABLES=y\n",
        );
        let mut kconfig = KconfigIndex::default();
        kconfig
            .definitions
            .insert("IP_NF_TARGET_REDIRECT".into(), vec![Default::default()]);
        let req = |symbols: &[&str], all| Requirement {
            symbols: symbols.iter().map(|s| s.to_string()).collect(),
            all,
        };
        let symbols = fragment(
            &base,
            &[
                req(&["BPF"], false),
                req(&["BPF_JIT"], false),
                req(&["VXLAN"], false),
                req(&["NF_TABLES", "BPF_JIT"], true),
                req(
                    &["NETFILTER_XT_TARGET_REDIRECT", "IP_NF_TARGET_REDIRECT"],
                    false,
                ),
            ],
            &kconfig,
        );
        assert_eq!(
            symbols,
            vec!["BPF_JIT", "IP_NF_TARGET_REDIRECT", "VXLAN"],
            "a module is rebuilt in; of alternatives the one this tree defines"
        );
        assert_eq!(
            fragment_text(&symbols[..1]),
            "CONFIG_BPF_JIT=y\n".to_string()
        );
    }

    #[test]
    fn a_dropped_symbol_names_what_it_now_is() {
        let configured = values("# CONFIG_MODULE_UNLOAD is not set\nCONFIG_BPF_JIT=y\n");
        let d = dropped(
            &["BPF_JIT".into(), "MODULE_UNLOAD".into()],
            &configured,
            &KconfigIndex::default(),
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].symbol, "MODULE_UNLOAD");
        assert_eq!(d[0].now, "not set");
        assert!(
            d[0].to_string()
                .starts_with("CONFIG_MODULE_UNLOAD (not set): needs no Kconfig entry"),
            "{}",
            d[0]
        );
    }

    #[test]
    fn the_key_changes_with_every_input() {
        let toolchain = Toolchain {
            arch: Arch::Arm64,
            cross_compile: String::new(),
            gcc: "gcc 12".into(),
            ld: "ld 2.40".into(),
        };
        let key = |fragment: &str, gcc: &str| {
            let mut t = toolchain.clone();
            t.gcc = gcc.into();
            BuildKey {
                source_sha256: Sha256Digest::of(b"s"),
                base_config_sha256: Sha256Digest::of(b"c"),
                fragment,
                toolchain: &t,
                format: KernelFormat::ArmImage,
                profiles: &["cilium-kpr".to_string()],
            }
            .digest()
        };
        assert_eq!(key("A", "gcc 12"), key("A", "gcc 12"));
        assert_ne!(key("A", "gcc 12"), key("B", "gcc 12"));
        assert_ne!(key("A", "gcc 12"), key("A", "gcc 14"));
    }
}
