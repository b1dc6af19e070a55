//! Nodes as QEMU VMs on this host (`kina_qemu`): made and booted in
//! parallel, each on QEMU's user network (eth0, for host forwards and the
//! way out) and on the cluster's own L2 segment (eth1, multicast sockets,
//! so it never leaves the host) at an address fixed by the plan.

use std::io::Read;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kina_builder::fetch::cache::Cache;
use kina_builder::kernel::{KernelLock, fetch_kernel, kernel_lock_path};
use kina_builder::platform::Arch;
use kina_contract::cidr::Ipv4Cidr;
use kina_contract::node_spec::ClusterInterface;
use kina_qemu::accel::AccelChoice;
use kina_qemu::node::{self, CreateOptions, NodePaths};
use kina_qemu::node_kernel::NodeKernel;
use kina_qemu::vm::{ForwardProtocol, HostForward, Segment};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Provider, ProviderKind, SpecMaker};
use crate::cluster::plan::{Addressing, ClusterPlan, NodeInterfaces, PortMapping, Protocol};
use crate::cluster_config::{ClusterConfig, FieldError};
use crate::dirs::KinaDirs;

/// The cluster segment's subnet. Each cluster has a segment of its own (its
/// own multicast group and port), so every cluster can use the same one.
pub const SEGMENT_SUBNET: &str = "10.89.0.0/24";
/// The device the cluster segment appears as in a node: its second NIC
/// (eth0 stays on QEMU's user network).
pub const SEGMENT_DEVICE: &str = "eth1";
/// The first node's host number on the segment (kind's docker network
/// starts its nodes at .2 too).
const FIRST_HOST: u8 = 2;
/// How long a node gets to power off in order before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// What the QEMU provider keeps about a cluster (`provider_state`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QemuState {
    pub segment: SegmentPlan,
}

/// The segment every node of the cluster joins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentPlan {
    pub group: Ipv4Addr,
    pub port: u16,
    pub subnet: String,
}

impl QemuState {
    pub fn of(plan: &ClusterPlan) -> anyhow::Result<Self> {
        let state = plan.provider_state.clone().with_context(|| {
            format!(
                "cluster {}'s record has no QEMU segment; `kina down --name {}` removes it",
                plan.name, plan.name
            )
        })?;
        serde_json::from_value(state).with_context(|| {
            format!(
                "cluster {}'s record has an unreadable QEMU segment; `kina down --name {}` removes it",
                plan.name, plan.name
            )
        })
    }
}

