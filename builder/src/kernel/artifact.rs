//! Built kernels as OCI artifacts, so a team builds a kernel once on Linux
//! and every machine (Macs included, which cannot build one) pulls it from
//! the registry it already uses for node images.
//!
//! One artifact is a multi-arch index with one manifest per architecture.
//! Each manifest is an image-spec 1.1 artifact: its config is the
//! [`BuiltKernelMeta`] of that kernel (`kernel.json`, canonical JSON) under
//! kina's own media type, which is also its `artifactType`, and its layers
//! are the three files of a [`BuiltKernel`] directory, raw (uncompressed, so
//! a layer's digest is the digest `kernel.json` records for that file).
//! Packing reads a `BuiltKernel` directory; unpacking writes one, through
//! [`BuiltKernel::install`], so a pulled kernel is the same contract a built
//! one is.
//!
//! The media types live here and nowhere else: `kina kernel push` writes
//! them and `kina kernel pull` refuses anything else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::canonical_json::to_canonical_json;
use crate::digest::Sha256Digest;
use crate::oci::image::{
    ArtifactBlob, ImageError, PlatformManifest, write_artifact_manifest, write_index,
};
use crate::oci_layout::{BlobStore, LayoutError};
use crate::platform::Arch;

use super::built::{BUILT_KERNEL_SCHEMA, BuiltKernel, BuiltKernelError, BuiltKernelMeta};

/// The artifact's type and its config's media type: the config blob is a
/// [`BuiltKernelMeta`] as JSON. A client (skopeo, ORAS, a registry UI) sees
/// from it alone that this is a kina kernel, not a container image, and
/// `kina kernel pull` refuses a manifest without it (a node image pulled
/// by mistake, say) by name.
pub const KERNEL_ARTIFACT_TYPE: &str = "application/vnd.kina.kernel.v1+json";

/// The boot image, as the providers take it (`bzImage` on amd64, the
/// uncompressed arm64 `Image`): opaque bytes, no tar around them, so the
/// layer's digest is `kernel.json`'s `kernel_sha256`.
pub const KERNEL_IMAGE_MEDIA_TYPE: &str = "application/vnd.kina.kernel.image.v1";

/// The kernel's final `.config` (Kconfig's output, plain text), what
/// `kina kernel check --kernel` reads without downloading the kernel's
/// boot image into a provider. "kconfig", not "config", so it is not taken
/// for the manifest's config blob; no `+text` suffix, which RFC 6838 does
/// not register.
pub const KERNEL_KCONFIG_MEDIA_TYPE: &str = "application/vnd.kina.kernel.kconfig.v1";

/// The profile report of the check made before compiling
/// (`kina_contract::kernel::report`, JSON): shipped with the kernel so
/// whoever pulls it sees what it was built to pass.
pub const KERNEL_REPORT_MEDIA_TYPE: &str = "application/vnd.kina.kernel.report.v1+json";

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("no kernels to pack: name at least one built kernel directory")]
    Empty,
    #[error(
        "two kernels for {arch}: {first} and {second}; an artifact holds one kernel per architecture"
    )]
    DuplicateArch {
        arch: Arch,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} changed while it was being packed (sha256 {actual}, kernel.json records {recorded}); pack it again once nothing writes to it"
    )]
    Changed {
        path: PathBuf,
        actual: Sha256Digest,
        recorded: Sha256Digest,
    },
    #[error("{path}: the report is not JSON ({message}); rebuild the kernel")]
    BadReport { path: PathBuf, message: String },
    #[error(
        "{reference} is not a kina kernel: its manifest {manifest:?} has config type `{found}`, not `{KERNEL_ARTIFACT_TYPE}`; node images are pulled with `kina image pull`"
    )]
    NotAKernel {
        reference: String,
        manifest: Sha256Digest,
        found: String,
    },
    #[error("{reference}: malformed kernel artifact ({what}): {message}")]
    Malformed {
        reference: String,
        what: String,
        message: String,
    },
    #[error(
        "{reference}: kernel artifact written by a newer kina (kernel.json schema {found}, this kina reads {BUILT_KERNEL_SCHEMA}); upgrade kina"
    )]
    NewerSchema { reference: String, found: u32 },
    #[error(
        "local blob {digest:?} ({path}) does not hash to its name; the kernel store is damaged: pull the kernel again"
    )]
    CorruptLocalBlob { digest: Sha256Digest, path: PathBuf },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Built(#[from] BuiltKernelError),
}

