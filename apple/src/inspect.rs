//! Reading `container list --all --format json` and `container inspect`.
//!
//! Both print a JSON array with one element per container, and the element
//! changed shape at 1.0.0 (apple/container#1656, "Conform containers to
//! ManagedResource"):
//!
//! - **0.8.0 – 0.12.x** (`PrintableContainer` in
//!   `Sources/ContainerCommands/Container/ContainerList.swift`):
//!   `{ "status": "running", "configuration": {…}, "networks": [Attachment],
//!   "startedDate": <number> }`. `status` is a bare `RuntimeStatus` string,
//!   `networks` sits at the top level, there is no top-level `id`, and dates
//!   use `JSONEncoder`'s default (seconds since 2001-01-01 as a number); keys
//!   are unsorted. In 0.8 and 0.9 `list --format json` ignores `--all` and
//!   prints every container.
//! - **1.0.0 and later** (`ManagedContainer` in
//!   `Sources/ContainerResource/Container/ManagedContainer.swift`, status in
//!   `ContainerStatus.swift`): `{ "id", "configuration": {…}, "status": {
//!   "state": "running", "networks": [Attachment], "startedDate": "<ISO
//!   8601>" } }`, keys sorted; `inspect` pretty-prints, `list` is compact.
//!   Since 1.0.0 `inspect` fails for an unknown name (0.x printed `[]`).
//!
//! `Attachment` (`Sources/ContainerResource/Network/Attachment.swift`):
//! `network`, `hostname`, `ipv4Address` (a CIDR string, `"192.168.64.3/24"`;
//! Swift's encoder escapes the slash as `\/`), `ipv4Gateway`, optional
//! `ipv6Address`, `macAddress`, `mtu` (0.12.0+), `variant` (1.2.0+).
//! Before 0.8.0 the address fields were `address`/`gateway`, and Apple's own
//! decoder still accepts those, so this one does too.
//!
//! `configuration` (`ContainerConfiguration.swift`) carries `id` and
//! `labels` (a string map) in every version. `RuntimeStatus` is one of
//! `unknown`, `stopped`, `running`, `stopping` throughout.
//!
//! A stopped container has no attachments: its IP is released on stop and
//! may differ after the next start, so kina re-reads addresses after every
//! start.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use crate::kind_of;
use serde_json::{Map, Value};

use crate::{LABEL_CLUSTER, LABEL_ROLE};

/// `list --all --format json`: every container, running or not.
pub const LIST_ARGS: [&str; 4] = ["list", "--all", "--format", "json"];

/// `inspect <names…>` (always JSON).
pub fn inspect_args<S: AsRef<str>>(names: &[S]) -> Vec<String> {
    let mut argv = vec!["inspect".to_string()];
    argv.extend(names.iter().map(|n| n.as_ref().to_string()));
    argv
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    Stopped,
    Stopping,
    Unknown,
    /// A state this version of kina does not know, as printed.
    Other(String),
}

impl State {
    fn from_apple(s: &str) -> Self {
        match s {
            "running" => State::Running,
            "stopped" => State::Stopped,
            "stopping" => State::Stopping,
            "unknown" => State::Unknown,
            other => State::Other(other.to_string()),
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Running => "running",
            State::Stopped => "stopped",
            State::Stopping => "stopping",
            State::Unknown => "unknown",
            State::Other(s) => s,
        })
    }
}

/// Which output shape a container was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// 0.8.0 – 0.12.x: `status` string, top-level `networks`.
    Flat,
    /// 1.0.0+: `status { state, networks }`.
    StatusObject,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The container ID, which is the name given with `--name`.
    pub name: String,
    pub state: State,
    /// IPv4 addresses, one per network attachment, in attachment order (the
    /// first is the one `--publish` forwards to).
    pub addresses: Vec<Ipv4Addr>,
    pub labels: BTreeMap<String, String>,
    pub shape: Shape,
}

impl NodeInfo {
    /// The `io.kina.cluster` label.
    pub fn cluster(&self) -> Option<&str> {
        self.labels.get(LABEL_CLUSTER).map(String::as_str)
    }

