//! Pushing images from the local store to a registry, and pulling them back,
//! over the OCI distribution API.
//!
//! A small client of its own on reqwest rather than oci-client: oci-client's
//! blob upload takes the whole blob in memory and has no HEAD-then-skip or
//! cross-repository mount, and pushing must send manifests and the index as
//! the exact stored bytes whose digests the local store knows.
//!
//! Blobs up to the chunk size (64 MiB unless told) go as *monolithic
//! streaming* uploads: `POST` opens a session, then one `PUT …?digest=`
//! streams the file with its `Content-Length`. Larger ones go in *chunks*:
//! `PATCH` requests with `Content-Range`, each streamed from the file, then
//! an empty `PUT …?digest=`. Chunks are what keep big layers under the
//! request-size limits of the proxies many registries sit behind; a registry
//! that refuses `PATCH` (405/501) gets whole blobs for the rest of the push.
//! Either way the file is hashed as it is sent and the upload is completed
//! only once the bytes proved to be the blob named: a monolithic body fails
//! before its last byte, a chunked upload never gets its closing `PUT`.
//!
//! A chunk that fails restarts its blob from the beginning rather than
//! resuming at the registry's reported offset: distribution
//! (docker-registry) checks the upload state a client sends against the
//! bytes it holds and cancels the upload when they differ ("upload resumed
//! at wrong offset"), which is what an interrupted `PATCH` leaves behind.
//! The exception is a chunk refused for an expired token: the registry
//! checks the token before it touches the upload, so that chunk goes again
//! at its offset with a new token (see upload.rs).
//!
//! Every request that fails for a transport reason, a 5xx or a 429 is retried
//! with exponential backoff; a whole blob is re-uploaded from its file. A
//! download cut off mid-blob goes on from its last byte with `Range` (see
//! session.rs), within one pull: nothing half-downloaded is kept between
//! runs, so a blob in the store is always a whole, verified one.
//!
//! Plain http is used only for loopback registries or with `insecure`, and
//! only after https failed; `insecure` also accepts an unverifiable
//! certificate. Credentials come from the caller (`--username` with
//! `--password-stdin`), else docker's `config.json` (`auths`, `credHelpers`,
//! `credsStore`), else none. Both `Basic` and `Bearer` challenges are
//! answered. Tokens live minutes and big pushes outlive them: a token is
//! replaced shortly before its `expires_in` is up, and a request refused
//! mid-push all the same is sent once more with a renewed token (asked also for
//! any scope the new challenge names); a chunk goes again at its offset. A
//! password goes to a token service only over https, or plain http on
//! loopback or with `insecure`. The `Authorization` value is kept
//! private: no error or Debug output contains it or the password.
//!
//! Under 700 lines: push and pull are the two walks of one index over
//! one session, kept together so their retry, mount and verification rules
//! read side by side.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE,
};
use reqwest::{Method, StatusCode, Url};
use sha2::{Digest as _, Sha256};

use super::loopback::is_loopback;
use super::registry::MANIFEST_TYPES;
use crate::digest::Sha256Digest;
use crate::oci_layout::LayoutEntry;
use crate::store::{INDEX_MEDIA_TYPE, ImageStore, StoreError};

