//! The node kernel: a recipe naming Debian's cloud-kernel metapackage, a lock
//! pinning the concrete kernel package it depends on, and a verified fetch
//! that unpacks vmlinuz and the modules into the download cache. Or a recipe
//! that builds one (`[build]`): a Linux source pinned through Debian's signed
//! `Sources` index (or an upstream tarball by sha256), a base configuration
//! per architecture pinned by URL and sha256, and the kina profiles it must
//! pass; [`build`] configures, checks and compiles it.
//!
//! It follows the node-image pipeline on purpose (recipe → lock → verified,
//! content-addressed download): the kernel is as much a pinned input of a
//! node as its userland. So it lives here, not in a provider: its lock
//! walks the signed suites with [`crate::universe::fetch_universe`] as the
//! image lock does, on the same mirrors, and a provider only boots what
//! [`fetch_kernel`] unpacks.

pub mod artifact;
pub mod build;
mod built;
mod fetch;
pub mod kconfig;
mod lockgen;
mod source_lock;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::digest::Sha256Digest;
use crate::lock::LockedRelease;
use crate::platform::Arch;
use crate::recipe::{DebianArchive, DebianSource, DebianSpec};
use serde::{Deserialize, Serialize};

pub use built::{
    BUILT_KERNEL_SCHEMA, BuiltKernel, BuiltKernelError, BuiltKernelMeta, KernelFormat,
};
pub use fetch::{KernelArtifacts, fetch_kernel};
pub use lockgen::{KernelLockOptions, lock_kernel};

pub const KERNEL_RECIPE_SCHEMA: u32 = 1;
pub const KERNEL_LOCK_SCHEMA: u32 = 1;

/// `kernels/<name>.toml`: which kernel a node boots, as a person writes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelRecipe {
    pub schema: u32,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub architectures: Vec<Arch>,
    /// The signed suites a Debian kernel (binary or source) comes from; a
    /// recipe building an upstream tarball needs none.
    #[serde(default)]
    pub debian: KernelDebianSpec,
    /// Per architecture, the metapackage that tracks the current kernel ABI
    /// (`linux-image-cloud-amd64`); the lock follows its `Depends` one level.
    /// Absent in a recipe that builds its kernel (`[build]`).
    #[serde(default)]
    pub metapackage: BTreeMap<Arch, String>,
    /// A kernel kina compiles (`kina kernel build`) instead of Debian's binary.
    #[serde(default)]
    pub build: Option<KernelBuildSpec>,
}

/// `[build]`: what `kina kernel build` compiles, every input pinned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelBuildSpec {
    /// kina kernel profiles (`kernels/profiles`) the configuration must pass
    /// before anything is compiled; every symbol they require is built in.
    #[serde(default)]
    pub profiles: Vec<String>,
    pub source: KernelSourceSpec,
    /// The base configuration per architecture, before kina's fragment.
    pub config: BTreeMap<Arch, PinnedFile>,
}

/// Where the Linux source comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum KernelSourceSpec {
    /// A Debian source package, found through the signed `Sources` index of
    /// the recipe's `[debian]` suites; its orig tarball is what is built
    /// (Debian's patches are not applied: the base config decides the kernel).
    Debian {
        /// `linux`.
        package: String,
        /// The exact Debian version to lock (`6.18.5-1~bpo13+1`). Without it
        /// the lock takes the newest version the suites list.
        #[serde(default)]
        version: Option<String>,
    },
    /// An upstream release tarball pinned by its sha256.
    Tarball(PinnedFile),
}

/// A file pinned by URL and sha256; the URL may be rewritten
/// (`--url-rewrite`, `KINA_URL_REWRITE`), the content may not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedFile {
    pub url: String,
    pub sha256: Sha256Digest,
}

/// The `[debian]` table of an image recipe without its package list: the
/// same archive, suite and keyring shapes, so mirrors resolve identically.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelDebianSpec {
    pub mirror: Option<String>,
    pub security_mirror: Option<String>,
    #[serde(default)]
    pub sources: Vec<DebianSource>,
    #[serde(default)]
    pub keyring: Vec<String>,
}

impl KernelRecipe {
    /// The image-recipe form of `[debian]`, for `DebianMirrors::resolve`.
    pub fn debian_spec(&self) -> DebianSpec {
        DebianSpec {
            mirror: self.debian.mirror.clone(),
            security_mirror: self.debian.security_mirror.clone(),
            sources: self.debian.sources.clone(),
            keyring: self.debian.keyring.clone(),
            packages: Vec::new(),
        }
    }