type Result<T, E = ArtifactError> = std::result::Result<T, E>;

/// Writes `kernels` (one per architecture) into `blobs` as a kernel
/// artifact; returns the index's digest and size.
pub fn pack(kernels: &[BuiltKernel], blobs: &BlobStore) -> Result<(Sha256Digest, u64)> {
    if kernels.is_empty() {
        return Err(ArtifactError::Empty);
    }
    let mut by_arch: BTreeMap<Arch, &BuiltKernel> = BTreeMap::new();
    for kernel in kernels {
        if let Some(first) = by_arch.insert(kernel.meta.arch, kernel) {
            return Err(ArtifactError::DuplicateArch {
                arch: kernel.meta.arch,
                first: first.dir.clone(),
                second: kernel.dir.clone(),
            });
        }
    }
    let platforms = by_arch
        .values()
        .map(|k| pack_platform(k, blobs))
        .collect::<Result<Vec<_>>>()?;
    Ok(write_index(&platforms, blobs)?)
}

/// The name a file of the built-kernel directory has there, which is also
/// the title its layer carries: taken from the contract's own paths.
fn title(path: &Path) -> Option<String> {
    path.file_name().map(|n| n.to_string_lossy().into_owned())
}

fn pack_platform(kernel: &BuiltKernel, blobs: &BlobStore) -> Result<PlatformManifest> {
    let meta_json = to_canonical_json(&kernel.meta).map_err(|e| ArtifactError::Malformed {
        reference: kernel.meta_path().display().to_string(),
        what: "kernel.json".into(),
        message: e.to_string(),
    })?;
    let (config_digest, config_size) = blobs.put_bytes(&meta_json)?;
    let config = ArtifactBlob {
        media_type: KERNEL_ARTIFACT_TYPE.into(),
        digest: config_digest,
        size: config_size,
        title: None,
    };
    let file_blob = |path: PathBuf, recorded: Sha256Digest, media_type: &str| -> Result<_> {
        let io = |source| ArtifactError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::File::open(&path).map_err(io)?;
        let mut writer = blobs.writer()?;
        std::io::copy(&mut file, &mut writer).map_err(io)?;
        let (digest, size) = writer.commit()?;
        if digest != recorded {
            return Err(ArtifactError::Changed {
                path,
                actual: digest,
                recorded,
            });
        }
        Ok(ArtifactBlob {
            media_type: media_type.into(),
            digest,
            size,
            title: title(&path),
        })
    };
    let image = file_blob(
        kernel.kernel_path(),
        kernel.meta.kernel_sha256,
        KERNEL_IMAGE_MEDIA_TYPE,
    )?;
    let kconfig = file_blob(
        kernel.config_path(),
        kernel.meta.config_sha256,
        KERNEL_KCONFIG_MEDIA_TYPE,
    )?;
    let report_path = kernel.report_path();
    let report = std::fs::read(&report_path).map_err(|source| ArtifactError::Io {
        path: report_path.clone(),
        source,
    })?;
    serde_json::from_slice::<serde_json::Value>(&report).map_err(|e| ArtifactError::BadReport {
        path: report_path.clone(),
        message: e.to_string(),
    })?;
    let (report_digest, report_size) = blobs.put_bytes(&report)?;
    let report = ArtifactBlob {
        media_type: KERNEL_REPORT_MEDIA_TYPE.into(),
        digest: report_digest,
        size: report_size,
        title: title(&report_path),
    };
    Ok(write_artifact_manifest(
        kernel.meta.arch,
        KERNEL_ARTIFACT_TYPE,
        &config,
        &[image, kconfig, report],
        blobs,
    )?)
}

/// One architecture of a kernel artifact in a store, checked: its manifest
/// is kina's, and its config's digests are its layers'.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelPlatform {
    pub arch: Arch,
    /// The platform manifest's digest: what names this kernel everywhere.
    pub manifest: Sha256Digest,
    pub meta: BuiltKernelMeta,
    pub image: Sha256Digest,
    pub kconfig: Sha256Digest,
    pub report: Sha256Digest,
}

