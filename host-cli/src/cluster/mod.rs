//! Clusters: the plan `kina up` makes, the record it keeps on disk, and the
//! QEMU provider that runs the nodes.
//!
//! A cluster's record lives in `$KINA_DATA_DIR/clusters/<name>/cluster.json`
//! and is written before the first node is made, so `kina down` finds and
//! removes a cluster whose `up` was interrupted; its nodes live where every
//! QEMU node lives (`nodes/<node>`), named in kind's scheme.

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
