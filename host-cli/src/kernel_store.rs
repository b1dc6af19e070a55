//! The kernels kina pulled from (or pushed to) registries, kept under the
//! data directory, and the one way the rest of kina turns a kernel
//! reference into a [`BuiltKernel`] to boot: [`KernelStore::resolve`].
//!
//! `<data>/kernels/oci/` is an OCI image layout, kina's image store code
//! (`kina_builder::store`) on a directory of its own: its `index.json` is
//! the map from reference to artifact digest, its blobs are what
//! `oci::distribution` pulls into (every digest verified) and pushes from.
//! Reusing the store keeps one implementation of naming, locking and
//! pushing; a separate directory keeps kernels out of `kina image list` and
//! out of the blobs `kina image rm` collects.
//!
//! `<data>/kernels/platforms/<manifest-hex>/` holds each architecture of a
//! pulled kernel unpacked as a built-kernel directory, named by its
//! platform manifest's digest: two references to one kernel share a
//! directory, and a tag that moves later never changes the files a node
//! booted from. The directories are derived from the layout and made again
//! from it when missing or damaged.
//!
//! A reference already here is used as it is; `kina kernel pull` fetches it
//! again (a tag may have moved).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kina_builder::digest::Sha256Digest;
use kina_builder::kernel::BuiltKernel;
use kina_builder::kernel::artifact::{self, ArtifactError, KernelPlatform};
use kina_builder::oci::distribution::{self, BlobReport, DistributionError, Options, Outcome};
use kina_builder::platform::Arch;
use kina_builder::store::{ImageStore, StoreError};

use crate::dirs::KinaDirs;

#[derive(Debug, thiserror::Error)]
pub enum KernelStoreError {
    #[error(
        "no kernel `{reference}` in the local kernel store ({path}); `kina kernel pull {reference}` fetches it, `kina kernel list` shows what is there"
    )]
    NotPulled { reference: String, path: PathBuf },
    #[error(
        "kernel {reference} has no {arch} kernel (it has {have}); build one with `kina kernel build --arch {arch}` and push it together with the others"
    )]
    NoArch {
        reference: String,
        arch: Arch,
        have: String,
    },
    #[error("kernel store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Distribution(#[from] DistributionError),
}

type Result<T, E = KernelStoreError> = std::result::Result<T, E>;

/// A kernel artifact the store names, with its architectures.
#[derive(Clone, Debug)]
pub struct StoredKernel {
    pub reference: String,
    /// The artifact's (index's) digest.
    pub digest: Sha256Digest,
    pub platforms: Vec<KernelPlatform>,
}

