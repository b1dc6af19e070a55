//! `kina_apple::cli::ContainerCli` against a STAND-IN `container` program.
//!
//! Apple's `container` CLI runs only on macOS 26 on Apple silicon, so it
//! cannot run here. Each test writes a test double standing in for it: a
//! small `/bin/sh` script in a temporary directory that logs its argv (one
//! line per call, arguments separated by tabs) to `argv.log` and answers
//! with the JSON shapes the `version` and `inspect` module tests document
//! (written from apple/container's source, not captured), or fails with
//! `Error: …` on standard error as Apple's CLI does. What these tests show
//! is what kina sends and how it reads answers of those shapes, not how
//! Apple's program behaves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{self, Cursor, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kina_apple::cli::{CliError, ContainerCli, NETWORK_LIST_ARGS};
use kina_apple::inspect::{LIST_ARGS, State};
use kina_apple::run_args::{
    Ipv4Subnet, Mount, NodeRun, PortMapping, Propagation, Protocol, Role, network_create_args,
    network_name,
};
use kina_apple::version::{SYSTEM_VERSION_ARGS, Supported, Version, VersionError};

/// A stand-in for Apple's `container` (a test double; the real CLI cannot
/// run on Linux) in a temporary directory of its own.
struct StandIn {
    dir: tempfile::TempDir,
    cli: ContainerCli,
}

