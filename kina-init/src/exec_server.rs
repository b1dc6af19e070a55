//! The node side of the exec channel (`kina_contract::exec`): a
//! virtio-serial port served one command at a time, so `kina` can reach a
//! node whose network is down or not yet configured.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use kina_contract::exec::{EXIT, Exit, Frame, REQUEST, Request, STDERR, STDIN, STDIN_EOF, STDOUT};
use kina_contract::initramfs::EXEC_PORT_NAME;

use crate::children;

/// How often to look again when the port is missing or no host is connected:
/// virtio-serial reports a disconnected host as end-of-file on every read,
/// so the server must sleep between reads instead of blocking.
const IDLE: Duration = Duration::from_millis(200);

/// The device of the virtio-serial port named `name`, from sysfs.
pub fn find_port(sys_ports: &Path, name: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(sys_ports).ok()?;
    entries.flatten().find_map(|entry| {
        let port_name = std::fs::read_to_string(entry.path().join("name")).ok()?;
        (port_name.trim() == name).then(|| Path::new("/dev").join(entry.file_name()))
    })
}

/// Serves the exec port forever; `poweroff` is called for a `Poweroff`
/// request after its answer has been written.
pub fn serve(poweroff: impl Fn() + Send + 'static) {
    let port = loop {
        if let Some(p) = find_port(Path::new("/sys/class/virtio-ports"), EXEC_PORT_NAME) {
            break p;
        }
        thread::sleep(IDLE * 5);
    };
    loop {
        match OpenOptions::new().read(true).write(true).open(&port) {
            Ok(file) => {
                if let Err(e) = serve_stream(file, &poweroff) {
                    eprintln!("kina-init: exec channel {}: {e}", port.display());
                }
            }
            Err(e) => eprintln!("kina-init: opening exec channel {}: {e}", port.display()),
        }
        thread::sleep(IDLE);
    }
}

/// Reads requests from `port` until an error; end-of-file (no host) is
/// waited out.
pub fn serve_stream(port: File, poweroff: &dyn Fn()) -> io::Result<()> {
    let mut reader = port.try_clone()?;
    let writer = port;
    loop {
        let Some(frame) = Frame::read_from(&mut reader)? else {
            thread::sleep(IDLE);
            continue;
        };
        if frame.kind != REQUEST {
            // Stdin of a request that has already finished: skip it.
            continue;
        }
        let id = frame.id;
        let request: Result<Request, _> = serde_json::from_slice(&frame.payload);
        match request {
            Ok(Request::Exec { argv }) => run(id, &argv, &mut reader, &writer)?,
            Ok(Request::Poweroff) => {
                send_exit(
                    &writer,
                    id,
                    Exit {
                        code: Some(0),
                        signal: None,
                        error: None,
                    },
                )?;
                poweroff();
            }
            Err(e) => send_exit(&writer, id, Exit::not_run(format!("bad exec request: {e}")))?,
        }
    }
}

fn send_exit(mut writer: &File, id: u32, exit: Exit) -> io::Result<()> {
    let payload = serde_json::to_vec(&exit).map_err(io::Error::other)?;
    writer.write_all(
        &Frame {
            kind: EXIT,
            id,
            payload,
        }
        .encode(),
    )
}

fn run(id: u32, argv: &[String], reader: &mut File, writer: &File) -> io::Result<()> {
    let Some((program, args)) = argv.split_first() else {
        skip_stdin(id, reader)?;
        return send_exit(writer, id, Exit::not_run("empty command".into()));
    };
    let spawned = children::spawn(
        Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", children::NODE_PATH)
            .env("HOME", "/root")
            .env("TERM", "dumb")
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            skip_stdin(id, reader)?;
            return send_exit(
                writer,
                id,
                Exit::not_run(format!("cannot run {program}: {e}")),
            );
        }
    };
    let pid = child.id();
    let (tx, rx) = mpsc::channel::<Frame>();
    let mut pumps = Vec::new();
    for (kind, stream) in [
        (
            STDOUT,
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ),
        (
            STDERR,
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ),
    ] {
        let Some(mut stream) = stream else { continue };
        let tx = tx.clone();
        pumps.push(thread::spawn(move || {
            let mut buf = vec![0u8; kina_contract::exec::MAX_PAYLOAD];
            loop {
                // A signal mid-read must not cut the output short.
                let n = match stream.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                if n == 0
                    || tx
                        .send(Frame {
                            kind,
                            id,
                            payload: buf[..n].to_vec(),
                        })
                        .is_err()
                {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let out = writer.try_clone()?;
    let forwarder = thread::spawn(move || -> io::Result<()> {
        let mut out = out;
        for frame in rx {
            out.write_all(&frame.encode())?;
        }
        Ok(())
    });
    // Stdin until the host says it is done (or goes away).
    let mut stdin = child.stdin.take();
    loop {
        match Frame::read_from(reader) {
            Ok(Some(f)) if f.id == id && f.kind == STDIN => {
                if let Some(s) = stdin.as_mut()
                    && s.write_all(&f.payload).is_err()
                {
                    stdin = None;
                }
            }
            Ok(Some(f)) if f.id == id && f.kind == STDIN_EOF => break,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    drop(stdin);
    for p in pumps {
        let _ = p.join();
    }
    let status = child.wait();
    children::release(pid);
    let forwarded = forwarder
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("output thread died")));
    forwarded?;
    let exit = match status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            Exit {
                code: s.code(),
                signal: s.signal(),
                error: None,
            }
        }
        Err(e) => Exit {
            code: None,
            signal: None,
            error: Some(format!("waiting for {program}: {e}")),
        },
    };
    send_exit(writer, id, exit)
}

/// Reads and drops the stdin frames of a request that did not start.
fn skip_stdin(id: u32, reader: &mut File) -> io::Result<()> {
    while let Some(f) = Frame::read_from(reader)? {
        if f.id == id && f.kind == STDIN_EOF {
            break;
        }
    }
    Ok(())
}
