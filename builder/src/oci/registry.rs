//! Pulling control-plane images by digest, for preloading into node images.
//!
//! Through oci-client (bearer-token flow, rustls). A mirror map sends the
//! requests for a registry to another endpoint with the same repository and
//! digest, which is how an internal mirror, or a test registry on loopback,
//! serves `registry.k8s.io` images through the same code path. Every manifest
//! and blob is checked against its digest: the recipe's pin is the trust.

use std::collections::BTreeMap;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::digest::Sha256Digest;
use crate::platform::Arch;
use crate::rootfs::tree::{Node, Tree};

pub const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Where kina-init finds the preloaded images on first boot.
pub const PRELOAD_DIR: &str = "var/lib/kina/images";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "registry mirror `{0}` is not of the form REGISTRY=URL (e.g. registry.k8s.io=https://mirror.example)"
    )]
    BadMirror(String),
    #[error("registry mirror {0}: plain http is allowed only for loopback addresses; use https")]
    InsecureMirror(String),
    #[error("image reference `{reference}`: {message}")]
    Reference { reference: String, message: String },
    #[error("pulling {reference} from {registry}: {message}")]
    Pull {
        reference: String,
        registry: String,
        message: String,
    },
    #[error(
        "{reference}: {what} has digest {actual}, but the recipe pins {expected}; the registry served different content"
    )]
    Digest {
        reference: String,
        what: String,
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
    #[error("{reference}@{digest} has no linux/{arch} image")]
    NoPlatform {
        reference: String,
        digest: Sha256Digest,
        arch: Arch,
    },
    #[error("{reference}: malformed {what}: {message}")]
    Malformed {
        reference: String,
        what: String,
        message: String,
    },
}

pub type PullError = RegistryError;

#[derive(Clone, Debug)]
struct Endpoint {
    host: String,
    plain_http: bool,
}

/// Registry host → endpoint, from `--registry-mirror REGISTRY=URL`.
#[derive(Clone, Debug, Default)]
pub struct RegistryMirrors {
    map: BTreeMap<String, Endpoint>,
}

impl RegistryMirrors {
    pub fn parse(rules: &[String]) -> Result<Self, RegistryError> {
        let mut map = BTreeMap::new();
        for rule in rules {
            let (registry, url) = rule
                .split_once('=')
                .filter(|(r, u)| !r.is_empty() && !u.is_empty())
                .ok_or_else(|| RegistryError::BadMirror(rule.clone()))?;
            let (plain_http, host) = if let Some(h) = url.strip_prefix("http://") {
                (true, h)
            } else if let Some(h) = url.strip_prefix("https://") {
                (false, h)
            } else {
                (false, url)
            };
            let host = host.trim_end_matches('/').to_string();
            if plain_http && !super::loopback::is_loopback(&host) {
                return Err(RegistryError::InsecureMirror(rule.clone()));
            }
            map.insert(registry.to_string(), Endpoint { host, plain_http });
        }
        Ok(Self { map })
    }

    fn client(&self) -> Client {
        let http: Vec<String> = self
            .map
            .values()
            .filter(|e| e.plain_http)
            .map(|e| e.host.clone())
            .collect();
        Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(http),
            ..Default::default()
        })
    }

    /// The reference to request: the same repository at `digest`, on the
    /// mirror of its registry when one is configured.
    fn route(
        &self,
        reference: &str,
        digest: &Sha256Digest,
    ) -> Result<(Reference, String), RegistryError> {
        let parsed: Reference =
            reference
                .parse()
                .map_err(|e: oci_client::ParseError| RegistryError::Reference {
                    reference: reference.to_string(),
                    message: e.to_string(),
                })?;
        let registry = parsed.registry().to_string();
        let host = self.map.get(&registry).map_or(registry, |e| e.host.clone());
        let routed =
            Reference::with_digest(host.clone(), parsed.repository().to_string(), digest.oci());
        Ok((routed, host))
    }
}