impl StandIn {
    /// A stand-in that answers by the shell `case` arms `arms`, matched
    /// against `"$1 $2"`; `$dir` is its directory. Anything else fails.
    fn new(arms: &str) -> StandIn {
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            r#"#!/bin/sh
# Test double standing in for Apple's `container` CLI, which cannot run on
# Linux; written by kina-apple's tests/cli_stand_in.rs.
dir='{dir}'
for a in "$@"; do printf '%s\t' "$a"; done >> "$dir/argv.log"
printf '\n' >> "$dir/argv.log"
case "$1 $2" in
{arms}
*) echo "Error: the stand-in has no answer for: $*" >&2; exit 64 ;;
esac
"#,
            dir = dir.path().display()
        );
        let source = dir.path().join("stand-in.sh");
        std::fs::write(&source, script).unwrap();
        std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o755)).unwrap();
        // The program itself is written by `cp`, in a process of its own: a
        // file this test process writes could still be open in a child
        // another test thread is forking at that moment, and executing it
        // would then fail with ETXTBSY.
        let program = dir.path().join("container");
        let status = Command::new("cp")
            .arg(&source)
            .arg(&program)
            .status()
            .unwrap();
        assert!(status.success());
        StandIn {
            cli: ContainerCli::new(program),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, contents: &str) {
        std::fs::write(self.path(name), contents).unwrap();
    }

    /// The argv of every call so far, in order.
    fn calls(&self) -> Vec<Vec<String>> {
        let log = std::fs::read_to_string(self.path("argv.log")).unwrap_or_default();
        log.lines()
            .map(|line| {
                line.strip_suffix('\t')
                    .unwrap_or(line)
                    .split('\t')
                    .filter(|_| !line.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .collect()
    }

    fn program(&self) -> String {
        self.cli.program().display().to_string()
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// The `system version --format json` shapes of version.rs's tests:
// `[VersionInfo]` from `SystemVersion.swift` (1.2.x: sorted keys; 0.11.0:
// declaration order, API server not running).
const VERSION_1_2_1_RUNNING: &str = r#"[{"appName":"container","buildType":"release","commit":"0123456789abcdef0123456789abcdef01234567","version":"1.2.1"},{"appName":"container-apiserver","buildType":"release","commit":"0123456789abcdef0123456789abcdef01234567","version":"container-apiserver version 1.2.1 (build: release, commit: 0123456)"}]"#;
const VERSION_0_11_0_STOPPED: &str =
    r#"[{"version":"0.11.0","buildType":"release","commit":"abcdef0","appName":"container"}]"#;
const VERSION_1_2_1_OLD_SERVER: &str = r#"[{"appName":"container","buildType":"release","commit":"aaaaaaa","version":"1.2.1"},{"appName":"container-apiserver","buildType":"release","commit":"bbbbbbb","version":"container-apiserver version 1.1.0 (build: release, commit: bbbbbbb)"}]"#;

// The 1.0.0+ `list --format json` shape of inspect.rs's tests
// (`[ManagedContainer]`, sorted keys, `status { networks, startedDate,
// state }`; configuration trimmed to the fields kina reads plus a few),
// with a node of another cluster and a container that is no kina node.
const LIST_1_X: &str = r#"[{"configuration":{"capAdd":["ALL"],"capDrop":[],"creationDate":"2026-06-20T10:00:00Z","id":"kina-dev-control-plane","image":{"descriptor":{"digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","mediaType":"application\/vnd.oci.image.index.v1+json","size":1609},"reference":"kina.local\/node:v1.35.0"},"labels":{"io.kina.cluster":"dev","io.kina.role":"control-plane"},"networks":[{"network":"kina-dev","options":{"hostname":"kina-dev-control-plane"}}],"publishedPorts":[{"containerPort":6443,"count":1,"hostAddress":"127.0.0.1","hostPort":52731,"proto":"tcp"}],"resources":{"cpuOverhead":1,"cpus":2,"memoryInBytes":4294967296}},"id":"kina-dev-control-plane","status":{"networks":[{"hostname":"kina-dev-control-plane","ipv4Address":"192.168.65.2\/24","ipv4Gateway":"192.168.65.1","macAddress":"82:17:0c:5d:e1:90","mtu":1280,"network":"kina-dev"}],"startedDate":"2026-06-20T10:00:02Z","state":"running"}},{"configuration":{"capAdd":[],"capDrop":[],"creationDate":"2026-06-19T08:00:00Z","id":"buildkit","labels":{},"networks":[{"network":"default","options":{"hostname":"buildkit"}}]},"id":"buildkit","status":{"networks":[],"state":"stopped"}},{"configuration":{"capAdd":["ALL"],"capDrop":[],"creationDate":"2026-06-20T10:05:00Z","id":"kina-other-control-plane","labels":{"io.kina.cluster":"other","io.kina.role":"control-plane"},"networks":[{"network":"kina-other","options":{"hostname":"kina-other-control-plane"}}]},"id":"kina-other-control-plane","status":{"networks":[{"hostname":"kina-other-control-plane","ipv4Address":"192.168.66.2\/24","ipv4Gateway":"192.168.66.1","macAddress":"82:17:0c:5d:e1:91","mtu":1280,"network":"kina-other"}],"startedDate":"2026-06-20T10:05:02Z","state":"running"}},{"configuration":{"capAdd":["ALL"],"capDrop":[],"creationDate":"2026-06-20T10:00:00Z","id":"kina-dev-worker","labels":{"io.kina.cluster":"dev","io.kina.role":"worker"},"networks":[{"network":"kina-dev","options":{"hostname":"kina-dev-worker"}}]},"id":"kina-dev-worker","status":{"networks":[],"state":"stopped"}}]"#;

// The 1.2.x pretty-printed `inspect` shape of inspect.rs's tests
// (`.prettyPrinted, .sortedKeys`: two-space indents, `" : "`), trimmed.
const INSPECT_1_2: &str = r#"[
  {
    "configuration" : {
      "capAdd" : [
        "ALL"
      ],
      "id" : "kina-dev-worker",
      "labels" : {
        "io.kina.cluster" : "dev",
        "io.kina.role" : "worker"
      },
      "maskedPaths" : [

      ],
      "readonlyPaths" : [

      ]
    },
    "id" : "kina-dev-worker",
    "status" : {
      "networks" : [
        {
          "hostname" : "kina-dev-worker",
          "ipv4Address" : "192.168.65.7\/24",
          "ipv4Gateway" : "192.168.65.1",
          "macAddress" : "9e:3b:1e:0a:77:d1",
          "mtu" : 1280,
          "network" : "kina-dev"
        }
      ],
      "startedDate" : "2026-08-10T09:30:03Z",
      "state" : "running"
    }
  }
]"#;

fn worker() -> NodeRun {
    NodeRun {
        name: "kina-dev-worker".into(),
        cluster: "dev".into(),
        role: Role::Worker,
        image: "kina.local/node:v1.35.0".into(),
        cpus: 2,
        memory_mib: 2048,
        kernel: Some("/Users/me/.cache/kina/kernels/vmlinux-6.18-arm64".into()),
        network: Some(network_name("dev")),
        ports: vec![PortMapping {
            listen_address: None,
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
        }],
        mounts: vec![Mount {
            host_path: "/Users/me/src".into(),
            container_path: "/src".into(),
            read_only: true,
            propagation: Propagation::None,
        }],
    }
}

/// `len` bytes that do not repeat with any short period.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[test]
fn stand_in_version_gate_refuses_an_old_version_with_the_upgrade_text() {
    let stand_in = StandIn::new(r#""system version") cat "$dir/version.json" ;;"#);
    stand_in.write("version.json", VERSION_0_11_0_STOPPED);
    let err = stand_in.cli.version().unwrap_err();
    assert!(
        matches!(&err, CliError::Version { source: VersionError::TooOld { found, .. }, .. } if *found == Version::new(0, 11, 0)),
        "{err:?}"
    );
    let message = err.to_string();
    for text in [
        "Apple container 0.11.0 is installed",
        "1.2.1 or newer",
        "container system stop",
        "/usr/local/bin/update-container.sh",
        "https://github.com/apple/container/releases",
        "container system start",
        "system version --format json",
    ] {
        assert!(message.contains(text), "{text:?} missing from: {message}");
    }
    assert_eq!(stand_in.calls(), vec![strings(&SYSTEM_VERSION_ARGS)]);

    // The minimum with its API server running is accepted.
    stand_in.write("version.json", VERSION_1_2_1_RUNNING);
    assert_eq!(
        stand_in.cli.version().unwrap(),
        Supported {
            cli: Version::new(1, 2, 1),
            api_server: Some(Version::new(1, 2, 1)),
        }
    );

    // A new CLI in front of an old, still running API server is not.
    stand_in.write("version.json", VERSION_1_2_1_OLD_SERVER);
    let message = stand_in.cli.version().unwrap_err().to_string();
    assert!(
        message.contains("running API server is still 1.1.0"),
        "{message}"
    );
}

#[test]
fn stand_in_release_without_system_version_is_read_from_dash_dash_version() {
    // Before 0.10.0 `system version` is an unknown subcommand; every release
    // prints `ReleaseVersion.singleLine(appName: "container CLI")`.
    let stand_in = StandIn::new(
        r#""system version") echo "Error: Unexpected argument 'version'" >&2; exit 64 ;;
"--version "*) echo "container CLI version 0.9.0 (build: release, commit: 1234abc)" ;;"#,
    );
    let err = stand_in.cli.version().unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(&err, CliError::Version { source: VersionError::TooOld { found, .. }, .. } if *found == Version::new(0, 9, 0)),
        "{err:?}"
    );
    assert!(
        message.contains("https://github.com/apple/container/releases"),
        "{message}"
    );
    // 0.9.0 predates update-container.sh.
    assert!(!message.contains("update-container.sh"), "{message}");
    assert_eq!(
        stand_in.calls(),
        vec![strings(&SYSTEM_VERSION_ARGS), strings(&["--version"])]
    );
}

#[test]
fn stand_in_failing_system_version_of_a_new_release_is_reported_as_it_failed() {
    let stand_in = StandIn::new(
        r#""system version") echo "Error: internalError: \"cannot read the install root\"" >&2; exit 1 ;;
"--version "*) echo "container CLI version 1.2.2 (build: release, commit: af405ff)" ;;"#,
    );
    let err = stand_in.cli.version().unwrap_err();
    assert!(matches!(err, CliError::Failed { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("container system version --format json` failed"),
        "{message}"
    );
    assert!(
        message.contains("cannot read the install root"),
        "{message}"
    );
}

#[test]
fn stand_in_missing_program_gives_the_install_hint() {
    let dir = tempfile::tempdir().unwrap();
    let cli = ContainerCli::new(dir.path().join("no-such-container"));
    let err = cli.version().unwrap_err();
    assert!(matches!(err, CliError::NotInstalled { .. }), "{err:?}");
    let message = err.to_string();
    for text in [
        "Apple's container CLI is needed",
        "does not exist",
        "macOS 26 on Apple silicon",
        "1.2.1 or newer",
        "signed installer package from https://github.com/apple/container/releases",
        "container system start",
        "KINA_CONTAINER_CLI",
    ] {
        assert!(message.contains(text), "{text:?} missing from: {message}");
    }
    // Every command says the same, not an I/O error.
    assert!(matches!(
        cli.list_cluster("dev").unwrap_err(),
        CliError::NotInstalled { .. }
    ));
    assert!(matches!(
        cli.exec("n1", &["true"], &mut io::empty()).unwrap_err(),
        CliError::NotInstalled { .. }
    ));
    // Looked up on PATH when it is a bare name.
    let on_path = ContainerCli::from_override(Some("kina-test-no-such-container-program".into()));
    let message = on_path.version().unwrap_err().to_string();
    assert!(
        message.contains("no `kina-test-no-such-container-program` on PATH"),
        "{message}"
    );
}

#[test]
fn stand_in_create_node_passes_exactly_the_built_argv() {
    let stand_in = StandIn::new(
        r#""create "*|"run "*) echo kina-dev-worker ;;
"start "*|"stop "*|"delete "*) echo "$2" ;;"#,
    );
    let node = worker();
    stand_in.cli.create_node(&node).unwrap();
    stand_in.cli.start(&node.name).unwrap();
    stand_in.cli.stop(&node.name).unwrap();
    stand_in.cli.delete(&node.name).unwrap();
    assert_eq!(
        stand_in.calls(),
        vec![
            node.create_args().unwrap(),
            strings(&["start", "kina-dev-worker"]),
            strings(&["stop", "--time", "30", "kina-dev-worker"]),
            strings(&["delete", "--force", "kina-dev-worker"]),
        ]
    );
    // Spelled out once, so a change to the builder shows here too.
    assert_eq!(
        stand_in.calls()[0],
        strings(&[
            "create",
            "--name",
            "kina-dev-worker",
            "--label",
            "io.kina.cluster=dev",
            "--label",
            "io.kina.role=worker",
            "--cpus",
            "2",
            "--memory",
            "2048M",
            "--cap-add",
            "ALL",
            "--masked-path",
            "NONE",
            "--read-only-path",
            "NONE",
            "--kernel",
            "/Users/me/.cache/kina/kernels/vmlinux-6.18-arm64",
            "--network",
            "kina-dev",
            "--publish",
            "8080:80/tcp",
            "--volume",
            "/Users/me/src:/src:ro",
            "kina.local/node:v1.35.0",
        ])
    );

    // A node the builder refuses never reaches the program.
    let before = stand_in.calls().len();
    let small = NodeRun {
        memory_mib: 100,
        ..worker()
    };
    assert!(matches!(
        stand_in.cli.create_node(&small),
        Err(CliError::Args(_))
    ));
    assert!(matches!(
        stand_in.cli.start("--all"),
        Err(CliError::Invalid(_))
    ));
    assert_eq!(stand_in.calls().len(), before);
}

#[test]
fn stand_in_inspect_and_list_parse_the_documented_shapes() {
    let stand_in = StandIn::new(
        r#""inspect kina-dev-worker") cat "$dir/inspect.json" ;;
"list --all") cat "$dir/list.json" ;;"#,
    );
    stand_in.write("inspect.json", INSPECT_1_2);
    stand_in.write("list.json", LIST_1_X);

    let node = stand_in.cli.inspect("kina-dev-worker").unwrap();
    assert_eq!(node.name, "kina-dev-worker");
    assert_eq!(node.state, State::Running);
    assert_eq!(
        node.addresses,
        vec![std::net::Ipv4Addr::new(192, 168, 65, 7)]
    );
    assert_eq!(node.role(), Some("worker"));

    let dev = stand_in.cli.list_cluster("dev").unwrap();
    let names: Vec<&str> = dev.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["kina-dev-control-plane", "kina-dev-worker"]);
    assert_eq!(dev[0].state, State::Running);
    assert_eq!(
        dev[0].addresses,
        vec![std::net::Ipv4Addr::new(192, 168, 65, 2)]
    );
    assert_eq!(dev[1].state, State::Stopped);
    assert!(dev[1].addresses.is_empty());
    assert!(stand_in.cli.list_cluster("nope").unwrap().is_empty());
    assert_eq!(stand_in.cli.list_all().unwrap().len(), 4);

    assert_eq!(
        stand_in.calls(),
        vec![
            strings(&["inspect", "kina-dev-worker"]),
            strings(&LIST_ARGS),
            strings(&LIST_ARGS),
            strings(&LIST_ARGS),
        ]
    );

    // Output of an unknown shape names the command and the field.
    stand_in.write(
        "list.json",
        r#"[{"id":"n1","configuration":{"id":"n1"},"runtime":{"state":"running"}}]"#,
    );
    let message = stand_in.cli.list_cluster("dev").unwrap_err().to_string();
    assert!(
        message.contains("container list --all --format json` printed what kina cannot read"),
        "{message}"
    );
    assert!(message.contains("`[0].status`"), "{message}");
}

