//! Lockfiles: everything a build reads, resolved and pinned by digest.
//!
//! A lock is mirror-agnostic: it records the archive, suite and pool path of a
//! `.deb` and its sha256, never a host name, so a build may fetch from any
//! mirror and trust only the digest. Writing is byte-stable, so locking again
//! with nothing changed leaves the file untouched.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::platform::Arch;
use crate::recipe::{DebianArchive, Install};

pub const LOCK_SCHEMA: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub schema: u32,
    pub recipe: String,
    /// Digest of the recipe file the lock was made from.
    pub recipe_sha256: Sha256Digest,
    /// Default timestamp for every file and the image config: the newest
    /// signed Release `Date`, so a relock against a newer archive moves it and
    /// nothing else does.
    pub source_date_epoch: u64,
    #[serde(default, rename = "release")]
    pub releases: Vec<LockedRelease>,
    #[serde(default, rename = "package")]
    pub packages: Vec<LockedPackage>,
    #[serde(default, rename = "artifact")]
    pub artifacts: Vec<LockedArtifact>,
    #[serde(default, rename = "image")]
    pub images: Vec<LockedImage>,
}

/// A signed `InRelease` the packages were resolved from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedRelease {
    pub archive: DebianArchive,
    pub suite: String,
    /// The Release `Date` field, verbatim.
    pub date: String,
    pub inrelease_sha256: Sha256Digest,
    /// Fingerprint of the key or subkey whose signature verified.
    pub signed_by: String,
}

/// The image layer a component lands in. Order is bottom to top; a new
/// Kubernetes patch release changes only the layers above `Runtime`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayerName {
    DebianBase,
    Runtime,
    Kubernetes,
    Images,
    KinaInit,
}

