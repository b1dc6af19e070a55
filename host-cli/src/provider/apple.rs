//! Nodes as Apple `container` VMs (macOS), driven through
//! `kina_apple::cli::ContainerCli`.
//!
//! How it differs from QEMU: vmnet gives each node its address when it
//! starts (and maybe another on the next start), so addresses are read
//! with `container inspect` after every start and the node specs are
//! replaced; kina-init follows a replaced spec (peer routes and
//! /etc/hosts) within a second. A node's first spec is in a host directory
//! bound at `/etc/kina` (`--volume`, virtiofs), written while the node does
//! not run, so it is there when it boots. A running node's spec is replaced
//! only through `container exec -i` and `kina-init replace-spec`
//! ([`Provider::replace_spec`]), never by the host rewriting the shared
//! file: whether Virtualization.framework's virtiofs shows a host-side
//! rename to a running guest, and how late, is unverified (no inotify,
//! apple/container#141), while a write from inside the guest is one the
//! guest's own cache sees, and it reaches the host file through the share.
//! The control plane starts first, so workers boot knowing its address.
//! The cluster's nodes share one vmnet network named after it
//! (`kina_apple::run_args::network_name`).

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use kina_apple::cli::{ContainerCli, STOPPING_WAIT};
use kina_apple::inspect::State;
use kina_apple::run_args::{
    Mount, NodeRun, PortMapping as ApplePort, Propagation, Protocol as AppleProtocol, network_name,
};
use kina_apple::version::Version;
use kina_contract::node_spec::{NODE_SPEC_PATH, NodeSpec, Role};

use super::{Provider, ProviderKind, SpecMaker};
use crate::cluster::plan::{self, Addressing, ClusterPlan, NodeInterfaces, PlannedNode, Protocol};
use crate::cluster_config::{ClusterConfig, FieldError};
use crate::dirs::KinaDirs;
use crate::node_kernel::NodeKernel;

/// The node directory `/etc/kina` is bound from.
const SPEC_DIR_IN_NODE: &str = "/etc/kina";

pub struct AppleProvider {
    cli: ContainerCli,
    dirs: KinaDirs,
    /// The CLI's version, once checked (`up`).
    version: Option<Version>,
    /// The kernel `--kernel` / the Kina document's `kernel` names (`up`);
    /// `None`: Apple's default kernel, or the document's `kernelImage`.
    kernel: Option<NodeKernel>,
}

impl AppleProvider {
    pub fn new(dirs: KinaDirs) -> Self {
        Self {
            cli: ContainerCli::from_env(),
            dirs,
            version: None,
            kernel: None,
        }
    }

    /// The provider booting `kernel` (a kernel kina built) on every node
    /// of a new cluster.
    pub fn with_kernel(mut self, kernel: Option<NodeKernel>) -> Self {
        self.kernel = kernel;
        self
    }

    /// The provider with Apple's CLI checked to be one kina can drive.
    pub fn checked(dirs: KinaDirs) -> anyhow::Result<Self> {
        let mut provider = Self::new(dirs);
        let supported = tokio::task::block_in_place(|| provider.cli.version())?;
        provider.version = Some(supported.cli);
        Ok(provider)
    }

    fn cluster_dir(&self, cluster: &str) -> PathBuf {
        self.dirs.clusters().join(cluster)
    }