#[test]
fn stand_in_failing_command_error_names_argv_status_and_last_stderr_lines() {
    // 1.x fails `inspect`/`stop` of an unknown container with
    // `Error: notFound: …` (the exact text is the stand-in's).
    let stand_in = StandIn::new(
        r#""stop "*|"inspect "*) i=1; while [ $i -le 30 ]; do echo "progress $i" >&2; i=$((i+1)); done
  for last in "$@"; do :; done
  echo "Error: notFound: \"container $last not found\"" >&2; exit 1 ;;"#,
    );
    let err = stand_in.cli.stop("kina-dev-gone").unwrap_err();
    let CliError::Failed {
        command,
        status,
        output_tail,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(
        command,
        &format!("{} stop --time 30 kina-dev-gone", stand_in.program())
    );
    assert_eq!(status.code(), Some(1));
    assert_eq!(output_tail.lines().count(), 10, "{output_tail}");
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "`{} stop --time 30 kina-dev-gone` failed (exit status: 1)",
            stand_in.program()
        )),
        "{message}"
    );
    assert!(
        message.contains(r#"Error: notFound: "container kina-dev-gone not found""#),
        "{message}"
    );
    assert!(message.contains("progress 30"), "{message}");
    assert!(!message.contains("progress 21\n"), "{message}");
    assert!(!message.contains("progress 1\n"), "{message}");

    let message = stand_in
        .cli
        .inspect("kina-dev-gone")
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("inspect kina-dev-gone` failed"),
        "{message}"
    );
}

