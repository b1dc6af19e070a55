//! The cluster verbs, one file per verb: each reads its arguments and the
//! cluster's record, opens the cluster's provider and calls
//! `crate::cluster`, which drives the nodes through the `Provider` seam.

pub mod down;
pub mod get;
pub mod kubeconfig;
pub mod lifecycle;
pub mod load;
pub mod up;

use std::time::Duration;

use anyhow::Context;

use crate::cluster::{ClusterDir, ClusterPlan};
use crate::dirs::KinaDirs;
use crate::provider::AnyProvider;

/// kind's `--wait` takes Go durations; `0` means do not wait.
pub fn parse_wait(text: &str) -> anyhow::Result<Duration> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text)
        .with_context(|| format!("--wait {text}: expected a duration such as 90s, 10m or 1h30m"))
}

/// The cluster `name`'s record and the provider that runs it.
fn open(dirs: &KinaDirs, name: &str) -> anyhow::Result<(AnyProvider, ClusterPlan)> {
    let plan = ClusterDir::new(dirs, name).load(name)?;
    Ok((AnyProvider::of(plan.provider, dirs), plan))
}
