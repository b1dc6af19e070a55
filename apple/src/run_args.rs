//! Argument vectors for `container run` (a kina node) and `container
//! network create` (a cluster's network).
//!
//! A node is started with `container run --detach …`, which creates the
//! container, boots its VM and prints its ID (apple/container
//! `docs/how-to.md` uses `run -d` for long-lived containers).
//! `container create` accepts the same option groups, so
//! [`NodeRun::create_args`] plus [`start_args`] do the same in two steps.
//!
//! Flag facts, from `Flags.swift`/`Parser.swift`/`Utility.swift` at each tag
//! (first release that has the flag in brackets; see [`FLAG_SINCE`]):
//!
//! - `-d/--detach`, `--name`, `-l/--label k=v`, `-c/--cpus N`,
//!   `-m/--memory <n>[K|M|G|T|P]` (binary units, `M` = MiB), `-k/--kernel
//!   <path>`, `-v/--volume`, `--mount` [0.1.0]; `--network
//!   <name>[,mac=…][,mtu=…]` [0.2.0]; `-p/--publish
//!   [host-ip:]host-port:container-port[/tcp|udp]` [0.3.0];
//!   `--cap-add`/`--cap-drop` (`ALL` accepted) [0.12.0]; `--masked-path`,
//!   `--read-only-path` (`NONE` clears the defaults) [1.2.1]. All exist in
//!   [`crate::version::MINIMUM`], so kina passes each unconditionally.
//! - There is no `--privileged`, `--sysctl` or `--device`; the three flags
//!   `--cap-add ALL --masked-path NONE --read-only-path NONE` are how a node
//!   gets every capability and a writable `/proc/sys`.
//! - `--publish`: host ports and container ports must be 2..=65535
//!   (`Parser.publishPort` requires `> 1`), protocol `tcp` or `udp` only, an
//!   IPv6 host address in brackets (`[::1]:8080:80`), at most 64 specs, and
//!   no two specs may share a host port and protocol, even on different
//!   host addresses (`[PublishPort].hasOverlaps` keys on port/proto only).
//!   Forwarding is a userspace proxy in the runtime helper, to the IP of the
//!   container's first network.
//! - `--volume host:container[:ro]` binds a file or a directory over
//!   virtiofs (single files since 0.12.0, containerization 0.31.0);
//!   `--mount type=bind,…` only takes directories, so kina uses `--volume`.
//!   Neither has a propagation option.
//! - `--label` values may not contain `=` (`Parser.labels` splits on it).
//! - `--name` must match `^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`, at most 63
//!   characters (`ManagedContainer.nameValid`).
//! - Memory below 200 MiB is refused by the API server.
//! - Non-default networks (`--network`, `network create`) need macOS 26; on
//!   macOS 15 only `default` exists and containers cannot reach each other.
//!
//! Length: under 500 lines of code; the rest (from `mod tests`) are the argv
//! tests that pin every flag to the Apple release that has it, kept beside
//! the table they check.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use crate::version::Version;
use crate::{LABEL_CLUSTER, LABEL_ROLE};

/// The port the API server listens on inside a node.
pub const API_SERVER_PORT: u16 = 6443;

/// Where each flag kina passes first appears (apple/container tags, from
/// `Flags.swift` at each tag).
pub const FLAG_SINCE: &[(&str, Version)] = &[
    ("--detach", Version::new(0, 1, 0)),
    ("--name", Version::new(0, 1, 0)),
    ("--label", Version::new(0, 1, 0)),
    ("--cpus", Version::new(0, 1, 0)),
    ("--memory", Version::new(0, 1, 0)),
    ("--kernel", Version::new(0, 1, 0)),
    ("--volume", Version::new(0, 1, 0)),
    ("--network", Version::new(0, 2, 0)),
    ("--publish", Version::new(0, 3, 0)),
    ("--cap-add", Version::new(0, 12, 0)),
    ("--masked-path", Version::new(1, 2, 1)),
    ("--read-only-path", Version::new(1, 2, 1)),
    // `network create --subnet` (its `--label` arrived in 0.5.0, after
    // `run --label`; both predate the minimum).
    ("--subnet", Version::new(0, 6, 0)),
    // Flags of the commands `crate::cli` runs besides `run`/`create`. A flag
    // several commands take is listed with its latest first appearance
    // among the ones kina uses.
    // `delete --force`, `list --all` and `exec --interactive` [0.1.0].
    ("--force", Version::new(0, 1, 0)),
    ("--all", Version::new(0, 1, 0)),
    ("--interactive", Version::new(0, 1, 0)),
    // `network list --quiet` [0.2.0, with the `network` commands].
    ("--quiet", Version::new(0, 2, 0)),
    // `list --format` [0.1.0], `system version --format` [0.10.0].
    ("--format", Version::new(0, 10, 0)),
    // `logs --boot`, `image load --input` and `stop --time` [0.1.0].
    ("--boot", Version::new(0, 1, 0)),
    ("--input", Version::new(0, 1, 0)),
    ("--time", Version::new(0, 1, 0)),
];