#[test]
fn stand_in_exec_streams_multi_mib_stdin_intact() {
    // `exec --interactive NAME ctr …` keeps what arrives on standard input,
    // as `ctr -n k8s.io images import -` reads an image archive; any other
    // command runs here on the host.
    let stand_in = StandIn::new(
        r#""exec --interactive") shift 3
  if [ "$1" = ctr ]; then cat > "$dir/stdin.bin"; echo "unpacking kina.local/extra:v1...done"; exit 0; fi
  exec "$@" ;;"#,
    );
    let archive = noise(12 * 1024 * 1024 + 12345);
    let argv = ["ctr", "-n", "k8s.io", "images", "import", "-"];
    let output = stand_in
        .cli
        .exec("kina-dev-worker", &argv, &mut Cursor::new(&archive))
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.stdout, b"unpacking kina.local/extra:v1...done\n");
    let received = std::fs::read(stand_in.path("stdin.bin")).unwrap();
    assert_eq!(received.len(), archive.len());
    assert!(received == archive, "the bytes differ");
    let mut expected = strings(&["exec", "--interactive", "kina-dev-worker"]);
    expected.extend(strings(&argv));
    assert_eq!(stand_in.calls(), vec![expected]);

    // Output and exit status come back apart, a failure included.
    let output = stand_in
        .cli
        .exec(
            "kina-dev-worker",
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
            &mut io::empty(),
        )
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(output.stdout, b"out\n");
    assert_eq!(output.stderr, b"err\n");
}

