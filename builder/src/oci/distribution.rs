//! Pushing images from the local store to a registry, and pulling them back,
//! over the OCI distribution API.
//!
//! A small client of its own on reqwest rather than oci-client: oci-client's
//! blob upload takes the whole blob in memory and has no HEAD-then-skip or
//! cross-repository mount, and pushing must send manifests and the index as
//! the exact stored bytes whose digests the local store knows.
//!
//! Uploads are *monolithic streaming* uploads: `POST` opens a session, then
//! one `PUT …?digest=` streams the blob file with its `Content-Length`. The
//! body is hashed as it is read, and the stream fails before its last byte
//! when the file does not hash to its name, so a corrupt local blob never
//! completes an upload. Chunked `PATCH` uploads are not used: every registry
//! accepts a monolithic PUT, a streamed body already keeps memory flat, and a
//! failed upload restarts from the beginning anyway (HEAD skips what landed).
//!
//! Every request that fails for a transport reason, a 5xx or a 429 is retried
//! with exponential backoff; a whole blob is re-uploaded from its file.
//!
//! Plain http is used only for loopback registries or with `insecure`, and
//! only after https failed; `insecure` also accepts an unverifiable
//! certificate. Credentials come from the caller (`--username` with
//! `--password-stdin`), else docker's `config.json` (`auths`, `credHelpers`,
//! `credsStore`), else none. Both `Basic` and `Bearer` challenges are
//! answered. The `Authorization` value is kept private: no error or Debug
//! output contains it or the password.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode, Url};
use sha2::{Digest as _, Sha256};

use super::layout::LayoutEntry;
use super::registry::MANIFEST_TYPES;
use crate::digest::Sha256Digest;
use crate::store::{INDEX_MEDIA_TYPE, ImageStore, StoreError};

const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum DistributionError {
    #[error("image reference `{reference}`: {message}")]
    Reference { reference: String, message: String },
    #[error(
        "registry {registry} is not reachable ({message}); check that it is running and the host and port are right (plain http is tried only for loopback registries or with --insecure)"
    )]
    Unreachable { registry: String, message: String },
    #[error(
        "registry {registry} requires credentials: pass --username and --password-stdin, or log in with docker so ~/.docker/config.json has them"
    )]
    NeedsCredentials { registry: String },
    #[error(
        "registry {registry} rejected the credentials of user `{username}`; check the username and password (the password is not shown)"
    )]
    BadCredentials { registry: String, username: String },
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
    Layout(#[from] super::layout::LayoutError),
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

fn is_loopback(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    name == "localhost" || name.starts_with("127.") || name == "[::1]"
}

/// A `WWW-Authenticate` challenge: scheme and parameters.
#[derive(Debug, PartialEq, Eq)]
struct Challenge {
    scheme: String,
    params: BTreeMap<String, String>,
}

fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

fn docker_config_path(opts: &Options) -> Option<PathBuf> {
    opts.docker_config_dir
        .clone()
        .or_else(|| std::env::var_os("DOCKER_CONFIG").map(PathBuf::from))
        .or_else(|| dirs::home_dir().map(|h| h.join(".docker")))
        .map(|d| d.join("config.json"))
}

/// Credentials for `registry` from docker's config.json: `credHelpers`
/// first, then an inline `auths` entry, then `credsStore`, as docker does.
pub fn docker_credentials(opts: &Options, registry: &str) -> Result<Option<Credentials>> {
    let Some(path) = docker_config_path(opts) else {
        return Ok(None);
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(DistributionError::DockerConfig {
                path,
                message: e.to_string(),
            });
        }
    };
    let bad = |message: String| DistributionError::DockerConfig {
        path: path.clone(),
        message,
    };
    let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    // Entries are keyed by host, or by URL when written by older docker logins.
    let keys: Vec<String> = vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ];
    for key in &keys {
        if let Some(helper) = doc["credHelpers"][key].as_str() {
            return credential_helper(helper, key).map(Some);
        }
    }
    for key in &keys {
        let entry = &doc["auths"][key];
        if let Some(auth) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth)
                .map_err(|_| bad(format!("auths.{key}.auth is not base64")))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| bad(format!("auths.{key}.auth is not UTF-8")))?;
            let (username, password) = text
                .split_once(':')
                .ok_or_else(|| bad(format!("auths.{key}.auth is not user:password")))?;
            return Ok(Some(Credentials {
                username: username.to_string(),
                password: password.to_string(),
            }));
        }
        if let (Some(u), Some(p)) = (entry["username"].as_str(), entry["password"].as_str()) {
            return Ok(Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            }));
        }
    }
    if let Some(helper) = doc["credsStore"].as_str().filter(|h| !h.is_empty()) {
        return match credential_helper(helper, &keys[0]) {
            Ok(c) => Ok(Some(c)),
            // A store that has nothing for this registry means anonymous.
            Err(DistributionError::CredentialHelper { message, .. })
                if message.contains("not found") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        };
    }
    Ok(None)
}

