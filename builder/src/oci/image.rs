//! Image configs, manifests and the multi-arch index, as oci-spec types
//! serialised canonically; and the same for OCI artifacts (kernels), whose
//! manifests carry a config and layers of their own media types instead of
//! an image config and filesystem layers.

use std::collections::{BTreeMap, HashMap};

use oci_spec::image::{
    Arch as OciArch, ConfigBuilder, DescriptorBuilder, HistoryBuilder, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, Os, PlatformBuilder, RootFsBuilder,
};

use super::layer::LayerBlob;
use crate::canonical_json::to_canonical_json;
use crate::digest::Sha256Digest;
use crate::lock::LayerName;
use crate::oci_layout::{BlobStore, LayoutError};
use crate::platform::Arch;

/// What goes into one platform's image config.
#[derive(Clone, Debug)]
pub struct ImageConfigParams {
    pub arch: Arch,
    pub created_epoch: u64,
    pub entrypoint: Vec<String>,
    pub stop_signal: String,
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformManifest {
    pub arch: Arch,
    pub digest: Sha256Digest,
    pub size: u64,
    pub config_digest: Sha256Digest,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("building the {what}: {message}")]
    Spec { what: &'static str, message: String },
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

fn spec_err(what: &'static str) -> impl Fn(String) -> ImageError {
    move |message| ImageError::Spec { what, message }
}

fn oci_digest(d: &Sha256Digest) -> Result<oci_spec::image::Digest, ImageError> {
    d.oci()
        .parse()
        .map_err(|e: oci_spec::OciSpecError| spec_err("descriptor")(e.to_string()))
}

fn oci_arch(arch: Arch) -> OciArch {
    match arch {
        Arch::Amd64 => OciArch::Amd64,
        Arch::Arm64 => OciArch::ARM64,
    }
}

/// Writes the config and manifest of one platform into `blobs`.
pub fn write_platform_image(
    params: &ImageConfigParams,
    layers: &[(LayerName, LayerBlob)],
    blobs: &BlobStore,
) -> Result<PlatformManifest, ImageError> {
    let created = crate::civil_time::rfc3339(params.created_epoch);
    let labels: HashMap<String, String> = params.labels.clone().into_iter().collect();
    let config = ConfigBuilder::default()
        .entrypoint(params.entrypoint.clone())
        .env(params.env.clone())
        .stop_signal(params.stop_signal.clone())
        .labels(labels)
        .build()
        .map_err(|e| spec_err("image config")(e.to_string()))?;
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(
            layers
                .iter()
                .map(|(_, l)| l.diff_id.oci())
                .collect::<Vec<_>>(),
        )
        .build()
        .map_err(|e| spec_err("image config")(e.to_string()))?;
    let history = layers
        .iter()
        .map(|(name, _)| {
            HistoryBuilder::default()
                .created(created.clone())
                .created_by(format!(
                    "kina {} image build: {} layer",
                    crate::KINA_VERSION,
                    name.as_str()
                ))
                .build()
                .map_err(|e| spec_err("image history")(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let image_config = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(oci_arch(params.arch))
        .os(Os::Linux)
        .config(config)
        .rootfs(rootfs)
        .history(history)
        .build()
        .map_err(|e| spec_err("image config")(e.to_string()))?;
    let config_bytes =
        to_canonical_json(&image_config).map_err(|e| spec_err("image config")(e.to_string()))?;
    let (config_digest, config_size) = blobs.put_bytes(&config_bytes)?;

    let layer_descriptors = layers
        .iter()
        .map(|(name, l)| {
            let mut annotations = HashMap::new();
            annotations.insert("io.kina.layer".to_string(), name.as_str().to_string());
            DescriptorBuilder::default()
                .media_type(MediaType::Other(l.media_type.to_string()))
                .digest(oci_digest(&l.digest)?)
                .size(l.size)
                .annotations(annotations)
                .build()
                .map_err(|e| spec_err("layer descriptor")(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let config_descriptor = DescriptorBuilder::default()
        .media_type(MediaType::ImageConfig)
        .digest(oci_digest(&config_digest)?)
        .size(config_size)
        .build()
        .map_err(|e| spec_err("config descriptor")(e.to_string()))?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_descriptor)
        .layers(layer_descriptors)
        .build()
        .map_err(|e| spec_err("manifest")(e.to_string()))?;
    let manifest_bytes =
        to_canonical_json(&manifest).map_err(|e| spec_err("manifest")(e.to_string()))?;
    let (digest, size) = blobs.put_bytes(&manifest_bytes)?;
    Ok(PlatformManifest {
        arch: params.arch,
        digest,
        size,
        config_digest,
    })
}

/// A blob an artifact manifest names, already in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactBlob {
    pub media_type: String,
    pub digest: Sha256Digest,
    pub size: u64,
    /// `org.opencontainers.image.title`: the file name ORAS (and clients
    /// like it) give the blob when they pull the artifact into a directory.
    pub title: Option<String>,
}

impl ArtifactBlob {
    fn descriptor(&self, what: &'static str) -> Result<oci_spec::image::Descriptor, ImageError> {
        let mut builder = DescriptorBuilder::default()
            .media_type(MediaType::Other(self.media_type.clone()))
            .digest(oci_digest(&self.digest)?)
            .size(self.size);
        if let Some(title) = &self.title {
            let mut annotations = HashMap::new();
            annotations.insert(
                "org.opencontainers.image.title".to_string(),
                title.to_string(),
            );
            builder = builder.annotations(annotations);
        }
        builder.build().map_err(|e| spec_err(what)(e.to_string()))
    }
}

/// Writes the manifest of one platform of an OCI artifact into `blobs`, in
/// the form image-spec 1.1's artifact guidance gives an artifact with a
/// config of its own: `artifactType` set and equal to the config's media
/// type, so a client tells the artifact from an image by either field.
pub fn write_artifact_manifest(
    arch: Arch,
    artifact_type: &str,
    config: &ArtifactBlob,
    layers: &[ArtifactBlob],
    blobs: &BlobStore,
) -> Result<PlatformManifest, ImageError> {
    let layer_descriptors = layers
        .iter()
        .map(|l| l.descriptor("artifact layer descriptor"))
        .collect::<Result<Vec<_>, _>>()?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::Other(artifact_type.to_string()))
        .config(config.descriptor("artifact config descriptor")?)
        .layers(layer_descriptors)
        .build()
        .map_err(|e| spec_err("artifact manifest")(e.to_string()))?;
    let manifest_bytes =
        to_canonical_json(&manifest).map_err(|e| spec_err("artifact manifest")(e.to_string()))?;
    let (digest, size) = blobs.put_bytes(&manifest_bytes)?;
    Ok(PlatformManifest {
        arch,
        digest,
        size,
        config_digest: config.digest,
    })
}

/// Writes the multi-arch index over `platforms` into `blobs`; returns its
/// digest and size. Artifacts' indexes too: their entries carry no
/// `artifactType` (each manifest names its own), because copiers built on
/// image-spec 1.0 types (skopeo 1.9's `copy --all`) drop the unknown field
/// and so give the copied index another digest.
pub fn write_index(
    platforms: &[PlatformManifest],
    blobs: &BlobStore,
) -> Result<(Sha256Digest, u64), ImageError> {
    let manifests = platforms
        .iter()
        .map(|p| {
            let mut platform = PlatformBuilder::default()
                .architecture(oci_arch(p.arch))
                .os(Os::Linux);
            if p.arch == Arch::Arm64 {
                platform = platform.variant("v8");
            }
            let platform = platform
                .build()
                .map_err(|e| spec_err("platform")(e.to_string()))?;
            DescriptorBuilder::default()
                .media_type(MediaType::ImageManifest)
                .digest(oci_digest(&p.digest)?)
                .size(p.size)
                .platform(platform)
                .build()
                .map_err(|e| spec_err("index descriptor")(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(|e| spec_err("index")(e.to_string()))?;
    let bytes = to_canonical_json(&index).map_err(|e| spec_err("index")(e.to_string()))?;
    Ok(blobs.put_bytes(&bytes)?)
}