#[test]
fn stand_in_exec_of_a_command_that_stops_reading_reports_its_status() {
    let stand_in = StandIn::new(r#""exec --interactive") shift 3; exec "$@" ;;"#);
    let input = noise(4 * 1024 * 1024);
    let argv = ["sh", "-c", "echo 'refused: not an archive' >&2; exit 3"];
    let output = stand_in
        .cli
        .exec("kina-dev-worker", &argv, &mut Cursor::new(&input))
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(output.stderr, b"refused: not an archive\n");

    let err = stand_in
        .cli
        .exec_ok("kina-dev-worker", &argv, &mut Cursor::new(&input))
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "`{} exec --interactive kina-dev-worker sh -c 'echo '\\''refused: not an archive'\\'' >&2; exit 3'` failed (exit status: 3): refused: not an archive",
            stand_in.program()
        )),
        "{message}"
    );
}

/// Gives `good` bytes, then fails.
struct FailingReader {
    good: usize,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.good == 0 {
            return Err(io::Error::other("the archive's disk went away"));
        }
        let n = buf.len().min(self.good);
        buf[..n].fill(7);
        self.good -= n;
        Ok(n)
    }
}

#[test]
fn stand_in_exec_input_that_fails_to_read_is_an_error_naming_the_command() {
    let stand_in =
        StandIn::new(r#""exec --interactive") cat > "$dir/partial.bin"; echo "imported" ;;"#);
    let err = stand_in
        .cli
        .exec(
            "kina-dev-worker",
            &["ctr", "-n", "k8s.io", "images", "import", "-"],
            &mut FailingReader { good: 300_000 },
        )
        .unwrap_err();
    assert!(matches!(err, CliError::Io { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("exec --interactive kina-dev-worker ctr -n k8s.io images import -"),
        "{message}"
    );
    assert!(
        message.contains("the archive's disk went away"),
        "{message}"
    );
}

#[test]
fn stand_in_write_file_goes_through_exec_and_sets_the_mode() {
    // The stand-in runs the command on the host, so the script kina sends
    // really writes the file (under this test's directory).
    let stand_in = StandIn::new(r#""exec --interactive") shift 3; exec "$@" ;;"#);
    let target = stand_in.path("node-root/etc/kina/config.yaml");
    let target_text = target.to_str().unwrap();
    stand_in
        .cli
        .write_file("kina-dev-worker", target_text, b"kind: Kina\n", 0o640)
        .unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"kind: Kina\n");
    let mode = std::fs::metadata(&target).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o640);

    let big = noise(3 * 1024 * 1024);
    stand_in
        .cli
        .write_file("kina-dev-worker", target_text, &big, 0o600)
        .unwrap();
    assert!(std::fs::read(&target).unwrap() == big);
    let mode = std::fs::metadata(&target).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o600);
    assert!(!Path::new(&format!("{target_text}.kina-new")).exists());

    let calls = stand_in.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[0][..5],
        strings(&["exec", "--interactive", "kina-dev-worker", "sh", "-c"])
    );
    assert_eq!(
        calls[0][6..],
        strings(&["kina-write-file", target_text, "640"])
    );

    // Relative paths and non-modes never reach the program.
    assert!(matches!(
        stand_in
            .cli
            .write_file("kina-dev-worker", "etc/x", b"", 0o644),
        Err(CliError::Invalid(_))
    ));
    assert!(matches!(
        stand_in
            .cli
            .write_file("kina-dev-worker", "/etc/x", b"", 0o10000),
        Err(CliError::Invalid(_))
    ));
    assert_eq!(stand_in.calls().len(), 2);

    // A write that fails names the command and what went wrong.
    let blocked = stand_in.path("a-file");
    std::fs::write(&blocked, b"").unwrap();
    let inside = format!("{}/x.conf", blocked.display());
    let message = stand_in
        .cli
        .write_file("kina-dev-worker", &inside, b"x", 0o644)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("exec --interactive kina-dev-worker sh -c"),
        "{message}"
    );
    assert!(message.contains("failed (exit status: 1)"), "{message}");
}

