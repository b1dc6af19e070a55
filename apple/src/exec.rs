//! Commands run inside a node through `container exec`: standard input
//! streamed in chunks from any reader, output collected, a deadline kept,
//! and files written atomically by a shell script run the same way. Apart
//! from `cli.rs` because it is the one part of the runner that pumps data
//! and keeps time.

use std::io::{self, Read, Write};
use std::process::{Child, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::cli::{CliError, ContainerCli, check_name, failed, strings};

/// Standard input is sent to `container exec` in pieces of this size.
const STDIN_CHUNK: usize = 64 * 1024;

/// The shell script [`ContainerCli::write_file`] runs in the node: `$1` is
/// the path, `$2` the octal mode. The file is written beside its final
/// path and renamed over it, so a reader never sees half of it.
pub const WRITE_FILE_SCRIPT: &str = r#"set -e; mkdir -p "$(dirname "$1")"; cat > "$1.kina-new"; chmod "$2" "$1.kina-new"; mv -f "$1.kina-new" "$1""#;

impl ContainerCli {
    /// `container exec --interactive <name> <argv…>`, with `stdin` copied
    /// to the command as it is read (an image archive of any size is never
    /// held in memory), and its output collected.
    ///
    /// The command's exit status is in the [`Output`], success or not (use
    /// [`Self::exec_ok`] to make a failure an error); `container`'s own
    /// failures (no such container, not running) also show as a non-zero
    /// status there. Should the command stop reading its input early, the
    /// rest is not sent and its status tells how it ended. When reading
    /// `stdin` fails, the `container exec` process is killed before its
    /// input is closed and the error names the command; what then happens
    /// to the command inside the node is up to Apple's runtime.
    pub fn exec<S: AsRef<str>>(
        &self,
        name: &str,
        argv: &[S],
        stdin: &mut dyn Read,
    ) -> Result<Output, CliError> {
        self.exec_within(name, argv, stdin, None)
    }

    /// [`Self::exec_ok`] that gives up on a command still running `timeout`
    /// after its input was sent: `container exec` is killed and the error
    /// says so. For the short commands kina runs while waiting for nodes
    /// (reading their status), which must not hang a `--wait`.
    pub fn exec_ok_within<S: AsRef<str>>(
        &self,
        name: &str,
        argv: &[S],
        stdin: &mut dyn Read,
        timeout: Duration,
    ) -> Result<Output, CliError> {
        let output = self.exec_within(name, argv, stdin, Some(timeout))?;
        if output.status.success() {
            return Ok(output);
        }
        let mut args = strings(&["exec", "--interactive", name]);
        args.extend(argv.iter().map(|a| a.as_ref().to_string()));
        Err(failed(self.describe(&args), &output))
    }

    fn exec_within<S: AsRef<str>>(
        &self,
        name: &str,
        argv: &[S],
        stdin: &mut dyn Read,
        timeout: Option<Duration>,
    ) -> Result<Output, CliError> {
        check_name(name, "container")?;
        if argv.is_empty() {
            return Err(CliError::Invalid(format!(
                "exec in {name}: no command given"
            )));
        }
        let mut args = strings(&["exec", "--interactive", name]);
        // Only `container`'s own flags are checked: the command's may be
        // spelled like them.
        let own = args.len();
        args.extend(argv.iter().map(|a| a.as_ref().to_string()));
        self.check_flags(&args[..own], &args)?;
        let command = self.describe(&args);

        let mut child = self
            .command(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| self.spawn_error(&command, source))?;
        let stdout = child.stdout.take().map(collect);
        let stderr = child.stderr.take().map(collect);
        let pumped = match child.stdin.take() {
            Some(mut pipe) => {
                let result = pump(stdin, &mut pipe);
                if result.is_err() {
                    // Killed before the input closes, so the command never
                    // sees a clean end of a truncated input.
                    let _ = child.kill();
                }
                drop(pipe);
                result
            }
            None => Ok(()),
        };
        let status = match timeout {
            None => child.wait(),
            Some(limit) => match wait_until(&mut child, Instant::now() + limit) {
                Ok(Some(status)) => Ok(status),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    // The output threads are not joined: a process the
                    // command left behind may hold its pipes open; they end
                    // when it does.
                    drop((stdout, stderr));
                    return Err(CliError::TimedOut {
                        command,
                        secs: limit.as_secs(),
                    });
                }
                Err(e) => Err(e),
            },
        };
        let stdout = join(stdout);
        let stderr = join(stderr);
        pumped.map_err(|(what, source)| CliError::Io {
            command: command.clone(),
            what,
            source,
        })?;
        let status = status.map_err(|source| CliError::Io {
            command: command.clone(),
            what: "waiting for it to end",
            source,
        })?;
        let io_err = |source| CliError::Io {
            command: command.clone(),
            what: "reading its output",
            source,
        };
        Ok(Output {
            status,
            stdout: stdout.map_err(io_err)?,
            stderr: stderr.map_err(io_err)?,
        })
    }

    /// [`Self::exec`], with a non-zero exit status made a
    /// [`CliError::Failed`] that carries the end of its error output.
    pub fn exec_ok<S: AsRef<str>>(
        &self,
        name: &str,
        argv: &[S],
        stdin: &mut dyn Read,
    ) -> Result<Output, CliError> {
        let output = self.exec(name, argv, stdin)?;
        if output.status.success() {
            return Ok(output);
        }
        let mut args = strings(&["exec", "--interactive", name]);
        args.extend(argv.iter().map(|a| a.as_ref().to_string()));
        Err(failed(self.describe(&args), &output))
    }

    /// Writes `bytes` to `path` in the node with permissions `mode` (e.g.
    /// `0o644`), making missing parent directories: [`WRITE_FILE_SCRIPT`]
    /// run by `sh` through [`Self::exec_ok`], the bytes on its standard
    /// input. Needs the node running, with `sh`, `mkdir`, `dirname`,
    /// `cat`, `chmod` and `mv`.
    pub fn write_file(
        &self,
        name: &str,
        path: &str,
        bytes: &[u8],
        mode: u32,
    ) -> Result<(), CliError> {
        if !path.starts_with('/') || path.ends_with('/') || path.contains('\0') {
            return Err(CliError::Invalid(format!(
                "writing `{path}` in {name}: the path must be absolute, name a file and have no NUL"
            )));
        }
        if mode > 0o7777 {
            return Err(CliError::Invalid(format!(
                "writing {path} in {name}: mode {mode:o} is not a file mode"
            )));
        }
        let mode = format!("{mode:o}");
        let argv = [
            "sh",
            "-c",
            WRITE_FILE_SCRIPT,
            "kina-write-file",
            path,
            mode.as_str(),
        ];
        let mut input = bytes;
        self.exec_ok(name, &argv, &mut input).map(drop)
    }
}

/// Names the API server would take as a flag or reject outright.
/// The child's exit status once it ends, or `None` at `deadline`.
fn wait_until(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads `from` to the end on a thread of its own.
fn collect<R: Read + Send + 'static>(mut from: R) -> thread::JoinHandle<io::Result<Vec<u8>>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        from.read_to_end(&mut buf).map(|_| buf)
    })
}

fn join(handle: Option<thread::JoinHandle<io::Result<Vec<u8>>>>) -> io::Result<Vec<u8>> {
    match handle {
        None => Ok(Vec::new()),
        Some(handle) => handle
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the thread reading it panicked"))),
    }
}

/// Copies `from` into `to` until end of file. A command that closed its
/// input (a broken pipe) ends the copy without error: its exit status
/// says how it went.
fn pump(from: &mut dyn Read, to: &mut dyn Write) -> Result<(), (&'static str, io::Error)> {
    let mut chunk = vec![0u8; STDIN_CHUNK];
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(("reading the input to send it", e)),
        };
        match to.write_all(&chunk[..n]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(("sending its input", e)),
        }
    }
}