impl StoredKernel {
    pub fn platform(&self, arch: Arch) -> Result<&KernelPlatform> {
        self.platforms
            .iter()
            .find(|p| p.arch == arch)
            .ok_or_else(|| KernelStoreError::NoArch {
                reference: self.reference.clone(),
                arch,
                have: self
                    .platforms
                    .iter()
                    .map(|p| p.arch.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

pub struct KernelStore {
    root: PathBuf,
    oci: ImageStore,
}

impl KernelStore {
    pub fn open(dirs: &KinaDirs) -> Result<Self> {
        let root = dirs.data().join("kernels");
        let oci = ImageStore::open(root.join("oci"))?;
        Ok(Self { root, oci })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The OCI layout the kernels' blobs live in (what push reads).
    pub fn oci(&self) -> &ImageStore {
        &self.oci
    }

    fn platform_dir(&self, manifest: &Sha256Digest) -> PathBuf {
        self.root.join("platforms").join(manifest.hex())
    }

    /// Every kernel the store names, by reference.
    pub fn list(&self) -> Result<Vec<StoredKernel>> {
        self.oci
            .list()?
            .into_iter()
            .map(|e| {
                Ok(StoredKernel {
                    platforms: artifact::read_artifact(self.oci.blobs(), &e.digest, &e.reference)?,
                    reference: e.reference,
                    digest: e.digest,
                })
            })
            .collect()
    }

    /// The kernel named `reference`, if the store has it.
    pub fn find(&self, reference: &str) -> Result<Option<StoredKernel>> {
        let Some(entry) = self
            .oci
            .list()?
            .into_iter()
            .find(|e| e.reference == reference)
        else {
            return Ok(None);
        };
        Ok(Some(StoredKernel {
            platforms: artifact::read_artifact(self.oci.blobs(), &entry.digest, reference)?,
            reference: entry.reference,
            digest: entry.digest,
        }))
    }

    /// `arch`'s kernel of `stored` as a built-kernel directory, unpacked
    /// from the layout unless a complete one is already there.
    pub fn built_kernel(&self, stored: &StoredKernel, arch: Arch) -> Result<BuiltKernel> {
        let platform = stored.platform(arch)?;
        let dir = self.platform_dir(&platform.manifest);
        if let Ok(kernel) = BuiltKernel::open(&dir)
            && kernel.meta == platform.meta
        {
            return Ok(kernel);
        }
        Ok(artifact::unpack(self.oci.blobs(), platform, &dir)?)
    }

    /// Packs `kernels` (one per architecture) into the layout as one
    /// artifact named `reference`, replacing what that name held.
    pub fn add(&self, reference: &str, kernels: &[BuiltKernel]) -> Result<StoredKernel> {
        let (digest, size) = artifact::pack(kernels, self.oci.blobs())?;
        self.oci.tag(kina_builder::oci_layout::LayoutEntry {
            media_type: kina_builder::store::INDEX_MEDIA_TYPE.into(),
            digest,
            size,
            reference: reference.to_string(),
        })?;
        Ok(StoredKernel {
            platforms: artifact::read_artifact(self.oci.blobs(), &digest, reference)?,
            reference: reference.to_string(),
            digest,
        })
    }

    /// Pushes the kernel the store names `local` to `target`.
    pub async fn push(
        &self,
        local: &str,
        target: &str,
        opts: &Options,
        progress: &mut (dyn FnMut(&BlobReport) + Send),
    ) -> Result<distribution::Summary> {
        if self.find(local)?.is_none() {
            return Err(KernelStoreError::NotPulled {
                reference: local.to_string(),
                path: self.root.clone(),
            });
        }
        Ok(distribution::push(&self.oci, local, target, opts, progress).await?)
    }

    /// Fetches `reference` (every digest verified), checks it is a kina
    /// kernel, unpacks each architecture, and only then names it. On any
    /// failure the blobs this pull brought and the directories it unpacked
    /// are removed again: what the store names is unchanged, and nothing
    /// is left that no reference reaches.
    pub async fn pull(
        &self,
        reference: &str,
        opts: &Options,
        progress: &mut (dyn FnMut(&BlobReport) + Send),
    ) -> Result<(StoredKernel, distribution::Summary)> {
        let mut brought = Vec::new();
        let fetched = {
            let mut record = |r: &BlobReport| {
                if r.outcome == Outcome::Transferred {
                    brought.push(r.digest);
                }
                progress(r);
            };
            distribution::fetch(&self.oci, reference, opts, &mut record).await
        };
        let mut unpacked = Vec::new();
        let result = match fetched {
            Ok(fetched) => self.accept(reference, &fetched, &mut unpacked),
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(stored) => Ok(stored),
            Err(e) => {
                for dir in unpacked {
                    let _ = std::fs::remove_dir_all(dir);
                }
                self.discard(&brought);
                Err(e)
            }
        }
    }

    fn accept(
        &self,
        reference: &str,
        fetched: &distribution::Fetched,
        unpacked: &mut Vec<PathBuf>,
    ) -> Result<(StoredKernel, distribution::Summary)> {
        let platforms = artifact::read_artifact(self.oci.blobs(), &fetched.digest, reference)?;
        for platform in &platforms {
            let dir = self.platform_dir(&platform.manifest);
            if BuiltKernel::open(&dir).is_ok_and(|k| k.meta == platform.meta) {
                continue;
            }
            unpacked.push(dir.clone());
            artifact::unpack(self.oci.blobs(), platform, &dir)?;
        }
        self.oci.tag(fetched.entry(reference))?;
        Ok((
            StoredKernel {
                reference: reference.to_string(),
                digest: fetched.digest,
                platforms,
            },
            fetched.summary.clone(),
        ))
    }

    /// Removes the blobs of a failed pull that no named kernel reaches.
    fn discard(&self, brought: &[Sha256Digest]) {
        let mut keep = BTreeSet::new();
        for entry in self.oci.list().unwrap_or_default() {
            if let Ok(blobs) = self.oci.blobs_of(&entry.digest) {
                keep.extend(blobs);
            }
        }
        for digest in brought.iter().filter(|d| !keep.contains(d)) {
            let _ = std::fs::remove_file(self.oci.blobs().path(digest));
        }
    }

    /// `reference`'s kernel for `arch`, pulled first if the store does not
    /// have it yet: what a provider boots for `kernel: REF`.
    pub async fn resolve(
        &self,
        reference: &str,
        arch: Arch,
        opts: &Options,
    ) -> Result<BuiltKernel> {
        let stored = match self.find(reference)? {
            Some(stored) => stored,
            None => self.pull(reference, opts, &mut |_| {}).await?.0,
        };
        self.built_kernel(&stored, arch)
    }
}

/// Where `kina kernel build` keeps what it compiled: one built-kernel
/// directory per build key.
pub fn build_cache_dir(dirs: &KinaDirs) -> PathBuf {
    dirs.cache().join("kernels").join("built")
}

/// The kernels in the build cache, each opened (digests checked); a
/// directory that does not open is returned as its error, for the caller
/// to report.
pub fn built_kernels(
    dirs: &KinaDirs,
) -> Result<
    Vec<(
        PathBuf,
        Result<BuiltKernel, kina_builder::kernel::BuiltKernelError>,
    )>,
> {
    let dir = build_cache_dir(dirs);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(KernelStoreError::Io { path: dir, source }),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| KernelStoreError::Io {
            path: dir.clone(),
            source,
        })?;
        let path = entry.path();
        // Builds under way stage in hidden siblings (`BuiltKernel::install`).
        if !path.is_dir() || entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let opened = BuiltKernel::open(&path);
        found.push((path, opened));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// The newest build of recipe `name` for each architecture in the build
/// cache (newest by its `kernel.json`'s modification time).
pub fn built_kernels_of_recipe(dirs: &KinaDirs, name: &str) -> Result<Vec<BuiltKernel>> {
    let mut newest: std::collections::BTreeMap<Arch, (std::time::SystemTime, BuiltKernel)> =
        Default::default();
    for (_, opened) in built_kernels(dirs)? {
        let Ok(kernel) = opened else { continue };
        if kernel.meta.recipe != name {
            continue;
        }
        let mtime = std::fs::metadata(kernel.meta_path())
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        let arch = kernel.meta.arch;
        if newest.get(&arch).is_none_or(|(t, _)| mtime > *t) {
            newest.insert(arch, (mtime, kernel));
        }
    }
    Ok(newest.into_values().map(|(_, k)| k).collect())
}