/// A stand-in whose networks live in `$dir/networks`, one name a line (as
/// `network list --quiet` prints them). `network create` adds its last
/// argument; with `$dir/create-races` present it adds it and fails the way
/// Apple's API server answers a name that exists, as if another kina had
/// made it meanwhile; with `$dir/create-fails` present it fails with that
/// file's text.
fn network_stand_in() -> StandIn {
    StandIn::new(
        r#""network list") cat "$dir/networks" 2>/dev/null; exit 0 ;;
"network create") for last in "$@"; do :; done
  if [ -f "$dir/create-fails" ]; then cat "$dir/create-fails" >&2; exit 1; fi
  if grep -qx "$last" "$dir/networks" 2>/dev/null || [ -f "$dir/create-races" ]; then
    echo "$last" >> "$dir/networks"
    echo "Error: exists: \"network $last already exists\"" >&2; exit 1
  fi
  echo "$last" >> "$dir/networks"; echo "$last" ;;
"network delete") grep -vx "$3" "$dir/networks" > "$dir/networks.new"; mv "$dir/networks.new" "$dir/networks"; echo "$3" ;;"#,
    )
}

#[test]
fn stand_in_ensure_network_tolerates_an_existing_network() {
    let list = strings(&NETWORK_LIST_ARGS);

    // Already there: listed, not created again.
    let stand_in = network_stand_in();
    stand_in.write("networks", "default\nkina-dev\n");
    assert_eq!(
        stand_in.cli.ensure_network("dev", None).unwrap(),
        "kina-dev"
    );
    assert_eq!(stand_in.calls(), vec![list.clone()]);

    // Made by someone else between the list and the create: still fine.
    let stand_in = network_stand_in();
    stand_in.write("networks", "default\n");
    stand_in.write("create-races", "");
    assert_eq!(
        stand_in.cli.ensure_network("dev", None).unwrap(),
        "kina-dev"
    );
    assert_eq!(
        stand_in.calls(),
        vec![
            list.clone(),
            network_create_args("kina-dev", "dev", None).unwrap(),
            list.clone(),
        ]
    );
}

