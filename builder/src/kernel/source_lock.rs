//! Locking a `[build]` recipe's Linux source.
//!
//! A Debian source package is looked up the way `apt-get source` finds it:
//! each suite's `InRelease` verified against the recipe's keyring, its
//! `Sources` index checked against the signed Release, and the package's
//! orig tarball taken with the size and sha256 its paragraph lists. The lock
//! takes the version the recipe names; a recipe naming none gets the highest
//! version the suites list (Debian's backports suites keep several, and a
//! mirror may no longer carry the files of the older ones, so naming the
//! version is what a shipped recipe does). An upstream tarball is locked as
//! the recipe pins it, with no network access.

use std::path::Path;

use crate::debian::archive::fetch_suite;
use crate::debian::keyring::Keyring;
use crate::debian::sources::{SourceRecord, fetch_sources_index, parse_sources};
use crate::digest::Sha256Digest;
use crate::fetch::http::http_client;
use crate::lock::LockedRelease;

use super::{
    KERNEL_LOCK_SCHEMA, KernelError, KernelLock, KernelLockOptions, KernelRecipe, KernelSourceSpec,
    LockedSource,
};

pub(super) async fn lock_build_source(
    recipe_path: &Path,
    recipe: KernelRecipe,
    recipe_sha256: Sha256Digest,
    opts: &KernelLockOptions,
) -> Result<KernelLock, KernelError> {
    let Some(build) = &recipe.build else {
        return Err(KernelError::NotABuildRecipe {
            recipe: recipe_path.display().to_string(),
        });
    };
    let (package, version) = match &build.source {
        KernelSourceSpec::Tarball(pinned) => {
            return Ok(KernelLock {
                schema: KERNEL_LOCK_SCHEMA,
                recipe: recipe.name.clone(),
                recipe_sha256,
                releases: Vec::new(),
                kernels: Vec::new(),
                source: Some(LockedSource::Tarball {
                    url: pinned.url.clone(),
                    sha256: pinned.sha256,
                }),
            });
        }
        KernelSourceSpec::Debian { package, version } => (package.clone(), version.clone()),
    };
    let recipe_dir = recipe_path.parent().unwrap_or(Path::new("."));
    let keyring = Keyring::load(&recipe.debian.keyring, recipe_dir).map_err(|source| {
        KernelError::Keyring {
            recipe: recipe_path.to_path_buf(),
            source,
        }
    })?;
    let client = http_client()?;
    let mut releases = Vec::new();
    let mut candidates: Vec<SourceRecord> = Vec::new();
    for source in &recipe.debian.sources {
        let base_url = opts.mirrors.url_for(source.archive);
        for suite in &source.suites {
            let archive_err = |e| {
                KernelError::Universe(Box::new(crate::universe::UniverseError::Archive {
                    archive: source.archive.name(),
                    suite: suite.clone(),
                    source: Box::new(e),
                }))
            };
            // No architectures: only the verified Release, no Packages index.
            let index = fetch_suite(
                &client,
                base_url,
                suite,
                &source.components,
                &[],
                &keyring,
                opts.valid_until,
            )
            .await
            .map_err(archive_err)?;
            releases.push(LockedRelease {
                archive: source.archive,
                suite: suite.clone(),
                date: index.release.date.clone(),
                inrelease_sha256: index.inrelease_sha256,
                signed_by: index.release.signed_by.clone(),
            });
            for component in &source.components {
                let text = fetch_sources_index(&client, base_url, &index.release, suite, component)
                    .await
                    .map_err(archive_err)?;
                let records = parse_sources(&text, source.archive, suite, |n| n == package)
                    .map_err(|e| KernelError::Recipe {
                        path: recipe_path.to_path_buf(),
                        problem: format!("reading the Sources index of {suite}/{component}: {e}"),
                    })?;
                candidates.extend(records);
            }
        }
    }
    let chosen = match &version {
        Some(v) => candidates.iter().find(|r| r.version.to_string() == *v),
        // The highest version; on a tie the earlier suite of the recipe.
        None => candidates
            .iter()
            .fold(None, |best: Option<&SourceRecord>, r| match best {
                Some(b) if b.version >= r.version => Some(b),
                _ => Some(r),
            }),
    }
    .ok_or_else(|| KernelError::NoSourcePackage {
        package: package.clone(),
        version: version
            .as_ref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default(),
        suites: recipe
            .debian
            .sources
            .iter()
            .flat_map(|s| s.suites.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    let orig = chosen
        .orig_tarball()
        .ok_or_else(|| KernelError::NoOrigTarball {
            package: package.clone(),
            version: chosen.version.to_string(),
            files: chosen
                .files
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    // Only the release the source came from is part of what was built.
    releases.retain(|r| r.archive == chosen.archive && r.suite == chosen.suite);
    Ok(KernelLock {
        schema: KERNEL_LOCK_SCHEMA,
        recipe: recipe.name.clone(),
        recipe_sha256,
        releases,
        kernels: Vec::new(),
        source: Some(LockedSource::Debian {
            package,
            version: chosen.version.to_string(),
            archive: chosen.archive,
            suite: chosen.suite.clone(),
            filename: format!("{}/{}", chosen.directory, orig.name),
            size: orig.size,
            sha256: orig.sha256,
        }),
    })
}
