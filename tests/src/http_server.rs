//! A static-file HTTP server on loopback for tests that need a real server.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, anyhow};
use tiny_http::{Header, Request, Response, Server, StatusCode};

/// A failure to inject into the next responses for one path.
#[derive(Clone, Debug)]
enum Fault {
    /// Answer with this status and no body.
    Status(u16),
    /// Send the full headers, then close the connection after this many body bytes.
    CutAfter(usize),
}

#[derive(Default)]
struct State {
    counts: BTreeMap<String, usize>,
    /// The `Range` header of every request, in order, by path.
    ranges: BTreeMap<String, Vec<Option<String>>>,
    faults: BTreeMap<String, Vec<Fault>>,
}

/// Serves the files under a directory at `http://127.0.0.1:<port>/`, each
/// request on its own thread. Stops when dropped.
pub struct HttpServer {
    url: String,
    server: Arc<Server>,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Serves `root`; paths map to files below it, `..` is refused.
    pub fn serve_dir(root: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let root: PathBuf = root.into();
        let server = Arc::new(
            Server::http("127.0.0.1:0").map_err(|e| anyhow!("cannot listen on loopback: {e}"))?,
        );
        let port = server
            .server_addr()
            .to_ip()
            .context("server has no IP address")?
            .port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, state, stop) = (server.clone(), state.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match server.recv_timeout(Duration::from_millis(100)) {
                        Ok(Some(request)) => {
                            let (root, state) = (root.clone(), state.clone());
                            std::thread::spawn(move || handle(&root, &state, request));
                        }
                        Ok(None) => {}
                        Err(_) => break,
                    }
                }
            })
        };
        Ok(Self {
            url: format!("http://127.0.0.1:{port}"),
            server,
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// Base URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many requests reached `path` (e.g. `/dists/trixie/InRelease`).
    pub fn requests(&self, path: &str) -> usize {
        lock(&self.state).counts.get(path).copied().unwrap_or(0)
    }

    /// Requests to every path so far.
    pub fn total_requests(&self) -> usize {
        lock(&self.state).counts.values().sum()
    }

    /// Request counts by path.
    pub fn request_counts(&self) -> BTreeMap<String, usize> {
        lock(&self.state).counts.clone()
    }

    /// The `Range` header (if any) of each request to `path`, in order.
    pub fn ranges_requested(&self, path: &str) -> Vec<Option<String>> {
        lock(&self.state)
            .ranges
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    /// The next `times` requests for `path` are answered with `status` and no body.
    pub fn fail_next(&self, path: &str, status: u16, times: usize) {
        let mut state = lock(&self.state);
        let faults = state.faults.entry(path.to_string()).or_default();
        faults.extend(std::iter::repeat_n(Fault::Status(status), times));
    }

    /// The next request for `path` gets only the first `bytes` bytes of the
    /// body (sent without a length), like a download that was cut off.
    pub fn cut_next_after(&self, path: &str, bytes: usize) {
        lock(&self.state)
            .faults
            .entry(path.to_string())
            .or_default()
            .push(Fault::CutAfter(bytes));
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

fn respond_status(request: Request, status: u16) {
    let _ = request.respond(Response::empty(StatusCode(status)));
}

fn handle(root: &Path, state: &Mutex<State>, request: Request) {
    let path = request.url().split('?').next().unwrap_or("/").to_string();
    let range = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Range"))
        .map(|h| h.value.as_str().to_string());
    let fault = {
        let mut state = lock(state);
        *state.counts.entry(path.clone()).or_default() += 1;
        state
            .ranges
            .entry(path.clone())
            .or_default()
            .push(range.clone());
        state
            .faults
            .get_mut(&path)
            .and_then(|f| (!f.is_empty()).then(|| f.remove(0)))
    };
    if let Some(Fault::Status(status)) = fault {
        return respond_status(request, status);
    }
    let relative = Path::new(path.trim_start_matches('/'));
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return respond_status(request, 403);
    }
    let Ok(data) = std::fs::read(root.join(relative)) else {
        return respond_status(request, 404);
    };
    let total = data.len();
    let (status, body, content_range) = match range.as_deref().map(|r| parse_range(r, total)) {
        None => (200, data, None),
        Some(None) => {
            let mut response = Response::empty(StatusCode(416));
            if let Some(h) = header("Content-Range", &format!("bytes */{total}")) {
                response.add_header(h);
            }
            let _ = request.respond(response);
            return;
        }
        Some(Some((start, end))) => (
            206,
            data[start..=end].to_vec(),
            Some(format!("bytes {start}-{end}/{total}")),
        ),
    };
    let length = body.len();
    // tiny_http keeps the connection open after a short body, so a client
    // would wait for the missing bytes until its read timeout. A cut response
    // is therefore sent without a length: the body simply ends early, which
    // the client must notice from the size it expects.
    let cut = matches!(fault, Some(Fault::CutAfter(_)));
    let reader: Box<dyn Read + Send> = match fault {
        Some(Fault::CutAfter(n)) => Box::new(CutReader {
            inner: Cursor::new(body),
            left: n,
        }),
        _ => Box::new(Cursor::new(body)),
    };
    let mut headers = vec![header("Accept-Ranges", "bytes")];
    headers.push(content_range.and_then(|v| header("Content-Range", &v)));

    let response = Response::new(
        StatusCode(status),
        headers.into_iter().flatten().collect(),
        reader,
        if cut { None } else { Some(length) },
        None,
    );
    let _ = request.respond(response);
}

/// Parses a single-range `Range: bytes=…` header into inclusive bounds;
/// `None` when unsatisfiable (RFC 9110 §14.1.2).
fn parse_range(value: &str, total: usize) -> Option<(usize, usize)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    if total == 0 {
        return None;
    }
    if start.is_empty() {
        let suffix: usize = end.parse().ok()?;
        if suffix == 0 {
            return None;
        }
        return Some((total.saturating_sub(suffix), total - 1));
    }
    let start: usize = start.parse().ok()?;
    let end: usize = if end.is_empty() {
        total - 1
    } else {
        end.parse::<usize>().ok()?.min(total - 1)
    };
    (start <= end).then_some((start, end))
}

/// Yields `left` bytes, then fails, so tiny_http drops the connection mid-body.
struct CutReader {
    inner: Cursor<Vec<u8>>,
    left: usize,
}

impl Read for CutReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "cut off by the test",
            ));
        }
        let n = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..n])?;
        self.left -= n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_parse_like_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=95-200", 100), Some((95, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
    }
}
