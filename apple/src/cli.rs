//! Running Apple's `container` program: the one module of this crate that
//! spawns a process.
//!
//! [`ContainerCli`] turns the argument vectors of [`crate::run_args`] and
//! [`crate::inspect`] into runs of `container` and reads what they print
//! with [`crate::version`], [`crate::inspect`] and [`crate::image`]. It is
//! a thin runner with no state besides the program's path. Each call runs
//! one `container` command (two for [`ContainerCli::version`] on a release
//! without `system version`, a `network list` around
//! [`ContainerCli::ensure_network`] and [`ContainerCli::delete_network`],
//! and `inspect`s while [`ContainerCli::delete_when_stopped`] waits out a
//! node that is stopping, the one wait it does besides the timeout of
//! [`ContainerCli::exec_ok_within`]).
//!
//! Every argument vector is checked with [`run_args::flags_missing_in`]
//! against [`MINIMUM`] before it runs; [`ContainerCli::version`] refuses
//! anything older, so a flag the check rejects is a bug in kina, not in the
//! user's installation.
//!
//! Facts about the commands, from apple/container's
//! `Sources/ContainerCommands/**` at tags 1.2.1 and 1.2.2 (first release in
//! brackets, from the same files at earlier tags):
//!
//! - `delete [-f|--force] <ids…>` [0.1.0]: with `--force` the API server
//!   stops a running container with SIGKILL before deleting it; without it
//!   a running container is refused, and a `stopping` one is refused
//!   either way (`ContainersService.delete`).
//! - `stop [--time N] <ids…>` sends SIGTERM (unless `--signal`), then
//!   kills after `--time` seconds, default 5 (`ContainerStop.swift:39-40`,
//!   `ContainerStopOptions`) [0.1.0]; kina passes [`STOP_SECS`].
//! - `start <id>` prints the ID and succeeds for an already running
//!   container (`ContainerStart.swift`).
//! - `exec [-i|--interactive] <id> <argv…>` [0.1.0]: the container must be
//!   running; everything after the ID is the command (parsed with
//!   `.captureForPassthrough`, so flags there belong to the command). With
//!   `--interactive` and no `--tty`, the CLI copies its standard input into
//!   a pipe to the process and closes that pipe at end of file
//!   (`ProcessIO.create` in `ProcessIO.swift`), and exits with the process's
//!   exit code.
//! - `copy <host-path> <id>:<abs-path>` (alias `cp`) [1.0.0] copies a host
//!   file or directory in, creating missing parents (`ContainerCopy.swift`).
//!   Each side is split on `:`, so neither path may contain one.
//! - `network list --quiet` prints one network ID (its name) per line and
//!   nothing at all when there are none (`NetworkList.swift`, `Output.render`,
//!   `NetworkResource.quietValue`) [0.2.0]. `network create` of a name that
//!   exists fails with `network <name> already exists`
//!   (`NetworksService.swift`); `network delete` of an unknown name fails
//!   with `failed to delete one or more networks`, and of a network any
//!   container is still configured with, running or not, with `delete
//!   failed for one or more networks: ["<name>"]` (the API server's
//!   `cannot delete subnet … with referring containers` goes to the log:
//!   `NetworksService.swift:252-270`, `NetworkDelete.swift:103-124`).
//! - A failing command prints `Error: <description>` on standard error and
//!   exits non-zero (swift-argument-parser's `exit(withError:)`).
//!
//! Just over 600 lines, about 60 of them the notes above: the code
//! is the plain-command runner; exec lives in `exec.rs`.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::CONTAINER_BINARY;
use crate::image::{self, ImageInspectError};
use crate::inspect::{self, InspectError, LIST_ARGS, NodeInfo, State};
use crate::run_args::{self, ArgsError, Ipv4Subnet, NodeRun};
use crate::version::{
    self, CLI_VERSION_ARGS, MINIMUM, SYSTEM_VERSION_ARGS, Supported, VersionError,
};