/// The flags of `argv` that `version` does not have yet.
pub fn flags_missing_in(argv: &[String], version: Version) -> Vec<&'static str> {
    FLAG_SINCE
        .iter()
        .filter(|(flag, since)| *since > version && argv.iter().any(|a| a == flag))
        .map(|(flag, _)| *flag)
        .collect()
}

pub use kina_contract::node_spec::Role;

/// kind's spelling of a role, also the value of the `io.kina.role` label.
pub fn role_name(role: &Role) -> &'static str {
    match role {
        Role::ControlPlane => "control-plane",
        Role::Worker => "worker",
    }
}

/// kind's `extraPortMappings[].protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    /// Apple's `--publish` has no SCTP; asking for it is an error.
    Sctp,
}

/// One published port: kind's `extraPortMappings[]`, or the API server's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMapping {
    /// kind's `listenAddress`; `None` leaves Apple's default, 0.0.0.0.
    pub listen_address: Option<IpAddr>,
    /// Must already be chosen: Apple cannot pick a free host port (kind's
    /// `hostPort: 0`/`-1` must be resolved before building the arguments).
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl PortMapping {
    /// The API server on 127.0.0.1:`host_port`.
    pub fn api_server(host_port: u16) -> Self {
        PortMapping {
            listen_address: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            host_port,
            container_port: API_SERVER_PORT,
            protocol: Protocol::Tcp,
        }
    }
}

/// kind's `extraMounts[].propagation`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Propagation {
    #[default]
    None,
    HostToContainer,
    Bidirectional,
}

/// One host path shared into the node: kind's `extraMounts[]`
/// (`selinuxRelabel` has no meaning on macOS and is not carried).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub host_path: PathBuf,
    pub container_path: PathBuf,
    pub read_only: bool,
    /// Only [`Propagation::None`]: virtiofs shares have no propagation.
    pub propagation: Propagation,
}

/// Everything `container run` needs for one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRun {
    /// Container name, also the node's hostname.
    pub name: String,
    pub cluster: String,
    pub role: Role,
    pub image: String,
    /// vCPUs for the workload (the VM gets one more).
    pub cpus: u32,
    /// Memory for the workload (the VM gets 128 MiB more).
    pub memory_mib: u64,
    /// A kina kernel instead of the system default (copied into the
    /// container at create time).
    pub kernel: Option<PathBuf>,
    /// The cluster's network; `None` uses Apple's `default`.
    pub network: Option<String>,
    pub ports: Vec<PortMapping>,
    pub mounts: Vec<Mount>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    #[error("{0}")]
    Invalid(String),
    #[error("Apple container cannot do this: {0}")]
    Unsupported(String),
}

/// The most `--publish` specs one container may have (`Utility.swift`).
pub const MAX_PUBLISHED_PORTS: usize = 64;
/// The least memory the API server accepts.
pub const MIN_MEMORY_MIB: u64 = 200;
const MAX_NAME_LEN: usize = 63;

impl NodeRun {
    /// `run --detach …` (without the binary name). kina creates and starts
    /// nodes apart (the control plane first); this form is kept for the
    /// argument checks it shares with `create`.
    #[cfg(test)]
    pub fn run_args(&self) -> Result<Vec<String>, ArgsError> {
        self.args("run", true)
    }

    /// `create …`, to be followed by [`start_args`].
    pub fn create_args(&self) -> Result<Vec<String>, ArgsError> {
        self.args("create", false)
    }