    /// Reads and validates a kernel recipe; returns it with the digest of its bytes.
    pub fn load(path: &Path) -> Result<(Self, Sha256Digest), KernelError> {
        let bytes = std::fs::read(path).map_err(|source| KernelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&bytes, path)
    }

    /// Validates a kernel recipe's bytes; `path` names it in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<(Self, Sha256Digest), KernelError> {
        let invalid = |problem: String| KernelError::Recipe {
            path: path.to_path_buf(),
            problem,
        };
        let text = std::str::from_utf8(bytes).map_err(|e| invalid(format!("not UTF-8: {e}")))?;
        let recipe: KernelRecipe = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if recipe.schema != KERNEL_RECIPE_SCHEMA {
            return Err(invalid(format!(
                "schema {} is not one this kina reads ({KERNEL_RECIPE_SCHEMA}); update kina",
                recipe.schema
            )));
        }
        if recipe.architectures.is_empty() {
            return Err(invalid("`architectures` is empty".into()));
        }
        match &recipe.build {
            None => {
                if let Some(arch) = recipe
                    .architectures
                    .iter()
                    .find(|a| !recipe.metapackage.contains_key(a))
                {
                    return Err(invalid(format!(
                        "no [metapackage] entry for {arch}, which `architectures` lists"
                    )));
                }
            }
            Some(build) => {
                if !recipe.metapackage.is_empty() {
                    return Err(invalid(
                        "it has both [metapackage] (Debian's binary kernel) and [build] (a kernel kina compiles); keep one"
                            .into(),
                    ));
                }
                if let Some(arch) = recipe
                    .architectures
                    .iter()
                    .find(|a| !build.config.contains_key(a))
                {
                    return Err(invalid(format!(
                        "no [build.config.{arch}] base configuration, and `architectures` lists {arch}"
                    )));
                }
                if matches!(build.source, KernelSourceSpec::Debian { .. })
                    && recipe.debian.sources.is_empty()
                {
                    return Err(invalid(
                        "[build.source.debian] needs the suites to find it in: add [debian] sources and keyring"
                            .into(),
                    ));
                }
            }
        }
        Ok((recipe, Sha256Digest::of(bytes)))
    }
}

/// `kernels/<name>.lock`: the concrete kernel package per architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelLock {
    pub schema: u32,
    pub recipe: String,
    pub recipe_sha256: Sha256Digest,
    #[serde(default, rename = "release", skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<LockedRelease>,
    #[serde(default, rename = "kernel", skip_serializing_if = "Vec::is_empty")]
    pub kernels: Vec<LockedKernel>,
    /// The Linux source of a `[build]` recipe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<LockedSource>,
}

/// The Linux source tarball a `[build]` recipe compiles, as locked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LockedSource {
    /// The orig tarball of a Debian source package, as the signed `Sources`
    /// index of `suite` lists it (the suite's release is in `[[release]]`).
    Debian {
        package: String,
        version: String,
        archive: DebianArchive,
        suite: String,
        /// Path below the archive root (`pool/main/l/linux/linux_6.18.5.orig.tar.xz`).
        filename: String,
        size: u64,
        sha256: Sha256Digest,
    },
    /// An upstream tarball, as the recipe pins it.
    Tarball { url: String, sha256: Sha256Digest },
}

impl LockedSource {
    pub fn sha256(&self) -> Sha256Digest {
        match self {
            Self::Debian { sha256, .. } | Self::Tarball { sha256, .. } => *sha256,
        }
    }

