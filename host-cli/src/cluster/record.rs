//! A cluster's record: `<data>/clusters/<name>/cluster.json`, written
//! before the first node is made, so `kina down` finds and removes a
//! cluster whose `up` was interrupted.
//!
//! The record carries a schema number. Records from before it existed
//! (schema 1: QEMU's forwarding and segment types stored as they were) are
//! read and converted; a record from a newer kina is refused naming the
//! file, never guessed at.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kina_contract::node_spec::Role;
use serde::{Deserialize, Serialize};

use super::plan::{Addressing, ApiServer, ClusterPlan, PlannedNode, PortMapping, Protocol};
use crate::dirs::KinaDirs;
use crate::provider::ProviderKind;

/// The layout `cluster.json` is written in.
pub const RECORD_SCHEMA: u32 = 2;

/// The record of one cluster.
pub struct ClusterDir {
    pub dir: PathBuf,
}

#[derive(Serialize)]
struct Written<'a> {
    schema: u32,
    #[serde(flatten)]
    plan: &'a ClusterPlan,
}

impl ClusterDir {
    pub fn new(dirs: &KinaDirs, name: &str) -> Self {
        Self {
            dir: dirs.clusters().join(name),
        }
    }

    pub fn record(&self) -> PathBuf {
        self.dir.join("cluster.json")
    }

    pub fn exists(&self) -> bool {
        self.record().exists()
    }

    /// Takes the cluster's name for a new cluster: its directory is made
    /// with `mkdir`, which only one of two `kina up` of the same name at
    /// once can do.
    pub fn claim(&self, name: &str) -> anyhow::Result<()> {
        if let Some(parent) = self.dir.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        match std::fs::create_dir(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
                "cluster {name} already exists (or is being created); `kina down --name {name}` deletes it"
            ),
            Err(e) => Err(e).with_context(|| format!("creating {}", self.dir.display())),
        }
    }

    pub fn save(&self, plan: &ClusterPlan) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let text = serde_json::to_vec_pretty(&Written {
            schema: RECORD_SCHEMA,
            plan,
        })
        .context("encoding the cluster record")?;
        kina_builder::fsutil::write_atomic(&self.record(), &text)
            .with_context(|| format!("writing {}", self.record().display()))
    }

    pub fn load(&self, name: &str) -> anyhow::Result<ClusterPlan> {
        let path = self.record();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "no cluster {name} (see `kina get clusters`; `kina up --name {name}` creates it)"
            ),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        parse(&bytes, &path).with_context(|| {
            format!(
                "cluster record {} is unreadable; `kina down --name {name}` removes what it can",
                path.display()
            )
        })
    }

    /// Removes the record and everything under the cluster's directory.
    pub fn remove(&self) -> anyhow::Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", self.dir.display()))
            }
            _ => Ok(()),
        }
    }
}

/// A record in any layout this kina knows, as today's plan.
pub fn parse(bytes: &[u8], path: &Path) -> anyhow::Result<ClusterPlan> {
    let value: serde_json::Value = serde_json::from_slice(bytes).context("not JSON")?;
    let schema = match value.get("schema") {
        None => 1,
        Some(s) => s
            .as_u64()
            .with_context(|| format!("`schema` is {s}, not a number"))?,
    };
    match schema {
        1 => Ok(serde_json::from_value::<V1Record>(value)
            .context("not a cluster record of kina's first layout")?
            .into_plan()),
        2 => {
            let mut value = value;
            if let Some(object) = value.as_object_mut() {
                object.remove("schema");
            }
            serde_json::from_value(value).context("not a cluster record of layout 2")
        }
        newer => bail!(
            "{} was written by a newer kina (record layout {newer}; this kina reads layouts 1 to {RECORD_SCHEMA}): \
             use that kina for this cluster, or `kina down` with it",
            path.display()
        ),
    }
}

/// The names of every cluster with a record, sorted.
pub fn names(dirs: &KinaDirs) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dirs.clusters())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("cluster.json").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// Every cluster's record that can be read.
pub fn all(dirs: &KinaDirs) -> Vec<ClusterPlan> {
    names(dirs)
        .iter()
        .filter_map(|n| ClusterDir::new(dirs, n).load(n).ok())
        .collect()
}

/// The first layout: QEMU's `hostfwd` entries and segment stored as the
/// QEMU crate spelled them, a MAC per node, and no schema number.
#[derive(Deserialize)]
struct V1Record {
    #[serde(default)]
    provider: ProviderKind,
    name: String,
    image: String,
    kubernetes_version: Option<String>,
    stop_after: Option<String>,
    api_server: Option<ApiServer>,
    segment: Option<serde_json::Value>,
    nodes: Vec<V1Node>,
}

#[derive(Deserialize)]
struct V1Node {
    name: String,
    role: Role,
    address: Option<Ipv4Addr>,
    pod_cidr: String,
    cpus: u32,
    memory_mib: u32,
    host_forwards: Vec<V1Forward>,
}

#[derive(Deserialize)]
struct V1Forward {
    protocol: Protocol,
    address: Ipv4Addr,
    host_port: u16,
    node_port: u16,
}