    /// The `io.kina.role` label.
    pub fn role(&self) -> Option<&str> {
        self.labels.get(LABEL_ROLE).map(String::as_str)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("container list/inspect did not print JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error(
        "container list/inspect output has no field `{path}`{}; kina reads the shapes of \
         Apple container 0.8–0.12 and 1.x, so this may be a newer, unsupported shape",
        for_container(.container)
    )]
    MissingField {
        path: String,
        container: Option<String>,
    },
    #[error(
        "container list/inspect output: `{path}`{} is {found}, expected {expected}",
        for_container(.container)
    )]
    WrongType {
        path: String,
        container: Option<String>,
        expected: &'static str,
        found: &'static str,
    },
    #[error(
        "container list/inspect output: `{path}`{} is `{value}`, not an IPv4 address or CIDR",
        for_container(.container)
    )]
    BadAddress {
        path: String,
        container: Option<String>,
        value: String,
    },
    #[error("no container named `{0}`")]
    NotFound(String),
}

fn for_container(container: &Option<String>) -> String {
    match container {
        Some(name) => format!(" (container {name})"),
        None => String::new(),
    }
}

/// Parses the output of `container list --all --format json` or
/// `container inspect …`, either shape. Empty output reads as no containers.
pub fn parse_containers(json: &str) -> Result<Vec<NodeInfo>, InspectError> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let value: Value = serde_json::from_str(json).map_err(InspectError::NotJson)?;
    let root = Node {
        value: &value,
        path: String::new(),
        container: None,
    };
    let entries = root.array()?;
    entries.into_iter().map(container).collect()
}

/// The container called `name` in `inspect` (or `list`) output.
pub fn parse_inspect(json: &str, name: &str) -> Result<NodeInfo, InspectError> {
    parse_containers(json)?
        .into_iter()
        .find(|n| n.name == name)
        .ok_or_else(|| InspectError::NotFound(name.to_string()))
}

/// The nodes of one cluster, by the `io.kina.cluster` label.
pub fn cluster_nodes<'a>(nodes: &'a [NodeInfo], cluster: &str) -> Vec<&'a NodeInfo> {
    nodes
        .iter()
        .filter(|n| n.cluster() == Some(cluster))
        .collect()
}

fn container(entry: Node<'_>) -> Result<NodeInfo, InspectError> {
    entry.object()?;
    let configuration = entry.field("configuration")?;
    // The name comes first so that later errors can say which container.
    let name = match entry.optional("id") {
        Some(id) => id.string()?.to_string(),
        None => configuration.field("id")?.string()?.to_string(),
    };
    let entry = entry.named(&name);
    let configuration = configuration.named(&name);

    let status = entry.field("status")?;
    let (shape, state, networks) = match status.value {
        Value::String(s) => (Shape::Flat, s.as_str(), entry.field("networks")?),
        Value::Object(_) => (
            Shape::StatusObject,
            status.field("state")?.string()?,
            status.field("networks")?,
        ),
        other => {
            return Err(InspectError::WrongType {
                path: status.path,
                container: Some(name),
                expected: "a string (0.8–0.12) or an object with `state` (1.x)",
                found: kind_of(other),
            });
        }
    };

    let mut addresses = Vec::new();
    for attachment in networks.array()? {
        let address = match attachment.optional("ipv4Address") {
            Some(a) => a,
            None => match attachment.optional("address") {
                Some(a) => a,
                None => attachment.field("ipv4Address")?,
            },
        };
        addresses.push(ipv4(&address)?);
    }

    let mut labels = BTreeMap::new();
    if let Some(map) = configuration.optional("labels") {
        for (key, value) in map.object()? {
            let value = map.child(key, value).string()?.to_string();
            labels.insert(key.clone(), value);
        }
    }

    Ok(NodeInfo {
        name,
        state: State::from_apple(state),
        addresses,
        labels,
        shape,
    })
}

fn ipv4(node: &Node<'_>) -> Result<Ipv4Addr, InspectError> {
    let text = node.string()?;
    let address = text.split_once('/').map_or(text, |(a, _)| a);
    address.parse().map_err(|_| InspectError::BadAddress {
        path: node.path.clone(),
        container: node.container.clone(),
        value: text.to_string(),
    })
}

