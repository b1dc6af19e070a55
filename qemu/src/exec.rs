//! The host side of the exec channel (`kina_contract::exec`).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use kina_contract::exec::{
    EXIT, Exit, Frame, MAX_PAYLOAD, REQUEST, Request, STDERR, STDIN, STDIN_EOF, STDOUT,
};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("connecting to the node's exec channel {path}: {source} (is the node running?)")]
    Connect { path: String, source: io::Error },
    #[error("exec channel {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(
        "the node did not answer on {path} within {secs} s (is kina-init running? see the console log)"
    )]
    Timeout { path: String, secs: u64 },
    #[error("exec channel {path}: the node closed the channel before the command finished")]
    Closed { path: String },
    #[error("exec channel {path}: bad answer: {message}")]
    Protocol { path: String, message: String },
}

/// What ran and how it ended.
#[derive(Debug)]
pub struct Output {
    pub exit: Exit,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.exit.code == Some(0)
    }
}

fn request_id() -> u32 {
    // Distinct per call so frames of an abandoned earlier call are skipped.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

/// Sends `request` with `stdin`, then collects the answer, giving up after
/// `timeout` without any frame from the node.
pub fn call(
    socket: &Path,
    request: &Request,
    stdin: &[u8],
    timeout: Duration,
    on_output: impl FnMut(u8, &[u8]),
) -> Result<Exit, ExecError> {
    let mut stdin = stdin;
    call_streaming(socket, request, &mut stdin, timeout, on_output)
}

/// [`call`] with standard input read from `stdin` as it is sent, so an
/// image archive of any size crosses without being held in memory.
pub fn call_streaming(
    socket: &Path,
    request: &Request,
    stdin: &mut dyn Read,
    timeout: Duration,
    mut on_output: impl FnMut(u8, &[u8]),
) -> Result<Exit, ExecError> {
    let path = socket.display().to_string();
    let io_err = |source| ExecError::Io {
        path: path.clone(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(|source| ExecError::Connect {
        path: path.clone(),
        source,
    })?;
    let id = request_id();
    let payload = serde_json::to_vec(request).map_err(|e| ExecError::Protocol {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if payload.len() > MAX_PAYLOAD {
        return Err(ExecError::Protocol {
            path,
            message: format!("request of {} bytes is too large", payload.len()),
        });
    }
    stream
        .write_all(
            &Frame {
                kind: REQUEST,
                id,
                payload,
            }
            .encode(),
        )
        .map_err(io_err)?;
    let mut chunk = vec![0u8; MAX_PAYLOAD];
    loop {
        let n = match stdin.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(ExecError::Io {
                    path: format!("{path} (reading the standard input to send)"),
                    source: e,
                });
            }
        };
        let frame = Frame {
            kind: STDIN,
            id,
            payload: chunk[..n].to_vec(),
        };
        stream.write_all(&frame.encode()).map_err(io_err)?;
    }
    stream
        .write_all(
            &Frame {
                kind: STDIN_EOF,
                id,
                payload: vec![],
            }
            .encode(),
        )
        .map_err(io_err)?;
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    let started = Instant::now();
    loop {
        let frame = match Frame::read_from(&mut stream) {
            Ok(Some(f)) => f,
            Ok(None) => return Err(ExecError::Closed { path }),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ExecError::Timeout {
                    path,
                    secs: started.elapsed().as_secs(),
                });
            }
            Err(e) => return Err(io_err(e)),
        };
        if frame.id != id {
            continue;
        }
        match frame.kind {
            STDOUT | STDERR => on_output(frame.kind, &frame.payload),
            EXIT => {
                return serde_json::from_slice(&frame.payload).map_err(|e| ExecError::Protocol {
                    path,
                    message: format!("exit status: {e}"),
                });
            }
            other => {
                return Err(ExecError::Protocol {
                    path,
                    message: format!("unexpected frame kind {other}"),
                });
            }
        }
    }
}

/// Runs `argv` in the node and collects its output; standard input is
/// streamed from `stdin` (an image archive is never held in memory).
pub fn run(
    socket: &Path,
    argv: &[&str],
    stdin: &mut dyn Read,
    timeout: Duration,
) -> Result<Output, ExecError> {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let exit = call_streaming(
        socket,
        &Request::Exec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
        },
        stdin,
        timeout,
        |kind, data| {
            if kind == STDOUT {
                stdout.extend_from_slice(data)
            } else {
                stderr.extend_from_slice(data)
            }
        },
    )?;
    Ok(Output {
        exit,
        stdout,
        stderr,
    })
}