    fn args(&self, command: &str, detach: bool) -> Result<Vec<String>, ArgsError> {
        validate_container_name(&self.name)?;
        let mut argv = vec![command.to_string()];
        if detach {
            argv.push("--detach".into());
        }
        push(&mut argv, "--name", self.name.clone());
        push(
            &mut argv,
            "--label",
            label(LABEL_CLUSTER, &self.cluster, "cluster name")?,
        );
        push(
            &mut argv,
            "--label",
            label(LABEL_ROLE, role_name(&self.role), "role")?,
        );
        if self.cpus == 0 {
            return Err(ArgsError::Invalid(format!(
                "node {}: cpus must be at least 1",
                self.name
            )));
        }
        push(&mut argv, "--cpus", self.cpus.to_string());
        if self.memory_mib < MIN_MEMORY_MIB {
            return Err(ArgsError::Invalid(format!(
                "node {}: {} MiB of memory is below Apple container's minimum of {MIN_MEMORY_MIB} MiB",
                self.name, self.memory_mib
            )));
        }
        push(&mut argv, "--memory", format!("{}M", self.memory_mib));
        // Every capability, no masked paths, /proc/sys writable: the
        // kubelet, kube-proxy and CNI plugins set sysctls and mount.
        push(&mut argv, "--cap-add", "ALL".into());
        push(&mut argv, "--masked-path", "NONE".into());
        push(&mut argv, "--read-only-path", "NONE".into());
        if let Some(kernel) = &self.kernel {
            push(&mut argv, "--kernel", absolute_utf8(kernel, "kernel")?);
        }
        if let Some(network) = &self.network {
            validate_network_name(network)?;
            push(&mut argv, "--network", network.clone());
        }
        for spec in publish_specs(&self.ports)? {
            push(&mut argv, "--publish", spec);
        }
        for mount in &self.mounts {
            push(&mut argv, "--volume", volume_spec(mount)?);
        }
        if self.image.is_empty() || self.image.starts_with('-') {
            return Err(ArgsError::Invalid(format!(
                "node {}: image reference `{}` is empty or looks like a flag",
                self.name, self.image
            )));
        }
        argv.push(self.image.clone());
        Ok(argv)
    }
}

/// `start <name>`, after [`NodeRun::create_args`] (also restarts a
/// stopped node; its IP may change, see [`crate::inspect`]).
pub fn start_args(name: &str) -> Vec<String> {
    vec!["start".to_string(), name.to_string()]
}

/// An IPv4 subnet for `network create --subnet`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Subnet {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
}

impl fmt::Display for Ipv4Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// The network kina makes for a cluster: `kina-<cluster>`.
pub fn network_name(cluster: &str) -> String {
    format!("kina-{cluster}")
}

/// `network create --label io.kina.cluster=<cluster> [--subnet <cidr>] <name>`.
///
/// Apple's `network create` (macOS 26 only) takes `--label` [0.5.0],
/// `--subnet` [0.6.0], `--subnet-v6` [0.8.0], `--internal` (host-only)
/// [0.9.0] and `--option` [1.0.0]. Without `--subnet` the vmnet helper picks
/// the next free /24 (192.168.65.0/24, …). Names must match
/// `^[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$`.
pub fn network_create_args(
    name: &str,
    cluster: &str,
    subnet: Option<Ipv4Subnet>,
) -> Result<Vec<String>, ArgsError> {
    validate_network_name(name)?;
    let mut argv = vec!["network".to_string(), "create".to_string()];
    push(
        &mut argv,
        "--label",
        label(LABEL_CLUSTER, cluster, "cluster name")?,
    );
    if let Some(subnet) = subnet {
        if subnet.prefix_len > 32 {
            return Err(ArgsError::Invalid(format!(
                "subnet {subnet}: prefix length is over 32"
            )));
        }
        push(&mut argv, "--subnet", subnet.to_string());
    }
    argv.push(name.to_string());
    Ok(argv)
}

/// `network delete <name>`.
pub fn network_delete_args(name: &str) -> Vec<String> {
    vec![
        "network".to_string(),
        "delete".to_string(),
        name.to_string(),
    ]
}

fn push(argv: &mut Vec<String>, flag: &str, value: String) {
    argv.push(flag.to_string());
    argv.push(value);
}

fn label(key: &str, value: &str, what: &str) -> Result<String, ArgsError> {
    if value.is_empty() || value.contains('=') {
        return Err(ArgsError::Invalid(format!(
            "{what} `{value}` cannot be a label value: Apple container labels need a non-empty value without `=`"
        )));
    }
    Ok(format!("{key}={value}"))
}