/// Environment variable naming the `container` program to run instead of
/// `container` on `PATH`.
pub const PROGRAM_ENV: &str = "KINA_CONTAINER_CLI";

/// `network list --quiet`: network names, one a line.
pub const NETWORK_LIST_ARGS: [&str; 3] = ["network", "list", "--quiet"];

/// How many of the last lines of a failed command's standard error an
/// error message carries.
pub const ERROR_TAIL_LINES: usize = 10;
/// Lines of error output longer than this are cut in error messages.
const ERROR_LINE_CHARS: usize = 400;

/// Seconds `container stop` gives a node before SIGKILL (`--time`, since
/// 0.1.0; Apple's default is 5, `ContainerStop.swift:39-40`). kina-init
/// shuts down in order: each service (the kubelet, then containerd, and
/// with it the pods, etcd among them) gets SIGTERM and 10 s before SIGKILL
/// (`SERVICE_GRACE` in kina-init/src/pid1.rs), then every other process
/// 5 s (`REST_GRACE`), then it syncs: at most 25 s, and 30 leaves the sync
/// and the VM's own teardown room before Apple kills it.
pub const STOP_SECS: u32 = 30;

/// How long `down` waits for a `stopping` node before giving up on
/// deleting it: a stop kina started gives the node [`STOP_SECS`], and Apple
/// takes a few seconds more to tear the VM down.
pub const STOPPING_WAIT: Duration = Duration::from_secs(STOP_SECS as u64 + 15);

/// How often [`ContainerCli::delete_when_stopped`] looks again.
pub const STOPPING_POLL: Duration = Duration::from_millis(500);

/// Runs Apple's `container` program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerCli {
    program: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{}", not_installed(.program))]
    NotInstalled { program: PathBuf },
    #[error("could not run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}`: {what}: {source}")]
    Io {
        command: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}){}", tail_text(.output_tail))]
    Failed {
        command: String,
        status: ExitStatus,
        /// The last lines of its standard error (or, when that is empty, of
        /// its standard output).
        output_tail: String,
    },
    #[error(
        "`{command}` did not end within {secs} s and was killed; is the node running and \
         responsive (`container list --all`)?"
    )]
    TimedOut { command: String, secs: u64 },
    #[error("{source} (read from `{command}`)")]
    Version {
        command: String,
        #[source]
        source: VersionError,
    },
    #[error("`{command}` printed what kina cannot read: {source}")]
    Output {
        command: String,
        #[source]
        source: InspectError,
    },
    #[error("`{command}` printed what kina cannot read: {source}")]
    ImageOutput {
        command: String,
        #[source]
        source: ImageInspectError,
    },
    #[error(transparent)]
    Args(#[from] ArgsError),
    #[error(
        "kina would pass {} to `{command}`, which Apple container {MINIMUM} does not have; \
         this is a bug in kina",
        .missing.join(", ")
    )]
    FlagsMissing {
        command: String,
        missing: Vec<&'static str>,
    },
    #[error(
        "container {name} was still stopping after {secs} s, and Apple deletes no container \
         while it stops; see `container list --all`, then run the command again once it has \
         stopped"
    )]
    StillStopping { name: String, secs: u64 },
    #[error("{0}")]
    Invalid(String),
}

fn not_installed(program: &Path) -> String {
    let looked = if program.components().count() > 1 {
        format!("`{}` does not exist", program.display())
    } else {
        format!("there is no `{}` on PATH", program.display())
    };
    format!(
        "Apple's container CLI is needed to run kina nodes on macOS, and {looked}. It runs on \
         macOS 26 on Apple silicon; kina needs version {MINIMUM} or newer. To install it, \
         download the signed installer package from https://github.com/apple/container/releases, \
         open it (it installs to /usr/local/bin), then run `container system start`. To use a \
         `container` program elsewhere, set {PROGRAM_ENV} to its path."
    )
}

fn tail_text(tail: &str) -> String {
    if tail.is_empty() {
        " with no output".to_string()
    } else if tail.contains('\n') {
        format!(":\n  {}", tail.replace('\n', "\n  "))
    } else {
        format!(": {tail}")
    }
}

