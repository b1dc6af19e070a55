//! The parts of the OCI image format an import reads (image-spec v1.1
//! `image-index.md`, `manifest.md`, `config.md`; Docker's schema 2 media
//! types, which containerd treats as their equivalents), and the names
//! containerd gives what an import records: chain IDs and the labels its
//! garbage collector follows. Pure functions: the import's wire calls are
//! in `mod.rs` and `unpack.rs`.

use std::collections::HashMap;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// containerd's annotation for an image's full name in an `index.json`
/// (containerd `core/images/annotations.go`).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI annotation `skopeo` and others name a layout's images with.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// An image index or a manifest: which one is told by the descriptor's
/// media type, else by the document's own `mediaType`, else by which list
/// it has (image-spec allows both fields to be absent).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
}

#[derive(Debug, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    pub rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
pub struct RootFs {
    pub diff_ids: Vec<String>,
}

/// What a document is, from its descriptor's media type or its own content.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    Index,
    Manifest,
}

pub fn kind_of(descriptor_media_type: &str, doc: &Document) -> Option<Kind> {
    let media = if descriptor_media_type.is_empty() {
        doc.media_type.as_deref().unwrap_or_default()
    } else {
        descriptor_media_type
    };
    match media {
        INDEX | DOCKER_LIST => Some(Kind::Index),
        MANIFEST | DOCKER_MANIFEST => Some(Kind::Manifest),
        "" if doc.manifests.is_some() => Some(Kind::Index),
        "" if doc.config.is_some() => Some(Kind::Manifest),
        _ => None,
    }
}

/// Whether a layer descriptor is a filesystem layer (containerd
/// `images.IsLayerType`): artifacts' other blobs are not unpacked.
pub fn is_layer(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.")
        || media_type.starts_with("application/vnd.docker.image.rootfs.")
}

/// This node's platform in OCI's spelling.
pub fn node_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Whether `platform` runs on a linux node of `architecture`; a
/// descriptor without one is kept, as containerd's `FilterPlatforms` does.
/// arm64's only variant is v8, so an absent variant matches it.
pub fn runs_here(platform: Option<&Platform>, architecture: &str) -> bool {
    platform.is_none_or(|p| {
        p.os == "linux"
            && p.architecture == architecture
            && match p.variant.as_deref() {
                None | Some("") => true,
                Some(v) => architecture == "arm64" && v == "v8",
            }
    })
}

/// The name an index entry is imported under, as `ctr images import`
/// without `--base-name` chooses it (containerd `client/import.go`
/// `imageName`): containerd's full-name annotation, else the OCI ref name
/// when it is a whole reference (a bare tag such as `latest` names nothing
/// by itself, and ctr would record it as an image called `latest`).
pub fn image_name(annotations: &HashMap<String, String>) -> Option<String> {
    if let Some(name) = annotations
        .get(ANNOTATION_IMAGE_NAME)
        .filter(|n| !n.is_empty())
    {
        return Some(name.clone());
    }
    annotations
        .get(ANNOTATION_REF_NAME)
        .filter(|n| n.contains('/') && (n.contains(':') || n.contains('@')))
        .cloned()
}

/// The name an unnamed entry gets: ctr's `--digests` form
/// (`import-YYYY-MM-DD@sha256:…`, containerd `core/images/archive`
/// `DigestTranslator`), so every imported image can be found.
pub fn digest_name(date: &str, digest: &str) -> String {
    format!("import-{date}@{digest}")
}

/// The chain ID of a stack of layers (image-spec `config.md`, "Layer
/// ChainID"): the first diff ID, then `sha256(parent + " " + diff_id)`.
/// The unpacked snapshot of those layers is committed under this name.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => {
                let sum = Sha256::digest(format!("{parent} {diff_id}").as_bytes());
                let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
                format!("sha256:{hex}")
            }
        };
        chain.push(next);
    }
    chain
}

/// The labels through which containerd's garbage collector keeps a
/// document's children (containerd `core/images/labels.go`
/// `ChildGCLabels`): an index's manifests as `m.N`, a manifest's config as
/// `config` and its layers as `l.N`.
pub fn child_gc_labels(kind: &Kind, children: &[&Descriptor]) -> Vec<(String, String)> {
    children
        .iter()
        .enumerate()
        .map(|(i, child)| {
            let key = match kind {
                Kind::Index => format!("containerd.io/gc.ref.content.m.{i}"),
                Kind::Manifest if i == 0 => "containerd.io/gc.ref.content.config".to_string(),
                Kind::Manifest => format!("containerd.io/gc.ref.content.l.{}", i - 1),
            };
            (key, child.digest.clone())
        })
        .collect()
}