/// A JSON value with the path that reached it, for error messages.
#[derive(Clone)]
struct Node<'a> {
    value: &'a Value,
    path: String,
    container: Option<String>,
}

impl<'a> Node<'a> {
    fn named(self, name: &str) -> Self {
        Node {
            container: Some(name.to_string()),
            ..self
        }
    }

    fn child(&self, key: &str, value: &'a Value) -> Node<'a> {
        let path = if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        };
        Node {
            value,
            path,
            container: self.container.clone(),
        }
    }

    fn optional(&self, key: &str) -> Option<Node<'a>> {
        self.value
            .as_object()
            .and_then(|o| o.get(key))
            .map(|v| self.child(key, v))
    }

    fn field(&self, key: &str) -> Result<Node<'a>, InspectError> {
        self.object()?;
        self.optional(key)
            .ok_or_else(|| InspectError::MissingField {
                path: self.child(key, &Value::Null).path,
                container: self.container.clone(),
            })
    }

    fn wrong(&self, expected: &'static str) -> InspectError {
        InspectError::WrongType {
            path: if self.path.is_empty() {
                "(top level)".to_string()
            } else {
                self.path.clone()
            },
            container: self.container.clone(),
            expected,
            found: kind_of(self.value),
        }
    }

    fn object(&self) -> Result<&'a Map<String, Value>, InspectError> {
        self.value
            .as_object()
            .ok_or_else(|| self.wrong("an object"))
    }

    fn string(&self) -> Result<&'a str, InspectError> {
        self.value.as_str().ok_or_else(|| self.wrong("a string"))
    }

    fn array(&self) -> Result<Vec<Node<'a>>, InspectError> {
        let items = self
            .value
            .as_array()
            .ok_or_else(|| self.wrong("an array"))?;
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, value)| Node {
                value,
                path: format!("{}[{i}]", self.path),
                container: self.container.clone(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // 0.8.0–0.11.x `list --format json`: `JSONEncoder().encode([PrintableContainer])`
    // with default options: keys in declaration order (status, configuration,
    // networks, startedDate), `/` escaped as `\/`, dates as seconds since
    // 2001-01-01, nil optionals left out, no `mtu` in `Attachment`. Written
    // from ContainerList.swift, ContainerConfiguration.swift and
    // Attachment.swift at tag 0.8.0 (containerization 0.21.1 encodes
    // CIDRv4/IPv4Address/MACAddress as their description strings).
    const LIST_0_8: &str = r#"[{"status":"running","configuration":{"id":"kina-dev-control-plane","image":{"reference":"kina.local\/node:v1.35.0","descriptor":{"mediaType":"application\/vnd.oci.image.index.v1+json","digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","size":1609}},"mounts":[],"publishedPorts":[{"hostAddress":"127.0.0.1","hostPort":52731,"containerPort":6443,"proto":"tcp","count":1}],"publishedSockets":[],"labels":{"io.kina.cluster":"dev","io.kina.role":"control-plane"},"sysctls":{},"networks":[{"network":"default","options":{"hostname":"kina-dev-control-plane"}}],"rosetta":false,"initProcess":{"executable":"\/sbin\/init","arguments":[],"environment":["PATH=\/usr\/local\/sbin:\/usr\/local\/bin:\/usr\/sbin:\/usr\/bin:\/sbin:\/bin"],"workingDirectory":"\/","terminal":false,"user":{"id":{"uid":0,"gid":0}},"supplementalGroups":[],"rlimits":[]},"platform":{"architecture":"arm64","os":"linux"},"resources":{"cpus":2,"memoryInBytes":4294967296},"runtimeHandler":"container-runtime-linux","virtualization":false,"ssh":false,"readOnly":false},"networks":[{"network":"default","hostname":"kina-dev-control-plane","ipv4Address":"192.168.64.3\/24","ipv4Gateway":"192.168.64.1","ipv6Address":"fd9e:5a1c:47f2:d1e0:c4ad:8bff:fe2a:1c3e\/64","macAddress":"c6:ad:8b:2a:1c:3e"}],"startedDate":802051200.123456},{"status":"stopped","configuration":{"id":"kina-dev-worker","image":{"reference":"kina.local\/node:v1.35.0","descriptor":{"mediaType":"application\/vnd.oci.image.index.v1+json","digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","size":1609}},"mounts":[],"publishedPorts":[],"publishedSockets":[],"labels":{"io.kina.cluster":"dev","io.kina.role":"worker"},"sysctls":{},"networks":[{"network":"default","options":{"hostname":"kina-dev-worker"}}],"rosetta":false,"initProcess":{"executable":"\/sbin\/init","arguments":[],"environment":[],"workingDirectory":"\/","terminal":false,"user":{"id":{"uid":0,"gid":0}},"supplementalGroups":[],"rlimits":[]},"platform":{"architecture":"arm64","os":"linux"},"resources":{"cpus":2,"memoryInBytes":2147483648},"runtimeHandler":"container-runtime-linux","virtualization":false,"ssh":false,"readOnly":false},"networks":[]}]"#;

    // 0.12.x `inspect`: `Output.renderJSON([PrintableContainer])`, compact,
    // unsorted, dates as numbers (JSONOptions' defaults at 0.12.0);
    // `Attachment` now has `mtu` and its own encoder; the configuration has
    // `useInit`, `capAdd`, `capDrop`. From ContainerInspect.swift,
    // OutputRendering.swift and Attachment.swift at tag 0.12.0.
    const INSPECT_0_12: &str = r#"[{"status":"running","configuration":{"id":"kina-dev-worker","image":{"reference":"kina.local\/node:v1.35.0","descriptor":{"mediaType":"application\/vnd.oci.image.index.v1+json","digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","size":1609}},"mounts":[],"publishedPorts":[],"publishedSockets":[],"labels":{"io.kina.cluster":"dev","io.kina.role":"worker"},"sysctls":{},"networks":[{"network":"kina-dev","options":{"hostname":"kina-dev-worker"}}],"rosetta":false,"initProcess":{"executable":"\/sbin\/init","arguments":[],"environment":[],"workingDirectory":"\/","terminal":false,"user":{"id":{"uid":0,"gid":0}},"supplementalGroups":[],"rlimits":[]},"platform":{"architecture":"arm64","os":"linux"},"resources":{"cpus":4,"memoryInBytes":8589934592},"runtimeHandler":"container-runtime-linux","virtualization":false,"ssh":false,"readOnly":false,"useInit":false,"capAdd":["ALL"],"capDrop":[]},"networks":[{"network":"kina-dev","hostname":"kina-dev-worker","ipv4Address":"192.168.65.4\/24","ipv4Gateway":"192.168.65.1","macAddress":"5e:21:9a:44:07:b2","mtu":1280}],"startedDate":802137600.5}]"#;

    // 1.0.0/1.1.0 `list --format json`: `Output.renderJSON([ManagedContainer])`
    // with `.compact` = sorted keys, ISO 8601 dates; top-level `id`, and
    // `status { networks, startedDate, state }` (ManagedContainer.swift,
    // ContainerStatus.swift, ContainerList.swift at tag 1.0.0). The second
    // container is not a kina node.
    const LIST_1_0: &str = r#"[{"configuration":{"capAdd":["ALL"],"capDrop":[],"creationDate":"2026-06-20T10:00:00Z","id":"kina-dev-control-plane","image":{"descriptor":{"digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","mediaType":"application\/vnd.oci.image.index.v1+json","size":1609},"reference":"kina.local\/node:v1.35.0"},"initProcess":{"arguments":[],"environment":[],"executable":"\/sbin\/init","rlimits":[],"supplementalGroups":[],"terminal":false,"user":{"id":{"gid":0,"uid":0}},"workingDirectory":"\/"},"labels":{"io.kina.cluster":"dev","io.kina.role":"control-plane"},"mounts":[],"networks":[{"network":"kina-dev","options":{"hostname":"kina-dev-control-plane"}}],"platform":{"architecture":"arm64","os":"linux"},"publishedPorts":[{"containerPort":6443,"count":1,"hostAddress":"127.0.0.1","hostPort":52731,"proto":"tcp"}],"publishedSockets":[],"readOnly":false,"resources":{"cpuOverhead":1,"cpus":2,"memoryInBytes":4294967296},"rosetta":false,"runtimeHandler":"container-runtime-linux","ssh":false,"sysctls":{},"useInit":false,"virtualization":false},"id":"kina-dev-control-plane","status":{"networks":[{"hostname":"kina-dev-control-plane","ipv4Address":"192.168.65.2\/24","ipv4Gateway":"192.168.65.1","macAddress":"82:17:0c:5d:e1:90","mtu":1280,"network":"kina-dev"}],"startedDate":"2026-06-20T10:00:02Z","state":"running"}},{"configuration":{"capAdd":[],"capDrop":[],"creationDate":"2026-06-19T08:00:00Z","id":"buildkit","image":{"descriptor":{"digest":"sha256:89abcdef0123456789abcdef0123456789abcdef0123456789abcdef01234567","mediaType":"application\/vnd.oci.image.index.v1+json","size":1609},"reference":"ghcr.io\/apple\/container-builder-shim\/builder:0.7.0"},"initProcess":{"arguments":[],"environment":[],"executable":"\/usr\/local\/bin\/container-builder-shim","rlimits":[],"supplementalGroups":[],"terminal":false,"user":{"id":{"gid":0,"uid":0}},"workingDirectory":"\/"},"labels":{},"mounts":[],"networks":[{"network":"default","options":{"hostname":"buildkit"}}],"platform":{"architecture":"arm64","os":"linux"},"publishedPorts":[],"publishedSockets":[],"readOnly":false,"resources":{"cpuOverhead":1,"cpus":2,"memoryInBytes":2147483648},"rosetta":true,"runtimeHandler":"container-runtime-linux","ssh":false,"sysctls":{},"useInit":false,"virtualization":false},"id":"buildkit","status":{"networks":[],"state":"stopped"}}]"#;

    // 1.2.x `inspect`: `Output.renderJSON(..., options: .pretty)` =
    // `[.prettyPrinted, .sortedKeys]`, which Swift prints with two-space
    // indents and `" : "`; 1.2.0 adds `variant` to `Attachment`, 1.2.1
    // `maskedPaths`/`readonlyPaths` (empty after `NONE`) to the
    // configuration. From ContainerInspect.swift, Attachment.swift and
    // ContainerConfiguration.swift at tag 1.2.2.
    const INSPECT_1_2: &str = r#"[
  {
    "configuration" : {
      "capAdd" : [
        "ALL"
      ],
      "capDrop" : [

      ],
      "creationDate" : "2026-08-10T09:30:00Z",
      "id" : "kina-dev-worker",
      "image" : {
        "descriptor" : {
          "digest" : "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
          "mediaType" : "application\/vnd.oci.image.index.v1+json",
          "size" : 1609
        },
        "reference" : "kina.local\/node:v1.35.0"
      },
      "initProcess" : {
        "arguments" : [

        ],
        "environment" : [

        ],
        "executable" : "\/sbin\/init",
        "rlimits" : [

        ],
        "supplementalGroups" : [

        ],
        "terminal" : false,
        "user" : {
          "id" : {
            "gid" : 0,
            "uid" : 0
          }
        },
        "workingDirectory" : "\/"
      },
      "labels" : {
        "io.kina.cluster" : "dev",
        "io.kina.role" : "worker"
      },
      "maskedPaths" : [

      ],
      "mounts" : [

      ],
      "networks" : [
        {
          "network" : "kina-dev",
          "options" : {
            "hostname" : "kina-dev-worker"
          }
        }
      ],
      "platform" : {
        "architecture" : "arm64",
        "os" : "linux"
      },
      "publishedPorts" : [

      ],
      "publishedSockets" : [

      ],
      "readOnly" : false,
      "readonlyPaths" : [

      ],
      "resources" : {
        "cpuOverhead" : 1,
        "cpus" : 4,
        "memoryInBytes" : 8589934592
      },
      "rosetta" : false,
      "runtimeHandler" : "container-runtime-linux",
      "ssh" : false,
      "sysctls" : {

      },
      "useInit" : false,
      "virtualization" : false
    },
    "id" : "kina-dev-worker",
    "status" : {
      "networks" : [
        {
          "hostname" : "kina-dev-worker",
          "ipv4Address" : "192.168.65.7\/24",
          "ipv4Gateway" : "192.168.65.1",
          "ipv6Address" : "fd9e:5a1c:47f2:d1e0:9c3b:1eff:fe0a:77d1\/64",
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

    #[test]
    fn list_0_8_flat_shape_against_documented_json() {
        let nodes = parse_containers(LIST_0_8).unwrap();
        assert_eq!(
            nodes,
            vec![
                NodeInfo {
                    name: "kina-dev-control-plane".into(),
                    state: State::Running,
                    addresses: vec![Ipv4Addr::new(192, 168, 64, 3)],
                    labels: labels(&[
                        ("io.kina.cluster", "dev"),
                        ("io.kina.role", "control-plane")
                    ]),
                    shape: Shape::Flat,
                },
                NodeInfo {
                    name: "kina-dev-worker".into(),
                    state: State::Stopped,
                    addresses: vec![],
                    labels: labels(&[("io.kina.cluster", "dev"), ("io.kina.role", "worker")]),
                    shape: Shape::Flat,
                },
            ]
        );
        assert_eq!(nodes[0].cluster(), Some("dev"));
        assert_eq!(nodes[1].role(), Some("worker"));
    }

    #[test]
    fn inspect_0_12_flat_shape_with_mtu_against_documented_json() {
        let node = parse_inspect(INSPECT_0_12, "kina-dev-worker").unwrap();
        assert_eq!(node.state, State::Running);
        assert_eq!(node.addresses, vec![Ipv4Addr::new(192, 168, 65, 4)]);
        assert_eq!(node.shape, Shape::Flat);
        assert_eq!(node.role(), Some("worker"));
    }

    #[test]
    fn list_1_0_status_object_shape_against_documented_json() {
        let nodes = parse_containers(LIST_1_0).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(
            nodes[0],
            NodeInfo {
                name: "kina-dev-control-plane".into(),
                state: State::Running,
                addresses: vec![Ipv4Addr::new(192, 168, 65, 2)],
                labels: labels(&[
                    ("io.kina.cluster", "dev"),
                    ("io.kina.role", "control-plane")
                ]),
                shape: Shape::StatusObject,
            }
        );
        assert_eq!(nodes[1].name, "buildkit");
        assert_eq!(nodes[1].state, State::Stopped);
        assert!(nodes[1].labels.is_empty());
        let dev = cluster_nodes(&nodes, "dev");
        assert_eq!(dev.len(), 1);
        assert_eq!(dev[0].name, "kina-dev-control-plane");
        assert!(cluster_nodes(&nodes, "other").is_empty());
    }

    #[test]
    fn inspect_1_2_pretty_printed_against_documented_json() {
        let node = parse_inspect(INSPECT_1_2, "kina-dev-worker").unwrap();
        assert_eq!(
            node,
            NodeInfo {
                name: "kina-dev-worker".into(),
                state: State::Running,
                addresses: vec![Ipv4Addr::new(192, 168, 65, 7)],
                labels: labels(&[("io.kina.cluster", "dev"), ("io.kina.role", "worker")]),
                shape: Shape::StatusObject,
            }
        );
        assert!(matches!(
            parse_inspect(INSPECT_1_2, "kina-dev-worker9"),
            Err(InspectError::NotFound(n)) if n == "kina-dev-worker9"
        ));
    }

    #[test]
    fn pre_0_8_attachment_address_field_against_documented_json() {
        // Before 0.8.0 (`Attachment` at tag 0.7.1: `address`, `gateway`,
        // plain strings); also the example in apple/container docs/how-to.md.
        let json = r#"[{"status":"running","networks":[{"address":"192.168.64.3/24","gateway":"192.168.64.1","hostname":"my-web-server.test.","network":"default"}],"configuration":{"mounts":[],"hostname":"my-web-server","id":"my-web-server","resources":{"cpus":4,"memoryInBytes":1073741824}}}]"#;
        let node = parse_inspect(json, "my-web-server").unwrap();
        assert_eq!(node.addresses, vec![Ipv4Addr::new(192, 168, 64, 3)]);
        assert!(node.labels.is_empty());
    }

    #[test]
    fn states_and_empty_output_against_documented_json() {
        let json = r#"[{"id":"a","configuration":{"id":"a"},"status":{"state":"stopping","networks":[]}},{"id":"b","configuration":{"id":"b"},"status":{"state":"unknown","networks":[]}},{"id":"c","configuration":{"id":"c"},"status":{"state":"paused","networks":[]}}]"#;
        let states: Vec<State> = parse_containers(json)
            .unwrap()
            .into_iter()
            .map(|n| n.state)
            .collect();
        assert_eq!(
            states,
            vec![
                State::Stopping,
                State::Unknown,
                State::Other("paused".into())
            ]
        );
        assert!(parse_containers("[]").unwrap().is_empty());
        assert!(parse_containers("\n").unwrap().is_empty());
        assert_eq!(
            inspect_args(&["a", "b"]),
            vec!["inspect".to_string(), "a".into(), "b".into()]
        );
    }

    #[test]
    fn unknown_shapes_name_the_missing_field() {
        let no_status =
            r#"[{"id":"n1","configuration":{"id":"n1"},"runtime":{"state":"running"}}]"#;
        let err = parse_containers(no_status).unwrap_err();
        assert!(
            matches!(&err, InspectError::MissingField { path, container } if path == "[0].status" && container.as_deref() == Some("n1")),
            "{err:?}"
        );
        assert!(err.to_string().contains("`[0].status`"), "{err}");
        assert!(err.to_string().contains("container n1"), "{err}");

        let no_state = r#"[{"id":"n1","configuration":{"id":"n1"},"status":{"phase":"running","networks":[]}}]"#;
        let err = parse_containers(no_state).unwrap_err();
        assert!(err.to_string().contains("`[0].status.state`"), "{err}");

        let no_networks =
            r#"[{"id":"n1","configuration":{"id":"n1"},"status":{"state":"running"}}]"#;
        let err = parse_containers(no_networks).unwrap_err();
        assert!(err.to_string().contains("`[0].status.networks`"), "{err}");

        let flat_no_networks = r#"[{"status":"running","configuration":{"id":"n1"}}]"#;
        let err = parse_containers(flat_no_networks).unwrap_err();
        assert!(err.to_string().contains("`[0].networks`"), "{err}");

        let no_address = r#"[{"id":"n1","configuration":{"id":"n1"},"status":{"state":"running","networks":[{"network":"default","ipv4":"192.168.64.2/24"}]}}]"#;
        let err = parse_containers(no_address).unwrap_err();
        assert!(
            err.to_string()
                .contains("`[0].status.networks[0].ipv4Address`"),
            "{err}"
        );

        let no_id = r#"[{"status":"running","networks":[],"configuration":{"name":"n1"}}]"#;
        let err = parse_containers(no_id).unwrap_err();
        assert!(err.to_string().contains("`[0].configuration.id`"), "{err}");

        let status_number = r#"[{"id":"n1","configuration":{"id":"n1"},"status":3}]"#;
        let err = parse_containers(status_number).unwrap_err();
        assert!(
            matches!(&err, InspectError::WrongType { path, .. } if path == "[0].status"),
            "{err:?}"
        );

        let bad_ip = r#"[{"id":"n1","configuration":{"id":"n1"},"status":{"state":"running","networks":[{"ipv4Address":"fd00::1/64"}]}}]"#;
        assert!(matches!(
            parse_containers(bad_ip).unwrap_err(),
            InspectError::BadAddress { .. }
        ));

        let label_number = r#"[{"id":"n1","configuration":{"id":"n1","labels":{"x":1}},"status":{"state":"running","networks":[]}}]"#;
        let err = parse_containers(label_number).unwrap_err();
        assert!(
            err.to_string().contains("`[0].configuration.labels.x`"),
            "{err}"
        );

        let not_array = r#"{"containers":[]}"#;
        let err = parse_containers(not_array).unwrap_err();
        assert!(err.to_string().contains("expected an array"), "{err}");

        assert!(matches!(
            parse_containers("Error: container not found: x").unwrap_err(),
            InspectError::NotJson(_)
        ));
    }
}
