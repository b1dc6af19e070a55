//! `kina start`, `kina stop` and `kina down` of an existing cluster, each
//! as ordered steps (see `sequence`) over the cluster's provider.

use std::time::Duration;

use super::kubeconfig::{self, KubeconfigFiles};
use super::plan::ClusterPlan;
use super::progress::Steps;
use super::record::ClusterDir;
use super::sequence::{self, Sequence};
use super::wait::wait_for_boot;
use crate::dirs::KinaDirs;
use crate::provider::Provider;

/// Ctrl-C does not interrupt these verbs between steps: their steps have
/// nothing to take back.
fn never() -> std::future::Pending<()> {
    std::future::pending()
}

/// What a sequence that cannot be undone failed with.
fn failure(failed: sequence::Failed) -> anyhow::Error {
    failed.error
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartStep {
    Boot,
    Wait,
}

struct Start<'a, P: Provider> {
    provider: &'a P,
    record: ClusterDir,
    plan: ClusterPlan,
    wait: Duration,
    progress: &'a Steps,
}

impl<P: Provider> Sequence for Start<'_, P> {
    type Step = StartStep;

    fn name(&self) -> String {
        format!("Starting cluster \"{}\"", self.plan.name)
    }

    fn steps(&self) -> Vec<StartStep> {
        if self.wait.is_zero() {
            vec![StartStep::Boot]
        } else {
            vec![StartStep::Boot, StartStep::Wait]
        }
    }

    fn title(&self, step: StartStep) -> Option<String> {
        Some(match step {
            StartStep::Boot => format!("Starting {} node(s)", self.plan.nodes.len()),
            StartStep::Wait => format!(
                "Booting nodes up to phase {} 🥾",
                self.plan.stop_after.as_deref().unwrap_or("ready")
            ),
        })
    }

    async fn run(&mut self, step: StartStep) -> anyhow::Result<()> {
        match step {
            StartStep::Boot => {
                let moved = self.provider.start(&mut self.plan).await?;
                self.record.save(&self.plan)?;
                if moved {
                    self.progress
                        .detail("addresses changed; node specs rewritten");
                }
                Ok(())
            }
            StartStep::Wait => {
                wait_for_boot(self.provider, &self.plan, self.wait, self.progress).await
            }
        }
    }
}

/// Boots a stopped cluster again and waits for its nodes; the record
/// follows addresses the provider moved.
pub async fn start<P: Provider>(
    provider: &P,
    dirs: &KinaDirs,
    plan: ClusterPlan,
    wait: Duration,
    progress: &Steps,
) -> anyhow::Result<()> {
    let record = ClusterDir::new(dirs, &plan.name);
    let mut start = Start {
        provider,
        record,
        plan,
        wait,
        progress,
    };
    sequence::run(&mut start, progress, &mut never(), true)
        .await
        .map_err(failure)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopStep {
    PowerOff,
}

struct Stop<'a, P: Provider> {
    provider: &'a P,
    plan: &'a ClusterPlan,
    lines: Vec<String>,
}

impl<P: Provider> Sequence for Stop<'_, P> {
    type Step = StopStep;

    fn name(&self) -> String {
        format!("Stopping cluster \"{}\"", self.plan.name)
    }

    fn steps(&self) -> Vec<StopStep> {
        vec![StopStep::PowerOff]
    }

    fn title(&self, _step: StopStep) -> Option<String> {
        Some(format!("Stopping {} node(s)", self.plan.nodes.len()))
    }

    async fn run(&mut self, _step: StopStep) -> anyhow::Result<()> {
        self.lines = self.provider.stop(self.plan).await?;
        Ok(())
    }
}

/// Shuts every node down in order; a line per node saying how.
pub async fn stop<P: Provider>(
    provider: &P,
    plan: &ClusterPlan,
    progress: &Steps,
) -> anyhow::Result<Vec<String>> {
    let mut stop = Stop {
        provider,
        plan,
        lines: Vec::new(),
    };
    sequence::run(&mut stop, progress, &mut never(), true)
        .await
        .map_err(failure)?;
    Ok(stop.lines)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownStep {
    Nodes,
    Kubeconfig,
    Record,
}

struct Down<'a, P: Provider> {
    provider: &'a P,
    dirs: &'a KinaDirs,
    plan: &'a ClusterPlan,
    kubeconfig: &'a KubeconfigFiles,
    deleted: Vec<String>,
}

impl<P: Provider> Sequence for Down<'_, P> {
    type Step = DownStep;

    fn name(&self) -> String {
        format!("Deleting cluster \"{}\"", self.plan.name)
    }

    fn steps(&self) -> Vec<DownStep> {
        vec![DownStep::Nodes, DownStep::Kubeconfig, DownStep::Record]
    }

    /// kind prints one line for a deletion; so does kina (the caller's).
    fn title(&self, _step: DownStep) -> Option<String> {
        None
    }

    async fn run(&mut self, step: DownStep) -> anyhow::Result<()> {
        match step {
            DownStep::Nodes => {
                self.deleted = self.provider.delete(self.plan).await?;
                Ok(())
            }
            DownStep::Kubeconfig => kubeconfig::remove(&self.plan.name, self.kubeconfig),
            DownStep::Record => ClusterDir::new(self.dirs, &self.plan.name).remove(),
        }
    }
}

/// Removes a cluster: its nodes (killed, not shut down: nothing on them is
/// kept), its kubeconfig entries and its record. Returns the nodes deleted.
pub async fn down<P: Provider>(
    provider: &P,
    dirs: &KinaDirs,
    plan: &ClusterPlan,
    kubeconfig: &KubeconfigFiles,
    progress: &Steps,
) -> anyhow::Result<Vec<String>> {
    let mut down = Down {
        provider,
        dirs,
        plan,
        kubeconfig,
        deleted: Vec::new(),
    };
    sequence::run(&mut down, progress, &mut never(), true)
        .await
        .map_err(failure)?;
    Ok(down.deleted)
}