    /// What the source is, for messages: `linux 6.18.5-1~bpo13+1 (orig tarball)`.
    pub fn label(&self) -> String {
        match self {
            Self::Debian {
                package, version, ..
            } => format!("{package} {version} (orig tarball)"),
            Self::Tarball { url, .. } => url.rsplit('/').next().unwrap_or(url).to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedKernel {
    pub arch: Arch,
    pub metapackage: String,
    pub metapackage_version: String,
    /// `linux-image-6.12.57+deb13-cloud-amd64`
    pub package: String,
    pub version: String,
    /// `uname -r` of the kernel: the package name without `linux-image-`,
    /// which Debian's kernel packaging guarantees and fetch re-checks.
    pub kernel_release: String,
    pub archive: DebianArchive,
    pub suite: String,
    /// Path of the .deb below the archive root (`pool/main/l/...`).
    pub filename: String,
    pub size: u64,
    pub sha256: Sha256Digest,
}

impl KernelLock {
    pub fn for_arch(&self, arch: Arch) -> Result<&LockedKernel, KernelError> {
        self.kernels
            .iter()
            .find(|k| k.arch == arch)
            .ok_or_else(|| KernelError::NotLocked {
                arch,
                recipe: self.recipe.clone(),
                locked: self
                    .kernels
                    .iter()
                    .map(|k| k.arch.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    pub fn to_toml(&self) -> Result<String, KernelError> {
        let body = toml::to_string(self).map_err(|e| KernelError::Serialize(e.to_string()))?;
        Ok(format!(
            "# Generated by kina from the kernel recipe {}. Do not edit: relock instead.\n{body}",
            self.recipe
        ))
    }

    /// Reads a lock and refuses one made from a different recipe file.
    pub fn read(path: &Path, recipe_path: &Path) -> Result<Self, KernelError> {
        let text = std::fs::read_to_string(path).map_err(|source| KernelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let lock = Self::parse(&text, path)?;
        let (_, recipe_sha256) = KernelRecipe::load(recipe_path)?;
        if recipe_sha256 != lock.recipe_sha256 {
            return Err(KernelError::StaleLock {
                lock: path.to_path_buf(),
                recipe: recipe_path.to_path_buf(),
            });
        }
        Ok(lock)
    }

    /// The lock of `kernels/debian-cloud.toml` compiled into kina, so a node
    /// boots the kernel this kina was tested with and no recipe file has to
    /// be installed next to the binary.
    pub fn shipped() -> Result<Self, KernelError> {
        let origin = Path::new(SHIPPED_LOCK_NAME);
        let lock = Self::parse(SHIPPED_LOCK, origin)?;
        if lock.recipe_sha256 != Sha256Digest::of(SHIPPED_RECIPE.as_bytes()) {
            return Err(KernelError::StaleLock {
                lock: origin.to_path_buf(),
                recipe: PathBuf::from(SHIPPED_RECIPE_NAME),
            });
        }
        Ok(lock)
    }

    /// A lock carried as text (a built-in recipe's), checked to belong to
    /// exactly `recipe_text`; `origin` and `recipe_origin` name them in errors.
    pub fn from_text(
        text: &str,
        origin: &Path,
        recipe_text: &str,
        recipe_origin: &Path,
    ) -> Result<Self, KernelError> {
        let lock = Self::parse(text, origin)?;
        if lock.recipe_sha256 != Sha256Digest::of(recipe_text.as_bytes()) {
            return Err(KernelError::StaleLock {
                lock: origin.to_path_buf(),
                recipe: recipe_origin.to_path_buf(),
            });
        }
        Ok(lock)
    }

    fn parse(text: &str, origin: &Path) -> Result<Self, KernelError> {
        let lock: KernelLock = toml::from_str(text).map_err(|e| KernelError::LockParse {
            path: origin.to_path_buf(),
            problem: e.to_string(),
        })?;
        if lock.schema != KERNEL_LOCK_SCHEMA {
            return Err(KernelError::LockParse {
                path: origin.to_path_buf(),
                problem: format!("schema {} is not {KERNEL_LOCK_SCHEMA}", lock.schema),
            });
        }
        Ok(lock)
    }
}

const SHIPPED_RECIPE_NAME: &str = "kernels/debian-cloud.toml";
const SHIPPED_LOCK_NAME: &str = "kernels/debian-cloud.lock";
/// The shipped kernel recipe; its mirrors resolve like any recipe's.
pub const SHIPPED_RECIPE: &str = include_str!("../../../kernels/debian-cloud.toml");
/// The shipped kernel recipe's lock.
pub const SHIPPED_LOCK: &str = include_str!("../../../kernels/debian-cloud.lock");

/// `kernels/debian-cloud.toml` → `kernels/debian-cloud.lock`.
pub fn kernel_lock_path(recipe_path: &Path) -> PathBuf {
    recipe_path.with_extension("lock")
}

/// Writes `lock` atomically unless `path` already holds exactly these bytes,
/// so relocking an unchanged archive leaves the file (and its mtime) alone.
/// Returns whether the file changed.
pub fn write_kernel_lock(lock: &KernelLock, path: &Path) -> Result<bool, KernelError> {
    let text = lock.to_toml()?;
    if std::fs::read(path).ok().as_deref() == Some(text.as_bytes()) {
        return Ok(false);
    }
    crate::fsutil::write_atomic(path, text.as_bytes()).map_err(|source| KernelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(true)
}

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kernel recipe {path} is not valid: {problem}")]
    Recipe { path: PathBuf, problem: String },
    #[error("kernel recipe {recipe}: {source}")]
    Keyring {
        recipe: PathBuf,
        source: crate::debian::keyring::KeyringError,
    },
    #[error(transparent)]
    Universe(Box<crate::universe::UniverseError>),
    #[error(
        "no package {name} for {arch} in the recipe's suites ({suites}); check the recipe's metapackage names and suites"
    )]
    NoMetapackage {
        name: String,
        arch: Arch,
        suites: String,
    },
    #[error(
        "{name} {version} ({arch}) depends on no linux-image-* package; Debian's kernel metapackages always do, so the archive or the recipe's metapackage name is wrong"
    )]
    NoKernelDependency {
        name: String,
        version: String,
        arch: Arch,
    },
    #[error(
        "{metapackage} depends on {dependency}, which no suite of the recipe holds for {arch}; the mirror may be mid-update: retry later"
    )]
    KernelPackageMissing {
        metapackage: String,
        dependency: String,
        arch: Arch,
    },
    #[error("kernel lock {path} is not valid: {problem}; relock the kernel recipe")]
    LockParse { path: PathBuf, problem: String },
    #[error("kernel lock {lock} was made from another version of {recipe}; relock it")]
    StaleLock { lock: PathBuf, recipe: PathBuf },
    #[error("serialising the kernel lock: {0}")]
    Serialize(String),
    #[error("the kernel lock of {recipe} pins no kernel for {arch} (it has: {locked}); relock it")]
    NotLocked {
        arch: Arch,
        recipe: String,
        locked: String,
    },
    #[error(transparent)]
    Fetch(#[from] crate::fetch::http::FetchError),
    #[error(transparent)]
    Deb(#[from] crate::deb::reader::DebError),
    #[error("unpacking {package}: entry {entry}: {problem}")]
    Unpack {
        package: String,
        entry: String,
        problem: String,
    },
    #[error(
        "{package} holds no boot/vmlinuz-{expected} (it has: {found}); the lock's kernel release does not match the package: relock it"
    )]
    ReleaseMismatch {
        package: String,
        expected: String,
        found: String,
    },
    #[error("{package} holds no modules directory lib/modules/{release}")]
    NoModules { package: String, release: String },
    #[error(
        "running depmod for {release} in {dir}: {problem}; install the host's kmod package (apt-get install kmod)"
    )]
    Depmod {
        release: String,
        dir: PathBuf,
        problem: String,
    },
    #[error("a kernel task failed: {0}")]
    Join(String),
    #[error(
        "no source package {package}{version} in the Sources indexes of {suites}; check the recipe's [build.source.debian] and [debian] suites (or relock to a version the archive still lists)"
    )]
    NoSourcePackage {
        package: String,
        version: String,
        suites: String,
    },
    #[error(
        "source package {package} {version} lists no orig tarball (files: {files}); build from a package with an upstream tarball"
    )]
    NoOrigTarball {
        package: String,
        version: String,
        files: String,
    },
    #[error("the kernel lock of {recipe} pins no Linux source; relock it")]
    NoLockedSource { recipe: String },
    #[error(
        "kernel recipe {recipe} has no [build] section: it names Debian's binary kernel, which `kina kernel build` does not compile; boot it as is, or pass a recipe with [build]"
    )]
    NotABuildRecipe { recipe: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lock kina writes is the file in the repository, byte for byte:
    /// relocking an unchanged archive must leave `kernels/*.lock` alone.
    #[test]
    fn the_shipped_lock_serialises_to_its_own_bytes() {
        let lock = KernelLock::shipped().unwrap();
        assert_eq!(lock.to_toml().unwrap(), SHIPPED_LOCK);
    }

    #[test]
    fn the_shipped_recipe_loads_and_names_a_metapackage_per_architecture() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("debian-cloud.toml");
        std::fs::write(&path, SHIPPED_RECIPE).unwrap();
        let (recipe, sha256) = KernelRecipe::load(&path).unwrap();
        assert_eq!(sha256, Sha256Digest::of(SHIPPED_RECIPE.as_bytes()));
        for arch in &recipe.architectures {
            assert!(recipe.metapackage.contains_key(arch), "{arch}");
        }
        assert_eq!(
            kernel_lock_path(&path),
            dir.path().join("debian-cloud.lock")
        );
    }
}
