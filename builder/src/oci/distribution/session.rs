//! One registry repository over HTTP: scheme and authorization resolved
//! once, requests retried with backoff, blobs uploaded and downloaded as
//! streams verified against their digests.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::header::CONTENT_RANGE;

use super::auth::{Challenge, parse_challenge};
use super::*;

/// How long `GET /v2/` may take before the scheme is given up.
const PING_TIMEOUT: Duration = Duration::from_secs(20);

pub(super) fn retryable_status(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

pub(super) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64 << attempt.min(5))
}

/// One registry repository with resolved scheme and authorization.
pub(super) struct Session {
    pub(super) client: reqwest::Client,
    pub(super) base: Url,
    pub(super) target: Target,
    pub(super) credentials: Option<Credentials>,
    /// The `Authorization` header value; never logged. Behind a lock
    /// because a token that expires mid-push is replaced on the way.
    pub(super) authorization: Mutex<Option<String>>,
    /// Token scopes to ask for.
    pub(super) scopes: Vec<String>,
    pub(super) progress: Option<ByteProgress>,
    /// Plain http and unverifiable certificates allowed (`--insecure`).
    pub(super) insecure: bool,
    /// Blobs larger than this go in chunks of this size; 0: never.
    pub(super) chunk_size: u64,
    /// Set once the registry refused a chunk: whole blobs from then on.
    pub(super) whole_blobs: AtomicBool,
}