#[test]
fn stand_in_ensure_network_creates_a_missing_one_and_reports_real_failures() {
    let list = strings(&NETWORK_LIST_ARGS);
    let subnet = Ipv4Subnet {
        address: std::net::Ipv4Addr::new(192, 168, 100, 0),
        prefix_len: 24,
    };

    // No networks at all: `network list --quiet` prints nothing.
    let stand_in = network_stand_in();
    assert_eq!(
        stand_in.cli.ensure_network("dev", Some(subnet)).unwrap(),
        "kina-dev"
    );
    assert_eq!(
        stand_in.calls(),
        vec![
            list.clone(),
            network_create_args("kina-dev", "dev", Some(subnet)).unwrap(),
        ]
    );
    assert_eq!(
        stand_in.cli.network_names().unwrap(),
        strings(&["kina-dev"])
    );

    // Deleting: present → `network delete`; absent → nothing to do.
    stand_in.cli.delete_network("kina-dev").unwrap();
    stand_in.cli.delete_network("kina-dev").unwrap();
    let calls = stand_in.calls();
    assert_eq!(
        calls[3..],
        [
            list.clone(),
            strings(&["network", "delete", "kina-dev"]),
            list.clone(),
        ]
    );

    // A create that fails for another reason is an error with Apple's text.
    let stand_in = network_stand_in();
    stand_in.write(
        "create-fails",
        "Error: unsupported: \"non-default networks need macOS 26\"\n",
    );
    let message = stand_in
        .cli
        .ensure_network("dev", None)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(
            "network create --label io.kina.cluster=dev kina-dev` failed (exit status: 1)"
        ),
        "{message}"
    );
    assert!(
        message.contains("non-default networks need macOS 26"),
        "{message}"
    );
}

