//! One registry repository over HTTP: scheme and authorization resolved
//! once, requests retried with backoff, blobs uploaded and downloaded as
//! streams verified against their digests.

use super::auth::{Challenge, parse_challenge};
use super::*;

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
    /// The `Authorization` header value; never logged.
    pub(super) authorization: Option<String>,
    /// Token scopes to ask for.
    pub(super) scopes: Vec<String>,
    pub(super) progress: Option<ByteProgress>,
}

impl Session {
    pub(super) async fn open(target: &Target, opts: &Options, push: bool) -> Result<Self> {
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
            progress: opts.progress.clone(),
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
            match self.client.get(url.clone()).send().await {
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

    pub(super) async fn authenticate(&mut self, challenge: Option<Challenge>) -> Result<()> {
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

    pub(super) fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let req = self.client.request(method, url);
        match &self.authorization {
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

    pub(super) async fn send_with(
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
            StatusCode::UNAUTHORIZED => Err(self.rejected()),
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
    pub(super) async fn upload(
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
            let body = verified_body(file, *digest, size, corrupt.clone(), self.progress.clone());
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
            return Err(self.rejected());
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

/// The file's bytes as a request body, hashed on the way; the stream errors
/// out (so the upload never completes) when they do not match `digest`/`size`.
pub(super) fn verified_body(
    file: tokio::fs::File,
    digest: Sha256Digest,
    size: u64,
    corrupt: Arc<Mutex<bool>>,
    progress: Option<ByteProgress>,
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
        let progress = progress.clone();
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
                    if let Some(p) = &progress {
                        (p.0)(&digest, st.read, size);
                    }
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
