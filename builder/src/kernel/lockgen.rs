//! Locking a kernel recipe against the signed archive.
//!
//! Debian's `linux-image-cloud-<arch>` metapackage depends on exactly one
//! ABI-versioned package (`linux-image-<abi>-cloud-<arch> (= <version>)`),
//! which is what apt installs; the lock pins that package, taken at its
//! highest version across the recipe's suites as apt's candidate selection
//! would with equal pin priorities.

use std::path::Path;

use crate::debian::keyring::Keyring;
use crate::debian::packages::PackageRecord;
use crate::debian::release::ValidUntilPolicy;
use crate::fetch::http::http_client;
use crate::fetch::mirror::DebianMirrors;
use crate::universe::{Universe, fetch_universe};

use super::{KERNEL_LOCK_SCHEMA, KernelError, KernelLock, KernelRecipe, LockedKernel};

pub struct KernelLockOptions {
    pub mirrors: DebianMirrors,
    pub valid_until: ValidUntilPolicy,
}

/// Resolves the recipe at `recipe_path` into a lock; write it with
/// [`super::write_kernel_lock`]. The same archive state gives the same lock.
pub async fn lock_kernel(
    recipe_path: &Path,
    opts: &KernelLockOptions,
) -> Result<KernelLock, KernelError> {
    let (recipe, recipe_sha256) = KernelRecipe::load(recipe_path)?;
    if recipe.build.is_some() {
        return super::source_lock::lock_build_source(recipe_path, recipe, recipe_sha256, opts)
            .await;
    }
    let recipe_dir = recipe_path.parent().unwrap_or(Path::new("."));
    let keyring = Keyring::load(&recipe.debian.keyring, recipe_dir).map_err(|source| {
        KernelError::Keyring {
            recipe: recipe_path.to_path_buf(),
            source,
        }
    })?;
    let client = http_client()?;
    let Universe {
        releases,
        packages: mut universe,
        ..
    } = fetch_universe(
        &client,
        &recipe.debian.sources,
        &recipe.architectures,
        &keyring,
        &opts.mirrors,
        opts.valid_until,
        |r| r.name.starts_with("linux-image-"),
    )
    .await
    .map_err(|e| KernelError::Universe(Box::new(e)))?;
    let suites: Vec<&str> = recipe
        .debian
        .sources
        .iter()
        .flat_map(|s| s.suites.iter().map(String::as_str))
        .collect();

    let mut kernels = Vec::new();
    for &arch in &recipe.architectures {
        let records = universe.remove(&arch).unwrap_or_default();
        let meta_name = recipe.metapackage.get(&arch).cloned().unwrap_or_default();
        let meta = newest(records.iter().filter(|r| r.name == meta_name)).ok_or_else(|| {
            KernelError::NoMetapackage {
                name: meta_name.clone(),
                arch,
                suites: suites.join(", "),
            }
        })?;
        let dependency = meta
            .depends
            .iter()
            .filter_map(|alternatives| alternatives.first())
            .find(|r| r.name.starts_with("linux-image-") && r.name != meta.name)
            .ok_or_else(|| KernelError::NoKernelDependency {
                name: meta.name.clone(),
                version: meta.version.to_string(),
                arch,
            })?;
        let kernel = newest(
            records
                .iter()
                .filter(|r| dependency.satisfied_by(&r.name, &r.version)),
        )
        .ok_or_else(|| KernelError::KernelPackageMissing {
            metapackage: format!("{} {}", meta.name, meta.version),
            dependency: dependency.name.clone(),
            arch,
        })?;
        let kernel_release = kernel
            .name
            .trim_start_matches("linux-image-")
            .trim_end_matches("-unsigned")
            .to_string();
        kernels.push(LockedKernel {
            arch,
            metapackage: meta.name.clone(),
            metapackage_version: meta.version.to_string(),
            package: kernel.name.clone(),
            version: kernel.version.to_string(),
            kernel_release,
            archive: kernel.archive,
            suite: kernel.suite.clone(),
            filename: kernel.filename.clone(),
            size: kernel.size,
            sha256: kernel.sha256,
        });
    }
    Ok(KernelLock {
        schema: KERNEL_LOCK_SCHEMA,
        recipe: recipe.name,
        recipe_sha256,
        releases,
        kernels,
        source: None,
    })
}

/// The highest version; on a tie the first seen (the earlier suite in the
/// recipe), so the lock does not depend on iteration details.
fn newest<'a>(records: impl Iterator<Item = &'a PackageRecord>) -> Option<&'a PackageRecord> {
    records.fold(None, |best, r| match best {
        Some(b) if b.version >= r.version => Some(b),
        _ => Some(r),
    })
}