fn digest_of(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// The cluster's multicast group and port, from its name and `scope`; a
/// port another cluster already uses is skipped, so two clusters never
/// share a segment.
pub fn segment_for(cluster: &str, scope: &str, ports_in_use: &[u16]) -> SegmentPlan {
    let d = digest_of(&format!("{scope}\0{cluster}"));
    // 239.255.0.0/16: organisation-local scope (RFC 2365), never routed.
    let group = Ipv4Addr::new(239, 255, d[0], d[1].max(1));
    let base = u16::from_be_bytes([d[2], d[3]]) % 20000;
    let port = (0..20000)
        .map(|i| 40000 + (base + i) % 20000)
        .find(|p| !ports_in_use.contains(p))
        .unwrap_or(40000);
    SegmentPlan {
        group,
        port,
        subnet: SEGMENT_SUBNET.to_string(),
    }
}

/// A locally administered MAC in QEMU's 52:54:00 range, distinct per node
/// of a cluster and the same every time it is asked for.
pub fn mac_for(cluster: &str, index: usize) -> String {
    let d = digest_of(cluster);
    format!(
        "52:54:00:{:02x}:{:02x}:{:02x}",
        d[4],
        d[5],
        (index as u8).wrapping_add(1)
    )
}

/// What every node of a new cluster shares (the `up` flags only QEMU reads).
#[derive(Clone)]
pub struct NodeInputs {
    pub arch: Arch,
    /// `crate::node_kernel::resolve`'s answer for `--kernel` / `kernel`.
    pub kernel: NodeKernel,
    pub cache: Cache,
    pub accel: AccelChoice,
    pub disk_size: u64,
}

/// Counts node creations still running. A creation cannot be cancelled
/// half-way (making a disk or starting QEMU blocks its thread), so before
/// removing nodes after a failure or Ctrl-C the provider waits for the
/// count to reach zero: otherwise a VM started after the clean-up would be
/// left running.
#[derive(Clone, Default)]
struct InFlight(Arc<AtomicUsize>);

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
    async fn settle(&self, timeout: Duration) -> bool {
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

pub struct QemuProvider {
    dirs: KinaDirs,
    /// Set for `up`; other verbs work from each node's own record.
    nodes: Option<NodeInputs>,
    in_flight: InFlight,
}

impl QemuProvider {
    pub fn new(dirs: KinaDirs, nodes: Option<NodeInputs>) -> Self {
        Self {
            dirs,
            nodes,
            in_flight: InFlight::default(),
        }
    }

    fn paths(&self, node: &str) -> NodePaths {
        NodePaths::new(self.dirs.data(), node)
    }

    fn inputs(&self) -> anyhow::Result<&NodeInputs> {
        self.nodes
            .as_ref()
            .context("the QEMU provider was opened without the node inputs `up` gives it")
    }
}

/// Pod and service subnets overlapping the networks a node is on: QEMU's
/// user network (eth0) and the cluster segment (eth1).
fn subnet_overlaps(config: &ClusterConfig) -> Vec<FieldError> {
    let net = &config.cluster.networking;
    let node_nets = [
        (
            Ipv4Cidr::parse(&node::user_network_interface().address).ok(),
            "the QEMU provider's user network (each node's eth0)",
        ),
        (
            Ipv4Cidr::parse(SEGMENT_SUBNET).ok(),
            "the segment the QEMU provider's nodes meet each other on (eth1)",
        ),
    ];
    let mut out = Vec::new();
    for (field, subnet) in [
        ("networking.podSubnet", &net.pod_subnet),
        ("networking.serviceSubnet", &net.service_subnet),
    ] {
        for (node_net, what) in &node_nets {
            if let (Some(node_net), Ok(s)) = (node_net, Ipv4Cidr::parse(subnet))
                && s.overlaps(node_net)
            {
                out.push(FieldError::cluster(
                    field,
                    format!(
                        "{subnet} overlaps {node_net}, {what}: a node could not tell its own \
                         network from the cluster's addresses"
                    ),
                ));
            }
        }
    }
    out
}

fn host_forward(mapping: &PortMapping) -> HostForward {
    HostForward {
        protocol: match mapping.protocol {
            Protocol::Tcp => ForwardProtocol::Tcp,
            Protocol::Udp => ForwardProtocol::Udp,
        },
        address: mapping.listen_address,
        host_port: mapping.host_port,
        node_port: mapping.container_port,
    }
}

impl Provider for QemuProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Qemu
    }

    fn refusals(&self, config: &ClusterConfig) -> Vec<FieldError> {
        let mut out = config.qemu_refusals();
        out.extend(subnet_overlaps(config));
        out
    }

    fn shape(&self, plan: &mut ClusterPlan, others: &[ClusterPlan]) -> anyhow::Result<()> {
        let ports_in_use: Vec<u16> = others
            .iter()
            .filter(|c| c.provider == ProviderKind::Qemu)
            .filter_map(|c| QemuState::of(c).ok())
            .map(|s| s.segment.port)
            .collect();
        // What else tells this cluster from a namesake: kina's data
        // directory, so two users' (or two test runs') clusters called
        // `kina` get different segments.
        let scope = self.dirs.data().display().to_string();
        let segment = segment_for(&plan.name, &scope, &ports_in_use);
        let net = Ipv4Cidr::parse(&segment.subnet)
            .map_err(|e| anyhow::anyhow!("segment subnet {}: {e}", segment.subnet))?;
        for (i, node) in plan.nodes.iter_mut().enumerate() {
            let host = u8::try_from(i)
                .ok()
                .and_then(|i| i.checked_add(FIRST_HOST))
                .filter(|h| *h < 255)
                .context("more nodes than the cluster segment has addresses")?;
            node.address = Some(Ipv4Addr::from(u32::from(net.network()) + u32::from(host)));
        }
        plan.addressing = Addressing::Fixed;
        plan.provider_state =
            Some(serde_json::to_value(QemuState { segment }).context("encoding the QEMU segment")?);
        Ok(())
    }

    fn node_interfaces(&self, plan: &ClusterPlan, index: usize) -> anyhow::Result<NodeInterfaces> {
        let state = QemuState::of(plan)?;
        let prefix = Ipv4Cidr::parse(&state.segment.subnet)
            .map_err(|e| anyhow::anyhow!("segment subnet {}: {e}", state.segment.subnet))?
            .prefix;
        let node = plan
            .nodes
            .get(index)
            .with_context(|| format!("no node {index} in the plan"))?;
        let address = node
            .address
            .with_context(|| format!("node {} has no segment address", node.name))?;
        Ok(NodeInterfaces {
            interface: Some(node::user_network_interface()),
            cluster_interface: Some(ClusterInterface {
                device: SEGMENT_DEVICE.to_string(),
                address: format!("{address}/{prefix}"),
            }),
        })
    }

    fn check_free(&self, plan: &ClusterPlan) -> anyhow::Result<()> {
        for node in &plan.nodes {
            if self.paths(&node.name).dir.exists() {
                bail!(
                    "a node named {} already exists (`kina node list`); remove it or choose another cluster name",
                    node.name
                );
            }
        }
        Ok(())
    }

    fn prepare_title(&self, _plan: &ClusterPlan) -> String {
        match self.nodes.as_ref().map(|n| &n.kernel) {
            Some(NodeKernel::Built(built)) => format!(
                "Ensuring the node kernel 🐧 (kina-built {}, {})",
                built.meta.recipe, built.meta.release
            ),
            _ => "Ensuring the node kernel 🐧".to_string(),
        }
    }

    /// Fetches the cluster's Debian kernel once, so the nodes made in
    /// parallel find it in the cache instead of downloading it side by
    /// side. A built kernel was opened and checked when it was named.
    async fn prepare(&self, _plan: &mut ClusterPlan) -> anyhow::Result<()> {
        let inputs = self.inputs()?;
        if let NodeKernel::Debian { recipe, mirrors } = &inputs.kernel {
            let lock = KernelLock::read(&kernel_lock_path(recipe), recipe)?;
            fetch_kernel(&lock, inputs.arch, &inputs.cache, mirrors).await?;
        }
        Ok(())
    }

    /// Makes and boots every node at once. Plain spawned tasks, not a
    /// JoinSet: dropping this future (Ctrl-C) must not abort a creation in
    /// the middle; `in_flight` tracks them for [`Provider::delete`].
    async fn create(&self, plan: &mut ClusterPlan, specs: &SpecMaker<'_>) -> anyhow::Result<()> {
        let inputs = self.inputs()?;
        let segment = QemuState::of(plan)?.segment;
        let mut tasks = Vec::new();
        for (i, node) in plan.nodes.iter().enumerate() {
            let opts = CreateOptions {
                name: node.name.clone(),
                image: plan.image.clone(),
                image_store: self.dirs.images(),
                arch: inputs.arch,
                kernel: inputs.kernel.clone(),
                cache: inputs.cache.clone(),
                accel: inputs.accel,
                cpus: node.cpus,
                memory_mib: node.memory_mib,
                disk_size: inputs.disk_size,
                spec: specs(plan, i)?,
                host_forwards: node.port_mappings.iter().map(host_forward).collect(),
                segment: Some(Segment {
                    group: segment.group,
                    port: segment.port,
                    mac: mac_for(&plan.name, i),
                }),
                extra_files: vec![],
            };
            let data = self.dirs.data().to_path_buf();
            let guard = self.in_flight.enter();
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

    /// QEMU nodes keep their segment addresses across restarts (they are
    /// the plan's), so the specs stay true.
    async fn start(&self, plan: &mut ClusterPlan) -> anyhow::Result<bool> {
        for n in &plan.nodes {
            let (paths, record) = node::load(self.dirs.data(), &n.name)?;
            if node::running_pid(&paths).is_none() {
                node::start(&paths, &record)?;
            }
        }
        Ok(false)
    }

    async fn stop(&self, plan: &ClusterPlan) -> anyhow::Result<Vec<String>> {
        tokio::task::block_in_place(|| {
            std::thread::scope(|scope| {
                let handles: Vec<_> = plan
                    .nodes
                    .iter()
                    .map(|n| {
                        let paths = self.paths(&n.name);
                        let name = n.name.clone();
                        scope.spawn(move || format!("{name}: {}", node::stop(&paths, STOP_TIMEOUT)))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .map_err(|_| anyhow::anyhow!("stopping a node: its thread panicked"))
                    })
                    .collect()
            })
        })
    }

    /// Kills and removes every node of `plan` that exists, once creations
    /// still running have ended (at most 10 minutes).
    async fn delete(&self, plan: &ClusterPlan) -> anyhow::Result<Vec<String>> {
        if !self.in_flight.settle(Duration::from_secs(600)).await {
            tracing::warn!("some nodes are still being made after 10 minutes; removing anyway");
        }
        let mut removed = Vec::new();
        for n in &plan.nodes {
            if node::destroy(self.dirs.data(), &n.name)? {
                removed.push(n.name.clone());
            }
        }
        Ok(removed)
    }

    fn is_running(&self, node: &str) -> bool {
        node::running_pid(&self.paths(node)).is_some()
    }

    fn exec(
        &self,
        node: &str,
        argv: &[&str],
        stdin: &mut dyn Read,
        timeout: Duration,
    ) -> anyhow::Result<Vec<u8>> {
        let paths = self.paths(node);
        let out = kina_qemu::exec::run(&paths.exec_socket, argv, stdin, timeout)
            .with_context(|| format!("node {node}: running {}", argv.join(" ")))?;
        let exit = out.exit;
        if let Some(error) = exit.error {
            bail!("node {node}: {}: {error}", argv.join(" "));
        }
        if exit.code != Some(0) {
            bail!(
                "node {node}: {} exited with {}: {}",
                argv.join(" "),
                exit.code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| format!("signal {}", exit.signal.unwrap_or(0))),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out.stdout)
    }

    fn check_alive(&self, node: &str, last: &mut String) -> anyhow::Result<bool> {
        Ok(node::check_vm(&self.paths(node), node, last)?)
    }

    fn where_to_look(&self, node: &str) -> Option<String> {
        Some(format!(
            "console: {}",
            self.paths(node).console_log.display()
        ))
    }

    fn collect_logs(&self, node: &str, out: &Path, errors: &mut Vec<String>) {
        let paths = self.paths(node);
        for (file, from) in [
            ("vm.json", &paths.record),
            ("console.log", &paths.console_log),
            ("qemu.log", &paths.qemu_log),
        ] {
            if let Err(e) = std::fs::copy(from, out.join(file)) {
                errors.push(format!("{node}/{file}: {}: {e}", from.display()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use kina_contract::node_spec::Role;

    use super::*;
    use crate::cluster::plan::{PlanInputs, plan};

    const THREE: &str = "kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
- role: worker
- role: worker
";

    fn provider(data: &str) -> QemuProvider {
        QemuProvider::new(KinaDirs::at(data, "/cache"), None)
    }

    fn shaped(kubernetes: Option<&str>, others: &[ClusterPlan]) -> (ClusterConfig, ClusterPlan) {
        let config = ClusterConfig::parse(THREE).unwrap();
        let mut plan = plan(&PlanInputs {
            provider: ProviderKind::Qemu,
            config: &config,
            name: "kina",
            image: "kina.local/node:base",
            kubernetes_version: kubernetes,
            stop_after: None,
            cwd: Path::new("/work"),
            free_port: &|_, _| Ok(31000),
        })
        .unwrap();
        provider("/data").shape(&mut plan, others).unwrap();
        (config, plan)
    }

    #[test]
    fn every_node_gets_a_fixed_segment_address_and_its_own_mac() {
        let (_, plan) = shaped(None, &[]);
        let addresses: Vec<String> = plan
            .nodes
            .iter()
            .map(|n| n.address.unwrap().to_string())
            .collect();
        assert_eq!(addresses, ["10.89.0.2", "10.89.0.3", "10.89.0.4"]);
        assert_eq!(plan.addressing, Addressing::Fixed);
        let macs: BTreeSet<String> = (0..3).map(|i| mac_for(&plan.name, i)).collect();
        assert_eq!(macs.len(), 3);
        assert!(macs.iter().all(|m| m.starts_with("52:54:00:")));
        let state = QemuState::of(&plan).unwrap();
        assert!(state.segment.group.is_multicast());
        assert_eq!(state.segment.subnet, SEGMENT_SUBNET);
    }

    #[test]
    fn a_segment_port_another_cluster_uses_is_never_reused() {
        let (_, first) = shaped(None, &[]);
        let (_, second) = shaped(None, std::slice::from_ref(&first));
        let (a, b) = (
            QemuState::of(&first).unwrap().segment,
            QemuState::of(&second).unwrap().segment,
        );
        assert_ne!(a.port, b.port);
        assert!((40000..60000).contains(&b.port));
        assert_ne!(
            segment_for("a", "/data", &[]).group,
            segment_for("b", "/data", &[]).group
        );
        // Namesakes in two data directories (two users) differ too.
        assert_ne!(
            segment_for("kina", "/home/a/.local/share/kina", &[]),
            segment_for("kina", "/home/b/.local/share/kina", &[])
        );
    }

    #[test]
    fn specs_configure_the_user_network_and_the_segment_link() {
        let (config, plan) = shaped(None, &[]);
        let interfaces = provider("/data").node_interfaces(&plan, 1).unwrap();
        assert_eq!(
            interfaces.cluster_interface,
            Some(ClusterInterface {
                device: "eth1".into(),
                address: "10.89.0.3/24".into()
            })
        );
        assert_eq!(interfaces.interface, Some(node::user_network_interface()));
        let spec = plan.node_spec(1, &config, None, interfaces).unwrap();
        let peers: Vec<&str> = spec.peers.iter().map(|p| p.address.as_str()).collect();
        assert_eq!(peers, ["10.89.0.2", "10.89.0.4"]);
        assert_eq!(spec.role, Role::Worker);
    }

    #[test]
    fn workers_join_the_control_planes_segment_address() {
        let (config, plan) = shaped(Some("v1.34.2"), &[]);
        let secrets = crate::cluster_secrets::generate("kina").unwrap();
        for i in [0, 2] {
            let interfaces = provider("/data").node_interfaces(&plan, i).unwrap();
            let spec = plan
                .node_spec(i, &config, Some(&secrets), interfaces)
                .unwrap();
            assert_eq!(
                spec.kubernetes.unwrap().control_plane_endpoint,
                "10.89.0.2:6443"
            );
        }
    }

    #[test]
    fn subnets_of_the_nodes_own_networks_are_refused() {
        let refusals = |extra: &str| {
            let config = ClusterConfig::parse(&format!("{THREE}{extra}")).unwrap();
            provider("/data").refusals(&config)
        };
        assert!(refusals("").is_empty());
        let eth0 = refusals("networking:\n  podSubnet: 10.0.0.0/16\n");
        assert_eq!(eth0.len(), 1, "{eth0:?}");
        assert_eq!(eth0[0].path, "networking.podSubnet");
        assert!(eth0[0].message.contains("10.0.2.0/24"), "{}", eth0[0]);
        // The segment the nodes meet on (10.89.0.0/24).
        let eth1 = refusals("networking:\n  serviceSubnet: 10.89.0.0/16\n");
        assert_eq!(eth1.len(), 1, "{eth1:?}");
        assert_eq!(eth1[0].path, "networking.serviceSubnet");
        assert!(eth1[0].message.contains("eth1"), "{}", eth1[0]);
    }

    #[test]
    fn port_mappings_become_qemu_host_forwards() {
        let mapping = PortMapping {
            protocol: Protocol::Udp,
            listen_address: Ipv4Addr::UNSPECIFIED,
            host_port: 5353,
            container_port: 53,
        };
        assert_eq!(
            host_forward(&mapping),
            HostForward {
                protocol: ForwardProtocol::Udp,
                address: Ipv4Addr::UNSPECIFIED,
                host_port: 5353,
                node_port: 53,
            }
        );
    }
}