fn validate_container_name(name: &str) -> Result<(), ArgsError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest: Vec<char> = chars.collect();
    let rest_ok = !rest.is_empty()
        && rest
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && name.len() <= MAX_NAME_LEN {
        Ok(())
    } else {
        Err(ArgsError::Invalid(format!(
            "node name `{name}`: Apple container names are 2 to {MAX_NAME_LEN} characters \
             matching ^[a-zA-Z0-9][a-zA-Z0-9_.-]+$"
        )))
    }
}

fn validate_network_name(name: &str) -> Result<(), ArgsError> {
    let bytes = name.as_bytes();
    let edge_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && edge_ok(bytes.first())
        && edge_ok(bytes.last())
        && bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(ArgsError::Invalid(format!(
            "network name `{name}`: Apple container network names are 1 to {MAX_NAME_LEN} \
             characters matching ^[a-z0-9](?:[a-z0-9._-]{{0,61}}[a-z0-9])?$"
        )))
    }
}

fn publish_specs(ports: &[PortMapping]) -> Result<Vec<String>, ArgsError> {
    if ports.len() > MAX_PUBLISHED_PORTS {
        return Err(ArgsError::Unsupported(format!(
            "{} published ports; a container may publish at most {MAX_PUBLISHED_PORTS}",
            ports.len()
        )));
    }
    let mut taken = BTreeSet::new();
    let mut specs = Vec::with_capacity(ports.len());
    for port in ports {
        let proto = match port.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => {
                return Err(ArgsError::Unsupported(format!(
                    "publishing SCTP port {}: --publish forwards only tcp and udp",
                    port.container_port
                )));
            }
        };
        for (which, value) in [("host", port.host_port), ("container", port.container_port)] {
            if value < 2 {
                return Err(ArgsError::Unsupported(format!(
                    "{which} port {value}: --publish takes ports 2 to 65535 (kind's hostPort 0 \
                     or -1 must be resolved to a free port first)"
                )));
            }
        }
        if !taken.insert((port.host_port, port.protocol)) {
            return Err(ArgsError::Unsupported(format!(
                "host port {}/{proto} is published twice; --publish refuses the same host port \
                 and protocol even on different listen addresses",
                port.host_port
            )));
        }
        let host = match port.listen_address {
            None => String::new(),
            Some(IpAddr::V4(v4)) => format!("{v4}:"),
            Some(IpAddr::V6(v6)) => format!("[{v6}]:"),
        };
        specs.push(format!(
            "{host}{}:{}/{proto}",
            port.host_port, port.container_port
        ));
    }
    Ok(specs)
}

fn volume_spec(mount: &Mount) -> Result<String, ArgsError> {
    if mount.propagation != Propagation::None {
        return Err(ArgsError::Unsupported(format!(
            "mount {} → {} with propagation {:?}: virtiofs shares have no mount propagation",
            mount.host_path.display(),
            mount.container_path.display(),
            mount.propagation
        )));
    }
    let host = absolute_utf8(&mount.host_path, "mount host path")?;
    let container = absolute_utf8(&mount.container_path, "mount container path")?;
    for path in [&host, &container] {
        if path.contains(':') {
            return Err(ArgsError::Unsupported(format!(
                "mount path `{path}` contains `:`, the separator of --volume"
            )));
        }
    }
    let mut spec = format!("{host}:{container}");
    if mount.read_only {
        spec.push_str(":ro");
    }
    Ok(spec)
}

