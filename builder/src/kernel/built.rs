//! A kernel kina compiled itself (`kina kernel build`) or pulled from a
//! registry (`kina kernel pull`): one directory holding what a provider
//! boots and what a check reads, described by `kernel.json`.
//!
//! It is the one contract between the three places that meet such a kernel —
//! the build (which writes it into the cache), the OCI artifact code (which
//! packs it into layers and unpacks a pulled one into the same shape) and the
//! providers (which boot it) — so none of them guesses another's file names.
//!
//! Unlike Debian's cloud kernel ([`super::KernelArtifacts`]), such a kernel has
//! no modules: everything a node needs is built in (Apple's kernels are built
//! without `CONFIG_MODULES`), so it boots with no initramfs, with kina-init
//! as `init=` straight from the root disk.
//!
//! The directory appears complete or not at all: writers build it in a
//! temporary sibling and rename it into place ([`BuiltKernel::install`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::platform::Arch;

/// `kernel.json`'s schema; a newer one is refused naming the file.
pub const BUILT_KERNEL_SCHEMA: u32 = 1;

const META_FILE: &str = "kernel.json";
const KERNEL_FILE: &str = "kernel";
const CONFIG_FILE: &str = "config";
const REPORT_FILE: &str = "report.json";

/// The boot image's format. Each architecture has the one both providers
/// take: apple/containerization's kernel build ships x86_64 as a compressed
/// `bzImage` and arm64 as the uncompressed `Image`, which is what
/// Virtualization.framework's Linux boot loader requires on arm64; QEMU
/// boots both as `-kernel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KernelFormat {
    /// `arch/x86/boot/bzImage`.
    BzImage,
    /// `arch/arm64/boot/Image`.
    ArmImage,
}

impl KernelFormat {
    pub fn for_arch(arch: Arch) -> Self {
        match arch {
            Arch::Amd64 => Self::BzImage,
            Arch::Arm64 => Self::ArmImage,
        }
    }

    /// The `make` target that produces it and its path in the build tree.
    pub fn make_target(self) -> (&'static str, &'static str) {
        match self {
            Self::BzImage => ("bzImage", "arch/x86/boot/bzImage"),
            Self::ArmImage => ("Image", "arch/arm64/boot/Image"),
        }
    }
}

/// `kernel.json`: what was built, from what, and what it was checked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltKernelMeta {
    pub schema: u32,
    /// The kernel recipe's `name`.
    pub recipe: String,
    pub arch: Arch,
    /// `make kernelrelease` (what `uname -r` says in the node).
    pub release: String,
    pub format: KernelFormat,
    pub kernel_sha256: Sha256Digest,
    /// The final `.config`, after `olddefconfig`.
    pub config_sha256: Sha256Digest,
    /// The kina profiles the config was checked against before compiling;
    /// `report.json` holds that check.
    pub profiles: Vec<String>,
    /// The Linux source tarball it was built from.
    pub source_sha256: Sha256Digest,
    /// The base configuration (before kina's fragment).
    pub base_config_sha256: Sha256Digest,
    /// The compiler, as `gcc --version`'s first line, part of the cache key.
    pub toolchain: String,
}

/// A complete built-kernel directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltKernel {
    pub dir: PathBuf,
    pub meta: BuiltKernelMeta,
}

