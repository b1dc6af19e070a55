//! Obtaining each platform's kina-init binary: a local build or a pinned release.
//!
//! An image is never assembled without its init: a missing binary, or one for
//! the wrong architecture, stops the build with the command that fixes it.

use std::path::{Path, PathBuf};

use crate::digest::Sha256Digest;
use crate::fetch::http::{FetchItem, Fetcher};
use crate::platform::Arch;
use crate::recipe::{KinaInitSpec, LoadedRecipe, expand_template};

use super::elf::elf_arch;

pub struct KinaInitBinary {
    pub bytes: Vec<u8>,
    pub digest: Sha256Digest,
    pub version: String,
    /// Where it came from: a path or a URL, for the SBOM.
    pub origin: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KinaInitError {
    #[error(
        "no kina-init for {arch} at {path}: {source}; build it with `scripts/build-kina-init {arch}` or pass --kina-init {arch}=PATH"
    )]
    Missing {
        arch: Arch,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kina-init for {arch} at {origin} is unusable: {problem}")]
    WrongBinary {
        arch: Arch,
        origin: String,
        problem: String,
    },
    #[error("recipe pins no kina-init for {arch}")]
    NotPinned { arch: Arch },
    #[error("downloading kina-init for {arch}: {source}")]
    Fetch {
        arch: Arch,
        source: crate::fetch::http::FetchError,
    },
}

pub async fn obtain(
    loaded: &LoadedRecipe,
    override_path: Option<&PathBuf>,
    arch: Arch,
    fetcher: &Fetcher,
) -> Result<KinaInitBinary, KinaInitError> {
    let (bytes, origin, version) = match (override_path, &loaded.recipe.kina_init) {
        (Some(path), _) => (
            read_local(path, arch)?,
            path.display().to_string(),
            local_version(),
        ),
        (None, KinaInitSpec::Local { path }) => {
            let path = resolve_local(loaded.dir(), path, arch);
            (
                read_local(&path, arch)?,
                path.display().to_string(),
                local_version(),
            )
        }
        (
            None,
            KinaInitSpec::Url {
                url,
                version,
                sha256,
            },
        ) => {
            let expected = sha256.get(&arch).ok_or(KinaInitError::NotPinned { arch })?;
            let url = expand_template(url, version, arch);
            let path = fetcher
                .fetch(&FetchItem {
                    url: url.clone(),
                    sha256: *expected,
                    size: None,
                    label: format!("kina-init {version} ({arch})"),
                })
                .await
                .map_err(|source| KinaInitError::Fetch { arch, source })?;
            let bytes = std::fs::read(&path).map_err(|source| KinaInitError::Missing {
                arch,
                path: path.clone(),
                source,
            })?;
            (bytes, url, version.clone())
        }
    };
    match elf_arch(&bytes) {
        Ok(found) if found == arch => {}
        Ok(found) => {
            return Err(KinaInitError::WrongBinary {
                arch,
                origin,
                problem: format!("it is built for {found}"),
            });
        }
        Err(problem) => {
            return Err(KinaInitError::WrongBinary {
                arch,
                origin,
                problem,
            });
        }
    }
    Ok(KinaInitBinary {
        digest: Sha256Digest::of(&bytes),
        bytes,
        version,
        origin,
    })
}

fn resolve_local(recipe_dir: &Path, template: &str, arch: Arch) -> PathBuf {
    let expanded = expand_template(template, crate::KINA_VERSION, arch);
    recipe_dir.join(expanded)
}

fn read_local(path: &Path, arch: Arch) -> Result<Vec<u8>, KinaInitError> {
    std::fs::read(path).map_err(|source| KinaInitError::Missing {
        arch,
        path: path.to_path_buf(),
        source,
    })
}

/// A local build is the workspace's kina-init, so it has the workspace version.
fn local_version() -> String {
    crate::KINA_VERSION.to_string()
}

/// What identifies a platform's kina-init without fetching it: the digest of
/// a local binary, or the pinned digest of a released one.
pub fn identity(
    loaded: &LoadedRecipe,
    override_path: Option<&PathBuf>,
    arch: Arch,
    memo: &crate::digest_memo::DigestMemo,
) -> Result<Sha256Digest, KinaInitError> {
    let local = match (override_path, &loaded.recipe.kina_init) {
        (Some(path), _) => path.clone(),
        (None, KinaInitSpec::Local { path }) => resolve_local(loaded.dir(), path, arch),
        (None, KinaInitSpec::Url { sha256, .. }) => {
            return sha256
                .get(&arch)
                .copied()
                .ok_or(KinaInitError::NotPinned { arch });
        }
    };
    memo.digest(&local)
        .map_err(|source| KinaInitError::Missing {
            arch,
            path: local.clone(),
            source,
        })
}