fn absolute_utf8(path: &Path, what: &str) -> Result<String, ArgsError> {
    let Some(text) = path.to_str() else {
        return Err(ArgsError::Invalid(format!(
            "{what} {} is not valid UTF-8",
            path.display()
        )));
    };
    if !text.starts_with('/') {
        return Err(ArgsError::Invalid(format!(
            "{what} `{text}` must be an absolute path"
        )));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn control_plane() -> NodeRun {
        NodeRun {
            name: "kina-dev-control-plane".into(),
            cluster: "dev".into(),
            role: Role::ControlPlane,
            image: "kina.local/node:v1.35.0".into(),
            cpus: 2,
            memory_mib: 4096,
            kernel: None,
            network: None,
            ports: vec![PortMapping::api_server(52731)],
            mounts: vec![],
        }
    }

    // The expected vectors follow the flag syntax of apple/container 1.2.1's
    // `Flags.swift`/`Parser.swift` (`[host-ip:]host-port:container-port[/proto]`,
    // `host:container[:ro]`, `NONE`); Apple's CLI cannot run here.
    #[test]
    fn minimal_control_plane_run_args_against_documented_flags() {
        assert_eq!(
            control_plane().run_args().unwrap(),
            strings(&[
                "run",
                "--detach",
                "--name",
                "kina-dev-control-plane",
                "--label",
                "io.kina.cluster=dev",
                "--label",
                "io.kina.role=control-plane",
                "--cpus",
                "2",
                "--memory",
                "4096M",
                "--cap-add",
                "ALL",
                "--masked-path",
                "NONE",
                "--read-only-path",
                "NONE",
                "--publish",
                "127.0.0.1:52731:6443/tcp",
                "kina.local/node:v1.35.0",
            ])
        );
    }

    #[test]
    fn full_worker_run_args_against_documented_flags() {
        let node = NodeRun {
            name: "kina-dev-worker2".into(),
            cluster: "dev".into(),
            role: Role::Worker,
            image: "kina.local/node@sha256:0123".into(),
            cpus: 4,
            memory_mib: 8192,
            kernel: Some("/Users/me/.cache/kina/kernels/vmlinux-6.18-arm64".into()),
            network: Some(network_name("dev")),
            ports: vec![
                PortMapping {
                    listen_address: None,
                    host_port: 8080,
                    container_port: 80,
                    protocol: Protocol::Tcp,
                },
                PortMapping {
                    listen_address: Some(IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0))),
                    host_port: 5353,
                    container_port: 53,
                    protocol: Protocol::Udp,
                },
                PortMapping {
                    listen_address: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                    host_port: 8443,
                    container_port: 443,
                    protocol: Protocol::Tcp,
                },
            ],
            mounts: vec![
                Mount {
                    host_path: "/Users/me/src".into(),
                    container_path: "/src".into(),
                    read_only: false,
                    propagation: Propagation::None,
                },
                Mount {
                    host_path: "/Users/me/ca.pem".into(),
                    container_path: "/etc/kina/ca.pem".into(),
                    read_only: true,
                    propagation: Propagation::None,
                },
            ],
        };
        assert_eq!(
            node.run_args().unwrap(),
            strings(&[
                "run",
                "--detach",
                "--name",
                "kina-dev-worker2",
                "--label",
                "io.kina.cluster=dev",
                "--label",
                "io.kina.role=worker",
                "--cpus",
                "4",
                "--memory",
                "8192M",
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
                "--publish",
                "0.0.0.0:5353:53/udp",
                "--publish",
                "[::1]:8443:443/tcp",
                "--volume",
                "/Users/me/src:/src",
                "--volume",
                "/Users/me/ca.pem:/etc/kina/ca.pem:ro",
                "kina.local/node@sha256:0123",
            ])
        );
        let mut create = node.run_args().unwrap();
        create.remove(1);
        create[0] = "create".into();
        assert_eq!(node.create_args().unwrap(), create);
        assert_eq!(
            start_args("kina-dev-worker2"),
            strings(&["start", "kina-dev-worker2"])
        );
    }

    #[test]
    fn every_flag_exists_in_the_minimum_version() {
        let argv = control_plane().run_args().unwrap();
        assert!(flags_missing_in(&argv, crate::version::MINIMUM).is_empty());
        assert_eq!(
            flags_missing_in(&argv, Version::new(1, 2, 0)),
            vec!["--masked-path", "--read-only-path"]
        );
        assert_eq!(
            flags_missing_in(&argv, Version::new(0, 11, 0)),
            vec!["--cap-add", "--masked-path", "--read-only-path"]
        );
    }

    #[test]
    fn network_create_args_against_documented_flags() {
        assert_eq!(
            network_create_args("kina-dev", "dev", None).unwrap(),
            strings(&[
                "network",
                "create",
                "--label",
                "io.kina.cluster=dev",
                "kina-dev"
            ])
        );
        let subnet = Ipv4Subnet {
            address: Ipv4Addr::new(192, 168, 100, 0),
            prefix_len: 24,
        };
        assert_eq!(
            network_create_args("kina-dev", "dev", Some(subnet)).unwrap(),
            strings(&[
                "network",
                "create",
                "--label",
                "io.kina.cluster=dev",
                "--subnet",
                "192.168.100.0/24",
                "kina-dev",
            ])
        );
        assert_eq!(
            network_delete_args("kina-dev"),
            strings(&["network", "delete", "kina-dev"])
        );
        assert!(network_create_args("Kina_Dev", "dev", None).is_err());
        assert!(network_create_args("kina-dev-", "dev", None).is_err());
    }

    #[test]
    fn what_apple_cannot_publish_is_refused() {
        let with_ports = |ports: Vec<PortMapping>| NodeRun {
            ports,
            ..control_plane()
        };
        let sctp = with_ports(vec![PortMapping {
            listen_address: None,
            host_port: 9000,
            container_port: 9000,
            protocol: Protocol::Sctp,
        }]);
        assert!(matches!(sctp.run_args(), Err(ArgsError::Unsupported(m)) if m.contains("SCTP")));
        let random = with_ports(vec![PortMapping {
            listen_address: None,
            host_port: 0,
            container_port: 80,
            protocol: Protocol::Tcp,
        }]);
        assert!(
            matches!(random.run_args(), Err(ArgsError::Unsupported(m)) if m.contains("hostPort 0"))
        );
        let twice = with_ports(vec![
            PortMapping {
                listen_address: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp,
            },
            PortMapping {
                listen_address: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2))),
                host_port: 8080,
                container_port: 81,
                protocol: Protocol::Tcp,
            },
        ]);
        assert!(matches!(twice.run_args(), Err(ArgsError::Unsupported(m)) if m.contains("twice")));
        // Same host port over tcp and udp is fine.
        let both = with_ports(vec![
            PortMapping {
                listen_address: None,
                host_port: 53,
                container_port: 53,
                protocol: Protocol::Tcp,
            },
            PortMapping {
                listen_address: None,
                host_port: 53,
                container_port: 53,
                protocol: Protocol::Udp,
            },
        ]);
        both.run_args().unwrap();
        let many = with_ports(
            (0..65)
                .map(|i| PortMapping {
                    listen_address: None,
                    host_port: 20000 + i,
                    container_port: 20000 + i,
                    protocol: Protocol::Tcp,
                })
                .collect(),
        );
        assert!(matches!(many.run_args(), Err(ArgsError::Unsupported(m)) if m.contains("64")));
    }

    #[test]
    fn what_apple_cannot_mount_is_refused() {
        let with_mount = |mount: Mount| NodeRun {
            mounts: vec![mount],
            ..control_plane()
        };
        let base = Mount {
            host_path: "/Users/me/data".into(),
            container_path: "/data".into(),
            read_only: false,
            propagation: Propagation::None,
        };
        let shared = with_mount(Mount {
            propagation: Propagation::Bidirectional,
            ..base.clone()
        });
        assert!(
            matches!(shared.run_args(), Err(ArgsError::Unsupported(m)) if m.contains("propagation"))
        );
        let colon = with_mount(Mount {
            host_path: "/Users/me/a:b".into(),
            ..base.clone()
        });
        assert!(matches!(colon.run_args(), Err(ArgsError::Unsupported(_))));
        let relative = with_mount(Mount {
            host_path: "data".into(),
            ..base
        });
        assert!(
            matches!(relative.run_args(), Err(ArgsError::Invalid(m)) if m.contains("absolute"))
        );
    }

    #[test]
    fn invalid_nodes_are_refused() {
        let bad_name = NodeRun {
            name: "-x".into(),
            ..control_plane()
        };
        assert!(bad_name.run_args().is_err());
        let long_name = NodeRun {
            name: "n".repeat(64),
            ..control_plane()
        };
        assert!(long_name.run_args().is_err());
        let small = NodeRun {
            memory_mib: 199,
            ..control_plane()
        };
        assert!(matches!(small.run_args(), Err(ArgsError::Invalid(m)) if m.contains("200 MiB")));
        let no_cpu = NodeRun {
            cpus: 0,
            ..control_plane()
        };
        assert!(no_cpu.run_args().is_err());
        let eq_cluster = NodeRun {
            cluster: "a=b".into(),
            ..control_plane()
        };
        assert!(eq_cluster.run_args().is_err());
        let relative_kernel = NodeRun {
            kernel: Some("vmlinux".into()),
            ..control_plane()
        };
        assert!(relative_kernel.run_args().is_err());
        let flag_image = NodeRun {
            image: "--rm".into(),
            ..control_plane()
        };
        assert!(flag_image.run_args().is_err());
    }
}
