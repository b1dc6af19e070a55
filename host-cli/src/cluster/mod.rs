//! Clusters: the plan `kina up` makes, the record it keeps on disk, and the
//! QEMU provider that runs the nodes.
//!
//! A cluster's record lives in `$KINA_DATA_DIR/clusters/<name>/cluster.json`
//! and is written before the first node is made, so `kina down` finds and
//! removes a cluster whose `up` was interrupted; its nodes live where every
//! QEMU node lives (`nodes/<node>`), named in kind's scheme.

pub mod apple;
pub mod plan;
pub mod progress;
pub mod qemu;

use std::path::{Path, PathBuf};

use anyhow::Context;

pub use plan::ClusterPlan;

/// The record of one cluster.
pub struct ClusterDir {
    pub dir: PathBuf,
}

impl ClusterDir {
    pub fn new(data_dir: &Path, name: &str) -> Self {
        Self {
            dir: data_dir.join("clusters").join(name),
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
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => anyhow::bail!(
                "cluster {name} already exists (or is being created); `kina down --name {name}` deletes it"
            ),
            Err(e) => Err(e).with_context(|| format!("creating {}", self.dir.display())),
        }
    }

    pub fn save(&self, plan: &ClusterPlan) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let text = serde_json::to_vec_pretty(plan).context("encoding the cluster record")?;
        kina_builder::fsutil::write_atomic(&self.record(), &text)
            .with_context(|| format!("writing {}", self.record().display()))
    }

    pub fn load(&self, name: &str) -> anyhow::Result<ClusterPlan> {
        let path = self.record();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
                "no cluster {name} (see `kina get clusters`; `kina up --name {name}` creates it)"
            ),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "cluster record {} is unreadable; `kina down --name {name}` removes what it can",
                path.display()
            )
        })
    }
}

/// The names of every cluster with a record, sorted.
pub fn names(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir.join("clusters"))
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
pub fn all(data_dir: &Path) -> Vec<ClusterPlan> {
    names(data_dir)
        .iter()
        .filter_map(|n| ClusterDir::new(data_dir, n).load(n).ok())
        .collect()
}

/// What the cluster commands do to one node, whichever provider runs it.
pub enum Nodes {
    Qemu { data: PathBuf },
    Apple { cli: kina_apple::cli::ContainerCli },
}

impl Nodes {
    pub fn of(plan: &ClusterPlan, data: &Path) -> Self {
        match plan.provider {
            plan::ProviderKind::Qemu => Nodes::Qemu {
                data: data.to_path_buf(),
            },
            plan::ProviderKind::Apple => Nodes::Apple {
                cli: kina_apple::cli::ContainerCli::from_env(),
            },
        }
    }

    /// Runs `argv` on `node`: its standard output, or an error carrying its
    /// standard error.
    pub fn exec(
        &self,
        node: &str,
        argv: &[&str],
        stdin: &mut dyn std::io::Read,
        timeout: std::time::Duration,
    ) -> anyhow::Result<Vec<u8>> {
        match self {
            Nodes::Qemu { data } => qemu::exec_output(data, node, argv, stdin, timeout),
            Nodes::Apple { cli } => apple::exec_output(cli, node, argv, stdin, timeout),
        }
    }

    pub fn running(&self, node: &str) -> bool {
        match self {
            Nodes::Qemu { data } => {
                kina_qemu::node::running_pid(&kina_qemu::node::NodePaths::new(data, node)).is_some()
            }
            Nodes::Apple { cli } => apple::is_running(cli, node),
        }
    }

    pub fn status(
        &self,
        node: &str,
        timeout: std::time::Duration,
    ) -> anyhow::Result<kina_contract::status::NodeStatus> {
        match self {
            Nodes::Qemu { data } => Ok(kina_qemu::node::status(
                &kina_qemu::node::NodePaths::new(data, node),
                node,
                timeout,
            )?),
            Nodes::Apple { cli } => apple::status(cli, node, timeout),
        }
    }
}