/// A blob's digest from its path in an OCI layout (`blobs/ALG/HEX`), when
/// it is one.
pub fn blob_digest(path: &str) -> Option<String> {
    let rest = path.trim_start_matches("./").strip_prefix("blobs/")?;
    let (algorithm, hex) = rest.split_once('/')?;
    let valid = match algorithm {
        "sha256" => hex.len() == 64,
        "sha512" => hex.len() == 128,
        _ => false,
    } && hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    valid.then(|| format!("{algorithm}:{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec_formula() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        // printf 'sha256:aaa…a sha256:bbb…b' | sha256sum, computed by coreutils.
        assert_eq!(
            chain[1],
            "sha256:ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c"
        );
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn names_are_containerds_annotation_else_a_whole_ref_name() {
        let ann = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        assert_eq!(
            image_name(&ann(&[
                (ANNOTATION_IMAGE_NAME, "kina.local/app:v1"),
                (ANNOTATION_REF_NAME, "v1")
            ])),
            Some("kina.local/app:v1".into())
        );
        assert_eq!(
            image_name(&ann(&[(ANNOTATION_REF_NAME, "localhost:5000/app:v2")])),
            Some("localhost:5000/app:v2".into())
        );
        assert_eq!(image_name(&ann(&[(ANNOTATION_REF_NAME, "latest")])), None);
        assert_eq!(image_name(&ann(&[])), None);
        assert_eq!(
            digest_name("2026-12-07", "sha256:ab"),
            "import-2026-12-07@sha256:ab"
        );
    }

    #[test]
    fn platforms_match_linux_on_this_architecture() {
        let p = |arch: &str, variant: Option<&str>| Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: variant.map(str::to_string),
        };
        assert!(runs_here(None, "amd64"));
        assert!(runs_here(Some(&p("amd64", None)), "amd64"));
        assert!(!runs_here(Some(&p("arm64", None)), "amd64"));
        assert!(runs_here(Some(&p("arm64", Some("v8"))), "arm64"));
        assert!(!runs_here(Some(&p("arm", Some("v7"))), "arm64"));
        let windows = Platform {
            os: "windows".into(),
            ..p("amd64", None)
        };
        assert!(!runs_here(Some(&windows), "amd64"));
    }

    #[test]
    fn gc_labels_name_config_layers_and_manifests_as_containerd_does() {
        let d = |digest: &str| Descriptor {
            media_type: String::new(),
            digest: digest.into(),
            size: 1,
            annotations: HashMap::new(),
            platform: None,
        };
        let (config, l0, l1) = (d("sha256:c"), d("sha256:l0"), d("sha256:l1"));
        assert_eq!(
            child_gc_labels(&Kind::Manifest, &[&config, &l0, &l1]),
            vec![
                (
                    "containerd.io/gc.ref.content.config".into(),
                    "sha256:c".into()
                ),
                (
                    "containerd.io/gc.ref.content.l.0".into(),
                    "sha256:l0".into()
                ),
                (
                    "containerd.io/gc.ref.content.l.1".into(),
                    "sha256:l1".into()
                ),
            ]
        );
        assert_eq!(
            child_gc_labels(&Kind::Index, &[&l0]),
            vec![(
                "containerd.io/gc.ref.content.m.0".into(),
                "sha256:l0".into()
            )]
        );
    }

    #[test]
    fn blob_paths_give_digests_and_nothing_else_does() {
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(
            blob_digest(&format!("./blobs/sha256/{hex}")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(blob_digest("index.json"), None);
        assert_eq!(blob_digest("blobs/sha256/short"), None);
        assert_eq!(blob_digest(&format!("blobs/md5/{hex}")), None);
        assert_eq!(
            blob_digest(&format!("blobs/sha256/{}", hex.to_uppercase())),
            None
        );
    }

    #[test]
    fn documents_are_told_apart_without_media_types() {
        let index: Document =
            serde_json::from_str(r#"{"schemaVersion":2,"manifests":[]}"#).unwrap();
        assert_eq!(kind_of("", &index), Some(Kind::Index));
        let manifest: Document = serde_json::from_str(
            r#"{"schemaVersion":2,"config":{"digest":"sha256:c","size":1},"layers":[]}"#,
        )
        .unwrap();
        assert_eq!(kind_of("", &manifest), Some(Kind::Manifest));
        assert_eq!(kind_of(DOCKER_LIST, &manifest), Some(Kind::Index));
        assert_eq!(kind_of("text/plain", &manifest), None);
        assert!(is_layer("application/vnd.oci.image.layer.v1.tar+gzip"));
        assert!(is_layer(
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        ));
        assert!(!is_layer("application/vnd.oci.image.config.v1+json"));
    }
}
