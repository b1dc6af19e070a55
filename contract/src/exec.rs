//! The exec channel: how the host runs a command in a node without going
//! through the node's network (which may be exactly what is broken).
//!
//! It is a byte stream (a virtio-serial port under QEMU) carrying frames:
//! `[kind: u8][request id: u32 BE][length: u32 BE][payload]`. The host sends
//! one `REQUEST` (JSON [`Request`]), then `STDIN` frames and one
//! `STDIN_EOF`; the node answers with `STDOUT`/`STDERR` frames and one
//! `EXIT` (JSON [`Exit`]). One command runs at a time.
//!
//! Why ids and small frames: virtio-serial blocks the node's writes while no
//! host client is connected and may drop whatever is queued when a client
//! goes away. A client that gave up mid-command therefore leaves whole
//! frames (each written with a single write of at most [`MAX_PAYLOAD`]
//! bytes) of an old request in the stream; the next client skips frames
//! whose id is not its own.

use std::io::{self, Read};

use serde::{Deserialize, Serialize};

pub const REQUEST: u8 = 1;
pub const STDIN: u8 = 2;
pub const STDIN_EOF: u8 = 3;
pub const STDOUT: u8 = 16;
pub const STDERR: u8 = 17;
pub const EXIT: u8 = 18;

/// Largest payload per frame; keeps every frame inside one virtio-serial
/// buffer (the Linux driver splits writes above 32 KiB).
pub const MAX_PAYLOAD: usize = 16 * 1024;

pub const HEADER_LEN: usize = 9;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Run `argv` (no shell) with the node's default environment.
    Exec { argv: Vec<String> },
    /// Shut the node down in order (services stopped, then power off).
    Poweroff,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// The exit code, when the command exited.
    pub code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// Why the command could not run at all (not found, bad request).
    pub error: Option<String>,
}

impl Exit {
    /// The command never ran: `why` says what stopped it.
    pub fn not_run(why: String) -> Self {
        Self {
            code: None,
            signal: None,
            error: Some(why),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub id: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The frame's bytes, header included; callers write them with one write.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        out.push(self.kind);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Frames for `data`, each at most [`MAX_PAYLOAD`] long.
    pub fn chunks(kind: u8, id: u32, data: &[u8]) -> impl Iterator<Item = Frame> + '_ {
        data.chunks(MAX_PAYLOAD).map(move |c| Frame {
            kind,
            id,
            payload: c.to_vec(),
        })
    }

    /// Reads one frame; `Ok(None)` at a clean end of stream. A length above
    /// [`MAX_PAYLOAD`] means the stream is not this protocol (or is out of
    /// step) and is an error rather than a huge allocation.
    pub fn read_from(r: &mut impl Read) -> io::Result<Option<Frame>> {
        let mut header = [0u8; HEADER_LEN];
        let mut filled = 0;
        while filled < HEADER_LEN {
            // A signal arriving mid-read is no reason to give up
            // (read_exact below retries it the same way).
            let n = match r.read(&mut header[filled..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                if filled == 0 {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "exec channel closed inside a frame header",
                ));
            }
            filled += n;
        }
        let id = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let len = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "exec channel frame of {len} bytes exceeds {MAX_PAYLOAD}: not a kina exec stream"
                ),
            ));
        }
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("exec channel closed inside a frame payload of {len} bytes"),
                )
            } else {
                e
            }
        })?;
        Ok(Some(Frame {
            kind: header[0],
            id,
            payload,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_large_output_is_split() {
        let data = vec![7u8; MAX_PAYLOAD * 2 + 3];
        let frames: Vec<Frame> = Frame::chunks(STDOUT, 9, &data).collect();
        assert_eq!(frames.len(), 3);
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let mut r = bytes.as_slice();
        let mut back = Vec::new();
        while let Some(f) = Frame::read_from(&mut r).unwrap() {
            assert_eq!((f.kind, f.id), (STDOUT, 9));
            back.extend(f.payload);
        }
        assert_eq!(back, data);
    }

    #[test]
    fn a_stream_out_of_step_is_an_error_not_an_allocation() {
        let mut bytes = Frame {
            kind: STDOUT,
            id: 1,
            payload: vec![],
        }
        .encode();
        bytes[5] = 0xff;
        let err = Frame::read_from(&mut bytes.as_slice()).unwrap_err();
        assert!(err.to_string().contains("not a kina exec stream"), "{err}");
        let err = Frame::read_from(&mut &bytes[..4]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_stream_closed_inside_a_payload_says_so() {
        // Found by tests/prop_exec_frames.rs: this used to be io's bare
        // "failed to fill whole buffer".
        let bytes = [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0];
        let err = Frame::read_from(&mut &bytes[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            err.to_string(),
            "exec channel closed inside a frame payload of 256 bytes"
        );
    }

    #[test]
    fn requests_are_tagged_json() {
        let r: Request = serde_json::from_str(r#"{"op":"exec","argv":["ctr","version"]}"#).unwrap();
        assert_eq!(
            r,
            Request::Exec {
                argv: vec!["ctr".into(), "version".into()]
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"reboot"}"#).is_err());
    }
}