const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ATTEMPTS: u32 = 5;
/// Blobs larger than this are uploaded in chunks of this size.
pub const DEFAULT_CHUNK_SIZE: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DistributionError {
    #[error("image reference `{reference}`: {message}")]
    Reference { reference: String, message: String },
    #[error(
        "registry {registry} is not reachable ({message}); check that it is running and the host and port are right (plain http is tried only for loopback registries or with --insecure)"
    )]
    Unreachable { registry: String, message: String },
    #[error(
        "registry {registry} speaks https, but its certificate could not be verified ({message}); if it uses a private CA, pass --ca-file with the CA's PEM (or --insecure to skip verification)"
    )]
    Tls { registry: String, message: String },
    #[error(
        "registry {registry} requires credentials: pass --username and --password-stdin, or log in with docker so ~/.docker/config.json has them"
    )]
    NeedsCredentials { registry: String },
    #[error(
        "registry {registry} rejected the credentials of user `{username}`; check the username and password (the password is not shown)"
    )]
    BadCredentials { registry: String, username: String },
    #[error(
        "registry {registry} accepted user `{username}` but refused {what} ({reason}): the user may not do this in this repository; check the repository name, or ask the registry's owner for access"
    )]
    Denied {
        registry: String,
        username: String,
        what: String,
        reason: String,
    },
    #[error(
        "registry {registry} refused the token its token service {realm} issued; the two disagree (service name, issuer, signing certificate or clock): check the registry's token auth settings"
    )]
    TokenRefused { registry: String, realm: String },
    #[error(
        "registry {registry} sends logins to the token service {realm}, which is plain http; kina does not send a password unencrypted (pass --insecure to allow it)"
    )]
    PlainRealm { registry: String, realm: String },
    #[error("{what} at {registry}: HTTP {status}: {message}")]
    Http {
        registry: String,
        what: String,
        status: u16,
        message: String,
    },
    #[error("{what} at {registry}: {message}")]
    Transport {
        registry: String,
        what: String,
        message: String,
    },
    #[error(
        "local blob {digest:?} ({path}) does not hash to its name or size; the local store is damaged: remove the image with `kina image rm` and build or pull it again"
    )]
    CorruptLocalBlob { digest: Sha256Digest, path: PathBuf },
    #[error(
        "{reference}: {what} should have digest {expected:?} but the registry served bytes with digest {actual:?}; nothing was stored"
    )]
    RemoteDigest {
        reference: String,
        what: String,
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
    #[error("{reference}: malformed {what}: {message}")]
    Malformed {
        reference: String,
        what: String,
        message: String,
    },
    #[error("docker config {path}: {message}")]
    DockerConfig { path: PathBuf, message: String },
    #[error("credential helper docker-credential-{helper} for {registry}: {message}")]
    CredentialHelper {
        helper: String,
        registry: String,
        message: String,
    },
    #[error("CA file {path}: {message}")]
    CaFile { path: PathBuf, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Layout(#[from] crate::oci_layout::LayoutError),
}

type Result<T, E = DistributionError> = std::result::Result<T, E>;

/// A username and password. Debug never shows the password.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How to reach a registry.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Explicit credentials; `None` falls back to docker's config, then anonymous.
    pub credentials: Option<Credentials>,
    /// Allow plain http and unverifiable certificates for any host.
    pub insecure: bool,
    /// Extra trusted CA certificates (PEM), for registries with a private CA.
    pub ca_file: Option<PathBuf>,
    /// Where docker's config.json lives (default `$DOCKER_CONFIG`, else `~/.docker`).
    pub docker_config_dir: Option<PathBuf>,
    /// Told how far each blob's transfer has got, for progress bars.
    pub progress: Option<ByteProgress>,
    /// Upload blobs larger than this in chunks of this size; `None` means
    /// [`DEFAULT_CHUNK_SIZE`], `Some(0)` whole blobs only.
    pub chunk_size: Option<u64>,
}

/// Called with a blob's digest, the bytes sent or received so far and its
/// size (0 when the registry does not say), as they stream.
#[derive(Clone)]
pub struct ByteProgress(pub Arc<ByteProgressFn>);

pub type ByteProgressFn = dyn Fn(&Sha256Digest, u64, u64) + Send + Sync;

impl std::fmt::Debug for ByteProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ByteProgress")
    }
}

/// What happened to one blob, for per-blob progress lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Uploaded (push) or downloaded (pull).
    Transferred,
    /// Already present at the destination.
    Skipped,
    /// Mounted from another repository of the same registry.
    Mounted,
}

#[derive(Clone, Debug)]
pub struct BlobReport {
    pub digest: Sha256Digest,
    pub size: u64,
    /// `layer`, `config`, `manifest` or `index`.
    pub kind: &'static str,
    pub outcome: Outcome,
    /// How long this blob took, from the previous one's end (the HEAD
    /// check included): with `size`, the transfer rate.
    pub elapsed: Duration,
}

#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub index_digest: Option<Sha256Digest>,
    pub transferred: (usize, u64),
    pub skipped: (usize, u64),
    pub mounted: (usize, u64),
}

impl Summary {
    fn add(&mut self, report: &BlobReport) {
        let slot = match report.outcome {
            Outcome::Transferred => &mut self.transferred,
            Outcome::Skipped => &mut self.skipped,
            Outcome::Mounted => &mut self.mounted,
        };
        slot.0 += 1;
        slot.1 += report.size;
    }
}

