//! `kina image lock`: recipe → lockfile.
//!
//! The only step that reads Debian indexes and registries' tags. It verifies the
//! InRelease signatures and the index hashes, resolves the package set per
//! architecture, and pins every input by digest, so a build afterwards needs
//! nothing but content-addressed fetches.

use crate::debian::keyring::Keyring;
use crate::debian::packages::PackageRecord;
use crate::debian::release::ValidUntilPolicy;
use crate::debian::resolve::{LayeredResolution, resolve_layered};
use crate::fetch::mirror::DebianMirrors;
use crate::lock::{LOCK_SCHEMA, LayerName, Lock, LockedArtifact, LockedImage, LockedPackage};
use crate::oci::registry::{RegistryMirrors, resolve_platform_manifest};
use crate::platform::Arch;
use crate::recipe::{ArtifactSpec, DebianArchive, LoadedRecipe};
use crate::universe::{Universe, UniverseError, fetch_universe};

#[derive(Debug, thiserror::Error)]
pub enum LockGenError {
    #[error("recipe {recipe}: {source}")]
    Keyring {
        recipe: String,
        source: crate::debian::keyring::KeyringError,
    },
    #[error(transparent)]
    Universe(#[from] UniverseError),
    #[error("resolving the package set of recipe {recipe} for {arch}: {source}")]
    Resolve {
        recipe: String,
        arch: Arch,
        source: crate::debian::resolve::ResolveError,
    },
    #[error("resolving image {reference} for {arch}: {source}")]
    Image {
        reference: String,
        arch: Arch,
        source: crate::oci::registry::RegistryError,
    },
}

pub struct LockOptions {
    pub mirrors: DebianMirrors,
    pub valid_until: ValidUntilPolicy,
    pub registry_mirrors: RegistryMirrors,
}

/// Resolves `recipe` into a lock. Pure with respect to the archive state: the
/// same archive and recipe give a byte-identical lock.
pub async fn lock_recipe(
    loaded: &LoadedRecipe,
    options: &LockOptions,
    client: &reqwest::Client,
) -> Result<Lock, LockGenError> {
    let recipe = &loaded.recipe;
    let keyring = Keyring::load(&recipe.debian.keyring, loaded.dir()).map_err(|source| {
        LockGenError::Keyring {
            recipe: loaded.path.display().to_string(),
            source,
        }
    })?;

    let Universe {
        releases,
        newest_date,
        packages: mut universe,
    } = fetch_universe(
        client,
        &recipe.debian.sources,
        &recipe.architectures,
        &keyring,
        &options.mirrors,
        options.valid_until,
        |_| true,
    )
    .await?;

    let mut packages = Vec::new();
    for &arch in &recipe.architectures {
        let records = universe.remove(&arch).unwrap_or_default();
        let resolution: LayeredResolution = resolve_layered(
            &records,
            arch,
            &recipe.debian.packages,
            &recipe.runtime.debian_packages,
        )
        .map_err(|source| LockGenError::Resolve {
            recipe: recipe.name.clone(),
            arch,
            source,
        })?;
        for (layer, set) in [
            (LayerName::DebianBase, &resolution.base),
            (LayerName::Runtime, &resolution.extra),
        ] {
            for record in set {
                packages.push(locked_package(record, arch, layer));
            }
        }
    }
    packages.sort_by(|a, b| (a.platform, &a.name).cmp(&(b.platform, &b.name)));

    let mut artifacts = Vec::new();
    let kubernetes = recipe.kubernetes.as_ref();
    let groups: [(LayerName, &[ArtifactSpec]); 2] = [
        (LayerName::Runtime, &recipe.runtime.artifacts),
        (
            LayerName::Kubernetes,
            kubernetes.map_or(&[][..], |k| &k.artifacts),
        ),
    ];
    for &arch in &recipe.architectures {
        for (layer, specs) in &groups {
            for spec in *specs {
                // validate() guarantees a checksum for every recipe architecture.
                let Some(sha256) = spec.sha256.get(&arch) else {
                    continue;
                };
                artifacts.push(LockedArtifact {
                    platform: arch,
                    name: spec.name.clone(),
                    version: spec.version.clone(),
                    url: spec.url_for(arch),
                    sha256: *sha256,
                    layer: *layer,
                    install: spec.install.clone(),
                });
            }
        }
    }

    let mut images = Vec::new();
    for image in kubernetes.map_or(&[][..], |k| &k.images) {
        for &arch in &recipe.architectures {
            let manifest_digest = resolve_platform_manifest(
                &image.reference,
                &image.digest,
                arch,
                &options.registry_mirrors,
            )
            .await
            .map_err(|source| LockGenError::Image {
                reference: image.reference.clone(),
                arch,
                source,
            })?;
            images.push(LockedImage {
                platform: arch,
                reference: image.reference.clone(),
                digest: image.digest,
                manifest_digest,
            });
        }
    }

    Ok(Lock {
        schema: LOCK_SCHEMA,
        recipe: recipe.name.clone(),
        recipe_sha256: loaded.sha256,
        source_date_epoch: newest_date,
        releases,
        packages,
        artifacts,
        images,
    })
}

fn locked_package(record: &PackageRecord, platform: Arch, layer: LayerName) -> LockedPackage {
    LockedPackage {
        platform,
        name: record.name.clone(),
        version: record.version.to_string(),
        architecture: record.architecture.clone(),
        archive: record.archive,
        suite: record.suite.clone(),
        filename: record.filename.clone(),
        size: record.size,
        sha256: record.sha256,
        source: record.source.clone(),
        source_version: record.source_version.to_string(),
        layer,
    }
}

/// The URL of a locked `.deb` on the configured mirror.
pub fn deb_url(mirrors: &DebianMirrors, archive: DebianArchive, filename: &str) -> String {
    format!(
        "{}/{}",
        mirrors.url_for(archive).trim_end_matches('/'),
        filename
    )
}