#[derive(Debug, thiserror::Error)]
pub enum BuiltKernelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a built kernel's description: {problem}; rebuild it (`kina kernel build`) or pull it again"
    )]
    Meta { path: PathBuf, problem: String },
    #[error(
        "{path} does not match {meta}: sha256 {actual}, recorded {recorded}; the directory was changed after it was written: rebuild it or pull it again"
    )]
    Digest {
        path: PathBuf,
        meta: PathBuf,
        actual: Sha256Digest,
        recorded: Sha256Digest,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BuiltKernelError + '_ {
    move |source| BuiltKernelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl BuiltKernel {
    /// The boot image (`bzImage` or arm64 `Image`).
    pub fn kernel_path(&self) -> PathBuf {
        self.dir.join(KERNEL_FILE)
    }

    /// The kernel's `.config`, for `kina kernel check` and for the node's
    /// `/boot/config-<release>` (kina-init's check reads it).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    /// The profile report of the pre-compile check
    /// (`kina_contract::kernel::report`, JSON).
    pub fn report_path(&self) -> PathBuf {
        self.dir.join(REPORT_FILE)
    }

    pub fn meta_path(&self) -> PathBuf {
        self.dir.join(META_FILE)
    }

    /// Reads a built-kernel directory and checks the kernel and config
    /// against the digests `kernel.json` records, so a provider never boots
    /// a file that is not the one that was checked.
    pub fn open(dir: &Path) -> Result<Self, BuiltKernelError> {
        let meta_path = dir.join(META_FILE);
        let text = std::fs::read_to_string(&meta_path).map_err(io_err(&meta_path))?;
        let meta: BuiltKernelMeta =
            serde_json::from_str(&text).map_err(|e| BuiltKernelError::Meta {
                path: meta_path.clone(),
                problem: e.to_string(),
            })?;
        if meta.schema != BUILT_KERNEL_SCHEMA {
            return Err(BuiltKernelError::Meta {
                path: meta_path,
                problem: format!(
                    "schema {} is not {BUILT_KERNEL_SCHEMA}, the one this kina reads",
                    meta.schema
                ),
            });
        }
        let kernel = Self {
            dir: dir.to_path_buf(),
            meta,
        };
        for (path, recorded) in [
            (kernel.kernel_path(), kernel.meta.kernel_sha256),
            (kernel.config_path(), kernel.meta.config_sha256),
        ] {
            let file = std::fs::File::open(&path).map_err(io_err(&path))?;
            let (actual, _) = Sha256Digest::of_reader(file).map_err(io_err(&path))?;
            if actual != recorded {
                return Err(BuiltKernelError::Digest {
                    path,
                    meta: kernel.meta_path(),
                    actual,
                    recorded,
                });
            }
        }
        Ok(kernel)
    }

    /// Writes a built-kernel directory at `dir` from the given files: into a
    /// temporary sibling first, renamed into place, so `dir` exists only
    /// complete. An existing `dir` is replaced. The digests in `meta` must
    /// be those of `kernel` and `config` ([`BuiltKernel::open`] checks them).
    pub fn install(
        dir: &Path,
        meta: &BuiltKernelMeta,
        kernel: &Path,
        config: &Path,
        report_json: &[u8],
    ) -> Result<Self, BuiltKernelError> {
        let parent = dir.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        let staging = tempfile::Builder::new()
            .prefix(".kernel-")
            .tempdir_in(parent)
            .map_err(io_err(parent))?;
        let copy = |from: &Path, name: &str| {
            let to = staging.path().join(name);
            std::fs::copy(from, &to).map(drop).map_err(io_err(from))
        };
        copy(kernel, KERNEL_FILE)?;
        copy(config, CONFIG_FILE)?;
        let write = |name: &str, bytes: &[u8]| {
            let to = staging.path().join(name);
            std::fs::write(&to, bytes).map_err(io_err(&to))
        };
        write(REPORT_FILE, report_json)?;
        let meta_json = serde_json::to_vec_pretty(meta).map_err(|e| BuiltKernelError::Meta {
            path: staging.path().join(META_FILE),
            problem: e.to_string(),
        })?;
        write(META_FILE, &meta_json)?;
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io_err(dir))?;
        }
        let staged = staging.keep();
        std::fs::rename(&staged, dir).map_err(|source| {
            let _ = std::fs::remove_dir_all(&staged);
            BuiltKernelError::Io {
                path: dir.to_path_buf(),
                source,
            }
        })?;
        Self::open(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_for(kernel: &[u8], config: &[u8]) -> BuiltKernelMeta {
        BuiltKernelMeta {
            schema: BUILT_KERNEL_SCHEMA,
            recipe: "cilium-kpr".into(),
            arch: Arch::Arm64,
            release: "6.16.3".into(),
            format: KernelFormat::for_arch(Arch::Arm64),
            kernel_sha256: Sha256Digest::of(kernel),
            config_sha256: Sha256Digest::of(config),
            profiles: vec!["cilium-kpr".into()],
            source_sha256: Sha256Digest::of(b"source"),
            base_config_sha256: Sha256Digest::of(b"base"),
            toolchain: "gcc (Debian 14.2.0-19) 14.2.0".into(),
        }
    }

    #[test]
    fn an_installed_kernel_opens_and_a_changed_file_is_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let (kernel, config) = (tmp.path().join("Image"), tmp.path().join(".config"));
        std::fs::write(&kernel, b"kernel bytes").unwrap();
        std::fs::write(&config, b"CONFIG_BPF_JIT=y\n").unwrap();
        let meta = meta_for(b"kernel bytes", b"CONFIG_BPF_JIT=y\n");
        let dir = tmp.path().join("built/abc");
        let built = BuiltKernel::install(&dir, &meta, &kernel, &config, b"{}").unwrap();
        assert_eq!(built.meta, meta);
        assert_eq!(std::fs::read(built.kernel_path()).unwrap(), b"kernel bytes");
        // Only the finished directory is left beside it.
        let siblings: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(siblings, vec![std::ffi::OsString::from("abc")]);

        std::fs::write(built.config_path(), b"CONFIG_BPF_JIT=n\n").unwrap();
        let err = BuiltKernel::open(&dir).unwrap_err().to_string();
        assert!(
            err.contains("config") && err.contains("was changed"),
            "{err}"
        );
    }

    #[test]
    fn a_newer_schema_is_refused_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let mut meta = meta_for(b"k", b"c");
        meta.schema = BUILT_KERNEL_SCHEMA + 1;
        std::fs::write(
            tmp.path().join(META_FILE),
            serde_json::to_vec(&meta).unwrap(),
        )
        .unwrap();
        let err = BuiltKernel::open(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains("kernel.json") && err.contains("schema 2"),
            "{err}"
        );
    }
}