impl LayerName {
    pub const ALL: [LayerName; 5] = [
        LayerName::DebianBase,
        LayerName::Runtime,
        LayerName::Kubernetes,
        LayerName::Images,
        LayerName::KinaInit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LayerName::DebianBase => "debian-base",
            LayerName::Runtime => "runtime",
            LayerName::Kubernetes => "kubernetes",
            LayerName::Images => "images",
            LayerName::KinaInit => "kina-init",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    /// The platform whose root filesystem this package is part of.
    pub platform: Arch,
    pub name: String,
    pub version: String,
    /// The package's own `Architecture` (`amd64`, `arm64` or `all`).
    pub architecture: String,
    pub archive: DebianArchive,
    pub suite: String,
    /// Pool path relative to the archive root, e.g. `pool/main/i/iproute2/…deb`.
    pub filename: String,
    pub size: u64,
    pub sha256: Sha256Digest,
    /// Source package name and version, for the SBOM.
    pub source: String,
    pub source_version: String,
    pub layer: LayerName,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedArtifact {
    pub platform: Arch,
    pub name: String,
    pub version: String,
    /// Upstream URL with the template expanded; mirrors rewrite its prefix.
    pub url: String,
    pub sha256: Sha256Digest,
    pub layer: LayerName,
    pub install: Install,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedImage {
    pub platform: Arch,
    /// Reference as the recipe names it, with tag.
    pub reference: String,
    /// Digest the recipe pins (index or manifest).
    pub digest: Sha256Digest,
    /// The platform's own manifest within that index.
    pub manifest_digest: Sha256Digest,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "cannot read lockfile {path}: {source}; run `kina image lock --recipe {recipe}` to create it"
    )]
    Read {
        path: PathBuf,
        recipe: PathBuf,
        source: std::io::Error,
    },
    #[error("lockfile {path} is not valid: {source}; run `kina image lock` to regenerate it")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error(
        "lockfile {path} was made from a different version of {recipe} (recipe sha256 {actual}, lock says {locked}); run `kina image lock --recipe {recipe}`"
    )]
    Stale {
        path: PathBuf,
        recipe: PathBuf,
        locked: Sha256Digest,
        actual: Sha256Digest,
    },
    #[error("lockfile {path} has schema {found}; this kina reads schema {LOCK_SCHEMA}")]
    Schema { path: PathBuf, found: u32 },
    #[error("cannot serialise lockfile: {0}")]
    Serialize(#[from] toml::ser::Error),
    #[error("cannot write lockfile {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `recipes/base.toml` → `recipes/base.lock`.
pub fn lock_path_for(recipe: &Path) -> PathBuf {
    recipe.with_extension("lock")
}

impl Lock {
    pub fn read(path: &Path, recipe_path: &Path) -> Result<Self, LockError> {
        let text = std::fs::read_to_string(path).map_err(|source| LockError::Read {
            path: path.to_path_buf(),
            recipe: recipe_path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses a lock's text; `path` names it in errors (a file, or a lock
    /// built into kina).
    pub fn parse(text: &str, path: &Path) -> Result<Self, LockError> {
        let lock: Lock = toml::from_str(text).map_err(|source| LockError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        if lock.schema != LOCK_SCHEMA {
            return Err(LockError::Schema {
                path: path.to_path_buf(),
                found: lock.schema,
            });
        }
        Ok(lock)
    }

    /// Reads the lock and checks it belongs to this exact recipe.
    pub fn read_for(
        path: &Path,
        recipe_path: &Path,
        recipe_sha256: &Sha256Digest,
    ) -> Result<Self, LockError> {
        Self::read(path, recipe_path)?.belonging_to(path, recipe_path, recipe_sha256)
    }

    /// Checks the lock was made from the recipe whose bytes have `recipe_sha256`.
    pub fn belonging_to(
        self,
        path: &Path,
        recipe_path: &Path,
        recipe_sha256: &Sha256Digest,
    ) -> Result<Self, LockError> {
        let lock = self;
        if lock.recipe_sha256 != *recipe_sha256 {
            return Err(LockError::Stale {
                path: path.to_path_buf(),
                recipe: recipe_path.to_path_buf(),
                locked: lock.recipe_sha256,
                actual: *recipe_sha256,
            });
        }
        Ok(lock)
    }

    pub fn to_toml(&self) -> Result<String, LockError> {
        let body = toml::to_string(self)?;
        // The header is a TOML comment, where control characters (a line
        // break in a recipe's path, say) are not allowed: they would make
        // the lock unreadable. The `recipe` field keeps the exact path.
        let shown: String = self
            .recipe
            .chars()
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect();
        Ok(format!(
            "# Generated by `kina image lock` from {shown}. Do not edit: builds read only this file.\n{body}"
        ))
    }

    /// Writes the lock atomically unless the file already holds exactly these
    /// bytes. Returns whether the file changed.
    pub fn write_if_changed(&self, path: &Path) -> Result<bool, LockError> {
        let text = self.to_toml()?;
        if std::fs::read(path).ok().as_deref() == Some(text.as_bytes()) {
            return Ok(false);
        }
        crate::fsutil::write_atomic(path, text.as_bytes()).map_err(|source| LockError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(true)
    }

    pub fn packages_for(&self, arch: Arch) -> impl Iterator<Item = &LockedPackage> {
        self.packages.iter().filter(move |p| p.platform == arch)
    }

    pub fn artifacts_for(&self, arch: Arch) -> impl Iterator<Item = &LockedArtifact> {
        self.artifacts.iter().filter(move |a| a.platform == arch)
    }

    pub fn images_for(&self, arch: Arch) -> impl Iterator<Item = &LockedImage> {
        self.images.iter().filter(move |i| i.platform == arch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lock {
        Lock {
            schema: LOCK_SCHEMA,
            recipe: "base".into(),
            recipe_sha256: Sha256Digest::of(b"recipe"),
            source_date_epoch: 1_757_663_741,
            releases: vec![],
            packages: vec![LockedPackage {
                platform: Arch::Arm64,
                name: "iproute2".into(),
                version: "6.15.0-1".into(),
                architecture: "arm64".into(),
                archive: DebianArchive::Debian,
                suite: "trixie".into(),
                filename: "pool/main/i/iproute2/iproute2_6.15.0-1_arm64.deb".into(),
                size: 1234,
                sha256: Sha256Digest::of(b"deb"),
                source: "iproute2".into(),
                source_version: "6.15.0-1".into(),
                layer: LayerName::DebianBase,
            }],
            artifacts: vec![],
            images: vec![],
        }
    }

    #[test]
    fn a_lock_round_trips_through_its_file_and_is_not_rewritten_when_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("base.lock");
        let lock = sample();
        assert!(lock.write_if_changed(&path).unwrap());
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!lock.write_if_changed(&path).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
        let read = Lock::read(&path, Path::new("base.toml")).unwrap();
        assert_eq!(read, lock);
    }

    #[test]
    fn a_lock_from_another_recipe_version_is_reported_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("base.lock");
        sample().write_if_changed(&path).unwrap();
        let err = Lock::read_for(&path, Path::new("base.toml"), &Sha256Digest::of(b"edited"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("kina image lock"), "{err}");
    }
}