fn credential_helper(helper: &str, registry: &str) -> Result<Credentials> {
    use std::io::Write;
    let err = |message: String| DistributionError::CredentialHelper {
        helper: helper.to_string(),
        registry: registry.to_string(),
        message,
    };
    let mut child = std::process::Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("cannot run it ({e}); is it installed and on PATH?")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(registry.as_bytes())
            .map_err(|e| err(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        // Helpers print "credentials not found in native keychain" and the like,
        // never the secret.
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        return Err(err(format!("{} ({})", text, out.status)));
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|_| err("its output is not the expected JSON".into()))?;
    match (doc["Username"].as_str(), doc["Secret"].as_str()) {
        (Some(u), Some(s)) => Ok(Credentials {
            username: u.to_string(),
            password: s.to_string(),
        }),
        _ => Err(err("its output has no Username and Secret".into())),
    }
}

fn retryable_status(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64 << attempt.min(5))
}

/// One registry repository with resolved scheme and authorization.
struct Session {
    client: reqwest::Client,
    base: Url,
    target: Target,
    credentials: Option<Credentials>,
    /// The `Authorization` header value; never logged.
    authorization: Option<String>,
    /// Token scopes to ask for.
    scopes: Vec<String>,
}

impl Session {
    async fn open(target: &Target, opts: &Options, push: bool) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .user_agent(concat!("kina/", env!("CARGO_PKG_VERSION")));
        if opts.insecure {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        if let Some(path) = &opts.ca_file {
            let ca_err = |message: String| DistributionError::CaFile {
                path: path.clone(),
                message,
            };
            let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ca_err(format!("not PEM certificates: {e}")))?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder.build().map_err(|e| DistributionError::Transport {
            registry: target.registry.clone(),
            what: "setting up the HTTP client".into(),
            message: e.to_string(),
        })?;
        let credentials = match &opts.credentials {
            Some(c) => Some(c.clone()),
            None => docker_credentials(opts, &target.registry)?,
        };
        let action = if push { "pull,push" } else { "pull" };
        let mut session = Self {
            client,
            base: Url::parse("https://invalid./").map_err(|e| DistributionError::Reference {
                reference: target.original.clone(),
                message: e.to_string(),
            })?,
            target: target.clone(),
            credentials,
            authorization: None,
            scopes: vec![format!("repository:{}:{action}", target.repository)],
        };
        session.ping(opts).await?;
        Ok(session)
    }

    fn url(&self, path: &str) -> Result<Url> {
        self.base
            .join(path)
            .map_err(|e| DistributionError::Reference {
                reference: self.target.original.clone(),
                message: e.to_string(),
            })
    }

