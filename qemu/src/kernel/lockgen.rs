//! Locking a kernel recipe against the signed archive.
//!
//! Debian's `linux-image-cloud-<arch>` metapackage depends on exactly one
//! ABI-versioned package (`linux-image-<abi>-cloud-<arch> (= <version>)`),
//! which is what apt installs; the lock pins that package, taken at its
//! highest version across the recipe's suites as apt's candidate selection
//! would with equal pin priorities.

use std::collections::BTreeMap;
use std::path::Path;

use kina_builder::debian::archive::fetch_suite;
use kina_builder::debian::keyring::Keyring;
use kina_builder::debian::packages::{PackageRecord, parse_packages};
use kina_builder::debian::release::ValidUntilPolicy;
use kina_builder::fetch::http::http_client;
use kina_builder::fetch::mirror::DebianMirrors;
use kina_builder::lock::LockedRelease;
use kina_builder::platform::Arch;

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
    let recipe_dir = recipe_path.parent().unwrap_or(Path::new("."));
    let keyring = Keyring::load(&recipe.debian.keyring, recipe_dir).map_err(|source| {
        KernelError::Keyring {
            recipe: recipe_path.to_path_buf(),
            source,
        }
    })?;
    let client = http_client()?;

    let mut releases = Vec::new();
    let mut universe: BTreeMap<Arch, Vec<PackageRecord>> = BTreeMap::new();
    let mut suites = Vec::new();
    for source in &recipe.debian.sources {
        let base_url = opts.mirrors.url_for(source.archive);
        for suite in &source.suites {
            suites.push(suite.clone());
            let index = fetch_suite(
                &client,
                base_url,
                suite,
                &source.components,
                &recipe.architectures,
                &keyring,
                opts.valid_until,
            )
            .await
            .map_err(|e| KernelError::Archive {
                archive: source.archive.name(),
                suite: suite.clone(),
                source: Box::new(e),
            })?;
            releases.push(LockedRelease {
                archive: source.archive,
                suite: suite.clone(),
                date: index.release.date.clone(),
                inrelease_sha256: index.inrelease_sha256,
                signed_by: index.release.signed_by.clone(),
            });
            for packages in &index.packages {
                let records = parse_packages(&packages.text, source.archive, suite, packages.arch)
                    .map_err(|e| KernelError::Packages {
                        suite: suite.clone(),
                        arch: packages.arch,
                        source: e,
                    })?;
                universe.entry(packages.arch).or_default().extend(
                    records
                        .into_iter()
                        .filter(|r| r.name.starts_with("linux-image-")),
                );
            }
        }
    }

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