    /// Reads every node's address from `container inspect`; returns whether
    /// any changed.
    fn refresh_addresses(&self, plan: &mut ClusterPlan) -> anyhow::Result<bool> {
        let mut changed = false;
        for node in &mut plan.nodes {
            let info = self.cli.inspect(&node.name)?;
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

    /// Gives every node of `plan` its spec from `specs` (peers at their
    /// current addresses): through exec to the nodes named in `running`,
    /// into the shared directory for the others, which read it at boot.
    fn send_specs(
        &self,
        plan: &ClusterPlan,
        specs: &SpecMaker<'_>,
        running: &[&str],
    ) -> anyhow::Result<()> {
        let dir = self.cluster_dir(&plan.name);
        for (i, node) in plan.nodes.iter().enumerate() {
            let spec = specs(plan, i)?;
            if running.contains(&node.name.as_str()) {
                self.replace_spec(&node.name, &spec)?;
            } else {
                write_spec(&dir, &spec)?;
            }
        }
        Ok(())
    }

    /// The specs' peers follow the nodes' current addresses: read them, and
    /// replace every (running) node's spec when one moved. Needs the specs'
    /// secrets, which only the node directories hold after `up`, so each
    /// spec is read from its node's directory (where the node's own
    /// `replace-spec` wrote it through the share, or kina before its first
    /// boot) and only its peers change.
    fn follow_addresses(&self, plan: &mut ClusterPlan) -> anyhow::Result<bool> {
        if !self.refresh_addresses(plan)? {
            return Ok(false);
        }
        let dir = self.cluster_dir(&plan.name);
        for (i, node) in plan.nodes.iter().enumerate() {
            let path = spec_file(&dir, &node.name)?;
            let text =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let mut spec = NodeSpec::from_json(&text, &path.display().to_string())?;
            spec.peers = plan.peers_of(i);
            self.replace_spec(&node.name, &spec)?;
        }
        Ok(true)
    }

    /// `container start` of node `name`, once its published ports are
    /// free: Apple binds them at every start (`RuntimeService.swift:303`),
    /// and a port taken since `up` would otherwise fail deep in Apple's
    /// runtime helper.
    fn start_node(&self, plan: &ClusterPlan, name: &str) -> anyhow::Result<()> {
        if let Some(node) = plan.nodes.iter().find(|n| n.name == name) {
            check_ports_free(node)?;
        }
        Ok(self.cli.start(name)?)
    }

    /// What `container create` gets for node `index`.
    fn node_run(&self, plan: &ClusterPlan, index: usize) -> anyhow::Result<NodeRun> {
        let node = plan
            .nodes
            .get(index)
            .with_context(|| format!("no node {index} in the plan"))?;
        let mut mounts = vec![Mount {
            host_path: etc_dir(&self.cluster_dir(&plan.name), &node.name),
            container_path: PathBuf::from(SPEC_DIR_IN_NODE),
            read_only: false,
            propagation: Propagation::None,
        }];
        mounts.extend(node.mounts.iter().map(|m| Mount {
            host_path: m.host_path.clone(),
            container_path: PathBuf::from(&m.container_path),
            read_only: m.read_only,
            // The refusals turned down any other.
            propagation: match m.propagation {
                plan::Propagation::None => Propagation::None,
                plan::Propagation::HostToContainer => Propagation::HostToContainer,
                plan::Propagation::Bidirectional => Propagation::Bidirectional,
            },
        }));
        Ok(NodeRun {
            name: node.name.clone(),
            cluster: plan.name.clone(),
            role: node.role.clone(),
            image: plan.image.clone(),
            cpus: node.cpus,
            memory_mib: u64::from(node.memory_mib),
            kernel: kernel_image(plan)?,
            network: Some(network_name(&plan.name)),
            ports: node
                .port_mappings
                .iter()
                .map(|m| ApplePort {
                    listen_address: Some(std::net::IpAddr::V4(m.listen_address)),
                    host_port: m.host_port,
                    container_port: m.container_port,
                    protocol: match m.protocol {
                        Protocol::Tcp => AppleProtocol::Tcp,
                        Protocol::Udp => AppleProtocol::Udp,
                    },
                })
                .collect(),
            mounts,
        })
    }
}

/// Fails, naming the port and the node, when a host port `node` publishes
/// cannot be bound on its listen address now. The socket is dropped at
/// once, so Apple's forwarder can take the port right after.
fn check_ports_free(node: &PlannedNode) -> anyhow::Result<()> {
    for m in &node.port_mappings {
        let (bound, protocol) = match m.protocol {
            Protocol::Tcp => (
                TcpListener::bind((m.listen_address, m.host_port)).map(drop),
                "tcp",
            ),
            Protocol::Udp => (
                UdpSocket::bind((m.listen_address, m.host_port)).map(drop),
                "udp",
            ),
        };
        bound.with_context(|| {
            format!(
                "host port {}/{protocol} on {}, which node {} publishes (to its port {}), cannot \
                 be bound; stop what holds it (`lsof -nP -i :{}` shows it) and run the command \
                 again, or give the node another hostPort in the cluster config and create the \
                 cluster again",
                m.host_port, m.listen_address, node.name, m.container_port, m.host_port
            )
        })?;
    }
    Ok(())
}

/// The Kina document's `kernelImage` (or the copy of a kina-built kernel
/// `prepare` put in its place), checked as `container` checks
/// `--kernel` (made absolute, must exist: apple/container 1.2.2
/// `Utility.swift:331-349`), but before anything is created, naming the
/// field.
fn kernel_image(plan: &ClusterPlan) -> anyhow::Result<Option<PathBuf>> {
    let Some(path) = &plan.kernel_image else {
        return Ok(None);
    };
    if !path.is_file() {
        anyhow::bail!(
            "kernelImage {}: no such file; name a kernel image built for Apple's VMs, or leave \
             kernelImage out to boot Apple's default kernel",
            path.display()
        );
    }
    Ok(Some(path.clone()))
}

/// The host directory bound at `/etc/kina` in `node`.
fn etc_dir(cluster_dir: &Path, node: &str) -> PathBuf {
    cluster_dir.join("nodes").join(node).join("etc-kina")
}

/// The host file a node reads as its spec (`NODE_SPEC_PATH` in the node).
fn spec_file(cluster_dir: &Path, node: &str) -> anyhow::Result<PathBuf> {
    let file_name = Path::new(NODE_SPEC_PATH)
        .file_name()
        .context("the node spec path has no file name")?;
    Ok(etc_dir(cluster_dir, node).join(file_name))
}

/// Writes a node's spec where its `/etc/kina` comes from, for its next
/// boot: only while the node does not run (a running node's spec is
/// replaced through exec). The directory 0700, the file 0600 (it carries
/// the cluster's token and, on the control plane, the CA key).
fn write_spec(cluster_dir: &Path, spec: &NodeSpec) -> anyhow::Result<()> {
    let dir = etc_dir(cluster_dir, &spec.name);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let path = spec_file(cluster_dir, &spec.name)?;
    let text = super::spec_delivery::encode(spec)?;
    kina_builder::fsutil::write_atomic(&path, &text)
        .with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

/// kina's image store.
fn image_store(dirs: &KinaDirs) -> anyhow::Result<kina_builder::store::ImageStore> {
    let root = dirs.images();
    kina_builder::store::ImageStore::open(&root)
        .with_context(|| format!("opening kina's image store at {}", root.display()))
}

/// The digest (`sha256:<hex>`) of the index kina's store names `image`:
/// what Apple's store reports for the same build once it is loaded (see
/// `kina_apple::image`).
fn store_digest(dirs: &KinaDirs, image: &str) -> anyhow::Result<String> {
    let entry = image_store(dirs)?.find(image).with_context(|| {
        format!(
            "{image} is not in kina's image store (`kina image list`; `kina image build` makes it)"
        )
    })?;
    Ok(entry.digest.oci())
}

/// `kina image load`: an image of kina's store into Apple's, as an OCI
/// archive whose index names it by the full reference in
/// `io.containerd.image.name`, the annotation Apple reads first after its
/// own `com.apple.containerization.image.name`, which kina does not write
/// (containerization 0.40.1 `LocalOCILayoutClient.swift:208-235`). Apple
/// replaces an image of the same name. The archive, made in the scratch
/// directory, is removed whatever happens (by the next kina, when this one
/// is killed).
pub fn load_image(cli: &ContainerCli, dirs: &KinaDirs, image: &str) -> anyhow::Result<()> {
    let store = image_store(dirs)?;
    let archive = crate::scratch::ScratchFile::in_dir(&dirs.scratch(), "apple-load", 0)?;
    store
        .export(image, archive.path(), 0)
        .with_context(|| format!("exporting {image} from kina's image store"))?;
    cli.image_load(archive.path())
        .with_context(|| format!("loading {image} into Apple's image store"))
}

impl Provider for AppleProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Apple
    }

    fn describe(&self) -> String {
        match &self.version {
            Some(v) => format!("Apple container {v}"),
            None => "Apple container".to_string(),
        }
    }

    fn refusals(&self, config: &ClusterConfig) -> Vec<FieldError> {
        config.apple_refusals()
    }

    /// vmnet hands out addresses at start: nothing to decide yet.
    fn shape(&self, plan: &mut ClusterPlan, _others: &[ClusterPlan]) -> anyhow::Result<()> {
        plan.addressing = Addressing::AtStart;
        Ok(())
    }

    /// Apple's vminitd configures eth0 itself.
    fn node_interfaces(
        &self,
        _plan: &ClusterPlan,
        _index: usize,
    ) -> anyhow::Result<NodeInterfaces> {
        Ok(NodeInterfaces::default())
    }

    /// Apple names containers globally; `create` refuses a taken name
    /// itself, before anything of this cluster is made.
    fn check_free(&self, _plan: &ClusterPlan) -> anyhow::Result<()> {
        Ok(())
    }

    fn prepare_title(&self, plan: &ClusterPlan) -> String {
        format!("Ensuring node image {} 🖼", plan.image)
    }

    /// kina builds images into its own store, so the image is exported
    /// from there and handed to `container image load` unless Apple
    /// already holds the same build under its name: Apple goes by name
    /// only, so after `kina image build` the digests differ and the new
    /// build is loaded over the old one. What Apple holds afterwards is
    /// read back, so a load Apple filed under another name fails here, not
    /// at `create` with the old build.
    async fn prepare(&self, plan: &mut ClusterPlan) -> anyhow::Result<()> {
        if let Some(kernel) = &self.kernel {
            if let Some(image) = &plan.kernel_image {
                bail!(
                    "the cluster names two kernels: the {} and kernelImage {}; keep one",
                    kernel.describe(),
                    image.display()
                );
            }
            // The copy the record names, so every node (and every later
            // `container run`) boots the same file.
            plan.kernel_image = Some(crate::node_kernel::apple_kernel_image(kernel, &self.dirs)?);
        }
        // A missing kernel image fails here, before the image load.
        kernel_image(plan)?;
        tokio::task::block_in_place(|| {
            let wanted = store_digest(&self.dirs, &plan.image)?;
            if self.cli.image_digest(&plan.image)?.as_deref() != Some(wanted.as_str()) {
                load_image(&self.cli, &self.dirs, &plan.image)?;
                let held = self.cli.image_digest(&plan.image)?;
                if held.as_deref() != Some(wanted.as_str()) {
                    bail!(
                        "Apple's image store holds {} as {} after `container image load` of \
                         build {wanted}; `container image list` shows what it holds, and \
                         `container image delete {}` then `kina up` again loads it afresh",
                        plan.image,
                        held.as_deref().unwrap_or("nothing"),
                        plan.image
                    );
                }
            }
            plan.image_digest = Some(wanted);
            Ok(())
        })
    }

    /// The cluster's network and nodes; the control plane started first,
    /// then the workers knowing its address, then every spec replaced with
    /// every peer. `plan`'s addresses are filled in on the way.
    async fn create(&self, plan: &mut ClusterPlan, specs: &SpecMaker<'_>) -> anyhow::Result<()> {
        tokio::task::block_in_place(|| {
            self.cli.ensure_network(&plan.name, None)?;
            self.send_specs(plan, specs, &[])?;
            for i in 0..plan.nodes.len() {
                self.cli.create_node(&self.node_run(plan, i)?)?;
            }
            let (first, rest): (Vec<String>, Vec<String>) = {
                let (cps, workers): (Vec<_>, Vec<_>) = plan
                    .nodes
                    .iter()
                    .partition(|n| n.role == Role::ControlPlane);
                (
                    cps.iter().map(|n| n.name.clone()).collect(),
                    workers.iter().map(|n| n.name.clone()).collect(),
                )
            };
            for name in &first {
                self.start_node(plan, name)?;
            }
            self.refresh_addresses(plan)?;
            let started: Vec<&str> = first.iter().map(String::as_str).collect();
            self.send_specs(plan, specs, &started)?;
            for name in &rest {
                self.start_node(plan, name)?;
            }
            self.refresh_addresses(plan)?;
            let all: Vec<&str> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
            self.send_specs(plan, specs, &all)
        })
    }

    /// The control plane first, as at `up`: workers find it at once. The
    /// nodes may come back at other addresses: they are read again and
    /// every spec is replaced through exec, which kina-init follows.
    async fn start(&self, plan: &mut ClusterPlan) -> anyhow::Result<bool> {
        tokio::task::block_in_place(|| {
            let mut order: Vec<&str> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
            order.sort_by_key(|name| {
                plan.nodes
                    .iter()
                    .any(|n| n.name == *name && n.role != Role::ControlPlane)
            });
            for name in order {
                if !self.is_running(name) {
                    self.start_node(plan, name)?;
                }
            }
            self.follow_addresses(plan)
        })
    }

    /// Each node gets `STOP_SECS` for kina-init's ordered shutdown before
    /// Apple kills it (`ContainerCli::stop`).
    async fn stop(&self, plan: &ClusterPlan) -> anyhow::Result<Vec<String>> {
        tokio::task::block_in_place(|| {
            let mut lines = Vec::new();
            for n in &plan.nodes {
                self.cli.stop(&n.name)?;
                lines.push(format!("{}: stopped", n.name));
            }
            Ok(lines)
        })
    }

    /// By the cluster's label, so nodes of an interrupted `up` are found
    /// too; a node still stopping is waited for, as Apple deletes none
    /// while it stops. Then the network, which Apple refuses to delete
    /// while any container is configured with it, running or not
    /// (`NetworksService.swift:252-270`): only once no node of the
    /// cluster is left, else it stays for the next `down`.
    async fn delete(&self, plan: &ClusterPlan) -> anyhow::Result<Vec<String>> {
        tokio::task::block_in_place(|| {
            let mut deleted = Vec::new();
            let mut failures = Vec::new();
            for node in self.cli.list_cluster(&plan.name)? {
                match self.cli.delete_when_stopped(&node.name, STOPPING_WAIT) {
                    Ok(()) => deleted.push(node.name),
                    Err(e) => failures.push(format!("{}: {e}", node.name)),
                }
            }
            let network = network_name(&plan.name);
            if !failures.is_empty() {
                bail!(
                    "could not delete every node of cluster {}, so its network {network} is \
                     kept (Apple deletes no network a container still uses); `kina down --name \
                     {}` again removes what is left:\n  {}",
                    plan.name,
                    plan.name,
                    failures.join("\n  ")
                );
            }
            self.cli.delete_network(&network)?;
            Ok(deleted)
        })
    }

    fn is_running(&self, node: &str) -> bool {
        self.cli
            .inspect(node)
            .is_ok_and(|i| i.state == State::Running)
    }

    fn exec(
        &self,
        node: &str,
        argv: &[&str],
        stdin: &mut dyn Read,
        timeout: Duration,
    ) -> anyhow::Result<Vec<u8>> {
        Ok(self.cli.exec_ok_within(node, argv, stdin, timeout)?.stdout)
    }

    /// A node Apple stopped fails at its next exec, which says why.
    fn check_alive(&self, _node: &str, _last: &mut String) -> anyhow::Result<bool> {
        Ok(true)
    }

    fn where_to_look(&self, node: &str) -> Option<String> {
        Some(format!("`container logs --boot {node}`"))
    }

    fn collect_logs(&self, node: &str, out: &Path, errors: &mut Vec<String>) {
        for (file, got) in [
            ("inspect.json", self.cli.inspect_document(node)),
            ("stdio.log", self.cli.logs(node, false)),
            ("boot.log", self.cli.logs(node, true)),
        ] {
            let written = got
                .map_err(anyhow::Error::from)
                .and_then(|bytes| Ok(std::fs::write(out.join(file), bytes)?));
            if let Err(e) = written {
                errors.push(format!("{node}/{file}: {e:#}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `container run --kernel` gets the Kina document's `kernelImage`; a
    /// missing one is refused naming the field before anything is made.
    #[test]
    fn the_kernel_image_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan: ClusterPlan = serde_json::from_value(serde_json::json!({
            "provider": "apple", "name": "kina", "image": "kina.local/node:base",
            "kubernetes_version": null, "stop_after": null, "api_server": null,
            "addressing": "at-start", "nodes": [],
        }))
        .unwrap();
        assert_eq!(kernel_image(&plan).unwrap(), None);
        let kernel = dir.path().join("vmlinux");
        plan.kernel_image = Some(kernel.clone());
        let err = kernel_image(&plan).unwrap_err().to_string();
        assert!(err.starts_with("kernelImage "), "{err}");
        assert!(err.contains(&kernel.display().to_string()), "{err}");
        std::fs::write(&kernel, b"kernel").unwrap();
        assert_eq!(kernel_image(&plan).unwrap(), Some(kernel));
    }
}
