//! Reading a node's boot status and waiting for a cluster's nodes to reach
//! a phase: one reader and one wait loop for every provider, both built on
//! the provider's exec (kind: a node is something you can run a command
//! in) and kina-init's status file.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kina_contract::status::{NodeStatus, PhaseState, STATUS_PATH};

use super::plan::ClusterPlan;
use super::progress::Steps;
use crate::provider::Provider;

/// How often the nodes are looked at while waiting.
const POLL: Duration = Duration::from_millis(500);
/// The longest one read of a node's status may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(30);

/// kina-init's status file on `node`.
pub fn read_status<P: Provider>(
    provider: &P,
    node: &str,
    timeout: Duration,
) -> anyhow::Result<NodeStatus> {
    let out = provider.exec(node, &["cat", STATUS_PATH], &mut std::io::empty(), timeout)?;
    serde_json::from_slice(&out)
        .with_context(|| format!("node {node}: {STATUS_PATH} is not readable yet"))
}

/// Whether `node` runs, and the last phase it finished (or which failed),
/// for listings.
pub fn node_phase<P: Provider>(provider: &P, node: &str) -> (bool, String) {
    if !provider.is_running(node) {
        return (false, "stopped".into());
    }
    match read_status(provider, node, Duration::from_secs(3)) {
        Ok(s) => {
            let phase = match s.failed() {
                Some(f) => format!("{} failed", f.name),
                None => s
                    .phases
                    .iter()
                    .rfind(|p| p.state == PhaseState::Ok)
                    .map(|p| p.name.clone())
                    .unwrap_or_else(|| "booting".into()),
            };
            (true, phase)
        }
        Err(_) => (true, "booting".into()),
    }
}

/// One look at a booting node: `true` once `phase` is done; an error when
/// a phase failed or the node can no longer get there; otherwise `last`
/// says where it is.
fn look<P: Provider>(
    provider: &P,
    node: &str,
    phase: &str,
    left: Duration,
    last: &mut String,
) -> anyhow::Result<bool> {
    if !provider.check_alive(node, last)? {
        return Ok(false);
    }
    match read_status(
        provider,
        node,
        left.clamp(Duration::from_secs(1), STATUS_TIMEOUT),
    ) {
        Ok(s) => {
            if let Some(f) = s.failed() {
                bail!(
                    "node {node}: phase {} failed: {}\n  what to do: {}{}",
                    f.name,
                    f.message,
                    f.hint.clone().unwrap_or_default(),
                    provider
                        .where_to_look(node)
                        .map(|w| format!("\n  {w}"))
                        .unwrap_or_default()
                );
            }
            if s.phase(phase).is_some_and(|p| p.state == PhaseState::Ok) {
                return Ok(true);
            }
            if let Some(p) = s.phases.iter().rfind(|p| p.state != PhaseState::Pending) {
                *last = format!("{} {:?}", p.name, p.state);
            }
        }
        Err(e) => *last = format!("{e:#}"),
    }
    Ok(false)
}

/// Waits until every node of `plan` has finished `phase`, reporting
/// progress through `on_progress(done, total)`; fails with the first node
/// that fails, or names the first that is late. Cancellable: it only
/// awaits between looks at the nodes.
pub async fn wait_for<P: Provider>(
    provider: &P,
    plan: &ClusterPlan,
    phase: &str,
    timeout: Duration,
    mut on_progress: impl FnMut(usize, usize),
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut done = vec![false; plan.nodes.len()];
    let mut last = vec![String::from("no answer yet"); plan.nodes.len()];
    loop {
        for (i, node) in plan.nodes.iter().enumerate() {
            if done[i] {
                continue;
            }
            let left = timeout.saturating_sub(started.elapsed());
            done[i] = tokio::task::block_in_place(|| {
                look(provider, &node.name, phase, left, &mut last[i])
            })?;
        }
        let count = done.iter().filter(|d| **d).count();
        on_progress(count, done.len());
        if count == done.len() {
            return Ok(());
        }
        if started.elapsed() > timeout {
            let (i, node) = plan
                .nodes
                .iter()
                .enumerate()
                .find(|(i, _)| !done[*i])
                .context("no node left to wait for")?;
            bail!(
                "node {} did not reach phase {phase} within {} s (last: {}){}",
                node.name,
                timeout.as_secs(),
                last[i],
                provider
                    .where_to_look(&node.name)
                    .map(|w| format!("; {w}"))
                    .unwrap_or_default()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits for every node to reach the phase the cluster boots to
/// (`--stop-after`, else `ready`), showing `n/m nodes` on the running step.
pub async fn wait_for_boot<P: Provider>(
    provider: &P,
    plan: &ClusterPlan,
    timeout: Duration,
    progress: &Steps,
) -> anyhow::Result<()> {
    let phase = plan.stop_after.as_deref().unwrap_or("ready");
    wait_for(provider, plan, phase, timeout, |done, total| {
        progress.detail(&format!("{done}/{total} nodes"))
    })
    .await
}
