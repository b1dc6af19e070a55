//! A cluster's nodes as Apple `container` VMs (macOS), driven through
//! `kina_apple::cli::ContainerCli`.
//!
//! How it differs from QEMU: vmnet gives each node its address when it
//! starts (and maybe another on the next start), so addresses are read
//! with `container inspect` after every start and the node specs are
//! written again; kina-init follows a rewritten spec (peer routes and
//! /etc/hosts) within seconds. The spec reaches a node through a host
//! directory bound at `/etc/kina` (`--volume`, virtiofs): there at first
//! boot, and rewritable by the host while the node runs, which a file
//! copied in at create time would not be. The control plane starts first,
//! so workers boot knowing its address.

use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kina_apple::cli::ContainerCli;
use kina_apple::inspect::State;
use kina_apple::run_args::{Mount, NodeRun, PortMapping, Propagation, Protocol, network_name};
use kina_contract::node_spec::{NODE_SPEC_PATH, NodeSpec, Role};
use kina_contract::status::{NodeStatus, PhaseState, STATUS_PATH};
use kina_qemu::vm::ForwardProtocol;

use super::plan::{ClusterPlan, PlannedNode};
use crate::cluster_config::{self, ClusterConfig};
use crate::cluster_secrets::ClusterSecrets;

/// The node directory `/etc/kina` is bound from.
const SPEC_DIR_IN_NODE: &str = "/etc/kina";

/// How often the nodes' status files are read while waiting.
const POLL: Duration = Duration::from_secs(1);
/// The longest one read of a node's status may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(30);

/// The host directory bound at `/etc/kina` in `node`.
pub fn etc_dir(cluster_dir: &Path, node: &str) -> PathBuf {
    cluster_dir.join("nodes").join(node).join("etc-kina")
}

