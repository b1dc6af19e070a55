//! `kina image build`: lock → verified inputs → layers → OCI image.
//!
//! Downloads run concurrently (async); unpacking, layer writing and
//! compression are CPU work and run on blocking threads, one per platform, so
//! a two-platform build uses both cores of a small machine.

pub mod artifact;
pub mod elf;
pub mod kina_init;
pub mod path_filter;
pub mod stages;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::deb::decoded::DecodedDebs;
use crate::digest::Sha256Digest;
use crate::fetch::http::{FetchError, FetchItem, Fetcher};
use crate::fetch::mirror::DebianMirrors;
use crate::lock::{LayerName, Lock};
use crate::lockgen::deb_url;
use crate::oci::image::{ImageConfigParams, PlatformManifest, write_platform_image};
use crate::oci::layer::{Compression, LayerBlob, write_layer};
use crate::oci::registry::{PullError, RegistryMirrors, preload_tree, pull_platform};
use crate::oci_layout::BlobStore;
use crate::platform::Arch;
use crate::recipe::LoadedRecipe;
use crate::sbom::{SbomComponent, spdx_document};

use stages::DebSource;
pub use stages::KINA_INIT_PATH;

pub struct BuildOptions {
    pub platforms: Vec<Arch>,
    pub reference: String,
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH` from the environment, which wins over the lock's.
    pub source_date_epoch: Option<u64>,
    pub kina_init_overrides: BTreeMap<Arch, PathBuf>,
    pub mirrors: DebianMirrors,
    pub registry_mirrors: RegistryMirrors,
}

/// What was built, for the CLI to print and tests to assert.
#[derive(Debug)]
pub struct BuiltImage {
    pub reference: String,
    pub epoch: u64,
    pub platforms: Vec<BuiltPlatform>,
}

#[derive(Debug)]
pub struct BuiltPlatform {
    pub arch: Arch,
    pub manifest: PlatformManifest,
    pub layers: Vec<(LayerName, LayerBlob)>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the lock has no entries for {arch}; the recipe builds {available}")]
    PlatformNotLocked { arch: Arch, available: String },
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("reading cached download {path}: {source}")]
    ReadCache {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pulling preloaded image: {0}")]
    Pull(#[from] PullError),
    #[error(transparent)]
    KinaInit(Box<kina_init::KinaInitError>),
    #[error(transparent)]
    Stage(#[from] stages::StageError),
    #[error("writing layer {layer} ({arch}): {message}")]
    Layer {
        layer: &'static str,
        arch: Arch,
        message: String,
    },
    #[error("writing the image for {arch}: {message}")]
    Image { arch: Arch, message: String },
    #[error("the lock cannot be serialised: {0}")]
    Lock(#[from] crate::lock::LockError),
    #[error("image store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("writing the image index: {0}")]
    Index(#[from] crate::oci::image::ImageError),
    #[error("a build thread failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("fewer verified inputs than requested; this is a kina bug")]
    Inputs,
}

/// Builds every requested platform of `recipe` from `lock` into `blobs`.
/// The caller turns the result into an index and an output (layout, archive
/// or the local store).
pub async fn build_image(
    loaded: &LoadedRecipe,
    lock: &Lock,
    options: &BuildOptions,
    fetcher: &Fetcher,
    blobs: &BlobStore,
) -> Result<BuiltImage, BuildError> {
    let epoch = options.source_date_epoch.unwrap_or(lock.source_date_epoch);
    let lock_digest = Sha256Digest::of(lock.to_toml()?.as_bytes());
    for &arch in &options.platforms {
        if lock.packages_for(arch).next().is_none() {
            return Err(BuildError::PlatformNotLocked {
                arch,
                available: loaded
                    .recipe
                    .architectures
                    .iter()
                    .map(|a| a.platform())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }

    let mut handles = Vec::new();
    for &arch in &options.platforms {
        let inputs =
            gather_inputs(loaded, lock, &lock_digest, options, fetcher, arch, epoch).await?;
        let blobs = blobs.clone();
        let params = image_params(
            loaded,
            lock,
            &lock_digest,
            arch,
            epoch,
            &inputs.kina_init_digest,
        );
        let compression = options.compression;
        handles.push(tokio::task::spawn_blocking(move || {
            assemble_platform(inputs, params, epoch, compression, &blobs)
        }));
    }
    let mut platforms = Vec::new();
    for handle in handles {
        platforms.push(handle.await??);
    }
    Ok(BuiltImage {
        reference: options.reference.clone(),
        epoch,
        platforms,
    })
}

impl From<kina_init::KinaInitError> for BuildError {
    fn from(e: kina_init::KinaInitError) -> Self {
        BuildError::KinaInit(Box::new(e))
    }
}

/// Inputs plus what the image config records about them.
struct GatheredInputs {
    stage: stages::PlatformInputs,
    kina_init_digest: Sha256Digest,
}

async fn gather_inputs(
    loaded: &LoadedRecipe,
    lock: &Lock,
    lock_digest: &Sha256Digest,
    options: &BuildOptions,
    fetcher: &Fetcher,
    arch: Arch,
    epoch: u64,
) -> Result<GatheredInputs, BuildError> {
    let packages: Vec<_> = lock.packages_for(arch).cloned().collect();
    let artifacts: Vec<_> = lock.artifacts_for(arch).cloned().collect();
    // A package with a decoded entry is not read into memory: the entry
    // serves. Its `.deb` is still verified (hashed as it is read, never held
    // whole), so the download cache stays whole: a corrupt `.deb` is
    // removed and fetched again, as without the decoded cache, and stays
    // the fallback for an entry that turns out damaged.
    let decoded = DecodedDebs::open(fetcher.cache().root())
        .inspect_err(|e| tracing::warn!("{e}; every package is decoded from its .deb"))
        .ok();
    let cached: Vec<Option<PathBuf>> = {
        let decoded = decoded.clone();
        let cache = fetcher.cache().clone();
        let digests: Vec<_> = packages.iter().map(|p| p.sha256).collect();
        tokio::task::spawn_blocking(move || {
            digests
                .iter()
                .map(|digest| {
                    if !decoded.as_ref().is_some_and(|d| d.has(digest)) {
                        return Ok(None);
                    }
                    cache.get(digest)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await?
        .map_err(FetchError::from)?
    };
    let mut items = Vec::new();
    for (p, cached) in packages.iter().zip(&cached) {
        if cached.is_some() {
            continue;
        }
        items.push(FetchItem {
            url: deb_url(&options.mirrors, p.archive, &p.filename),
            sha256: p.sha256,
            size: Some(p.size),
            label: format!("{} {} ({})", p.name, p.version, p.architecture),
        });
    }
    for a in &artifacts {
        items.push(FetchItem {
            url: a.url.clone(),
            sha256: a.sha256,
            size: None,
            label: format!("{} {} ({arch})", a.name, a.version),
        });
    }
    let mut contents = read_verified(fetcher, &items).await?.into_iter();
    let mut debs = Vec::new();
    let mut components = Vec::new();
    for (p, cached) in packages.iter().zip(cached) {
        components.push(SbomComponent::deb(p));
        let source = match cached {
            Some(path) => DebSource::Cached(path),
            None => DebSource::Bytes(contents.next().ok_or(BuildError::Inputs)?),
        };
        debs.push((p.clone(), source));
    }
    let mut artifact_inputs = Vec::new();
    for (a, bytes) in artifacts.iter().zip(contents) {
        components.push(SbomComponent::artifact(a));
        artifact_inputs.push((a.clone(), bytes));
    }

    let mut pulled = Vec::new();
    for image in lock.images_for(arch) {
        components.push(SbomComponent::image(image));
        pulled.push(
            pull_platform(
                &image.reference,
                &image.manifest_digest,
                &options.registry_mirrors,
            )
            .await?,
        );
    }
    let images = if pulled.is_empty() {
        crate::rootfs::tree::Tree::new()
    } else {
        preload_tree(&pulled, epoch)?
    };

    let init = kina_init::obtain(
        loaded,
        options.kina_init_overrides.get(&arch),
        arch,
        fetcher,
    )
    .await?;
    components.push(SbomComponent::kina_init(
        &init.version,
        &init.origin,
        init.digest,
    ));
    // Named after the recipe and its lock, not the tag: see spdx_document.
    let subject = format!("{}@{}", loaded.recipe.name, lock_digest.oci());
    let sbom =
        spdx_document(&subject, arch, epoch, &components).map_err(|e| BuildError::Image {
            arch,
            message: format!("writing the SBOM: {e}"),
        })?;
    Ok(GatheredInputs {
        kina_init_digest: init.digest,
        stage: stages::PlatformInputs {
            arch,
            debs,
            decoded,
            artifacts: artifact_inputs,
            images,
            kina_init: init.bytes,
            extra_files: vec![(SBOM_PATH.to_string(), sbom)],
            filters: path_filter::PathFilters::new(&loaded.recipe.leave_out),
        },
    })
}

/// The verified bytes of every item, each cached file read once and hashed
/// once (in memory, on the blocking pool); what is missing from the cache or
/// does not match its digest is fetched, which replaces a corrupt entry.
async fn read_verified(fetcher: &Fetcher, items: &[FetchItem]) -> Result<Vec<Vec<u8>>, BuildError> {
    let wanted: Vec<_> = items
        .iter()
        .map(|item| (fetcher.cache().blob_path(&item.sha256), item.sha256))
        .collect();
    let cached = tokio::task::spawn_blocking(move || {
        wanted
            .into_iter()
            .map(|(path, expected)| match std::fs::read(&path) {
                Ok(bytes) if Sha256Digest::of(&bytes) == expected => Some(bytes),
                _ => None,
            })
            .collect::<Vec<_>>()
    })
    .await?;
    let mut out = Vec::with_capacity(items.len());
    let mut missing = Vec::new();
    for (index, bytes) in cached.into_iter().enumerate() {
        match bytes {
            Some(bytes) => out.push(bytes),
            None => {
                missing.push(index);
                out.push(Vec::new());
            }
        }
    }
    if missing.is_empty() {
        return Ok(out);
    }
    let wanted: Vec<FetchItem> = missing.iter().map(|&i| items[i].clone()).collect();
    let paths = fetcher.fetch_all(&wanted).await?;
    for (index, path) in missing.into_iter().zip(paths) {
        // Just downloaded and verified by the fetcher.
        out[index] = std::fs::read(&path).map_err(|source| BuildError::ReadCache {
            path: path.clone(),
            source,
        })?;
    }
    Ok(out)
}

/// Where a node keeps its own SBOM, so a node can be audited from inside.
pub const SBOM_PATH: &str = "usr/share/kina/sbom.spdx.json";

fn image_params(
    loaded: &LoadedRecipe,
    lock: &Lock,
    lock_digest: &Sha256Digest,
    arch: Arch,
    epoch: u64,
    kina_init_digest: &Sha256Digest,
) -> ImageConfigParams {
    let mut labels = BTreeMap::new();
    labels.insert(
        "io.kina.version".to_string(),
        crate::KINA_VERSION.to_string(),
    );
    labels.insert("io.kina.recipe".to_string(), loaded.recipe.name.clone());
    labels.insert(
        "io.kina.recipe.sha256".to_string(),
        lock.recipe_sha256.hex(),
    );
    labels.insert("io.kina.lock.sha256".to_string(), lock_digest.hex());
    labels.insert(
        "io.kina.kina-init.sha256".to_string(),
        kina_init_digest.hex(),
    );
    if let Some(k8s) = &loaded.recipe.kubernetes {
        labels.insert(
            "io.kina.kubernetes.version".to_string(),
            k8s.version.clone(),
        );
    }
    ImageConfigParams {
        arch,
        created_epoch: epoch,
        entrypoint: vec![format!("/{KINA_INIT_PATH}")],
        // kina-init, not systemd, is the entrypoint: SIGTERM is its orderly
        // shutdown (kind's SIGRTMIN+3 is systemd's convention).
        stop_signal: "SIGTERM".to_string(),
        env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()],
        labels,
    }
}

fn assemble_platform(
    gathered: GatheredInputs,
    params: ImageConfigParams,
    epoch: u64,
    compression: Compression,
    blobs: &BlobStore,
) -> Result<BuiltPlatform, BuildError> {
    let arch = gathered.stage.arch;
    let stages::BuiltLayers { layers, left_out } = stages::build_layers(&gathered.stage, epoch)?;
    let mut params = params;
    params
        .labels
        .extend(left_out_labels(&gathered.stage.filters, &left_out));
    // Every layer is written at once: each streams its tar into the shared
    // compression pool, which keeps every core busy across layers and
    // platforms; the bytes do not depend on the order blocks finish in.
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = layers
            .iter()
            .map(|(name, tree)| {
                (
                    *name,
                    scope.spawn(move || write_layer(tree, epoch, compression, blobs)),
                )
            })
            .collect();
        handles
            .into_iter()
            .map(|(name, handle)| {
                let result = handle
                    .join()
                    .map_err(|_| "the layer writer thread panicked".to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
                (name, result)
            })
            .collect()
    });
    drop(layers);
    let mut written = Vec::new();
    for (name, result) in results {
        let blob = result.map_err(|message| BuildError::Layer {
            layer: name.as_str(),
            arch,
            message,
        })?;
        written.push((name, blob));
    }
    let manifest =
        write_platform_image(&params, &written, blobs).map_err(|e| BuildError::Image {
            arch,
            message: e.to_string(),
        })?;
    Ok(BuiltPlatform {
        arch,
        manifest,
        layers: written,
    })
}

/// Label prefix of what a recipe's `leave_out` group left out; `kina image
/// inspect` lists these.
pub const LEFT_OUT_LABEL: &str = "io.kina.left-out.";

/// One label per `leave_out` group: `<paths> paths, <bytes> bytes: <reason>`,
/// so an image says what it lacks and why without unpacking a layer.
pub fn left_out_labels(
    filters: &path_filter::PathFilters,
    left_out: &BTreeMap<String, stages::LeftOut>,
) -> Vec<(String, String)> {
    filters
        .groups()
        .iter()
        .map(|group| {
            let tally = left_out.get(&group.name).cloned().unwrap_or_default();
            let patterns = group.path_exclude.join(" ");
            (
                format!("{LEFT_OUT_LABEL}{}", group.name),
                format!(
                    "{} paths, {} bytes ({patterns}): {}",
                    tally.paths,
                    tally.bytes,
                    group
                        .reason
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            )
        })
        .collect()
}

/// The result of `build_to_store`.
#[derive(Debug)]
pub struct StoredBuild {
    pub reference: String,
    pub index_digest: Sha256Digest,
    pub index_size: u64,
    pub epoch: u64,
    /// Whether an identical earlier build was reused (nothing was rebuilt).
    pub reused: bool,
    pub built: Option<BuiltImage>,
}

/// Builds the image into the local store and names it, unless the store
/// already holds the result of exactly these inputs (same kina, lock,
/// platforms, compression, epoch, reference and kina-init binaries).
pub async fn build_to_store(
    loaded: &LoadedRecipe,
    lock: &Lock,
    options: &BuildOptions,
    fetcher: &Fetcher,
    store: &crate::store::ImageStore,
) -> Result<StoredBuild, BuildError> {
    let epoch = options.source_date_epoch.unwrap_or(lock.source_date_epoch);
    // The digests of local kina-init files, remembered beside the store's
    // build records so a no-op rebuild only stats them.
    let memo = crate::digest_memo::DigestMemo::new(store.root().join("file-digests"));
    let key = build_key(loaded, lock, options, epoch, &memo)?;
    let entry = |digest: Sha256Digest, size: u64| crate::oci_layout::LayoutEntry {
        media_type: crate::store::INDEX_MEDIA_TYPE.to_string(),
        digest,
        size,
        reference: options.reference.clone(),
    };
    if let Some((digest, size)) = store.lookup_build(&key) {
        store.tag(entry(digest, size))?;
        return Ok(StoredBuild {
            reference: options.reference.clone(),
            index_digest: digest,
            index_size: size,
            epoch,
            reused: true,
            built: None,
        });
    }
    let built = build_image(loaded, lock, options, fetcher, store.blobs()).await?;
    let manifests: Vec<PlatformManifest> =
        built.platforms.iter().map(|p| p.manifest.clone()).collect();
    let (digest, size) = crate::oci::image::write_index(&manifests, store.blobs())?;
    store.tag(entry(digest, size))?;
    store.record_build(&key, &digest, size)?;
    Ok(StoredBuild {
        reference: options.reference.clone(),
        index_digest: digest,
        index_size: size,
        epoch,
        reused: false,
        built: Some(built),
    })
}

/// Digest of everything that determines a build's output.
fn build_key(
    loaded: &LoadedRecipe,
    lock: &Lock,
    options: &BuildOptions,
    epoch: u64,
    memo: &crate::digest_memo::DigestMemo,
) -> Result<Sha256Digest, BuildError> {
    let mut text = format!(
        "kina {}\nrecipe {}\nreference {}\nepoch {epoch}\ncompression {:?}\n",
        crate::KINA_VERSION,
        loaded.sha256,
        options.reference,
        options.compression
    );
    text.push_str(&lock.to_toml()?);
    for &arch in &options.platforms {
        let init = kina_init::identity(loaded, options.kina_init_overrides.get(&arch), arch, memo)?;
        text.push_str(&format!("platform {arch} kina-init {init}\n"));
    }
    Ok(Sha256Digest::of(text.as_bytes()))
}