#[test]
fn stand_in_exec_that_hangs_is_killed_at_its_timeout_and_named() {
    let stand_in = StandIn::new(r#""exec --interactive") sleep 30 ;;"#);
    let started = std::time::Instant::now();
    let err = stand_in
        .cli
        .exec_ok_within(
            "kina-dev-worker",
            &["cat", "/run/kina/status.json"],
            &mut io::empty(),
            std::time::Duration::from_secs(1),
        )
        .unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "not killed at its timeout: {:?}",
        started.elapsed()
    );
    assert!(matches!(err, CliError::TimedOut { secs: 1, .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("exec --interactive kina-dev-worker cat /run/kina/status.json"),
        "{message}"
    );
}

// `image inspect <ref>` at 1.2.x: `[ImageResource]` pretty-printed with
// sorted keys (`ImageInspect.swift:67`; `ImageResource.swift:46-56,
// 113-124`: `id` is the digest's hex alone); an unknown name fails with
// `image not found: <names>` (`ImageInspect.swift:45-50`), which the CLI
// prints as `Error: notFound: "…"` (containerization
// `ContainerizationError.description`). The variants are trimmed.
const IMAGE_INSPECT_ARM: &str = r#""image inspect")
  if [ -f "$dir/digest" ]; then d=$(cat "$dir/digest")
    printf '[\n  {\n    "configuration" : {\n      "creationDate" : "2026-08-10T09:30:03Z",\n      "descriptor" : {\n        "digest" : "%s",\n        "mediaType" : "application\\/vnd.oci.image.index.v1+json",\n        "size" : 489\n      },\n      "name" : "%s"\n    },\n    "id" : "%s",\n    "variants" : [\n\n    ]\n  }\n]\n' "$d" "$3" "${d#sha256:}"
  else echo "Error: notFound: \"image not found: $3\"" >&2; exit 1; fi ;;
"image load") echo "$4" > "$dir/loaded" ;;"#;

#[test]
fn stand_in_image_digest_reads_what_apple_holds_under_the_name() {
    let stand_in = StandIn::new(IMAGE_INSPECT_ARM);
    assert_eq!(
        stand_in.cli.image_digest("kina.local/node:base").unwrap(),
        None
    );
    let digest = "sha256:3b1f9c1f6c0d4e8a9b2e7f0a1c3d5e7f9a0b2c4d6e8f0a1b3c5d7e9f0a2b4c6d";
    stand_in.write("digest", digest);
    assert_eq!(
        stand_in
            .cli
            .image_digest("kina.local/node:base")
            .unwrap()
            .as_deref(),
        Some(digest)
    );
    stand_in.cli.image_load(Path::new("/tmp/node.tar")).unwrap();
    assert_eq!(
        stand_in.calls(),
        vec![
            strings(&["image", "inspect", "kina.local/node:base"]),
            strings(&["image", "inspect", "kina.local/node:base"]),
            strings(&["image", "load", "--input", "/tmp/node.tar"]),
        ]
    );

    // Output of another shape is an error naming the command, not "absent".
    stand_in.write("digest", "");
    let err = stand_in
        .cli
        .image_digest("kina.local/node:base")
        .unwrap_err();
    assert!(matches!(err, CliError::ImageOutput { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("image inspect kina.local/node:base` printed what kina cannot read"),
        "{err}"
    );
}

/// A stand-in whose one container `n1` is in the state `$dir/state`, which
/// a file `$dir/stops-after` counts down: each `inspect` takes one off and
/// the state becomes `stopped` at zero, as a node finishing its shutdown.
/// `delete --force` refuses a stopping container with Apple's text
/// (`ContainersService.swift:865-869`, printed by `ContainerDelete.swift`
/// through `AggregateError`, one line per error).
fn stopping_stand_in() -> StandIn {
    StandIn::new(
        r#""inspect n1") s=$(cat "$dir/state")
  if [ "$s" = stopping ] && [ -f "$dir/stops-after" ]; then
    left=$(($(cat "$dir/stops-after") - 1)); echo $left > "$dir/stops-after"
    [ $left -le 0 ] && { s=stopped; echo stopped > "$dir/state"; }
  fi
  printf '[{"configuration":{"id":"n1","labels":{}},"id":"n1","status":{"networks":[],"state":"%s"}}]\n' "$s" ;;
"delete --force") s=$(cat "$dir/state")
  case "$s" in
    stopping) echo "Error: invalidState: \"container $3 is stopping and can not be deleted\"" >&2; exit 1 ;;
    broken) echo "Error: internalError: \"cannot clean up $3\"" >&2; exit 1 ;;
  esac
  echo gone > "$dir/state"; echo "$3" ;;"#,
    )
}

#[test]
fn stand_in_delete_waits_out_a_stopping_node_then_deletes_it() {
    let stand_in = stopping_stand_in();
    stand_in.write("state", "stopping");
    stand_in.write("stops-after", "2");
    stand_in
        .cli
        .delete_when_stopped("n1", std::time::Duration::from_secs(20))
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(stand_in.path("state"))
            .unwrap()
            .trim(),
        "gone"
    );
    let verbs: Vec<String> = stand_in.calls().iter().map(|c| c[0].clone()).collect();
    assert_eq!(verbs, ["delete", "inspect", "inspect", "delete"]);
}

#[test]
fn stand_in_delete_gives_up_on_a_node_stopping_too_long_and_names_it() {
    let stand_in = stopping_stand_in();
    stand_in.write("state", "stopping");
    let started = std::time::Instant::now();
    let err = stand_in
        .cli
        .delete_when_stopped("n1", std::time::Duration::from_secs(1))
        .unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        matches!(err, CliError::StillStopping { secs: 1, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("container n1 was still stopping after 1 s")
            && message.contains("container list --all"),
        "{message}"
    );
}

#[test]
fn stand_in_delete_failing_for_another_reason_is_not_waited_on() {
    let stand_in = stopping_stand_in();
    stand_in.write("state", "broken");
    let err = stand_in
        .cli
        .delete_when_stopped("n1", std::time::Duration::from_secs(20))
        .unwrap_err();
    assert!(matches!(err, CliError::Failed { .. }), "{err:?}");
    assert!(err.to_string().contains("cannot clean up n1"), "{err}");
    assert_eq!(stand_in.calls().len(), 2, "one delete, one look");
}