/// Writes a node's spec where its `/etc/kina` comes from: the directory
/// 0700, the file 0600 (it carries the cluster's token and, on the control
/// plane, the CA key), replaced atomically so kina-init never reads half.
pub fn write_spec(cluster_dir: &Path, spec: &NodeSpec) -> anyhow::Result<()> {
    let dir = etc_dir(cluster_dir, &spec.name);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let path = spec_file(cluster_dir, &spec.name)?;
    let text = serde_json::to_vec_pretty(spec).context("encoding the node spec")?;
    kina_builder::fsutil::write_atomic(&path, &text)
        .with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

/// The host file a node reads as its spec (`NODE_SPEC_PATH` in the node).
fn spec_file(cluster_dir: &Path, node: &str) -> anyhow::Result<PathBuf> {
    let file_name = Path::new(NODE_SPEC_PATH)
        .file_name()
        .context("the node spec path has no file name")?;
    Ok(etc_dir(cluster_dir, node).join(file_name))
}

/// What `container create` gets for `node`.
pub fn node_run(
    plan: &ClusterPlan,
    index: usize,
    config: &ClusterConfig,
    cluster_dir: &Path,
    cwd: &Path,
) -> anyhow::Result<NodeRun> {
    let node = plan
        .nodes
        .get(index)
        .with_context(|| format!("no node {index} in the plan"))?;
    let mut mounts = vec![Mount {
        host_path: etc_dir(cluster_dir, &node.name),
        container_path: PathBuf::from(SPEC_DIR_IN_NODE),
        read_only: false,
        propagation: Propagation::None,
    }];
    if let Some(config_node) = config.cluster.nodes.get(index) {
        for mount in &config_node.extra_mounts {
            mounts.push(Mount {
                host_path: mount.absolute_host_path(cwd),
                container_path: PathBuf::from(&mount.container_path),
                read_only: mount.read_only,
                // unsupported_on(AppleContainer) refused any other.
                propagation: match mount.propagation {
                    cluster_config::Propagation::None => Propagation::None,
                    cluster_config::Propagation::HostToContainer => Propagation::HostToContainer,
                    cluster_config::Propagation::Bidirectional => Propagation::Bidirectional,
                },
            });
        }
    }
    Ok(NodeRun {
        name: node.name.clone(),
        cluster: plan.name.clone(),
        role: node.role.clone(),
        image: plan.image.clone(),
        cpus: node.cpus,
        memory_mib: u64::from(node.memory_mib),
        kernel: None,
        network: Some(network_name(&plan.name)),
        ports: node
            .host_forwards
            .iter()
            .map(|f| PortMapping {
                listen_address: Some(std::net::IpAddr::V4(f.address)),
                host_port: f.host_port,
                container_port: f.node_port,
                protocol: match f.protocol {
                    ForwardProtocol::Tcp => Protocol::Tcp,
                    ForwardProtocol::Udp => Protocol::Udp,
                },
            })
            .collect(),
        mounts,
    })
}

/// Reads every node's address from `container inspect`; returns whether
/// any changed.
pub fn refresh_addresses(cli: &ContainerCli, plan: &mut ClusterPlan) -> anyhow::Result<bool> {
    let mut changed = false;
    for node in &mut plan.nodes {
        let info = cli.inspect(&node.name)?;
        let address = info.addresses.first().copied();
        if info.state == State::Running && address.is_none() {
            bail!(
                "node {} is running but `container inspect` shows no address for it",
                node.name
            );
        }
        if address.is_some() && address != node.address {
            node.address = address;
            changed = true;
        }
    }
    Ok(changed)
}

/// Writes every node's spec from `plan` (peers at their current addresses).
pub fn write_specs(
    plan: &ClusterPlan,
    config: &ClusterConfig,
    secrets: Option<&ClusterSecrets>,
    cluster_dir: &Path,
) -> anyhow::Result<Vec<NodeSpec>> {
    (0..plan.nodes.len())
        .map(|i| {
            let spec = plan.node_spec(i, config, secrets)?;
            write_spec(cluster_dir, &spec)?;
            Ok(spec)
        })
        .collect()
}

/// The specs' peers follow the nodes' current addresses: read them, and
/// rewrite every spec when one moved. Needs the specs' secrets, which only
/// the node directories hold after `up`, so the rewrite keeps each spec's
/// `kubernetes` section and changes peers only.
pub fn follow_addresses(
    cli: &ContainerCli,
    plan: &mut ClusterPlan,
    cluster_dir: &Path,
) -> anyhow::Result<bool> {
    if !refresh_addresses(cli, plan)? {
        return Ok(false);
    }
    for (i, node) in plan.nodes.iter().enumerate() {
        let path = spec_file(cluster_dir, &node.name)?;
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut spec = NodeSpec::from_json(&text, &path.display().to_string())?;
        spec.peers = plan.peers_of(i);
        write_spec(cluster_dir, &spec)?;
    }
    Ok(true)
}

/// Makes sure Apple's image store has the node image: kina builds images
/// into its own store, so one Apple does not have yet is exported from
/// there as an OCI archive (both name annotations set) and handed to
/// `container image load`. The archive is removed whatever happens.
/// Returns whether it had to be loaded.
pub fn ensure_image(cli: &ContainerCli, image: &str, scratch: &Path) -> anyhow::Result<bool> {
    if cli.image_present(image)? {
        return Ok(false);
    }
    load_image(cli, image, scratch).map(|()| true)
}

/// `kina image load`: an image of kina's store into Apple's, as an OCI
/// archive whose index carries the full reference in both
/// `io.containerd.image.name` and `org.opencontainers.image.ref.name`
/// (Apple names loaded images by the latter). The archive, made in
/// `scratch`, is removed whatever happens (by the next kina, when this one
/// is killed).
pub fn load_image(cli: &ContainerCli, image: &str, scratch: &Path) -> anyhow::Result<()> {
    let root = kina_builder::store::ImageStore::default_root();
    let store = kina_builder::store::ImageStore::open(&root)
        .with_context(|| format!("opening kina's image store at {}", root.display()))?;
    let archive = crate::scratch::ScratchFile::in_dir(scratch, "apple-load", 0)?;
    store
        .export(image, archive.path(), 0)
        .with_context(|| format!("exporting {image} from kina's image store"))?;
    cli.image_load(archive.path())
        .with_context(|| format!("loading {image} into Apple's image store"))
}

/// Creates the cluster's network and nodes, starts the control plane, then
/// the workers knowing its address, then writes every spec with every
/// peer. `plan`'s addresses are filled in on the way.
pub fn create_and_start(
    cli: &ContainerCli,
    plan: &mut ClusterPlan,
    config: &ClusterConfig,
    secrets: Option<&ClusterSecrets>,
    cluster_dir: &Path,
) -> anyhow::Result<()> {
    cli.ensure_network(&plan.name, None)?;
    let cwd = std::env::current_dir().context("reading the current directory")?;
    write_specs(plan, config, secrets, cluster_dir)?;
    for i in 0..plan.nodes.len() {
        cli.create_node(&node_run(plan, i, config, cluster_dir, &cwd)?)?;
    }
    let (control_planes, workers): (Vec<&PlannedNode>, Vec<&PlannedNode>) = plan
        .nodes
        .iter()
        .partition(|n| n.role == Role::ControlPlane);
    let (first, rest): (Vec<String>, Vec<String>) = (
        control_planes.iter().map(|n| n.name.clone()).collect(),
        workers.iter().map(|n| n.name.clone()).collect(),
    );
    for name in &first {
        cli.start(name)?;
    }
    refresh_addresses(cli, plan)?;
    write_specs(plan, config, secrets, cluster_dir)?;
    for name in &rest {
        cli.start(name)?;
    }
    refresh_addresses(cli, plan)?;
    write_specs(plan, config, secrets, cluster_dir)?;
    Ok(())
}

/// Deletes the cluster's nodes (by its label, so nodes of an interrupted
/// `up` are found too) and its network; returns the nodes deleted.
pub fn destroy(cli: &ContainerCli, cluster: &str) -> anyhow::Result<Vec<String>> {
    let mut deleted = Vec::new();
    for node in cli.list_cluster(cluster)? {
        cli.delete(&node.name)?;
        deleted.push(node.name);
    }
    cli.delete_network(&network_name(cluster))?;
    Ok(deleted)
}

pub fn is_running(cli: &ContainerCli, node: &str) -> bool {
    cli.inspect(node).is_ok_and(|i| i.state == State::Running)
}

/// Runs `argv` in a node; its standard output, or an error with its
/// standard error.
pub fn exec_output(
    cli: &ContainerCli,
    node: &str,
    argv: &[&str],
    stdin: &mut dyn Read,
    timeout: Duration,
) -> anyhow::Result<Vec<u8>> {
    Ok(cli.exec_ok_within(node, argv, stdin, timeout)?.stdout)
}

pub fn status(cli: &ContainerCli, node: &str, timeout: Duration) -> anyhow::Result<NodeStatus> {
    let out = exec_output(
        cli,
        node,
        &["cat", STATUS_PATH],
        &mut std::io::empty(),
        timeout,
    )?;
    serde_json::from_slice(&out)
        .with_context(|| format!("node {node}: {STATUS_PATH} is not readable yet"))
}

/// Waits until every node has finished `phase`; fails with the first node
/// whose boot failed. Cancellable between looks.
pub async fn wait_for(
    cli: &ContainerCli,
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
            let left = timeout
                .saturating_sub(started.elapsed())
                .clamp(Duration::from_secs(1), STATUS_TIMEOUT);
            match tokio::task::block_in_place(|| status(cli, &node.name, left)) {
                Ok(s) => {
                    if let Some(f) = s.failed() {
                        bail!(
                            "node {}: phase {} failed: {}\n  what to do: {}",
                            node.name,
                            f.name,
                            f.message,
                            f.hint.clone().unwrap_or_default()
                        );
                    }
                    done[i] = s.phase(phase).is_some_and(|p| p.state == PhaseState::Ok);
                }
                Err(e) => last[i] = format!("{e:#}"),
            }
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
                "node {} did not reach phase {phase} within {} s (last: {})",
                node.name,
                timeout.as_secs(),
                last[i]
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