async fn manifest(
    client: &Client,
    mirrors: &RegistryMirrors,
    reference: &str,
    digest: &Sha256Digest,
) -> Result<Vec<u8>, RegistryError> {
    let (routed, host) = mirrors.route(reference, digest)?;
    let (bytes, _) = client
        .pull_manifest_raw(&routed, &RegistryAuth::Anonymous, MANIFEST_TYPES)
        .await
        .map_err(|e| RegistryError::Pull {
            reference: reference.to_string(),
            registry: host,
            message: e.to_string(),
        })?;
    let actual = Sha256Digest::of(&bytes);
    if actual != *digest {
        return Err(RegistryError::Digest {
            reference: reference.to_string(),
            what: "the manifest".into(),
            expected: *digest,
            actual,
        });
    }
    Ok(bytes.to_vec())
}

fn parse_json(
    reference: &str,
    what: &str,
    bytes: &[u8],
) -> Result<serde_json::Value, RegistryError> {
    serde_json::from_slice(bytes).map_err(|e| RegistryError::Malformed {
        reference: reference.to_string(),
        what: what.to_string(),
        message: e.to_string(),
    })
}

fn is_index(doc: &serde_json::Value) -> bool {
    doc.get("manifests").is_some()
}

/// The digest of `arch`'s manifest in the index `digest` (or `digest` itself
/// when it names a single-platform manifest).
pub async fn resolve_platform_manifest(
    reference: &str,
    digest: &Sha256Digest,
    arch: Arch,
    mirrors: &RegistryMirrors,
) -> Result<Sha256Digest, RegistryError> {
    let client = mirrors.client();
    let bytes = manifest(&client, mirrors, reference, digest).await?;
    let doc = parse_json(reference, "manifest", &bytes)?;
    if !is_index(&doc) {
        return Ok(*digest);
    }
    let entries = doc["manifests"].as_array().cloned().unwrap_or_default();
    let found = entries.iter().find(|m| {
        m["platform"]["os"] == "linux"
            && m["platform"]["architecture"] == arch.debian()
            && (arch != Arch::Arm64 || m["platform"]["variant"].as_str().is_none_or(|v| v == "v8"))
    });
    let Some(entry) = found else {
        return Err(RegistryError::NoPlatform {
            reference: reference.to_string(),
            digest: *digest,
            arch,
        });
    };
    entry["digest"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(
            |e: crate::digest::DigestParseError| RegistryError::Malformed {
                reference: reference.to_string(),
                what: "index".into(),
                message: e.to_string(),
            },
        )
}

/// One platform of an image, every blob verified.
#[derive(Clone, Debug)]
pub struct PulledImage {
    pub reference: String,
    pub manifest_digest: Sha256Digest,
    pub manifest: Vec<u8>,
    pub media_type: String,
    pub blobs: Vec<(Sha256Digest, Vec<u8>)>,
}

/// Pulls one platform's manifest (pinned by the lock) and its blobs.
pub async fn pull_platform(
    reference: &str,
    manifest_digest: &Sha256Digest,
    mirrors: &RegistryMirrors,
) -> Result<PulledImage, RegistryError> {
    let client = mirrors.client();
    let bytes = manifest(&client, mirrors, reference, manifest_digest).await?;
    let doc = parse_json(reference, "manifest", &bytes)?;
    let media_type = doc["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_string();
    let mut wanted = vec![
        doc["config"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    ];
    for layer in doc["layers"].as_array().into_iter().flatten() {
        wanted.push(layer["digest"].as_str().unwrap_or_default().to_string());
    }
    let mut blobs = Vec::new();
    for digest_text in wanted {
        let digest: Sha256Digest =
            digest_text
                .parse()
                .map_err(
                    |e: crate::digest::DigestParseError| RegistryError::Malformed {
                        reference: reference.to_string(),
                        what: "manifest".into(),
                        message: e.to_string(),
                    },
                )?;
        let (routed, host) = mirrors.route(reference, manifest_digest)?;
        let mut data = Vec::new();
        client
            .pull_blob(&routed, digest.oci().as_str(), &mut data)
            .await
            .map_err(|e| RegistryError::Pull {
                reference: reference.to_string(),
                registry: host,
                message: format!("blob {digest:?}: {e}"),
            })?;
        let actual = Sha256Digest::of(&data);
        if actual != digest {
            return Err(RegistryError::Digest {
                reference: reference.to_string(),
                what: format!("blob {digest:?}"),
                expected: digest,
                actual,
            });
        }
        blobs.push((digest, data));
    }
    Ok(PulledImage {
        reference: reference.to_string(),
        manifest_digest: *manifest_digest,
        manifest: bytes,
        media_type,
        blobs,
    })
}

/// An OCI layout of `images` under `var/lib/kina/images`, each manifest named
/// by its reference, for kina-init to import into containerd on first boot
/// (containerd cannot be run for a foreign architecture at build time, and
/// its content store is useless without its bolt metadata).
pub fn preload_tree(images: &[PulledImage], epoch: u64) -> Result<Tree, RegistryError> {
    let mut tree = Tree::new();
    let dir = |t: &mut Tree, p: &str| {
        t.insert(p.to_string(), Node::dir(0o755).with_mtime(epoch));
    };
    dir(&mut tree, "var/lib/kina/images");
    dir(&mut tree, "var/lib/kina/images/blobs");
    dir(&mut tree, "var/lib/kina/images/blobs/sha256");
    let mut entries = Vec::new();
    for image in images {
        let mut put = |digest: &Sha256Digest, data: &[u8]| {
            tree.insert(
                format!("{PRELOAD_DIR}/blobs/sha256/{}", digest.hex()),
                Node::file(data.to_vec(), 0o644).with_mtime(epoch),
            );
        };
        put(&image.manifest_digest, &image.manifest);
        for (digest, data) in &image.blobs {
            put(digest, data);
        }
        entries.push(crate::oci_layout::LayoutEntry {
            media_type: image.media_type.clone(),
            digest: image.manifest_digest,
            size: image.manifest.len() as u64,
            reference: image.reference.clone(),
        });
    }
    let index =
        crate::oci_layout::layout_index_json(&entries).map_err(|e| RegistryError::Malformed {
            reference: "preloaded images".into(),
            what: "index.json".into(),
            message: e.to_string(),
        })?;
    tree.insert(
        format!("{PRELOAD_DIR}/index.json"),
        Node::file(index, 0o644).with_mtime(epoch),
    );
    tree.insert(
        format!("{PRELOAD_DIR}/oci-layout"),
        Node::file(crate::oci_layout::OCI_LAYOUT.to_vec(), 0o644).with_mtime(epoch),
    );
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_mirrors_are_allowed_only_on_loopback() {
        assert!(RegistryMirrors::parse(&["registry.k8s.io=http://127.0.0.1:5000".into()]).is_ok());
        assert!(
            RegistryMirrors::parse(&["registry.k8s.io=https://mirror.example.invalid".into()])
                .is_ok()
        );
        let err = RegistryMirrors::parse(&["registry.k8s.io=http://mirror.example.invalid".into()])
            .unwrap_err();
        assert!(matches!(err, RegistryError::InsecureMirror(_)));
        assert!(RegistryMirrors::parse(&["nonsense".into()]).is_err());
        // Found by tests/prop_oci.rs: a `127.` prefix was taken for loopback.
        for host in ["127.example.invalid", "127.0.0.1.example.invalid:5000"] {
            let err =
                RegistryMirrors::parse(&[format!("registry.k8s.io=http://{host}")]).unwrap_err();
            assert!(matches!(err, RegistryError::InsecureMirror(_)), "{err}");
        }
        for host in ["127.0.0.2:5000", "localhost:5000", "[::1]:5000"] {
            assert!(RegistryMirrors::parse(&[format!("registry.k8s.io=http://{host}")]).is_ok());
        }
    }

    #[test]
    fn a_mirrored_reference_keeps_repository_and_digest() {
        let m = RegistryMirrors::parse(&["registry.k8s.io=http://127.0.0.1:5000".into()]).unwrap();
        let d = Sha256Digest::of(b"x");
        let (r, host) = m
            .route("registry.k8s.io/kube-apiserver:v1.34.2", &d)
            .unwrap();
        assert_eq!(host, "127.0.0.1:5000");
        assert_eq!(r.repository(), "kube-apiserver");
        assert_eq!(r.digest(), Some(d.oci().as_str()));
    }
}