/// A blob of the local store, re-hashed: a store damaged on disk is named
/// here rather than unpacked into a kernel that fails later.
fn read_verified(blobs: &BlobStore, digest: &Sha256Digest) -> Result<Vec<u8>> {
    let bytes = blobs.read(digest)?;
    if Sha256Digest::of(&bytes) != *digest {
        return Err(ArtifactError::CorruptLocalBlob {
            digest: *digest,
            path: blobs.path(digest),
        });
    }
    Ok(bytes)
}

/// The architectures of the kernel artifact `top` (an index, or a single
/// platform's manifest) in `blobs`, each checked; `reference` names it in
/// errors. Index entries for architectures kina has no nodes for are
/// skipped.
pub fn read_artifact(
    blobs: &BlobStore,
    top: &Sha256Digest,
    reference: &str,
) -> Result<Vec<KernelPlatform>> {
    let bytes = read_verified(blobs, top)?;
    let malformed = |what: &str, message: String| ArtifactError::Malformed {
        reference: reference.to_string(),
        what: what.to_string(),
        message,
    };
    let doc: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| malformed("top manifest", e.to_string()))?;
    let Some(entries) = doc.get("manifests") else {
        return Ok(vec![read_platform(blobs, top, None, reference)?]);
    };
    let mut platforms = Vec::new();
    for entry in entries.as_array().into_iter().flatten() {
        let os = entry["platform"]["os"].as_str().unwrap_or_default();
        let Some(arch) = entry["platform"]["architecture"]
            .as_str()
            .and_then(|a| a.parse::<Arch>().ok())
            .filter(|_| os == "linux")
        else {
            continue;
        };
        let digest: Sha256Digest = entry["digest"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|e: crate::digest::DigestParseError| malformed("index", e.to_string()))?;
        if platforms.iter().any(|p: &KernelPlatform| p.arch == arch) {
            return Err(malformed("index", format!("two manifests for {arch}")));
        }
        platforms.push(read_platform(blobs, &digest, Some(arch), reference)?);
    }
    if platforms.is_empty() {
        return Err(malformed(
            "index",
            "no linux/amd64 or linux/arm64 manifest".into(),
        ));
    }
    Ok(platforms)
}

fn read_platform(
    blobs: &BlobStore,
    digest: &Sha256Digest,
    arch: Option<Arch>,
    reference: &str,
) -> Result<KernelPlatform> {
    let malformed = |what: &str, message: String| ArtifactError::Malformed {
        reference: reference.to_string(),
        what: what.to_string(),
        message,
    };
    let bytes = read_verified(blobs, digest)?;
    let manifest = oci_spec::image::ImageManifest::from_reader(&bytes[..])
        .map_err(|e| malformed(&format!("manifest {digest:?}"), e.to_string()))?;
    let found = manifest.config().media_type().to_string();
    if found != KERNEL_ARTIFACT_TYPE {
        return Err(ArtifactError::NotAKernel {
            reference: reference.to_string(),
            manifest: *digest,
            found,
        });
    }
    let blob_digest = |d: &oci_spec::image::Descriptor| -> Result<Sha256Digest> {
        d.digest()
            .to_string()
            .parse()
            .map_err(|e: crate::digest::DigestParseError| malformed("descriptor", e.to_string()))
    };
    let mut layers: BTreeMap<String, Sha256Digest> = BTreeMap::new();
    for layer in manifest.layers() {
        let media_type = layer.media_type().to_string();
        if ![
            KERNEL_IMAGE_MEDIA_TYPE,
            KERNEL_KCONFIG_MEDIA_TYPE,
            KERNEL_REPORT_MEDIA_TYPE,
        ]
        .contains(&media_type.as_str())
        {
            return Err(malformed(
                &format!("manifest {digest:?}"),
                format!(
                    "a layer of type `{media_type}`, which this kina does not know (written by a newer kina?)"
                ),
            ));
        }
        if layers
            .insert(media_type.clone(), blob_digest(layer)?)
            .is_some()
        {
            return Err(malformed(
                &format!("manifest {digest:?}"),
                format!("two layers of type `{media_type}`"),
            ));
        }
    }
    let layer = |media_type: &str| {
        layers.get(media_type).copied().ok_or_else(|| {
            malformed(
                &format!("manifest {digest:?}"),
                format!("no layer of type `{media_type}`"),
            )
        })
    };
    let (image, kconfig, report) = (
        layer(KERNEL_IMAGE_MEDIA_TYPE)?,
        layer(KERNEL_KCONFIG_MEDIA_TYPE)?,
        layer(KERNEL_REPORT_MEDIA_TYPE)?,
    );
    let config_bytes = read_verified(blobs, &blob_digest(manifest.config())?)?;
    let schema = serde_json::from_slice::<serde_json::Value>(&config_bytes)
        .ok()
        .and_then(|v| v["schema"].as_u64());
    if let Some(found) = schema.filter(|s| *s > u64::from(BUILT_KERNEL_SCHEMA)) {
        return Err(ArtifactError::NewerSchema {
            reference: reference.to_string(),
            found: u32::try_from(found).unwrap_or(u32::MAX),
        });
    }
    let meta: BuiltKernelMeta = serde_json::from_slice(&config_bytes)
        .map_err(|e| malformed("kernel.json config", e.to_string()))?;
    let mismatch = |what: &str, a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| {
        malformed(
            &format!("manifest {digest:?}"),
            format!("{what}: the manifest says {a:?}, kernel.json says {b:?}"),
        )
    };
    if image != meta.kernel_sha256 {
        return Err(mismatch("kernel", &image, &meta.kernel_sha256));
    }
    if kconfig != meta.config_sha256 {
        return Err(mismatch("config", &kconfig, &meta.config_sha256));
    }
    if let Some(arch) = arch
        && arch != meta.arch
    {
        return Err(mismatch("architecture", &arch, &meta.arch));
    }
    Ok(KernelPlatform {
        arch: meta.arch,
        manifest: *digest,
        meta,
        image,
        kconfig,
        report,
    })
}

