//! Blob uploads: whole (`POST`, then one streamed `PUT …?digest=`) or in
//! chunks (`PATCH` requests with `Content-Range`, then an empty closing
//! `PUT`), each body streamed from the store's file and hashed on the way.
//!
//! An upload is completed only once its bytes proved to be the blob named:
//! a whole body errors before its last byte, a chunked upload never gets
//! its closing `PUT`. A request refused for an expired token is sent again
//! at the same offset after the token is renewed (the registry checks the
//! token before it touches the upload). Any other failure cancels the
//! upload and starts the blob again from byte 0 (see the module docs of
//! `distribution` for why not resume).

use std::sync::atomic::Ordering;

use reqwest::header::CONTENT_RANGE;

use super::session::{Session, backoff, error_text, http_error, retryable_status};
use super::*;

/// How long the best-effort `DELETE` of a failed upload may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(10);

/// An upload's session URL, and the smallest chunk the registry takes
/// (`OCI-Chunk-Min-Length`; 0 when it does not say).
struct UploadSession {
    location: Url,
    min_chunk: u64,
}

/// What a registry answered to `POST …/blobs/uploads/`.
enum Posted {
    Mounted,
    Session(UploadSession),
    /// 401 or 403: the login may not (or there is none).
    Refused(DistributionError),
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

/// One part of an upload's body: `len` bytes of the blob from `offset`.
#[derive(Clone, Copy)]
struct Part {
    offset: u64,
    len: u64,
}

impl Session {
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
        let blob = Blob {
            path: store.blobs().path(digest),
            digest: *digest,
            size,
        };
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
                self.send_chunks(&mut location, &blob, chunk).await
            } else {
                self.send_whole(&location, &blob).await
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

    /// Starts an upload session, or mounts the blob from `mount_from` (a
    /// repository of the same registry). `None` means mounted. A mount the
    /// login may not make (it may push here but not pull there) becomes an
    /// ordinary upload.
    async fn start_upload(
        &self,
        digest: &Sha256Digest,
        mount_from: Option<&str>,
    ) -> Result<Option<UploadSession>> {
        if let Some(from) = mount_from {
            match self.post_upload(digest, Some(from)).await? {
                Posted::Mounted => return Ok(None),
                Posted::Session(s) => return Ok(Some(s)),
                Posted::Refused(e) => {
                    tracing::debug!("mounting {digest:?} from {from}: {e}; uploading it instead");
                }
            }
        }
        match self.post_upload(digest, None).await? {
            Posted::Mounted => Ok(None),
            Posted::Session(s) => Ok(Some(s)),
            Posted::Refused(e) => Err(e),
        }
    }

    /// `POST …/blobs/uploads/`, with `mount` and `from` when mounting.
    async fn post_upload(&self, digest: &Sha256Digest, mount_from: Option<&str>) -> Result<Posted> {
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
            StatusCode::CREATED if mount_from.is_some() => Ok(Posted::Mounted),
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
                Ok(Posted::Session(UploadSession {
                    location,
                    min_chunk,
                }))
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Ok(Posted::Refused(self.refused(&resp, &what)))
            }
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

    /// One `PUT …?digest=` carrying the whole file.
    async fn send_whole(&self, location: &Url, blob: &Blob) -> Result<(), Failed> {
        let mut url = location.clone();
        url.query_pairs_mut()
            .append_pair("digest", &blob.digest.oci());
        let sent = Arc::new(Mutex::new(Sent::default()));
        let what = format!("uploading blob {:?}", blob.digest);
        let part = Part {
            offset: 0,
            len: blob.size,
        };
        let resp = self
            .send_part(Method::PUT, &url, blob, part, &sent, &what)
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.failed(&what, resp).await)
        }
    }

    /// `PATCH` requests of `chunk` bytes with their `Content-Range`, each
    /// streamed from the file, then the closing `PUT …?digest=`, sent only
    /// when every byte hashed to the blob's name.
    async fn send_chunks(&self, location: &mut Url, blob: &Blob, chunk: u64) -> Result<(), Failed> {
        let sent = Arc::new(Mutex::new(Sent::default()));
        let mut offset = 0;
        while offset < blob.size {
            let len = chunk.min(blob.size - offset);
            let end = offset + len - 1;
            let what = format!(
                "uploading blob {:?} (bytes {offset}-{end} of {})",
                blob.digest, blob.size
            );
            let resp = self
                .send_part(
                    Method::PATCH,
                    location,
                    blob,
                    Part { offset, len },
                    &sent,
                    &what,
                )
                .await?;
            match resp.status() {
                StatusCode::ACCEPTED | StatusCode::NO_CONTENT => {}
                StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED if offset == 0 => {
                    return Err(Failed::NoChunks);
                }
                _ => return Err(self.failed(&what, resp).await),
            }
            // The registry says how much it holds; a proxy that answered
            // before reading the whole chunk is caught here, not blamed on
            // the local blob later.
            if let Some(held) = held_bytes(&resp)
                && held != end + 1
            {
                return Err(Failed::Retry(DistributionError::Http {
                    registry: self.target.name(),
                    what,
                    status: resp.status().as_u16(),
                    message: format!("the registry holds {held} bytes, not {}", end + 1),
                }));
            }
            if let Some(next) = self.location(&resp) {
                *location = next?;
            }
            offset += len;
        }
        let proven = Sent::digest(&sent) == Some(blob.digest)
            && tokio::fs::metadata(&blob.path)
                .await
                .is_ok_and(|m| m.len() == blob.size);
        if !proven {
            return Err(blob.corrupt());
        }
        let mut url = location.clone();
        url.query_pairs_mut()
            .append_pair("digest", &blob.digest.oci());
        let what = format!("completing the upload of blob {:?}", blob.digest);
        let resp = self
            .send_with(&what, || {
                self.request(Method::PUT, url.clone())
                    .header(CONTENT_LENGTH, "0")
            })
            .await
            .map_err(Failed::Retry)?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.failed(&what, resp).await)
        }
    }

    /// Sends `part` of the blob as the body of `method url`. A 401 that a
    /// renewed token answers is sent once more with the same bytes.
    async fn send_part(
        &self,
        method: Method,
        url: &Url,
        blob: &Blob,
        part: Part,
        sent: &Arc<Mutex<Sent>>,
        what: &str,
    ) -> Result<reqwest::Response, Failed> {
        let before = Sent::snapshot(sent);
        let mut renewed = false;
        self.renew_token_if_due().await;
        loop {
            let file = blob.open_at(part.offset).await?;
            let check = BodyCheck {
                digest: blob.digest,
                size: blob.size,
                prove_at_end: part.offset == 0 && part.len == blob.size,
            };
            let body = file_body(file, part.len, check, sent.clone(), self.progress.clone());
            let mut request = self
                .request(method.clone(), url.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, part.len.to_string());
            if method == Method::PATCH {
                let end = part.offset + part.len - 1;
                request = request.header(CONTENT_RANGE, format!("{}-{end}", part.offset));
            }
            let result = request.body(body).send().await;
            if Sent::corrupt(sent) {
                return Err(blob.corrupt());
            }
            let resp = result.map_err(|e| Failed::Retry(self.transport(what, &e)))?;
            if resp.status() == StatusCode::UNAUTHORIZED
                && !renewed
                && self.renew_token(&resp).await?
            {
                renewed = true;
                Sent::restore(sent, &before);
                continue;
            }
            return Ok(resp);
        }
    }

    /// Sorts a failed upload response into retry-from-scratch or give up.
    /// A lost or invalidated upload session (the registry restarted, or a
    /// broken request left it at another offset) is worth a fresh start.
    async fn failed(&self, what: &str, resp: reqwest::Response) -> Failed {
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Failed::Fatal(self.refused(&resp, what));
        }
        let mut error = http_error(&self.target.name(), what, resp).await;
        if status == StatusCode::PAYLOAD_TOO_LARGE
            && let DistributionError::Http { message, .. } = &mut error
        {
            message.push_str(
                " (the registry, or a proxy in front of it, limits request size: push with a smaller --chunk-size)",
            );
        }
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
        let cancel = self
            .request(Method::DELETE, location)
            .timeout(CANCEL_TIMEOUT);
        let _ = cancel.send().await;
    }
}