impl Session {
    /// `extra_scopes` are asked for in every token besides this
    /// repository's (the repository blobs are mounted from).
    pub(super) async fn open(
        target: &Target,
        opts: &Options,
        push: bool,
        extra_scopes: &[String],
    ) -> Result<Self> {
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
            authorization: Mutex::new(None),
            scopes: std::iter::once(format!("repository:{}:{action}", target.repository))
                .chain(extra_scopes.iter().cloned())
                .collect(),
            progress: opts.progress.clone(),
            insecure: opts.insecure,
            chunk_size: opts.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE),
            whole_blobs: AtomicBool::new(false),
        };
        session.ping(opts).await?;
        Ok(session)
    }

    pub(super) fn url(&self, path: &str) -> Result<Url> {
        self.base
            .join(path)
            .map_err(|e| DistributionError::Reference {
                reference: self.target.original.clone(),
                message: e.to_string(),
            })
    }

    /// `GET /v2/`: picks the scheme, then answers the challenge if any.
    pub(super) async fn ping(&mut self, opts: &Options) -> Result<()> {
        let host = self.target.registry.clone();
        let mut schemes = vec!["https"];
        if opts.insecure || is_loopback(&host) {
            schemes.push("http");
        }
        let mut last = String::new();
        let mut https_failed = None;
        let mut found = None;
        for scheme in schemes {
            let url = Url::parse(&format!("{scheme}://{host}/v2/")).map_err(|e| {
                DistributionError::Reference {
                    reference: self.target.original.clone(),
                    message: format!("registry host `{host}`: {e}"),
                }
            })?;
            // Bounded: a server that never answers a TLS hello (or a plain
            // request) would otherwise hold the push before it started.
            let probe = self.client.get(url.clone()).timeout(PING_TIMEOUT);
            match probe.send().await {
                Ok(resp) => {
                    found = Some((url, resp));
                    break;
                }
                Err(e) => {
                    last = error_text(&e);
                    if scheme == "https" {
                        https_failed = Some(last.clone());
                    }
                }
            }
        }
        let Some((url, resp)) = found else {
            return Err(DistributionError::Unreachable {
                registry: host,
                message: last,
            });
        };
        // https failed and plain http met a TLS server (it answers 400 to
        // plain http): the https error is the one that says what is wrong.
        if url.scheme() == "http"
            && resp.status() == StatusCode::BAD_REQUEST
            && let Some(message) = https_failed
        {
            return Err(DistributionError::Tls {
                registry: host,
                message,
            });
        }
        self.base = url;
        if resp.status() == StatusCode::UNAUTHORIZED {
            self.authenticate(challenge_of(&resp)).await?;
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

    /// A 401 or 403 to a request: a missing or wrong login, or a login
    /// that may not do this (403, or a token challenge saying
    /// `insufficient_scope`, as docker_auth, Harbor and Docker Hub answer).
    pub(super) fn refused(&self, resp: &reqwest::Response, what: &str) -> DistributionError {
        let Some(c) = &self.credentials else {
            return self.rejected();
        };
        let challenge = challenge_of(resp);
        let insufficient = challenge
            .as_ref()
            .and_then(|c| c.params.get("error"))
            .is_some_and(|e| e == "insufficient_scope");
        if resp.status() != StatusCode::FORBIDDEN && !insufficient {
            return self.rejected();
        }
        let reason = match challenge.as_ref().and_then(|c| c.params.get("scope")) {
            Some(scope) if insufficient => format!("its token lacks {scope}"),
            _ => format!("HTTP {}", resp.status().as_u16()),
        };
        DistributionError::Denied {
            registry: self.target.registry.clone(),
            username: c.username.clone(),
            what: what.to_string(),
            reason,
        }
    }

    pub(super) fn rejected(&self) -> DistributionError {
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

    fn set_authorization(&self, value: String) {
        if let Ok(mut a) = self.authorization.lock() {
            *a = Some(value);
        }
    }

    fn has_token(&self) -> bool {
        self.authorization
            .lock()
            .is_ok_and(|a| a.as_deref().is_some_and(|v| v.starts_with("Bearer ")))
    }

    /// After a 401 from a registry that gave us a token: a fresh token
    /// (also for the scope the challenge names), when the challenge is a
    /// Bearer one. Tokens live minutes; pushes of big images outlive them.
    /// `false` when there is nothing to renew.
    async fn renew_token(&self, resp: &reqwest::Response) -> Result<bool> {
        let challenge = challenge_of(resp);
        let Some(c) = challenge.as_ref().filter(|c| c.scheme == "bearer") else {
            return Ok(false);
        };
        // A token lacking a scope it was asked for was refused on purpose:
        // asking again would only get the same answer.
        let insufficient = c
            .params
            .get("error")
            .is_some_and(|e| e == "insufficient_scope");
        let named = c
            .params
            .get("scope")
            .map(String::as_str)
            .unwrap_or_default();
        let news = named
            .split_whitespace()
            .any(|scope| !scope_covered(&self.scopes, scope));
        if !self.has_token() || (insufficient && !news) {
            return Ok(false);
        }
        tracing::debug!(
            "registry {}: token refused, fetching a new one",
            self.target.registry
        );
        self.authenticate(challenge).await?;
        Ok(true)
    }

    pub(super) async fn authenticate(&self, challenge: Option<Challenge>) -> Result<()> {
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
                self.set_authorization(format!("Basic {token}"));
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
                if self.credentials.is_some() && !may_send_password(&url, self.insecure) {
                    return Err(DistributionError::PlainRealm {
                        registry: self.target.registry.clone(),
                        realm,
                    });
                }
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(service) = challenge.params.get("service") {
                        q.append_pair("service", service);
                    }
                    // As docker's client does: token servers log and match on it.
                    if let Some(c) = &self.credentials {
                        q.append_pair("account", &c.username);
                    }
                    // A challenge names its scopes space-separated in one parameter.
                    let named = challenge.params.get("scope").map(String::as_str);
                    let mut scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
                    for scope in named.unwrap_or_default().split_whitespace() {
                        if !scopes.contains(&scope) {
                            scopes.push(scope);
                        }
                    }
                    for scope in scopes {
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
                // As distribution's own client: either field, never an empty token.
                let token = [&doc["token"], &doc["access_token"]]
                    .into_iter()
                    .filter_map(|t| t.as_str())
                    .find(|t| !t.is_empty())
                    .ok_or_else(|| DistributionError::Http {
                        registry: self.target.registry.clone(),
                        what: format!("token response of {realm}"),
                        status: 200,
                        message: "no token in the response".into(),
                    })?;
                self.set_authorization(format!("Bearer {token}"));
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

    pub(super) fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let req = self.client.request(method, url);
        let authorization = self.authorization.lock().ok().and_then(|a| a.clone());
        match authorization {
            Some(a) => req.header(AUTHORIZATION, a),
            None => req,
        }
    }

    /// Sends a body-less request, retrying transport errors, 5xx and 429.
    pub(super) async fn send(
        &self,
        method: Method,
        url: Url,
        what: &str,
    ) -> Result<reqwest::Response> {
        self.send_with(what, || self.request(method.clone(), url.clone()))
            .await
    }

    /// Sends a request made by `make`, retrying transport errors, 5xx and
    /// 429 with backoff, and a 401 once with a renewed token.
    pub(super) async fn send_with(
        &self,
        what: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let mut attempt = 0;
        let mut renewed = false;
        loop {
            let result = make().send().await;
            if let Ok(resp) = &result
                && resp.status() == StatusCode::UNAUTHORIZED
                && !renewed
                && self.renew_token(resp).await?
            {
                renewed = true;
                continue;
            }
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

    pub(super) async fn blob_exists(&self, digest: &Sha256Digest) -> Result<bool> {
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
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(self.refused(&resp, &what)),
            _ => Err(http_error(&self.target.name(), &what, resp).await),
        }
    }

    pub(super) async fn manifest_exists(
        &self,
        digest: &Sha256Digest,
        media_type: &str,
    ) -> Result<bool> {
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
    pub(super) async fn tag_points_at(
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
    pub(super) async fn start_upload(
        &self,
        digest: &Sha256Digest,
        mount_from: Option<&str>,
    ) -> Result<Option<UploadSession>> {
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
                let location = self
                    .location(&resp)
                    .ok_or_else(|| DistributionError::Http {
                        registry: self.target.name(),
                        what: what.clone(),
                        status: 202,
                        message: "no Location header for the upload".into(),
                    })??;
                let min_chunk = resp
                    .headers()
                    .get("oci-chunk-min-length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                Ok(Some(UploadSession {
                    location,
                    min_chunk,
                }))
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(self.refused(&resp, &what)),
            _ => Err(http_error(&self.target.name(), &what, resp).await),
        }
    }

    /// The upload URL a response hands on, resolved against the registry.
    fn location(&self, resp: &reqwest::Response) -> Option<Result<Url>> {
        resp.headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| self.url(l))
    }

    /// Uploads one blob from the local store, streaming it from its file:
    /// whole, or in chunks when it is larger than the chunk size. A failed
    /// attempt is cancelled at the registry and the blob sent again from
    /// its first byte.
    pub(super) async fn upload(
        &self,
        store: &ImageStore,
        digest: &Sha256Digest,
        size: u64,
        mount_from: Option<&str>,
    ) -> Result<Outcome> {
        let path = store.blobs().path(digest);
        let mut attempt = 0;
        loop {
            let Some(upload) = self.start_upload(digest, mount_from).await? else {
                return Ok(Outcome::Mounted);
            };
            let chunk = self.chunk_size.max(upload.min_chunk);
            let chunked =
                self.chunk_size > 0 && size > chunk && !self.whole_blobs.load(Ordering::Relaxed);
            let mut location = upload.location;
            let sent = if chunked {
                self.send_chunks(&mut location, &path, digest, size, chunk)
                    .await
            } else {
                self.send_whole(&location, &path, digest, size).await
            };
            let error = match sent {
                Ok(()) => return Ok(Outcome::Transferred),
                Err(Failed::NoChunks) => {
                    tracing::warn!(
                        "registry {} does not take chunked uploads (PATCH refused); sending whole blobs",
                        self.target.registry
                    );
                    self.whole_blobs.store(true, Ordering::Relaxed);
                    self.cancel_upload(location).await;
                    continue;
                }
                Err(Failed::Fatal(e)) => {
                    self.cancel_upload(location).await;
                    return Err(e);
                }
                Err(Failed::Retry(e)) => e,
            };
            self.cancel_upload(location).await;
            if attempt + 1 >= ATTEMPTS {
                return Err(error);
            }
            tracing::warn!(
                "uploading blob {digest:?}: attempt {} failed ({error}), retrying",
                attempt + 1
            );
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// One `PUT …?digest=` carrying the whole file.
    async fn send_whole(
        &self,
        location: &Url,
        path: &Path,
        digest: &Sha256Digest,
        size: u64,
    ) -> Result<(), Failed> {
        let mut url = location.clone();
        url.query_pairs_mut().append_pair("digest", &digest.oci());
        let sent = Arc::new(Mutex::new(Sent::default()));
        let file = open_blob(path, digest, 0).await?;
        let body = file_body(
            file,
            size,
            BodyCheck {
                digest: *digest,
                size,
                prove_at_end: true,
            },
            sent.clone(),
            self.progress.clone(),
        );
        let result = self
            .request(Method::PUT, url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size.to_string())
            .body(body)
            .send()
            .await;
        if Sent::corrupt(&sent) {
            return Err(corrupt(path, digest));
        }
        let what = format!("uploading blob {digest:?}");
        match result {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => Err(self.failed(&what, resp).await),
            Err(e) => Err(Failed::Retry(self.transport(&what, &e))),
        }
    }

    /// `PATCH` requests of `chunk` bytes with their `Content-Range`, each
    /// streamed from the file, then the closing `PUT …?digest=`, sent only
    /// when every byte hashed to the blob's name.
    async fn send_chunks(
        &self,
        location: &mut Url,
        path: &Path,
        digest: &Sha256Digest,
        size: u64,
        chunk: u64,
    ) -> Result<(), Failed> {
        let sent = Arc::new(Mutex::new(Sent::default()));
        let mut offset = 0;
        while offset < size {
            let len = chunk.min(size - offset);
            let what = format!(
                "uploading blob {digest:?} (bytes {offset}-{} of {size})",
                offset + len - 1
            );
            let file = open_blob(path, digest, offset).await?;
            let body = file_body(
                file,
                len,
                BodyCheck {
                    digest: *digest,
                    size,
                    prove_at_end: false,
                },
                sent.clone(),
                self.progress.clone(),
            );
            let result = self
                .request(Method::PATCH, location.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, len.to_string())
                .header(CONTENT_RANGE, format!("{offset}-{}", offset + len - 1))
                .body(body)
                .send()
                .await;
            if Sent::corrupt(&sent) {
                return Err(corrupt(path, digest));
            }
            let resp = result.map_err(|e| Failed::Retry(self.transport(&what, &e)))?;
            match resp.status() {
                StatusCode::ACCEPTED | StatusCode::NO_CONTENT => {}
                StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED if offset == 0 => {
                    return Err(Failed::NoChunks);
                }
                _ => return Err(self.failed(&what, resp).await),
            }
            if let Some(next) = self.location(&resp) {
                *location = next.map_err(Failed::Fatal)?;
            }
            offset += len;
        }
        let proven = Sent::digest(&sent) == Some(*digest)
            && tokio::fs::metadata(path)
                .await
                .is_ok_and(|m| m.len() == size);
        if !proven {
            return Err(corrupt(path, digest));
        }
        let mut url = location.clone();
        url.query_pairs_mut().append_pair("digest", &digest.oci());
        let what = format!("completing the upload of blob {digest:?}");
        let resp = self
            .request(Method::PUT, url)
            .header(CONTENT_LENGTH, "0")
            .send()
            .await
            .map_err(|e| Failed::Retry(self.transport(&what, &e)))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.failed(&what, resp).await)
        }
    }

    /// Sorts a failed upload response into retry-from-scratch or give up.
    /// A lost or invalidated upload session (the registry restarted, or a
    /// broken request left it at another offset) is worth a fresh start.
    async fn failed(&self, what: &str, resp: reqwest::Response) -> Failed {
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            return match self.renew_token(&resp).await {
                Ok(true) => Failed::Retry(DistributionError::Http {
                    registry: self.target.name(),
                    what: what.to_string(),
                    status: 401,
                    message: "the token expired".into(),
                }),
                Ok(false) => Failed::Fatal(self.refused(&resp, what)),
                Err(e) => Failed::Fatal(e),
            };
        }
        if status == StatusCode::FORBIDDEN {
            return Failed::Fatal(self.refused(&resp, what));
        }
        let error = http_error(&self.target.name(), what, resp).await;
        let lost_session = matches!(&error, DistributionError::Http { message, .. }
            if message.contains("BLOB_UPLOAD_UNKNOWN") || message.contains("BLOB_UPLOAD_INVALID"));
        if retryable_status(status) || status == StatusCode::RANGE_NOT_SATISFIABLE || lost_session {
            Failed::Retry(error)
        } else {
            Failed::Fatal(error)
        }
    }

    fn transport(&self, what: &str, e: &reqwest::Error) -> DistributionError {
        DistributionError::Transport {
            registry: self.target.name(),
            what: what.to_string(),
            message: error_text(e),
        }
    }

    /// Best effort: the registry would otherwise keep the partial upload
    /// until its upload purger runs.
    async fn cancel_upload(&self, location: Url) {
        let _ = self.request(Method::DELETE, location).send().await;
    }

    /// `PUT` of a manifest or index: the exact bytes, under their media type.
    pub(super) async fn put_manifest(
        &self,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<()> {
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
            return Err(self.refused(&resp, &what));
        }
        Err(http_error(&self.target.name(), &what, resp).await)
    }

    /// A manifest's bytes, verified against `expected` when given.
    pub(super) async fn get_manifest(
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
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            return Err(self.refused(&resp, &what));
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
    pub(super) async fn download(&self, store: &ImageStore, digest: &Sha256Digest) -> Result<u64> {
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
            let total = resp.content_length().unwrap_or(0);
            let mut received = 0u64;
            let streamed: std::result::Result<(), String> = async {
                while let Some(chunk) = resp.chunk().await.map_err(|e| error_text(&e))? {
                    writer.write_all(&chunk).map_err(|e| e.to_string())?;
                    received += chunk.len() as u64;
                    if let Some(p) = &self.progress {
                        (p.0)(digest, received, total);
                    }
                }
                Ok(())
            }
            .await;
            match streamed {
                Ok(()) => {
                    return writer.commit_verified(digest).map_err(|e| match e {
                        crate::oci::layout::LayoutError::DigestMismatch { actual, .. } => {
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

/// A password goes to a token realm over https, or over plain http only
/// on loopback or with `--insecure`.
fn may_send_password(realm: &Url, insecure: bool) -> bool {
    realm.scheme() == "https" || insecure || realm.host_str().is_some_and(is_loopback)
}

/// Whether `scope` (`type:name:actions`) asks for nothing beyond what
/// `asked` did.
fn scope_covered(asked: &[String], scope: &str) -> bool {
    let Some((resource, actions)) = scope.rsplit_once(':') else {
        return asked.iter().any(|a| a == scope);
    };
    asked.iter().any(|a| {
        a.rsplit_once(':').is_some_and(|(r, have)| {
            r == resource
                && actions
                    .split(',')
                    .all(|want| have.split(',').any(|h| h == want || h == "*"))
        })
    })
}

fn challenge_of(resp: &reqwest::Response) -> Option<Challenge> {
    resp.headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_challenge)
}

/// The reqwest error with its sources, which is where the useful part
/// ("connection refused", the TLS alert) is. URLs carry no credentials.
pub(super) fn error_text(e: &reqwest::Error) -> String {
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

pub(super) async fn http_error(
    registry: &str,
    what: &str,
    resp: reqwest::Response,
) -> DistributionError {
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

/// An upload's session URL, and the smallest chunk the registry takes
/// (`OCI-Chunk-Min-Length`; 0 when it does not say).
pub(super) struct UploadSession {
    location: Url,
    min_chunk: u64,
}

/// How an upload attempt failed.
enum Failed {
    /// Worth a fresh attempt from the first byte (transport error, 5xx,
    /// 429, a lost or invalidated upload session).
    Retry(DistributionError),
    /// The registry does not take `PATCH`: send whole blobs instead.
    NoChunks,
    /// Another attempt cannot help.
    Fatal(DistributionError),
}

impl From<DistributionError> for Failed {
    fn from(e: DistributionError) -> Self {
        Self::Fatal(e)
    }
}

fn corrupt(path: &Path, digest: &Sha256Digest) -> Failed {
    Failed::Fatal(DistributionError::CorruptLocalBlob {
        digest: *digest,
        path: path.to_path_buf(),
    })
}

/// The blob's file, positioned at `offset`.
async fn open_blob(
    path: &Path,
    digest: &Sha256Digest,
    offset: u64,
) -> Result<tokio::fs::File, Failed> {
    use tokio::io::AsyncSeekExt;
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|_| corrupt(path, digest))?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(|_| corrupt(path, digest))?;
    Ok(file)
}

/// What one upload attempt has sent so far, across all its request bodies
/// (they are sent in order, so one hasher follows them all).
#[derive(Default)]
struct Sent {
    hasher: Sha256,
    bytes: u64,
    corrupt: bool,
}

impl Sent {
    fn corrupt(sent: &Mutex<Self>) -> bool {
        sent.lock().map_or(true, |s| s.corrupt)
    }

    fn digest(sent: &Mutex<Self>) -> Option<Sha256Digest> {
        let s = sent.lock().ok()?;
        Some(Sha256Digest::from_bytes(s.hasher.clone().finalize().into()))
    }
}

/// What a request body is checked against.
#[derive(Clone, Copy)]
struct BodyCheck {
    digest: Sha256Digest,
    /// The blob's whole size, for progress.
    size: u64,
    /// The body is the whole blob: hold its last bytes back until the file
    /// ended exactly there and hashed to `digest`, so the request fails
    /// instead of completing a corrupt upload.
    prove_at_end: bool,
}

/// `len` bytes of `file` as a request body, hashed into `sent` as they go.
/// A file that ends early (or, with `prove_at_end`, runs on or hashes
/// wrong) marks `sent` corrupt and errors the stream.
fn file_body(
    file: tokio::fs::File,
    len: u64,
    check: BodyCheck,
    sent: Arc<Mutex<Sent>>,
    progress: Option<ByteProgress>,
) -> reqwest::Body {
    use tokio::io::AsyncReadExt;
    struct State {
        file: tokio::fs::File,
        left: u64,
        done: bool,
    }
    let fail = move |sent: &Mutex<Sent>| {
        if let Ok(mut s) = sent.lock() {
            s.corrupt = true;
        }
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("local blob {:?} does not match its digest", check.digest),
        )
    };
    let state = State {
        file,
        left: len,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, move |mut st| {
        let sent = sent.clone();
        let progress = progress.clone();
        async move {
            if st.done || st.left == 0 {
                return None;
            }
            let mut buf = vec![0u8; st.left.min(256 * 1024) as usize];
            let n = match st.file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
            };
            if n == 0 {
                st.done = true;
                return Some((Err(fail(&sent)), st));
            }
            buf.truncate(n);
            st.left -= n as u64;
            let (total, hasher) = match sent.lock() {
                Ok(mut s) => {
                    s.hasher.update(&buf);
                    s.bytes += n as u64;
                    (s.bytes, s.hasher.clone())
                }
                Err(_) => {
                    st.done = true;
                    return Some((Err(fail(&sent)), st));
                }
            };
            if let Some(p) = &progress {
                (p.0)(&check.digest, total, check.size);
            }
            if st.left == 0 && check.prove_at_end {
                st.done = true;
                let mut probe = [0u8; 1];
                let ended = match st.file.read(&mut probe).await {
                    Ok(more) => more == 0,
                    Err(e) => return Some((Err(e), st)),
                };
                let actual = Sha256Digest::from_bytes(hasher.finalize().into());
                if !ended || actual != check.digest {
                    return Some((Err(fail(&sent)), st));
                }
            }
            Some((Ok(buf), st))
        }
    });
    reqwest::Body::wrap_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_go_to_plain_http_realms_only_on_loopback_or_when_insecure() {
        let url = |u: &str| Url::parse(u).unwrap();
        assert!(may_send_password(
            &url("https://auth.example.invalid/token"),
            false
        ));
        assert!(may_send_password(
            &url("http://127.0.0.1:5001/token"),
            false
        ));
        assert!(may_send_password(&url("http://localhost/token"), false));
        assert!(!may_send_password(
            &url("http://auth.example.invalid/token"),
            false
        ));
        assert!(may_send_password(
            &url("http://auth.example.invalid/token"),
            true
        ));
    }

    #[test]
    fn a_scope_is_covered_only_by_the_same_resource_with_every_action() {
        let asked = vec!["repository:kina/node:pull,push".to_string()];
        assert!(scope_covered(&asked, "repository:kina/node:pull"));
        assert!(scope_covered(&asked, "repository:kina/node:push,pull"));
        assert!(!scope_covered(&asked, "repository:kina/node:delete"));
        assert!(!scope_covered(&asked, "repository:kina/other:pull"));
        assert!(!scope_covered(&asked, "repository:kina:pull"));
        let all = vec!["repository:kina/node:*".to_string()];
        assert!(scope_covered(&all, "repository:kina/node:pull,push"));
    }
}
