//! Verified downloads over HTTP(S).
//!
//! Every download names the sha256 it must have; a cache hit makes no request.
//! Transient failures (connection errors, 5xx, a body that ends early) are
//! retried with backoff and resume from the partial file with a Range request;
//! a 404 or a digest mismatch is reported at once with what to do.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::{self, TryStreamExt};

use super::cache::{Cache, CacheError};
use super::mirror::UrlRewrites;
use super::progress::Progress;
use crate::digest::Sha256Digest;

/// How many downloads run at once; Debian mirrors and CDNs handle this well,
/// and more does not help on the small machines kina targets.
pub const DEFAULT_CONCURRENCY: usize = 6;
const ATTEMPTS: u32 = 4;

#[derive(Clone, Debug)]
pub struct FetchItem {
    pub url: String,
    pub sha256: Sha256Digest,
    pub size: Option<u64>,
    /// What the file is, for messages: `iptables 1.8.11-2 (arm64)`.
    pub label: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("downloading {label} from {url}: {message}")]
    Http {
        label: String,
        url: String,
        message: String,
    },
    #[error(
        "downloading {label} from {url}: HTTP 404 Not Found; the mirror no longer has this version: run `kina image lock` again to pin current versions, or use a mirror that keeps it"
    )]
    NotFound { label: String, url: String },
    #[error(
        "downloading {label} from {url}: content has sha256 {actual} ({actual_size} bytes) but the lock pins {expected}; nothing was cached. The mirror or a proxy served different bytes: retry, use another mirror, or relock if the recipe changed"
    )]
    DigestMismatch {
        label: String,
        url: String,
        expected: Sha256Digest,
        actual: Sha256Digest,
        actual_size: u64,
    },
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("setting up the HTTP client: {0}")]
    Client(String),
    #[error("a download task failed: {0}")]
    Join(String),
}

/// The HTTP client kina uses everywhere: rustls, a user agent naming kina,
/// and timeouts that fail a stalled mirror instead of hanging.
pub fn http_client() -> Result<reqwest::Client, FetchError> {
    reqwest::Client::builder()
        .user_agent(concat!("kina/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(20))
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| FetchError::Client(e.to_string()))
}

#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    cache: Cache,
    rewrites: UrlRewrites,
    progress: Progress,
    concurrency: usize,
}

enum Attempt {
    Done(PathBuf),
    Retry(String),
}

impl Fetcher {
    pub fn new(
        cache: Cache,
        rewrites: UrlRewrites,
        progress: Progress,
    ) -> Result<Self, FetchError> {
        Ok(Self {
            client: http_client()?,
            cache,
            rewrites,
            progress,
            concurrency: DEFAULT_CONCURRENCY,
        })
    }

    /// The download cache, for callers that read and verify an entry in one
    /// pass instead of having `fetch` hash it and then reading it again.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Fetches all items (at most `concurrency` at once) and returns their
    /// cache paths in the same order. Fails with the first error.
    pub async fn fetch_all(&self, items: &[FetchItem]) -> Result<Vec<PathBuf>, FetchError> {
        let results: Vec<(usize, PathBuf)> = stream::iter(items.iter().enumerate())
            .map(|(i, item)| async move { self.fetch(item).await.map(|p| (i, p)) })
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await?;
        let mut ordered = vec![PathBuf::new(); items.len()];
        for (i, path) in results {
            ordered[i] = path;
        }
        Ok(ordered)
    }

    /// The verified cache path of `item`, downloading it if needed.
    pub async fn fetch(&self, item: &FetchItem) -> Result<PathBuf, FetchError> {
        if let Some(path) = self.cache.get(&item.sha256)? {
            return Ok(path);
        }
        let cache = self.cache.clone();
        let digest = item.sha256;
        let _lock = tokio::task::spawn_blocking(move || cache.lock(&digest))
            .await
            .map_err(|e| FetchError::Join(e.to_string()))??;
        // Another build may have finished it while we waited for the lock.
        if let Some(path) = self.cache.get(&item.sha256)? {
            return Ok(path);
        }
        let url = self.rewrites.apply(&item.url);
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt))).await;
                tracing::debug!("retrying {url} after: {last}");
            }
            match self.attempt(item, &url).await? {
                Attempt::Done(path) => return Ok(path),
                Attempt::Retry(reason) => last = reason,
            }
        }
        Err(FetchError::Http {
            label: item.label.clone(),
            url,
            message: format!("gave up after {ATTEMPTS} attempts: {last}"),
        })
    }

    async fn attempt(&self, item: &FetchItem, url: &str) -> Result<Attempt, FetchError> {
        let partial = self.cache.partial_path(&item.sha256);
        let have = std::fs::metadata(&partial).map_or(0, |m| m.len());
        let mut request = self.client.get(url);
        if have > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Ok(Attempt::Retry(e.to_string())),
        };
        let status = response.status();
        if status.as_u16() == 404 || status.as_u16() == 410 {
            let _ = std::fs::remove_file(&partial);
            return Err(FetchError::NotFound {
                label: item.label.clone(),
                url: url.to_string(),
            });
        }
        if status.as_u16() == 416 {
            // The partial file is already complete (or bogus): verify below.
        } else if status.is_server_error() || status.as_u16() == 429 {
            return Ok(Attempt::Retry(format!("HTTP {status}")));
        } else if !status.is_success() {
            return Err(FetchError::Http {
                label: item.label.clone(),
                url: url.to_string(),
                message: format!("HTTP {status}"),
            });
        }
        let resuming = status.as_u16() == 206;
        let mut expected_total = item.size;
        if status.as_u16() != 416 {
            let io = |e: std::io::Error| {
                FetchError::Cache(CacheError::Io {
                    path: partial.clone(),
                    source: e,
                })
            };
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(resuming)
                .truncate(!resuming)
                .open(&partial)
                .map_err(io)?;
            let total = item.size.or_else(|| {
                response
                    .content_length()
                    .map(|n| if resuming { n + have } else { n })
            });
            expected_total = total;
            let mut transfer = self.progress.start(&item.label, total);
            if resuming {
                transfer.resumed_at(have);
            }
            let mut body = response.bytes_stream();
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(bytes) => {
                        file.write_all(&bytes).map_err(io)?;
                        transfer.advance(bytes.len() as u64);
                    }
                    Err(e) => {
                        file.flush().map_err(io)?;
                        return Ok(Attempt::Retry(format!("body interrupted: {e}")));
                    }
                }
            }
            file.flush().map_err(io)?;
            file.sync_all().map_err(io)?;
            transfer.finish();
        }
        let written = std::fs::metadata(&partial).map_or(0, |m| m.len());
        if let Some(total) = expected_total.filter(|t| written < *t) {
            return Ok(Attempt::Retry(format!(
                "body ended after {written} of {total} bytes"
            )));
        }
        match self.cache.commit_partial(&item.sha256)? {
            Ok(path) => Ok(Attempt::Done(path)),
            Err((actual, actual_size)) => {
                if resuming {
                    // The earlier part may have come from a different file;
                    // start over once from scratch before blaming the server.
                    return Ok(Attempt::Retry("resumed download did not verify".into()));
                }
                Err(FetchError::DigestMismatch {
                    label: item.label.clone(),
                    url: url.to_string(),
                    expected: item.sha256,
                    actual,
                    actual_size,
                })
            }
        }
    }
}
