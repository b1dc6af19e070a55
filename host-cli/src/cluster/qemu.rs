//! A cluster's nodes as QEMU VMs: made and booted in parallel, waited for
//! together, and removed without a trace.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kina_builder::fetch::cache::Cache;
use kina_builder::fetch::mirror::DebianMirrors;
use kina_builder::kernel::{KernelLock, fetch_kernel, kernel_lock_path};
use kina_builder::platform::Arch;
use kina_contract::node_spec::NodeSpec;
use kina_contract::status::NodeStatus;
use kina_qemu::accel::AccelChoice;
use kina_qemu::node::{self, CreateOptions, NodePaths, PHASE_POLL};

use super::plan::ClusterPlan;

/// What every node of a cluster shares.
#[derive(Clone)]
pub struct NodeInputs {
    pub arch: Arch,
    pub kernel_recipe: PathBuf,
    pub mirrors: DebianMirrors,
    pub cache: Cache,
    pub accel: AccelChoice,
    pub disk_size: u64,
}

/// Fetches the cluster's kernel once, so the nodes made in parallel find it
/// in the cache instead of downloading it side by side. Returns its release.
pub async fn ensure_kernel(inputs: &NodeInputs) -> anyhow::Result<String> {
    let lock_path = kernel_lock_path(&inputs.kernel_recipe);
    let lock = KernelLock::read(&lock_path, &inputs.kernel_recipe)?;
    let kernel = fetch_kernel(&lock, inputs.arch, &inputs.cache, &inputs.mirrors).await?;
    Ok(kernel.release)
}

/// Counts node creations still running. A creation cannot be cancelled
/// half-way (making a disk or starting QEMU blocks its thread), so after a
/// failure or Ctrl-C the caller waits for the count to reach zero before
/// removing the nodes: otherwise a VM started after the clean-up would be
/// left running.
#[derive(Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl InFlight {
    fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.0.clone())
    }

    /// Waits until no creation runs any more, or `timeout` has passed;
    /// returns whether they all ended.
    pub async fn settle(&self, timeout: Duration) -> bool {
        let started = Instant::now();
        while self.0.load(Ordering::SeqCst) > 0 {
            if started.elapsed() > timeout {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    }
}

/// Makes and boots every node of `plan` at once, each with its spec.
/// Stops at the first failure; the nodes already made stay for the caller
/// to remove (or keep, with `--retain`), once `in_flight` has settled.
pub async fn create_nodes(
    data: &Path,
    plan: &ClusterPlan,
    specs: Vec<NodeSpec>,
    inputs: &NodeInputs,
    in_flight: &InFlight,
) -> anyhow::Result<()> {
    // Plain spawned tasks, not a JoinSet: dropping this future (Ctrl-C)
    // must not abort a creation in the middle; `in_flight` tracks them.
    let mut tasks = Vec::new();
    for (node, spec) in plan.nodes.iter().zip(specs) {
        let opts = CreateOptions {
            name: node.name.clone(),
            image: plan.image.clone(),
            arch: inputs.arch,
            kernel_recipe: inputs.kernel_recipe.clone(),
            mirrors: inputs.mirrors.clone(),
            cache: inputs.cache.clone(),
            accel: inputs.accel,
            cpus: node.cpus,
            memory_mib: node.memory_mib,
            disk_size: inputs.disk_size,
            spec,
            host_forwards: node.host_forwards.clone(),
            segment: plan.segment.as_ref().map(|s| s.for_node(node)),
            extra_files: vec![],
        };
        let data = data.to_path_buf();
        let guard = in_flight.enter();
        tasks.push(tokio::spawn(async move {
            let created = node::create(&data, opts).await;
            drop(guard);
            created
        }));
    }
    for task in tasks {
        task.await
            .context("a node's creation stopped unexpectedly")??;
    }
    Ok(())
}

/// Waits until every node has finished `phase`, reporting progress through
/// `on_progress(done, total)`. Fails with the first node that fails.
/// Cancellable: it only awaits between looks at the nodes.
pub async fn wait_for(
    data: &Path,
    plan: &ClusterPlan,
    phase: &str,
    timeout: Duration,
    mut on_progress: impl FnMut(usize, usize),
) -> anyhow::Result<Vec<NodeStatus>> {
    let started = Instant::now();
    let paths: Vec<NodePaths> = plan
        .nodes
        .iter()
        .map(|n| NodePaths::new(data, &n.name))
        .collect();
    let mut done: Vec<Option<NodeStatus>> = vec![None; paths.len()];
    let mut last = vec!["no answer yet".to_string(); paths.len()];
    loop {
        for (i, node) in plan.nodes.iter().enumerate() {
            if done[i].is_some() {
                continue;
            }
            let left = timeout.saturating_sub(started.elapsed());
            done[i] = tokio::task::block_in_place(|| {
                node::check_phase(&paths[i], &node.name, phase, left, &mut last[i])
            })?;
        }
        let count = done.iter().filter(|d| d.is_some()).count();
        on_progress(count, done.len());
        if count == done.len() {
            return Ok(done.into_iter().flatten().collect());
        }
        if started.elapsed() > timeout {
            let (i, node) = plan
                .nodes
                .iter()
                .enumerate()
                .find(|(i, _)| done[*i].is_none())
                .context("no node left to wait for")?;
            return Err(
                node::timed_out(&paths[i], &node.name, phase, timeout, last[i].clone()).into(),
            );
        }
        tokio::time::sleep(PHASE_POLL).await;
    }
}

/// Kills and removes every node of `plan` that exists; the names of those
/// removed.
pub fn destroy_nodes(data: &Path, plan: &ClusterPlan) -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    for node in &plan.nodes {
        if node::destroy(data, &node.name)? {
            removed.push(node.name.clone());
        }
    }
    Ok(removed)
}

/// Runs `argv` on a node and returns its standard output, failing with its
/// standard error when it exits non-zero.
pub fn exec_output(
    data: &Path,
    node_name: &str,
    argv: &[&str],
    stdin: &mut dyn Read,
    timeout: Duration,
) -> anyhow::Result<Vec<u8>> {
    let paths = NodePaths::new(data, node_name);
    let out = kina_qemu::exec::run(&paths.exec_socket, argv, stdin, timeout)
        .with_context(|| format!("node {node_name}: running {}", argv.join(" ")))?;
    let exit = out.exit;
    if let Some(error) = exit.error {
        bail!("node {node_name}: {}: {error}", argv.join(" "));
    }
    if exit.code != Some(0) {
        bail!(
            "node {node_name}: {} exited with {}: {}",
            argv.join(" "),
            exit.code
                .map(|c| c.to_string())
                .unwrap_or_else(|| format!("signal {}", exit.signal.unwrap_or(0))),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}
