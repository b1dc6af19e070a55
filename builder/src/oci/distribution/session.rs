//! One registry repository over HTTP: scheme and authorization resolved
//! once, requests retried with backoff, blobs uploaded and downloaded as
//! streams verified against their digests.
//!
//! One file over 600 lines on purpose: the session's state (scheme,
//! authorization, token renewal) is what every request, upload and
//! download reads and changes, and split apart it would be passed around
//! as a bag of fields.

use std::sync::atomic::AtomicBool;

use super::challenge::{Challenge, challenge_of};
use super::credentials::docker_credentials;
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
    /// When the Bearer token should be replaced, and the challenge that
    /// asks for the next; none for Basic and anonymous sessions.
    pub(super) token_due: Mutex<Option<(std::time::Instant, Challenge)>>,
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
            token_due: Mutex::new(None),
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
            let challenge = challenge_of(&resp);
            let realm = challenge
                .as_ref()
                .filter(|c| c.scheme == "bearer")
                .and_then(|c| c.params.get("realm").cloned());
            self.authenticate(challenge).await?;
            // Check the answer now, so a wrong password is reported as such.
            let resp = self
                .send_retrying("checking credentials", || {
                    self.request(Method::GET, self.base.clone())
                })
                .await?;
            if resp.status() == StatusCode::UNAUTHORIZED {
                // The token service took the password; the registry not its token.
                return Err(match realm {
                    Some(realm) => DistributionError::TokenRefused {
                        registry: host,
                        realm,
                    },
                    None => self.rejected(),
                });
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
            .is_some_and(Challenge::insufficient_scope);
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
    /// 429 with backoff, and a 401 once with a renewed token; a token about
    /// to expire is renewed first.
    pub(super) async fn send_with(
        &self,
        what: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        self.renew_token_if_due().await;
        let resp = self.send_retrying(what, &make).await?;
        if resp.status() == StatusCode::UNAUTHORIZED && self.renew_token(&resp).await? {
            return self.send_retrying(what, &make).await;
        }
        Ok(resp)
    }

    /// Sends a request made by `make`, retrying transport errors, 5xx and
    /// 429 with backoff.
    pub(super) async fn send_retrying(
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
    /// A stream cut short is taken up where it stopped (`Range`), since the
    /// bytes already written are a prefix of the blob whatever happens
    /// next, and the hash that checks them simply goes on. Any answer but
    /// a 206 for exactly the rest of the blob (a registry or proxy that
    /// ignores `Range` and sends 200, another range, 416) starts the blob
    /// again from its first byte in a new file.
    pub(super) async fn download(&self, store: &ImageStore, digest: &Sha256Digest) -> Result<u64> {
        use std::io::Write;
        let url = self.url(&format!(
            "{}/blobs/{}",
            self.target.repository,
            digest.oci()
        ))?;
        let what = format!("downloading blob {digest:?}");
        let mut writer = store.blobs().writer()?;
        let mut received = 0u64;
        // Breaks in a row without a byte of progress.
        let mut attempt = 0;
        loop {
            let from = received;
            let resp = self
                .send_with(&what, || {
                    let req = self.request(Method::GET, url.clone());
                    if from > 0 {
                        req.header(RANGE, format!("bytes={from}-"))
                    } else {
                        req
                    }
                })
                .await?;
            let status = resp.status();
            if from > 0
                && !(status == StatusCode::PARTIAL_CONTENT && rest_from(&resp) == Some(from))
            {
                tracing::warn!(
                    "{what}: the registry did not resume at byte {from} ({status}); downloading it again"
                );
                writer = store.blobs().writer()?;
                received = 0;
                if status != StatusCode::OK {
                    // Asked again without `Range`: what comes is whole or an error.
                    continue;
                }
            }
            if !resp.status().is_success() {
                return Err(http_error(&self.target.name(), &what, resp).await);
            }
            let mut resp = resp;
            let total = received + resp.content_length().unwrap_or(0);
            let streamed: std::result::Result<(), Interrupted> = async {
                while let Some(chunk) = resp
                    .chunk()
                    .await
                    .map_err(|e| Interrupted::Network(error_text(&e)))?
                {
                    writer.write_all(&chunk).map_err(Interrupted::Local)?;
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
                        crate::oci_layout::LayoutError::DigestMismatch { actual, .. } => {
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
                // The store's disk, not the network: no retry helps, and a
                // write that took part of a chunk leaves no offset to resume.
                Err(Interrupted::Local(source)) => {
                    return Err(crate::oci_layout::LayoutError::Io {
                        path: store.root().join("blobs/sha256"),
                        source,
                    }
                    .into());
                }
                Err(Interrupted::Network(message)) => {
                    if received > from {
                        attempt = 0;
                    }
                    if attempt + 1 >= ATTEMPTS {
                        return Err(DistributionError::Transport {
                            registry: self.target.name(),
                            what,
                            message,
                        });
                    }
                    tracing::warn!(
                        "{what}: the stream broke after {received} bytes ({message}); resuming"
                    );
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// Why a download's body stopped before its end.
enum Interrupted {
    Network(String),
    Local(std::io::Error),
}

/// The first byte of a 206 answer that carries the rest of the blob,
/// `Content-Range: bytes FIRST-LAST/SIZE` with LAST the blob's last byte
/// (or its size unknown, `*`); None for anything else.
fn rest_from(resp: &reqwest::Response) -> Option<u64> {
    rest_from_header(resp.headers().get(CONTENT_RANGE)?.to_str().ok()?)
}

fn rest_from_header(value: &str) -> Option<u64> {
    let value = value.trim();
    let (unit, range) = value.split_once(' ')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (span, size) = range.trim().split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let (first, last) = (
        first.trim().parse::<u64>().ok()?,
        last.trim().parse::<u64>().ok()?,
    );
    match size.trim() {
        "*" => Some(first),
        size => (size.parse::<u64>().ok()? == last.checked_add(1)?).then_some(first),
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

#[cfg(test)]
mod tests {
    use super::rest_from_header;

    #[test]
    fn only_a_range_running_to_the_blobs_end_is_a_resumption() {
        assert_eq!(rest_from_header("bytes 300-999/1000"), Some(300));
        assert_eq!(rest_from_header("Bytes 300-999/*"), Some(300));
        // Short of the end: it would complete "successfully" short.
        assert_eq!(rest_from_header("bytes 300-499/1000"), None);
        for bad in [
            "bytes */1000",
            "items 300-999/1000",
            "bytes 300-999",
            "bytes x-999/1000",
            "",
        ] {
            assert_eq!(rest_from_header(bad), None, "{bad}");
        }
    }
}