impl V1Record {
    /// The MACs are left out: they were `provider::qemu::mac_for` of the
    /// cluster and index, which the QEMU provider derives again, and a
    /// made node keeps its own in its VM record. The segment becomes the
    /// QEMU provider's state, in the shape it reads (`QemuState`).
    fn into_plan(self) -> ClusterPlan {
        ClusterPlan {
            provider: self.provider,
            addressing: match self.provider {
                ProviderKind::Qemu => Addressing::Fixed,
                ProviderKind::Apple => Addressing::AtStart,
            },
            provider_state: self
                .segment
                .map(|segment| serde_json::json!({ "segment": segment })),
            name: self.name,
            image: self.image,
            kubernetes_version: self.kubernetes_version,
            stop_after: self.stop_after,
            api_server: self.api_server,
            image_digest: None,
            kernel_image: None,
            nodes: self
                .nodes
                .into_iter()
                .map(|n| PlannedNode {
                    name: n.name,
                    role: n.role,
                    address: n.address,
                    pod_cidr: n.pod_cidr,
                    cpus: n.cpus,
                    memory_mib: n.memory_mib,
                    port_mappings: n
                        .host_forwards
                        .into_iter()
                        .map(|f| PortMapping {
                            protocol: f.protocol,
                            listen_address: f.address,
                            host_port: f.host_port,
                            container_port: f.node_port,
                        })
                        .collect(),
                    mounts: Vec::new(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::qemu::QemuState;

    fn fixture(name: &str) -> (PathBuf, Vec<u8>) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let bytes = std::fs::read(&path).unwrap();
        (path, bytes)
    }

    /// A record `up` wrote before records had a schema number (kept as a
    /// fixture in the layout that code wrote) reads as the same cluster.
    #[test]
    fn a_qemu_record_of_the_first_layout_is_read_as_the_cluster_it_describes() {
        let (path, bytes) = fixture("cluster-record-v1-qemu.json");
        let plan = parse(&bytes, &path).unwrap();
        assert_eq!(plan.provider, ProviderKind::Qemu);
        assert_eq!(plan.addressing, Addressing::Fixed);
        assert_eq!(plan.kubernetes_version.as_deref(), Some("v1.34.2"));
        assert_eq!(
            plan.api_server,
            Some(ApiServer {
                address: Ipv4Addr::LOCALHOST,
                port: 41023
            })
        );
        let segment = QemuState::of(&plan).unwrap().segment;
        assert_eq!(
            (segment.group, segment.port, segment.subnet.as_str()),
            (Ipv4Addr::new(239, 255, 17, 201), 47311, "10.89.0.0/24")
        );
        assert_eq!(plan.nodes[1].address, Some(Ipv4Addr::new(10, 89, 0, 3)));
        assert_eq!(
            plan.nodes[1].port_mappings,
            [PortMapping {
                protocol: Protocol::Udp,
                listen_address: Ipv4Addr::UNSPECIFIED,
                host_port: 5353,
                container_port: 53,
            }]
        );
        assert_eq!(plan.nodes[0].port_mappings[0].container_port, 6443);
    }

    #[test]
    fn an_apple_record_of_the_first_layout_keeps_addresses_handed_out_at_start() {
        let (path, bytes) = fixture("cluster-record-v1-apple.json");
        let plan = parse(&bytes, &path).unwrap();
        assert_eq!(plan.provider, ProviderKind::Apple);
        assert_eq!(plan.addressing, Addressing::AtStart);
        assert_eq!(plan.provider_state, None);
        assert_eq!(plan.stop_after.as_deref(), Some("containerd"));
        assert_eq!(
            plan.nodes.iter().map(|n| n.address).collect::<Vec<_>>(),
            [Some(Ipv4Addr::new(192, 168, 64, 2)), None]
        );
    }

    #[test]
    fn a_first_layout_record_is_written_back_in_todays_layout_and_read_again_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = KinaDirs::at(dir.path(), dir.path().join("cache"));
        let (path, bytes) = fixture("cluster-record-v1-qemu.json");
        let plan = parse(&bytes, &path).unwrap();
        let record = ClusterDir::new(&dirs, "duo");
        record.save(&plan).unwrap();
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(record.record()).unwrap()).unwrap();
        assert_eq!(written["schema"], RECORD_SCHEMA);
        assert_eq!(record.load("duo").unwrap(), plan);
    }

    #[test]
    fn a_record_of_a_newer_kina_is_refused_naming_the_file_and_what_to_do() {
        let path = Path::new("/data/clusters/duo/cluster.json");
        let err = parse(br#"{"schema": 3, "name": "duo"}"#, path).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("/data/clusters/duo/cluster.json"), "{text}");
        assert!(text.contains("newer kina"), "{text}");
        let dir = tempfile::tempdir().unwrap();
        let dirs = KinaDirs::at(dir.path(), dir.path().join("cache"));
        let record = ClusterDir::new(&dirs, "duo");
        std::fs::create_dir_all(&record.dir).unwrap();
        std::fs::write(record.record(), br#"{"schema": 9}"#).unwrap();
        let err = format!("{:#}", record.load("duo").unwrap_err());
        assert!(err.contains("kina down --name duo"), "{err}");
    }

    #[test]
    fn a_record_that_is_no_known_layout_is_refused_not_misread() {
        let path = Path::new("cluster.json");
        for bytes in [
            &br#"{"schema": "two"}"#[..],
            br#"{"name": "duo"}"#,
            b"not json",
        ] {
            assert!(
                parse(bytes, path).is_err(),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