impl ContainerCli {
    /// Runs `program` (a path, or a name looked up on `PATH`).
    pub fn new(program: PathBuf) -> Self {
        ContainerCli { program }
    }

    /// `$KINA_CONTAINER_CLI` when it is set and not empty, else
    /// `container` on `PATH`.
    pub fn from_env() -> Self {
        Self::from_override(std::env::var_os(PROGRAM_ENV))
    }

    /// [`Self::from_env`] with the variable's value given.
    pub fn from_override(value: Option<OsString>) -> Self {
        match value {
            Some(program) if !program.is_empty() => Self::new(PathBuf::from(program)),
            _ => Self::new(PathBuf::from(CONTAINER_BINARY)),
        }
    }

    /// The program this runs.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The installed versions, if kina can drive them.
    ///
    /// Runs `container system version --format json` and accepts it with
    /// [`version::check`]. A release without `system version` (before
    /// 0.10.0) fails that command; then `container --version` tells which
    /// release it is, and [`version::require`] refuses it with the way to
    /// upgrade.
    pub fn version(&self) -> Result<Supported, CliError> {
        let args = strings(&SYSTEM_VERSION_ARGS);
        let command = self.describe(&args);
        match self.run(&args) {
            Ok(output) => {
                let text = String::from_utf8_lossy(&output.stdout);
                version::parse_system_version(&text)
                    .and_then(|system| version::check(&system))
                    .map_err(|source| CliError::Version { command, source })
            }
            Err(failed @ CliError::Failed { .. }) => match self.old_cli_version() {
                Some(Err(too_old)) => Err(too_old),
                // The release has `system version`, so that failure stands.
                Some(Ok(())) | None => Err(failed),
            },
            Err(other) => Err(other),
        }
    }

    /// `container --version` of a release without `system version`:
    /// `Some(Err)` when it names a release older than [`MINIMUM`].
    fn old_cli_version(&self) -> Option<Result<(), CliError>> {
        let args = strings(&CLI_VERSION_ARGS);
        let output = self.run(&args).ok()?;
        let line = String::from_utf8_lossy(&output.stdout);
        let found = version::parse_cli_version_line(&line).ok()?;
        Some(version::require(found).map_err(|source| CliError::Version {
            command: self.describe(&args),
            source,
        }))
    }

    /// Makes the cluster's network `kina-<cluster>` unless it exists, and
    /// returns its name.
    ///
    /// A network of that name that already exists is used as it is (its
    /// subnet and labels are not compared). Should `network create` fail
    /// because another process made the network meanwhile (Apple's answer
    /// is `network <name> already exists`), a second `network list` finds
    /// it and that is success too; kina goes by the list, not the text.
    pub fn ensure_network(
        &self,
        cluster: &str,
        subnet: Option<Ipv4Subnet>,
    ) -> Result<String, CliError> {
        let name = run_args::network_name(cluster);
        let create = run_args::network_create_args(&name, cluster, subnet)?;
        if self.network_names()?.contains(&name) {
            return Ok(name);
        }
        match self.run(&create) {
            Ok(_) => Ok(name),
            Err(failed @ CliError::Failed { .. }) => {
                if matches!(self.network_names(), Ok(names) if names.contains(&name)) {
                    Ok(name)
                } else {
                    Err(failed)
                }
            }
            Err(other) => Err(other),
        }
    }

    /// Deletes the network `name`; one that does not exist is no error.
    /// Apple refuses while a container is still attached to it.
    pub fn delete_network(&self, name: &str) -> Result<(), CliError> {
        check_name(name, "network")?;
        if !self.network_names()?.iter().any(|n| n == name) {
            return Ok(());
        }
        self.run(&run_args::network_delete_args(name)).map(drop)
    }