/// A parsed `registry/repository[:tag][@digest]`.
#[derive(Clone, Debug)]
pub struct Target {
    pub original: String,
    /// Host (and port) requests go to.
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Sha256Digest>,
}

impl Target {
    pub fn parse(reference: &str) -> Result<Self> {
        let bad = |message: String| DistributionError::Reference {
            reference: reference.to_string(),
            message,
        };
        let parsed: oci_client::Reference = reference
            .parse()
            .map_err(|e: oci_client::ParseError| bad(e.to_string()))?;
        let digest = parsed
            .digest()
            .map(|d| {
                d.parse::<Sha256Digest>()
                    .map_err(|e| bad(format!("only sha256 digests are supported: {e}")))
            })
            .transpose()?;
        Ok(Self {
            original: reference.to_string(),
            registry: parsed.resolve_registry().to_string(),
            repository: parsed.repository().to_string(),
            tag: parsed.tag().map(str::to_string),
            digest,
        })
    }

    fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

mod auth;
mod challenge;
mod credentials;
mod session;
mod upload;

pub use credentials::docker_credentials;
use session::Session;

fn parse(reference: &str, what: &str, bytes: &[u8]) -> Result<serde_json::Value> {
    serde_json::from_slice(bytes).map_err(|e| DistributionError::Malformed {
        reference: reference.to_string(),
        what: what.to_string(),
        message: e.to_string(),
    })
}

fn descriptor(reference: &str, what: &str, d: &serde_json::Value) -> Result<(Sha256Digest, u64)> {
    let digest = d["digest"]
        .as_str()
        .unwrap_or_default()
        .parse::<Sha256Digest>()
        .map_err(|e| DistributionError::Malformed {
            reference: reference.to_string(),
            what: what.to_string(),
            message: e.to_string(),
        })?;
    Ok((digest, d["size"].as_u64().unwrap_or(0)))
}

fn is_index_type(media_type: &str, doc: &serde_json::Value) -> bool {
    media_type == INDEX_MEDIA_TYPE || media_type == DOCKER_LIST || doc.get("manifests").is_some()
}

/// A manifest (or index) read from the local store, checked against its name.
fn read_local(store: &ImageStore, digest: &Sha256Digest) -> Result<Vec<u8>> {
    let bytes = store.blobs().read(digest)?;
    if Sha256Digest::of(&bytes) != *digest {
        return Err(DistributionError::CorruptLocalBlob {
            digest: *digest,
            path: store.blobs().path(digest),
        });
    }
    Ok(bytes)
}

/// Pushes the local image `local` to `target`: blobs (each once, HEAD first),
/// then per-platform manifests by digest, then the index under the tag.
pub async fn push(
    store: &ImageStore,
    local: &str,
    target: &str,
    opts: &Options,
    progress: &mut (dyn FnMut(&BlobReport) + Send),
) -> Result<Summary> {
    let entry: LayoutEntry = store.find(local)?;
    let target = Target::parse(target)?;
    if let Some(d) = target.digest
        && d != entry.digest
    {
        return Err(DistributionError::Reference {
            reference: target.original.clone(),
            message: format!(
                "names digest {d:?}, but local image `{local}` is {:?}; drop the @digest or push the matching image",
                entry.digest
            ),
        });
    }
    // A local name on the same registry tells where the blobs already are.
    let mount_from = Target::parse(local)
        .ok()
        .filter(|t| t.registry == target.registry && t.repository != target.repository)
        .map(|t| t.repository);
    let mount_scope: Vec<String> = mount_from
        .iter()
        .map(|from| format!("repository:{from}:pull"))
        .collect();
    let session = Session::open(&target, opts, true, &mount_scope).await?;

    let top = read_local(store, &entry.digest)?;
    let top_doc = parse(local, "index", &top)?;
    // (digest, bytes, media type) of each platform manifest, in index order.
    let mut manifests = Vec::new();
    if is_index_type(&entry.media_type, &top_doc) {
        for m in top_doc["manifests"].as_array().into_iter().flatten() {
            let (digest, _) = descriptor(local, "index", m)?;
            let media_type = m["mediaType"]
                .as_str()
                .unwrap_or("application/vnd.oci.image.manifest.v1+json")
                .to_string();
            manifests.push((digest, read_local(store, &digest)?, media_type));
        }
    }
    let mut blobs: BTreeMap<Sha256Digest, (u64, &'static str)> = BTreeMap::new();
    let single = [(entry.digest, top.clone(), entry.media_type.clone())];
    let platform_docs = if manifests.is_empty() {
        &single[..]
    } else {
        &manifests[..]
    };
    for (_, bytes, _) in platform_docs {
        let doc = parse(local, "manifest", bytes)?;
        if doc.get("manifests").is_some() {
            return Err(DistributionError::Malformed {
                reference: local.to_string(),
                what: "index".into(),
                message: "nested indexes are not supported".into(),
            });
        }
        let (d, s) = descriptor(local, "manifest config", &doc["config"])?;
        blobs.insert(d, (s, "config"));
        for layer in doc["layers"].as_array().into_iter().flatten() {
            let (d, s) = descriptor(local, "manifest layer", layer)?;
            blobs.insert(d, (s, "layer"));
        }
    }

    let mut summary = Summary::default();
    let mut last = std::time::Instant::now();
    let mut report = |mut r: BlobReport, summary: &mut Summary| {
        r.elapsed = last.elapsed();
        last = std::time::Instant::now();
        summary.add(&r);
        progress(&r);
    };
    for (digest, (size, kind)) in &blobs {
        let outcome = if session.blob_exists(digest).await? {
            Outcome::Skipped
        } else {
            session
                .upload(store, digest, *size, mount_from.as_deref())
                .await?
        };
        report(
            BlobReport {
                digest: *digest,
                size: *size,
                kind,
                outcome,
                elapsed: Duration::ZERO,
            },
            &mut summary,
        );
    }
    for (digest, bytes, media_type) in &manifests {
        let outcome = if session.manifest_exists(digest, media_type).await? {
            Outcome::Skipped
        } else {
            session
                .put_manifest(&digest.oci(), bytes, media_type)
                .await?;
            Outcome::Transferred
        };
        report(
            BlobReport {
                digest: *digest,
                size: bytes.len() as u64,
                kind: "manifest",
                outcome,
                elapsed: Duration::ZERO,
            },
            &mut summary,
        );
    }
    // The tag always moves, so the top document is always sent.
    let tag = target.tag.clone().unwrap_or_else(|| entry.digest.oci());
    let media_type = top_doc["mediaType"]
        .as_str()
        .map_or(entry.media_type.clone(), str::to_string);
    let outcome = if session
        .tag_points_at(&tag, &entry.digest, &media_type)
        .await?
    {
        Outcome::Skipped
    } else {
        session.put_manifest(&tag, &top, &media_type).await?;
        Outcome::Transferred
    };
    report(
        BlobReport {
            digest: entry.digest,
            size: top.len() as u64,
            kind: if manifests.is_empty() {
                "manifest"
            } else {
                "index"
            },
            outcome,
            elapsed: Duration::ZERO,
        },
        &mut summary,
    );
    summary.index_digest = Some(entry.digest);
    Ok(summary)
}

/// Pulls `reference` into the store: every blob verified and written under a
/// temporary name first, manifests after their blobs, the index last, then
/// the local name `reference` (or `local`) points at it.
pub async fn pull(
    store: &ImageStore,
    reference: &str,
    local: Option<&str>,
    opts: &Options,
    progress: &mut (dyn FnMut(&BlobReport) + Send),
) -> Result<Summary> {
    let fetched = fetch(store, reference, opts, progress).await?;
    store.tag(fetched.entry(local.unwrap_or(reference)))?;
    Ok(fetched.summary)
}

/// What [`fetch`] brought into the store: every blob of the top document,
/// verified, but no name pointing at it yet.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub media_type: String,
    pub digest: Sha256Digest,
    pub size: u64,
    pub summary: Summary,
}

impl Fetched {
    /// The store entry naming what was fetched `reference`.
    pub fn entry(&self, reference: &str) -> LayoutEntry {
        LayoutEntry {
            media_type: self.media_type.clone(),
            digest: self.digest,
            size: self.size,
            reference: reference.to_string(),
        }
    }
}

/// [`pull`] without the naming: for callers that check what arrived (a
/// kernel artifact, say) before a name makes it visible.
pub async fn fetch(
    store: &ImageStore,
    reference: &str,
    opts: &Options,
    progress: &mut (dyn FnMut(&BlobReport) + Send),
) -> Result<Fetched> {
    let target = Target::parse(reference)?;
    let session = Session::open(&target, opts, false, &[]).await?;
    let top_ref = target
        .digest
        .map(|d| d.oci())
        .or_else(|| target.tag.clone())
        .unwrap_or_else(|| "latest".into());
    let (top, top_type) = session
        .get_manifest(&top_ref, target.digest.as_ref())
        .await?;
    let top_digest = Sha256Digest::of(&top);
    let top_doc = parse(reference, "manifest", &top)?;
    let mut manifests = Vec::new();
    if is_index_type(&top_type, &top_doc) {
        for m in top_doc["manifests"].as_array().into_iter().flatten() {
            let (digest, _) = descriptor(reference, "index", m)?;
            let (bytes, _) = session.get_manifest(&digest.oci(), Some(&digest)).await?;
            manifests.push((digest, bytes));
        }
    } else {
        manifests.push((top_digest, top.clone()));
    }
    let mut summary = Summary::default();
    let mut last = std::time::Instant::now();
    let mut report = |mut r: BlobReport, summary: &mut Summary| {
        r.elapsed = last.elapsed();
        last = std::time::Instant::now();
        summary.add(&r);
        progress(&r);
    };
    let mut done = std::collections::BTreeSet::new();
    for (_, bytes) in &manifests {
        let doc = parse(reference, "manifest", bytes)?;
        let mut wanted = vec![(
            descriptor(reference, "manifest config", &doc["config"])?,
            "config",
        )];
        for layer in doc["layers"].as_array().into_iter().flatten() {
            wanted.push((descriptor(reference, "manifest layer", layer)?, "layer"));
        }
        for ((digest, size), kind) in wanted {
            if !done.insert(digest) {
                continue;
            }
            let outcome = if store.blobs().contains(&digest) {
                Outcome::Skipped
            } else {
                session.download(store, &digest).await?;
                Outcome::Transferred
            };
            report(
                BlobReport {
                    digest,
                    size,
                    kind,
                    outcome,
                    elapsed: Duration::ZERO,
                },
                &mut summary,
            );
        }
    }
    let is_index = top_digest != manifests.first().map_or(top_digest, |m| m.0)
        || is_index_type(&top_type, &top_doc);
    for (digest, bytes) in &manifests {
        if *digest == top_digest {
            continue;
        }
        let outcome = if store.blobs().contains(digest) {
            Outcome::Skipped
        } else {
            store.blobs().put_bytes(bytes)?;
            Outcome::Transferred
        };
        report(
            BlobReport {
                digest: *digest,
                size: bytes.len() as u64,
                kind: "manifest",
                outcome,
                elapsed: Duration::ZERO,
            },
            &mut summary,
        );
    }
    let outcome = if store.blobs().contains(&top_digest) {
        Outcome::Skipped
    } else {
        store.blobs().put_bytes(&top)?;
        Outcome::Transferred
    };
    report(
        BlobReport {
            digest: top_digest,
            size: top.len() as u64,
            kind: if is_index { "index" } else { "manifest" },
            outcome,
            elapsed: Duration::ZERO,
        },
        &mut summary,
    );
    summary.index_digest = Some(top_digest);
    Ok(Fetched {
        media_type: top_type,
        digest: top_digest,
        size: top.len() as u64,
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_debug_hides_the_password() {
        let c = Credentials {
            username: "alice".into(),
            password: "hunter2-secret".into(),
        };
        let text = format!(
            "{c:?} {:?}",
            Options {
                credentials: Some(c.clone()),
                ..Default::default()
            }
        );
        assert!(text.contains("alice"));
        assert!(!text.contains("hunter2-secret"), "{text}");
    }

    #[test]
    fn references_resolve_registry_repository_and_tag() {
        let t = Target::parse("127.0.0.1:5000/kina/node:v1").unwrap();
        assert_eq!(t.registry, "127.0.0.1:5000");
        assert_eq!(t.repository, "kina/node");
        assert_eq!(t.tag.as_deref(), Some("v1"));
        assert!(Target::parse("kina/node:bad tag!").is_err());
    }
}