/// The end of the bytes a registry holds for an upload, plus one, from its
/// `Range: 0-<last>` answer.
fn held_bytes(resp: &reqwest::Response) -> Option<u64> {
    let range = resp.headers().get("range")?.to_str().ok()?;
    let (_, last) = range.trim().split_once('-')?;
    last.trim().parse::<u64>().ok().map(|l| l + 1)
}

/// The local blob being uploaded.
struct Blob {
    path: PathBuf,
    digest: Sha256Digest,
    size: u64,
}

impl Blob {
    fn corrupt(&self) -> Failed {
        Failed::Fatal(DistributionError::CorruptLocalBlob {
            digest: self.digest,
            path: self.path.clone(),
        })
    }

    /// The blob's file, positioned at `offset`.
    async fn open_at(&self, offset: u64) -> Result<tokio::fs::File, Failed> {
        use tokio::io::AsyncSeekExt;
        let mut file = tokio::fs::File::open(&self.path)
            .await
            .map_err(|_| self.corrupt())?;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|_| self.corrupt())?;
        Ok(file)
    }
}

/// What one upload attempt has sent so far, across all its request bodies
/// (they are sent in order, so one hasher follows them all).
#[derive(Clone, Default)]
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

    /// The state before a request body, to go back to when the same
    /// bytes are sent again.
    fn snapshot(sent: &Mutex<Self>) -> Option<Self> {
        sent.lock().ok().map(|s| s.clone())
    }

    fn restore(sent: &Mutex<Self>, before: &Option<Self>) {
        if let (Ok(mut s), Some(before)) = (sent.lock(), before) {
            *s = before.clone();
        }
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
    /// instead of completing a corrupt upload. (An empty blob has nothing
    /// to hold back; the registry checks its digest.)
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