    /// The names of every network (`network list --quiet`), including
    /// Apple's `default`.
    pub fn network_names(&self) -> Result<Vec<String>, CliError> {
        let output = self.run(&strings(&NETWORK_LIST_ARGS))?;
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// `container create …` with [`NodeRun::create_args`]; the node does
    /// not boot until [`Self::start`].
    pub fn create_node(&self, run: &NodeRun) -> Result<(), CliError> {
        self.run(&run.create_args()?).map(drop)
    }

    /// `container start <name>`; a running container is left running.
    pub fn start(&self, name: &str) -> Result<(), CliError> {
        check_name(name, "container")?;
        self.run(&run_args::start_args(name)).map(drop)
    }

    /// `container stop --time STOP_SECS <name>`: SIGTERM, then SIGKILL
    /// after [`STOP_SECS`] instead of Apple's default of 5 s.
    pub fn stop(&self, name: &str) -> Result<(), CliError> {
        check_name(name, "container")?;
        let time = STOP_SECS.to_string();
        self.run(&strings(&["stop", "--time", &time, name]))
            .map(drop)
    }

    /// `container delete --force <name>`: a running node is killed
    /// (SIGKILL) first; one still `stopping` is refused by Apple.
    pub fn delete(&self, name: &str) -> Result<(), CliError> {
        check_name(name, "container")?;
        self.run(&strings(&["delete", "--force", name])).map(drop)
    }

    /// [`Self::delete`], waiting up to `limit` for a node that is
    /// `stopping` (a `kina stop` under way, or Apple's own) to finish:
    /// Apple refuses to delete a stopping container even with `--force`
    /// (`ContainersService.swift:865-869`). Only that refusal is waited
    /// out, looking with `inspect` every [`STOPPING_POLL`]; any other
    /// failure is returned as it came.
    pub fn delete_when_stopped(&self, name: &str, limit: Duration) -> Result<(), CliError> {
        let deadline = Instant::now() + limit;
        loop {
            let refused = match self.delete(name) {
                Ok(()) => return Ok(()),
                Err(failed @ CliError::Failed { .. }) => failed,
                Err(other) => return Err(other),
            };
            if !self.is_stopping(name) {
                return Err(refused);
            }
            while self.is_stopping(name) {
                if Instant::now() >= deadline {
                    return Err(CliError::StillStopping {
                        name: name.to_string(),
                        secs: limit.as_secs(),
                    });
                }
                thread::sleep(STOPPING_POLL);
            }
        }
    }

    /// Whether `inspect` shows `name` stopping; a failed look counts as no.
    fn is_stopping(&self, name: &str) -> bool {
        matches!(self.inspect(name), Ok(info) if info.state == State::Stopping)
    }

    /// `container inspect <name>`. An unknown name is an error: Apple's
    /// own since 1.0.0, [`InspectError::NotFound`] before.
    pub fn inspect(&self, name: &str) -> Result<NodeInfo, CliError> {
        check_name(name, "container")?;
        let args = inspect::inspect_args(&[name]);
        let output = self.run(&args)?;
        inspect::parse_inspect(&String::from_utf8_lossy(&output.stdout), name).map_err(|source| {
            CliError::Output {
                command: self.describe(&args),
                source,
            }
        })
    }

    /// The digest of the image Apple's store holds as `reference`
    /// (`image inspect`, [`image::parse_image_digest`]), `None` when it
    /// holds none. Apple answers an unknown name with `image not found`
    /// (`ImageInspect.swift:45-50`); any failure counts as absent, and
    /// loading the image then says what is wrong.
    pub fn image_digest(&self, reference: &str) -> Result<Option<String>, CliError> {
        check_name(reference, "image reference")?;
        let args = image::image_inspect_args(reference);
        match self.run(&args) {
            Ok(output) => {
                image::parse_image_digest(&String::from_utf8_lossy(&output.stdout), reference)
                    .map(Some)
                    .map_err(|source| CliError::ImageOutput {
                        command: self.describe(&args),
                        source,
                    })
            }
            Err(CliError::Failed { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// `image load --input <archive>`: an OCI archive into Apple's image
    /// store (`--input` since 0.1.0, `ImageLoad.swift`), replacing the
    /// image of the same name. Each `index.json` entry is named by its
    /// first annotation of `com.apple.containerization.image.name`,
    /// `io.containerd.image.name`, `org.opencontainers.image.ref.name`,
    /// else `untagged@<digest>` (containerization 0.40.1
    /// `Sources/ContainerizationOCI/Client/LocalOCILayoutClient.swift:208-235`).
    pub fn image_load(&self, archive: &Path) -> Result<(), CliError> {
        let path = archive.to_str().ok_or_else(|| {
            CliError::Invalid(format!(
                "image archive path {} is not UTF-8",
                archive.display()
            ))
        })?;
        self.run(&strings(&["image", "load", "--input", path]))
            .map(drop)
    }

    /// `inspect <name>` as Apple's CLI prints it, for bug reports (`kina
    /// export logs`): the document itself, not kina's reading of it.
    pub fn inspect_document(&self, name: &str) -> Result<Vec<u8>, CliError> {
        check_name(name, "container")?;
        Ok(self.run(&inspect::inspect_args(&[name]))?.stdout)
    }

    /// `logs [--boot] <name>`: the node's standard output and error, where
    /// kina-init writes its console lines, or with `boot` the VM's boot log
    /// (the kernel's console). Both since 0.1.0 (`ContainerLogs.swift`).
    pub fn logs(&self, name: &str, boot: bool) -> Result<Vec<u8>, CliError> {
        check_name(name, "container")?;
        let mut args = strings(&["logs"]);
        if boot {
            args.push("--boot".to_string());
        }
        args.push(name.to_string());
        Ok(self.run(&args)?.stdout)
    }

    /// Every container, running or not (`list --all --format json`).
    pub fn list_all(&self) -> Result<Vec<NodeInfo>, CliError> {
        let args = strings(&LIST_ARGS);
        let output = self.run(&args)?;
        inspect::parse_containers(&String::from_utf8_lossy(&output.stdout)).map_err(|source| {
            CliError::Output {
                command: self.describe(&args),
                source,
            }
        })
    }

    /// The containers labelled `io.kina.cluster=<cluster>`, in Apple's
    /// order.
    pub fn list_cluster(&self, cluster: &str) -> Result<Vec<NodeInfo>, CliError> {
        Ok(self
            .list_all()?
            .into_iter()
            .filter(|node| node.cluster() == Some(cluster))
            .collect())
    }

    /// Runs `container <args>` with no input; a non-zero exit is an error.
    pub(crate) fn run(&self, args: &[String]) -> Result<Output, CliError> {
        self.check_flags(args, args)?;
        let command = self.describe(args);
        let output = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| self.spawn_error(&command, source))?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(failed(command, &output))
        }
    }

    pub(crate) fn command(&self, args: &[String]) -> Command {
        let mut command = Command::new(&self.program);
        command.args(args);
        command
    }

    /// Refuses `flags` (the part of `args` that is `container`'s) when
    /// they hold a flag [`MINIMUM`] lacks.
    pub(crate) fn check_flags(&self, flags: &[String], args: &[String]) -> Result<(), CliError> {
        flags_check(flags, MINIMUM).map_err(|missing| CliError::FlagsMissing {
            command: self.describe(args),
            missing,
        })
    }

    pub(crate) fn spawn_error(&self, command: &str, source: io::Error) -> CliError {
        if source.kind() == io::ErrorKind::NotFound {
            CliError::NotInstalled {
                program: self.program.clone(),
            }
        } else {
            CliError::Spawn {
                command: command.to_string(),
                source,
            }
        }
    }

    /// The command line, quoted for a POSIX shell where needed.
    pub(crate) fn describe(&self, args: &[String]) -> String {
        let program = self.program.to_string_lossy();
        let mut line = quote(&program);
        for arg in args {
            line.push(' ');
            line.push_str(&quote(arg));
        }
        line
    }
}

fn flags_check(flags: &[String], version: version::Version) -> Result<(), Vec<&'static str>> {
    let missing = run_args::flags_missing_in(flags, version);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

pub(crate) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

pub(crate) fn check_name(name: &str, what: &str) -> Result<(), CliError> {
    if name.is_empty() || name.starts_with('-') || name.contains(char::is_whitespace) {
        return Err(CliError::Invalid(format!("`{name}` is not a {what} name")));
    }
    Ok(())
}

pub(crate) fn failed(command: String, output: &Output) -> CliError {
    let stderr = tail(&output.stderr);
    let output_tail = if stderr.is_empty() {
        tail(&output.stdout)
    } else {
        stderr
    };
    CliError::Failed {
        command,
        status: output.status,
        output_tail,
    }
}

/// The last [`ERROR_TAIL_LINES`] non-blank lines of `bytes`.
pub(crate) fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.trim().is_empty())
        .collect();
    let start = lines.len().saturating_sub(ERROR_TAIL_LINES);
    let mut out = String::new();
    for (i, line) in lines[start..].iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match line.char_indices().nth(ERROR_LINE_CHARS) {
            Some((cut, _)) => {
                let _ = write!(out, "{}…", &line[..cut]);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// `arg` as a POSIX shell word.
fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_from_override() {
        assert_eq!(
            ContainerCli::from_override(None).program(),
            Path::new("container")
        );
        assert_eq!(
            ContainerCli::from_override(Some(OsString::new())).program(),
            Path::new("container")
        );
        assert_eq!(
            ContainerCli::from_override(Some("/opt/c/bin/container".into())).program(),
            Path::new("/opt/c/bin/container")
        );
    }

    #[test]
    fn commands_are_quoted_for_the_shell() {
        let cli = ContainerCli::new("/usr/local/bin/container".into());
        assert_eq!(
            cli.describe(&strings(&[
                "exec",
                "--interactive",
                "n1",
                "sh",
                "-c",
                "cat > '/x y'"
            ])),
            r"/usr/local/bin/container exec --interactive n1 sh -c 'cat > '\''/x y'\'''"
        );
        assert_eq!(
            cli.describe(&strings(&["a", ""])),
            "/usr/local/bin/container a ''"
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let text: String = (1..=25).map(|i| format!("line {i}\n\n")).collect();
        let tail = tail(text.as_bytes());
        assert_eq!(tail.lines().count(), ERROR_TAIL_LINES);
        assert!(tail.starts_with("line 16\n"), "{tail}");
        assert!(tail.ends_with("line 25"), "{tail}");
        let long = "x".repeat(1000);
        assert_eq!(
            super::tail(long.as_bytes()).chars().count(),
            ERROR_LINE_CHARS + 1
        );
    }

    #[test]
    fn flags_newer_than_the_minimum_are_refused() {
        let run = strings(&["run", "--cap-add", "ALL", "--masked-path", "NONE", "img"]);
        flags_check(&run, MINIMUM).unwrap();
        assert_eq!(
            flags_check(&run, version::Version::new(1, 2, 0)).unwrap_err(),
            vec!["--masked-path"]
        );
        let cli = ContainerCli::new("container".into());
        for args in [
            strings(&SYSTEM_VERSION_ARGS),
            strings(&LIST_ARGS),
            strings(&NETWORK_LIST_ARGS),
            strings(&["exec", "--interactive", "n1"]),
            strings(&["delete", "--force", "n1"]),
        ] {
            cli.check_flags(&args, &args).unwrap();
        }
        assert_eq!(
            flags_check(
                &strings(&SYSTEM_VERSION_ARGS),
                version::Version::new(0, 9, 0)
            )
            .unwrap_err(),
            vec!["--format"]
        );
        let message = CliError::FlagsMissing {
            command: "container run --masked-path NONE".into(),
            missing: vec!["--masked-path"],
        }
        .to_string();
        assert!(message.contains("bug in kina"), "{message}");
    }

    #[test]
    fn names_that_read_as_flags_are_refused() {
        assert!(check_name("-rf", "container").is_err());
        assert!(check_name("", "container").is_err());
        assert!(check_name("a b", "container").is_err());
        check_name("kina-dev-control-plane", "container").unwrap();
    }
}