/// Writes `platform` from `blobs` as a built-kernel directory at `dir`
/// (replacing one there): complete or not at all, every file checked
/// against the digests its manifest names.
pub fn unpack(blobs: &BlobStore, platform: &KernelPlatform, dir: &Path) -> Result<BuiltKernel> {
    let report = read_verified(blobs, &platform.report)?;
    Ok(BuiltKernel::install(
        dir,
        &platform.meta,
        &blobs.path(&platform.image),
        &blobs.path(&platform.kconfig),
        &report,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::KernelFormat;

    fn built(root: &Path, arch: Arch, kernel: &[u8], config: &[u8]) -> BuiltKernel {
        let src = root.join(format!("src-{arch}"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("k"), kernel).unwrap();
        std::fs::write(src.join("c"), config).unwrap();
        let meta = BuiltKernelMeta {
            schema: BUILT_KERNEL_SCHEMA,
            recipe: "cilium-kpr".into(),
            arch,
            release: "6.17.8".into(),
            format: KernelFormat::for_arch(arch),
            kernel_sha256: Sha256Digest::of(kernel),
            config_sha256: Sha256Digest::of(config),
            profiles: vec!["cilium-kpr".into()],
            source_sha256: Sha256Digest::of(b"source"),
            base_config_sha256: Sha256Digest::of(b"base"),
            toolchain: "gcc (Debian 14.2.0-19) 14.2.0".into(),
        };
        BuiltKernel::install(
            &root.join(format!("built-{arch}")),
            &meta,
            &src.join("k"),
            &src.join("c"),
            br#"{"profiles":[]}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_packed_artifact_reads_back_per_architecture_and_unpacks_to_the_same_files() {
        let tmp = tempfile::tempdir().unwrap();
        let amd = built(tmp.path(), Arch::Amd64, b"bzImage bytes", b"CONFIG_X86=y\n");
        let arm = built(tmp.path(), Arch::Arm64, b"Image bytes", b"CONFIG_ARM64=y\n");
        let blobs = BlobStore::open(tmp.path().join("store")).unwrap();
        let (index, _) = pack(&[arm.clone(), amd.clone()], &blobs).unwrap();
        // Packing is deterministic: the same kernels give the same index.
        assert_eq!(pack(&[amd.clone(), arm.clone()], &blobs).unwrap().0, index);

        let doc: serde_json::Value = serde_json::from_slice(&blobs.read(&index).unwrap()).unwrap();
        assert_eq!(doc["manifests"].as_array().unwrap().len(), 2);

        let platforms = read_artifact(&blobs, &index, "test/kernel:v1").unwrap();
        assert_eq!(
            platforms.iter().map(|p| p.arch).collect::<Vec<_>>(),
            vec![Arch::Amd64, Arch::Arm64]
        );
        for (platform, original) in platforms.iter().zip([&amd, &arm]) {
            let manifest: serde_json::Value =
                serde_json::from_slice(&blobs.read(&platform.manifest).unwrap()).unwrap();
            assert_eq!(manifest["artifactType"], KERNEL_ARTIFACT_TYPE);
            assert_eq!(manifest["layers"][0]["mediaType"], KERNEL_IMAGE_MEDIA_TYPE);
            assert_eq!(
                manifest["layers"][0]["annotations"]["org.opencontainers.image.title"],
                "kernel"
            );
            let out = tmp.path().join(format!("out-{}", platform.arch));
            let unpacked = unpack(&blobs, platform, &out).unwrap();
            assert_eq!(unpacked.meta, original.meta);
            for (a, b) in [
                (unpacked.kernel_path(), original.kernel_path()),
                (unpacked.config_path(), original.config_path()),
                (unpacked.report_path(), original.report_path()),
            ] {
                assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
            }
        }
    }

    #[test]
    fn two_kernels_of_one_architecture_are_refused_naming_both() {
        let tmp = tempfile::tempdir().unwrap();
        let a = built(tmp.path(), Arch::Arm64, b"one", b"c\n");
        let mut b = a.clone();
        b.dir = tmp.path().join("elsewhere");
        let blobs = BlobStore::open(tmp.path().join("store")).unwrap();
        let err = pack(&[a, b], &blobs).unwrap_err().to_string();
        assert!(err.contains("two kernels for arm64") && err.contains("elsewhere"));
        assert!(matches!(pack(&[], &blobs), Err(ArtifactError::Empty)));
    }

    #[test]
    fn an_image_manifest_and_a_config_that_disagrees_with_its_layers_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(tmp.path().join("store")).unwrap();
        let blob = |media_type: &str, bytes: &[u8]| {
            let (digest, size) = blobs.put_bytes(bytes).unwrap();
            ArtifactBlob {
                media_type: media_type.into(),
                digest,
                size,
                title: None,
            }
        };
        // A node image's manifest: an image config.
        let image_config = blob("application/vnd.oci.image.config.v1+json", b"{}");
        let m = write_artifact_manifest(
            Arch::Amd64,
            "application/vnd.oci.image.config.v1+json",
            &image_config,
            &[],
            &blobs,
        )
        .unwrap();
        let err = read_artifact(&blobs, &m.digest, "team/node:v1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("team/node:v1 is not a kina kernel") && err.contains("kina image pull"),
            "{err}"
        );

        // kernel.json names other bytes than the kernel layer holds.
        let kernel = built(tmp.path(), Arch::Amd64, b"kernel", b"c\n");
        let config = blob(
            KERNEL_ARTIFACT_TYPE,
            &to_canonical_json(&kernel.meta).unwrap(),
        );
        let layers = [
            blob(KERNEL_IMAGE_MEDIA_TYPE, b"another kernel"),
            blob(KERNEL_KCONFIG_MEDIA_TYPE, b"c\n"),
            blob(KERNEL_REPORT_MEDIA_TYPE, b"{}"),
        ];
        let m =
            write_artifact_manifest(Arch::Amd64, KERNEL_ARTIFACT_TYPE, &config, &layers, &blobs)
                .unwrap();
        let err = read_artifact(&blobs, &m.digest, "team/kernel:v1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kernel: the manifest says") && err.contains("kernel.json says"),
            "{err}"
        );

        // A layer type this kina does not know.
        let mut extra = layers.to_vec();
        extra[0] = blob(KERNEL_IMAGE_MEDIA_TYPE, b"kernel");
        extra.push(blob("application/vnd.kina.kernel.modules.v2", b"m"));
        let m = write_artifact_manifest(Arch::Amd64, KERNEL_ARTIFACT_TYPE, &config, &extra, &blobs)
            .unwrap();
        let err = read_artifact(&blobs, &m.digest, "team/kernel:v1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("modules.v2"), "{err}");
    }
}