    /// `GET /v2/`: picks the scheme, then answers the challenge if any.
    async fn ping(&mut self, opts: &Options) -> Result<()> {
        let host = self.target.registry.clone();
        let mut schemes = vec!["https"];
        if opts.insecure || is_loopback(&host) {
            schemes.push("http");
        }
        let mut last = String::new();
        let mut found = None;
        for scheme in schemes {
            let url = Url::parse(&format!("{scheme}://{host}/v2/")).map_err(|e| {
                DistributionError::Reference {
                    reference: self.target.original.clone(),
                    message: format!("registry host `{host}`: {e}"),
                }
            })?;
            match self.client.get(url.clone()).send().await {
                Ok(resp) => {
                    found = Some((url, resp));
                    break;
                }
                Err(e) => last = error_text(&e),
            }
        }
        let Some((url, resp)) = found else {
            return Err(DistributionError::Unreachable {
                registry: host,
                message: last,
            });
        };
        self.base = url;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let challenge = resp
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge);
            self.authenticate(challenge).await?;
            // Check the answer now, so a wrong password is reported as such.
            let resp = self
                .send(Method::GET, self.base.clone(), "checking credentials")
                .await?;
            if resp.status() == StatusCode::UNAUTHORIZED {
                return Err(self.rejected());
            }
        } else if !resp.status().is_success() {
            return Err(http_error(&host, "GET /v2/", resp).await);
        }
        Ok(())
    }

    fn rejected(&self) -> DistributionError {
        match &self.credentials {
            Some(c) => DistributionError::BadCredentials {
                registry: self.target.registry.clone(),
                username: c.username.clone(),
            },
            None => DistributionError::NeedsCredentials {
                registry: self.target.registry.clone(),
            },
        }
    }

    async fn authenticate(&mut self, challenge: Option<Challenge>) -> Result<()> {
        let Some(challenge) = challenge else {
            return Err(self.rejected());
        };
        match challenge.scheme.as_str() {
            "basic" => {
                let Some(c) = &self.credentials else {
                    return Err(self.rejected());
                };
                use base64::Engine as _;
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.username, c.password));
                self.authorization = Some(format!("Basic {token}"));
                Ok(())
            }
            "bearer" => {
                let realm = challenge.params.get("realm").cloned().unwrap_or_default();
                let mut url = Url::parse(&realm).map_err(|e| DistributionError::Http {
                    registry: self.target.registry.clone(),
                    what: "the authentication challenge".into(),
                    status: 401,
                    message: format!("token realm `{realm}` is not a URL: {e}"),
                })?;
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(service) = challenge.params.get("service") {
                        q.append_pair("service", service);
                    }
                    for scope in &self.scopes {
                        q.append_pair("scope", scope);
                    }
                }
                let mut req = self.client.get(url);
                if let Some(c) = &self.credentials {
                    req = req.basic_auth(&c.username, Some(&c.password));
                }
                let resp = req.send().await.map_err(|e| DistributionError::Transport {
                    registry: self.target.registry.clone(),
                    what: format!("fetching a token from {realm}"),
                    message: error_text(&e),
                })?;
                if resp.status() == StatusCode::UNAUTHORIZED
                    || resp.status() == StatusCode::FORBIDDEN
                {
                    return Err(self.rejected());
                }
                if !resp.status().is_success() {
                    return Err(http_error(
                        &self.target.registry,
                        &format!("fetching a token from {realm}"),
                        resp,
                    )
                    .await);
                }
                let doc: serde_json::Value =
                    resp.json()
                        .await
                        .map_err(|e| DistributionError::Transport {
                            registry: self.target.registry.clone(),
                            what: format!("token response of {realm}"),
                            message: error_text(&e),
                        })?;
                let token = doc["token"]
                    .as_str()
                    .or_else(|| doc["access_token"].as_str())
                    .ok_or_else(|| DistributionError::Http {
                        registry: self.target.registry.clone(),
                        what: format!("token response of {realm}"),
                        status: 200,
                        message: "no token in the response".into(),
                    })?;
                self.authorization = Some(format!("Bearer {token}"));
                Ok(())
            }
            other => Err(DistributionError::Http {
                registry: self.target.registry.clone(),
                what: "the authentication challenge".into(),
                status: 401,
                message: format!("unsupported scheme `{other}`"),
            }),
        }
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let req = self.client.request(method, url);
        match &self.authorization {
            Some(a) => req.header(AUTHORIZATION, a),
            None => req,
        }
    }

    /// Sends a body-less request, retrying transport errors, 5xx and 429.
    async fn send(&self, method: Method, url: Url, what: &str) -> Result<reqwest::Response> {
        self.send_with(what, || self.request(method.clone(), url.clone()))
            .await
    }

    async fn send_with(
        &self,
        what: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let mut attempt = 0;
        loop {
            let result = make().send().await;
            let retry = match &result {
                Ok(resp) => retryable_status(resp.status()),
                Err(_) => true,
            };
            if !retry || attempt + 1 >= ATTEMPTS {
                return result.map_err(|e| DistributionError::Transport {
                    registry: self.target.registry.clone(),
                    what: what.to_string(),
                    message: error_text(&e),
                });
            }
            tracing::warn!(
                "{what} at {}: attempt {} failed, retrying",
                self.target.registry,
                attempt + 1
            );
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    }

    async fn blob_exists(&self, digest: &Sha256Digest) -> Result<bool> {
        let url = self.url(&format!(
            "{}/blobs/{}",
            self.target.repository,
            digest.oci()
        ))?;
        let what = format!("checking blob {digest:?}");
        let resp = self.send(Method::HEAD, url, &what).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            StatusCode::UNAUTHORIZED => Err(self.rejected()),
            _ => Err(http_error(&self.target.name(), &what, resp).await),
        }
    }

    async fn manifest_exists(&self, digest: &Sha256Digest, media_type: &str) -> Result<bool> {
        let url = self.url(&format!(
            "{}/manifests/{}",
            self.target.repository,
            digest.oci()
        ))?;
        let what = format!("checking manifest {digest:?}");
        let resp = self
            .send_with(&what, || {
                self.request(Method::HEAD, url.clone())
                    .header(ACCEPT, media_type)
            })
            .await?;
        Ok(resp.status().is_success())
    }

    /// Whether `tag` already names `digest` (from `Docker-Content-Digest`,
    /// which docker-registry and most registries send on HEAD).
    async fn tag_points_at(
        &self,
        tag: &str,
        digest: &Sha256Digest,
        media_type: &str,
    ) -> Result<bool> {
        let url = self.url(&format!("{}/manifests/{tag}", self.target.repository))?;
        let what = format!("checking tag {tag}");
        let resp = self
            .send_with(&what, || {
                self.request(Method::HEAD, url.clone())
                    .header(ACCEPT, media_type)
            })
            .await?;
        Ok(resp.status().is_success()
            && resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == digest.oci()))
    }

    /// Starts an upload session, or mounts the blob from `mount_from` (a
    /// repository of the same registry). `None` means mounted.
    async fn start_upload(
        &self,
        digest: &Sha256Digest,
        mount_from: Option<&str>,
    ) -> Result<Option<Url>> {
        let mut url = self.url(&format!("{}/blobs/uploads/", self.target.repository))?;
        if let Some(from) = mount_from {
            url.query_pairs_mut()
                .append_pair("mount", &digest.oci())
                .append_pair("from", from);
        }
        let what = format!("starting the upload of blob {digest:?}");
        let resp = self
            .send_with(&what, || {
                self.request(Method::POST, url.clone())
                    .header(CONTENT_LENGTH, "0")
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED if mount_from.is_some() => Ok(None),
            StatusCode::ACCEPTED => {
                let location = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| DistributionError::Http {
                        registry: self.target.name(),
                        what: what.clone(),
                        status: 202,
                        message: "no Location header for the upload".into(),
                    })?;
                Ok(Some(self.url(location)?))
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(self.rejected()),
            _ => Err(http_error(&self.target.name(), &what, resp).await),
        }
    }

    /// Uploads one blob from the local store, streaming it from its file.
    async fn upload(
        &self,
        store: &ImageStore,
        digest: &Sha256Digest,
        size: u64,
        mount_from: Option<&str>,
    ) -> Result<Outcome> {
        let path = store.blobs().path(digest);
        let what = format!("uploading blob {digest:?}");
        let mut attempt = 0;
        loop {
            let Some(mut location) = self.start_upload(digest, mount_from).await? else {
                return Ok(Outcome::Mounted);
            };
            location
                .query_pairs_mut()
                .append_pair("digest", &digest.oci());
            let corrupt = Arc::new(Mutex::new(false));
            let file = tokio::fs::File::open(&path).await.map_err(|_| {
                DistributionError::CorruptLocalBlob {
                    digest: *digest,
                    path: path.clone(),
                }
            })?;
            let body = verified_body(file, *digest, size, corrupt.clone());
            let result = self
                .request(Method::PUT, location)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, size.to_string())
                .body(body)
                .send()
                .await;
            if corrupt.lock().map(|c| *c).unwrap_or(true) {
                return Err(DistributionError::CorruptLocalBlob {
                    digest: *digest,
                    path,
                });
            }
            let retry = match &result {
                Ok(resp) if resp.status().is_success() => return Ok(Outcome::Transferred),
                Ok(resp) => retryable_status(resp.status()),
                Err(_) => true,
            };
            if !retry || attempt + 1 >= ATTEMPTS {
                return match result {
                    Ok(resp) => Err(http_error(&self.target.name(), &what, resp).await),
                    Err(e) => Err(DistributionError::Transport {
                        registry: self.target.name(),
                        what,
                        message: error_text(&e),
                    }),
                };
            }
            tracing::warn!("{what}: attempt {} failed, retrying", attempt + 1);
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// `PUT` of a manifest or index: the exact bytes, under their media type.
    async fn put_manifest(&self, reference: &str, bytes: &[u8], media_type: &str) -> Result<()> {
        let url = self.url(&format!("{}/manifests/{reference}", self.target.repository))?;
        let what = format!("pushing manifest {reference}");
        let resp = self
            .send_with(&what, || {
                self.request(Method::PUT, url.clone())
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.to_vec())
            })
            .await?;
        if resp.status().is_success() {
            return Ok(());
        }
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            return Err(self.rejected());
        }
        Err(http_error(&self.target.name(), &what, resp).await)
    }

    /// A manifest's bytes, verified against `expected` when given.
    async fn get_manifest(
        &self,
        reference: &str,
        expected: Option<&Sha256Digest>,
    ) -> Result<(Vec<u8>, String)> {
        let url = self.url(&format!("{}/manifests/{reference}", self.target.repository))?;
        let what = format!("fetching manifest {reference}");
        let resp = self
            .send_with(&what, || {
                self.request(Method::GET, url.clone())
                    .header(ACCEPT, MANIFEST_TYPES.join(", "))
            })
            .await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(self.rejected());
        }
        if !resp.status().is_success() {
            return Err(http_error(&self.target.name(), &what, resp).await);
        }
        let header_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| DistributionError::Transport {
                registry: self.target.name(),
                what: what.clone(),
                message: error_text(&e),
            })?
            .to_vec();
        let actual = Sha256Digest::of(&bytes);
        if let Some(expected) = expected
            && actual != *expected
        {
            return Err(DistributionError::RemoteDigest {
                reference: self.target.original.clone(),
                what: format!("manifest {reference}"),
                expected: *expected,
                actual,
            });
        }
        let doc = parse(&self.target.original, "manifest", &bytes)?;
        let media_type = doc["mediaType"]
            .as_str()
            .map(str::to_string)
            .or(header_type)
            .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
        Ok((bytes, media_type))
    }

    /// Streams a blob into the store; it is kept only if it matches `digest`.
    async fn download(&self, store: &ImageStore, digest: &Sha256Digest) -> Result<u64> {
        use std::io::Write;
        let url = self.url(&format!(
            "{}/blobs/{}",
            self.target.repository,
            digest.oci()
        ))?;
        let what = format!("downloading blob {digest:?}");
        let mut attempt = 0;
        loop {
            let resp = self.send(Method::GET, url.clone(), &what).await?;
            if !resp.status().is_success() {
                return Err(http_error(&self.target.name(), &what, resp).await);
            }
            let mut writer = store.blobs().writer()?;
            let mut resp = resp;
            let streamed: std::result::Result<(), String> = async {
                while let Some(chunk) = resp.chunk().await.map_err(|e| error_text(&e))? {
                    writer.write_all(&chunk).map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            .await;
            match streamed {
                Ok(()) => {
                    return writer.commit_verified(digest).map_err(|e| match e {
                        super::layout::LayoutError::DigestMismatch { actual, .. } => {
                            DistributionError::RemoteDigest {
                                reference: self.target.original.clone(),
                                what: format!("blob {digest:?}"),
                                expected: *digest,
                                actual,
                            }
                        }
                        other => other.into(),
                    });
                }
                Err(message) if attempt + 1 >= ATTEMPTS => {
                    return Err(DistributionError::Transport {
                        registry: self.target.name(),
                        what,
                        message,
                    });
                }
                Err(_) => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// The reqwest error with its sources, which is where the useful part
/// ("connection refused", the TLS alert) is. URLs carry no credentials.
fn error_text(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

async fn http_error(registry: &str, what: &str, resp: reqwest::Response) -> DistributionError {
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    // Registry errors are `{"errors":[{"code","message"}]}`.
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|doc| {
            let parts: Vec<String> = doc["errors"]
                .as_array()?
                .iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e["code"].as_str().unwrap_or(""),
                        e["message"].as_str().unwrap_or("")
                    )
                })
                .collect();
            Some(parts.join("; "))
        })
        .unwrap_or_else(|| body.chars().take(300).collect());
    DistributionError::Http {
        registry: registry.to_string(),
        what: what.to_string(),
        status,
        message,
    }
}

/// The file's bytes as a request body, hashed on the way; the stream errors
/// out (so the upload never completes) when they do not match `digest`/`size`.
fn verified_body(
    file: tokio::fs::File,
    digest: Sha256Digest,
    size: u64,
    corrupt: Arc<Mutex<bool>>,
) -> reqwest::Body {
    use tokio::io::AsyncReadExt;
    struct State {
        file: tokio::fs::File,
        hasher: Sha256,
        read: u64,
        done: bool,
    }
    let fail = move |corrupt: &Arc<Mutex<bool>>| {
        if let Ok(mut c) = corrupt.lock() {
            *c = true;
        }
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("local blob {digest:?} does not match its digest"),
        )
    };
    let state = State {
        file,
        hasher: Sha256::new(),
        read: 0,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, move |mut st| {
        let corrupt = corrupt.clone();
        async move {
            if st.done {
                return None;
            }
            let mut buf = vec![0u8; 256 * 1024];
            match st.file.read(&mut buf).await {
                Err(e) => {
                    st.done = true;
                    Some((Err(e), st))
                }
                Ok(0) => {
                    st.done = true;
                    let actual = Sha256Digest::from_bytes(st.hasher.clone().finalize().into());
                    if actual != digest || st.read != size {
                        Some((Err(fail(&corrupt)), st))
                    } else {
                        None
                    }
                }
                Ok(n) => {
                    buf.truncate(n);
                    st.hasher.update(&buf);
                    st.read += n as u64;
                    if st.read > size {
                        st.done = true;
                        return Some((Err(fail(&corrupt)), st));
                    }
                    // The last bytes are held back until EOF proves the digest,
                    // so a corrupt blob never reaches a complete upload.
                    if st.read == size {
                        let mut probe = [0u8; 1];
                        match st.file.read(&mut probe).await {
                            Ok(0) => {
                                st.done = true;
                                let actual =
                                    Sha256Digest::from_bytes(st.hasher.clone().finalize().into());
                                if actual != digest {
                                    return Some((Err(fail(&corrupt)), st));
                                }
                            }
                            Ok(_) => {
                                st.done = true;
                                return Some((Err(fail(&corrupt)), st));
                            }
                            Err(e) => {
                                st.done = true;
                                return Some((Err(e), st));
                            }
                        }
                    }
                    Some((Ok(buf), st))
                }
            }
        }
    });
    reqwest::Body::wrap_stream(stream)
}

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
    let mut session = Session::open(&target, opts, true).await?;
    if let Some(from) = &mount_from {
        session.scopes.push(format!("repository:{from}:pull"));
    }

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
    let mut report = |r: BlobReport, summary: &mut Summary| {
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
    let target = Target::parse(reference)?;
    let session = Session::open(&target, opts, false).await?;
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
    let mut report = |r: BlobReport, summary: &mut Summary| {
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
        },
        &mut summary,
    );
    store.tag(LayoutEntry {
        media_type: top_type,
        digest: top_digest,
        size: top.len() as u64,
        reference: local.unwrap_or(reference).to_string(),
    })?;
    summary.index_digest = Some(top_digest);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_are_parsed_with_quoted_commas() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example.invalid/token",service="registry",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example.invalid/token");
        assert_eq!(c.params["service"], "registry");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let basic = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(basic.scheme, "basic");
        assert_eq!(basic.params["realm"], "Registry Realm");
    }

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
    fn docker_config_auths_are_decoded() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("bob:pa:ss");
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
        let opts = Options {
            docker_config_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let c = docker_credentials(&opts, "127.0.0.1:5000")
            .unwrap()
            .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("bob", "pa:ss"));
        assert!(
            docker_credentials(&opts, "127.0.0.1:5001")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn references_resolve_registry_repository_and_tag() {
        let t = Target::parse("127.0.0.1:5000/kina/node:v1").unwrap();
        assert_eq!(t.registry, "127.0.0.1:5000");
        assert_eq!(t.repository, "kina/node");
        assert_eq!(t.tag.as_deref(), Some("v1"));
        assert!(Target::parse("kina/node:bad tag!").is_err());
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("registry.example.invalid:5000"));
    }
}
