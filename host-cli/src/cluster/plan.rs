//! What `kina up` will make, decided before anything is made, in terms
//! every provider shares: node names in kind's scheme, roles, each node's
//! pod CIDR and port mappings (kind's `extraPortMappings`), the API
//! server's host port, and the node spec each node boots with. What only
//! one provider needs (QEMU's segment and MACs, Apple's network) is that
//! provider's to decide and keep, in `provider_state`. A plan is pure data,
//! so every decision is tested without a VM; it is also what `cluster.json`
//! holds (see `cluster::record`).
//!
//! Length: about 500 lines of code; the rest (from `mod tests`) are the
//! planning tests, property tests among them, kept beside the rules they
//! check.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kina_contract::cidr::Ipv4Cidr;
use kina_contract::node_spec::{
    CertificateAuthority, ClusterInterface, InterfaceConfig, KubernetesSettings, NODE_SPEC_VERSION,
    NodeSpec, Peer, Role,
};
use serde::{Deserialize, Serialize};

use crate::cluster_config::{self, ClusterConfig};
use crate::cluster_secrets::ClusterSecrets;
use crate::provider::ProviderKind;

/// The API server's port inside the control-plane node.
pub const API_SERVER_PORT: u16 = 6443;
/// The kernel profiles a node must pass when the config names none.
pub const DEFAULT_PROFILES: [&str; 2] = ["kubernetes-base", "ptp"];
/// How long kubeadm may take on a node before its phase gives up.
pub const DEFAULT_KUBERNETES_TIMEOUT_SECS: u64 = 900;

/// The transport of a port mapping: kind's `protocol`, less SCTP, which
/// neither QEMU's user network nor Apple's port publishing forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

/// A host port forwarded to a node: kind's `extraPortMappings` entry, with
/// `hostPort: 0` already resolved to a free port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub protocol: Protocol,
    pub listen_address: Ipv4Addr,
    pub host_port: u16,
    pub container_port: u16,
}

/// A host directory shared into a node: kind's `extraMounts` entry, its
/// host path already made absolute against the directory `up` ran in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeMount {
    pub host_path: PathBuf,
    pub container_path: String,
    pub read_only: bool,
    pub propagation: Propagation,
}

/// kind's mount propagation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Propagation {
    /// Private: mounts made later under it stay on their side.
    #[default]
    None,
    /// rslave: later host mounts under it appear in the node.
    HostToContainer,
    /// rshared: later mounts under it appear on both sides.
    Bidirectional,
}

/// How a cluster's nodes get their addresses on the cluster network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Addressing {
    /// Decided in the plan and kept for the cluster's life (QEMU's
    /// segment): nodes can reach the control plane by address.
    Fixed,
    /// Handed out by the provider when a node starts, maybe another one on
    /// the next start (Apple's vmnet): nodes reach the control plane by its
    /// name, which kina-init maps to its current address.
    #[default]
    AtStart,
}

/// One node of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedNode {
    pub name: String,
    pub role: Role,
    /// Its address on the cluster's network (no prefix length): the plan's
    /// with fixed addressing, else the one the provider reported after the
    /// last start (`None` before the first).
    pub address: Option<Ipv4Addr>,
    pub pod_cidr: String,
    pub cpus: u32,
    pub memory_mib: u32,
    pub port_mappings: Vec<PortMapping>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<NodeMount>,
}

/// Where the host reaches the cluster's API server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiServer {
    pub address: Ipv4Addr,
    pub port: u16,
}

impl ApiServer {
    pub fn url(&self) -> String {
        format!("https://{}:{}", self.address, self.port)
    }
}

/// The network a node's spec configures itself, where the provider does
/// not do it for the node (QEMU's NICs; Apple's vminitd configures eth0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInterfaces {
    pub interface: Option<InterfaceConfig>,
    pub cluster_interface: Option<ClusterInterface>,
}

/// What `up` was asked for besides the config file.
pub struct PlanInputs<'a> {
    pub provider: ProviderKind,
    pub config: &'a ClusterConfig,
    pub name: &'a str,
    pub image: &'a str,
    /// The image's Kubernetes release (`io.kina.kubernetes.version`), if it
    /// carries Kubernetes.
    pub kubernetes_version: Option<&'a str>,
    pub stop_after: Option<&'a str>,
    /// What relative `extraMounts` host paths are relative to (kind: the
    /// directory it runs in).
    pub cwd: &'a Path,
    /// Picks a free host port for `hostPort: 0` and the API server.
    pub free_port: &'a dyn Fn(Protocol, Ipv4Addr) -> anyhow::Result<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterPlan {
    pub provider: ProviderKind,
    pub name: String,
    pub image: String,
    pub kubernetes_version: Option<String>,
    pub stop_after: Option<String>,
    /// `None` for clusters without Kubernetes.
    pub api_server: Option<ApiServer>,
    pub addressing: Addressing,
    /// What the provider keeps about the cluster (QEMU: its segment). Only
    /// the provider reads it; the rest of kina passes it along.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_state: Option<serde_json::Value>,
    /// The digest of the build of `image` the nodes boot, once the
    /// provider's `prepare` has made sure of it: a name alone says little
    /// after the image is rebuilt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// The Kina document's `kernelImage`, absolute: the kernel the nodes
    /// boot where the provider boots a kernel image (Apple).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_image: Option<PathBuf>,
    pub nodes: Vec<PlannedNode>,
}

/// kind's node names: `<cluster>-control-plane`, `<cluster>-worker`,
/// `<cluster>-worker2`, … in config order (kind's `MakeNodeNamer`).
pub fn node_names(cluster: &str, roles: &[Role]) -> Vec<String> {
    let mut control_planes = 0;
    let mut workers = 0;
    roles
        .iter()
        .map(|role| {
            let (what, count) = match role {
                Role::ControlPlane => ("control-plane", &mut control_planes),
                Role::Worker => ("worker", &mut workers),
            };
            *count += 1;
            let suffix = if *count == 1 {
                String::new()
            } else {
                count.to_string()
            };
            format!("{cluster}-{what}{suffix}")
        })
        .collect()
}

/// The `index`th /24 of the pod subnet: kube-controller-manager's node
/// CIDR size for IPv4 (the config check made sure there are enough).
fn pod_cidr(pod_subnet: &Ipv4Cidr, index: usize) -> anyhow::Result<String> {
    let base = u32::from(pod_subnet.network());
    let offset = u32::try_from(index)
        .ok()
        .and_then(|i| i.checked_mul(256))
        .context("too many nodes for the pod subnet")?;
    let net = base
        .checked_add(offset)
        .context("too many nodes for the pod subnet")?;
    Ok(format!("{}/24", Ipv4Addr::from(net)))
}

/// The control plane's API server forward, when the cluster runs
/// Kubernetes.
fn api_server_mapping(
    config: &ClusterConfig,
    free_port: &dyn Fn(Protocol, Ipv4Addr) -> anyhow::Result<u16>,
) -> anyhow::Result<(PortMapping, ApiServer)> {
    let net = &config.cluster.networking;
    let address: Ipv4Addr = net.api_server_address.parse().with_context(|| {
        format!(
            "networking.apiServerAddress {}: kina forwards IPv4 host addresses only",
            net.api_server_address
        )
    })?;
    let port = match u16::try_from(net.api_server_port) {
        Ok(0) | Err(_) => free_port(Protocol::Tcp, address)?,
        Ok(p) => p,
    };
    let mapping = PortMapping {
        protocol: Protocol::Tcp,
        listen_address: address,
        host_port: port,
        container_port: API_SERVER_PORT,
    };
    let api = ApiServer {
        address: if address.is_unspecified() {
            Ipv4Addr::LOCALHOST
        } else {
            address
        },
        port,
    };
    Ok((mapping, api))
}

/// Node `index`'s `extraPortMappings`, each checked and resolved.
fn extra_port_mappings(
    config: &ClusterConfig,
    index: usize,
    free_port: &dyn Fn(Protocol, Ipv4Addr) -> anyhow::Result<u16>,
) -> anyhow::Result<Vec<PortMapping>> {
    let Some(node) = config.cluster.nodes.get(index) else {
        return Ok(Vec::new());
    };
    let mut mappings = Vec::new();
    for (p, mapping) in node.extra_port_mappings.iter().enumerate() {
        let field = format!("nodes[{index}].extraPortMappings[{p}]");
        let protocol = match mapping.protocol {
            cluster_config::Protocol::Tcp => Protocol::Tcp,
            cluster_config::Protocol::Udp => Protocol::Udp,
            cluster_config::Protocol::Sctp => {
                bail!("{field}.protocol: kina forwards TCP and UDP only")
            }
        };
        let listen_address: Ipv4Addr = mapping.listen_address.parse().with_context(|| {
            format!(
                "{field}.listenAddress {}: kina forwards IPv4 host addresses only",
                mapping.listen_address
            )
        })?;
        let container_port = u16::try_from(mapping.container_port)
            .ok()
            .filter(|p| *p > 0)
            .with_context(|| {
                format!(
                    "{field}.containerPort {}: not a port",
                    mapping.container_port
                )
            })?;
        let host_port = match u16::try_from(mapping.host_port) {
            Ok(0) | Err(_) => free_port(protocol, listen_address)?,
            Ok(p) => p,
        };
        mappings.push(PortMapping {
            protocol,
            listen_address,
            host_port,
            container_port,
        });
    }
    Ok(mappings)
}

/// The provider-neutral plan: names, roles, pod CIDRs, port mappings. The
/// provider then shapes it (`Provider::shape`): addresses, addressing, its
/// own state.
pub fn plan(inputs: &PlanInputs) -> anyhow::Result<ClusterPlan> {
    let config = inputs.config;
    let net = &config.cluster.networking;
    let pod_subnet = Ipv4Cidr::parse(&net.pod_subnet)
        .map_err(|e| anyhow::anyhow!("networking.podSubnet {}: {e}", net.pod_subnet))?;
    let roles: Vec<Role> = config
        .cluster
        .nodes
        .iter()
        .map(|n| n.role.clone())
        .collect();
    let names = node_names(inputs.name, &roles);
    let mut nodes = Vec::new();
    let mut api_server = None;
    for (i, (name, role)) in names.into_iter().zip(roles).enumerate() {
        let mut port_mappings = Vec::new();
        if role == Role::ControlPlane && inputs.kubernetes_version.is_some() && api_server.is_none()
        {
            let (mapping, api) = api_server_mapping(config, inputs.free_port)?;
            port_mappings.push(mapping);
            api_server = Some(api);
        }
        port_mappings.extend(extra_port_mappings(config, i, inputs.free_port)?);
        let resources = config.node_resources(i);
        let mounts = config
            .cluster
            .nodes
            .get(i)
            .map(|n| n.extra_mounts.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|m| NodeMount {
                host_path: m.absolute_host_path(inputs.cwd),
                container_path: m.container_path.clone(),
                read_only: m.read_only,
                propagation: match m.propagation {
                    cluster_config::Propagation::None => Propagation::None,
                    cluster_config::Propagation::HostToContainer => Propagation::HostToContainer,
                    cluster_config::Propagation::Bidirectional => Propagation::Bidirectional,
                },
            })
            .collect();
        nodes.push(PlannedNode {
            name,
            role,
            address: None,
            pod_cidr: pod_cidr(&pod_subnet, i)?,
            cpus: resources.cpus,
            memory_mib: resources.memory_mib,
            port_mappings,
            mounts,
        });
    }
    Ok(ClusterPlan {
        provider: inputs.provider,
        name: inputs.name.to_string(),
        image: inputs.image.to_string(),
        kubernetes_version: inputs.kubernetes_version.map(str::to_string),
        stop_after: inputs.stop_after.map(str::to_string),
        api_server,
        addressing: Addressing::AtStart,
        provider_state: None,
        image_digest: None,
        kernel_image: config
            .kina
            .kernel_image
            .as_ref()
            .map(|k| inputs.cwd.join(k)),
        nodes,
    })
}

impl ClusterPlan {
    pub fn control_plane(&self) -> Option<&PlannedNode> {
        self.nodes.iter().find(|n| n.role == Role::ControlPlane)
    }

    /// The spec node `index` boots with. `secrets` are the cluster's CA and
    /// token when the image carries Kubernetes; only the control plane gets
    /// the CA's key. Peers whose address is not known yet (nodes not
    /// started) are left out; the spec is written again once they are.
    /// `interfaces` are the provider's (`Provider::node_interfaces`).
    pub fn node_spec(
        &self,
        index: usize,
        config: &ClusterConfig,
        secrets: Option<&ClusterSecrets>,
        interfaces: NodeInterfaces,
    ) -> anyhow::Result<NodeSpec> {
        let node = self
            .nodes
            .get(index)
            .with_context(|| format!("no node {index} in the plan"))?;
        let (merge, json6902) = config.node_kubeadm_patches(index);
        let kubernetes = match (&self.kubernetes_version, secrets) {
            (Some(_), Some(secrets)) => Some(self.kubernetes_settings(config, node, secrets)?),
            (Some(version), None) => {
                bail!("the image carries Kubernetes {version} but no cluster secrets were made")
            }
            (None, _) => None,
        };
        Ok(NodeSpec {
            version: NODE_SPEC_VERSION,
            name: node.name.clone(),
            cluster: self.name.clone(),
            role: node.role.clone(),
            pod_cidr: node.pod_cidr.clone(),
            peers: self.peers_of(index),
            required_kernel_profiles: config
                .kina
                .kernel_profiles
                .clone()
                .unwrap_or_else(|| DEFAULT_PROFILES.map(str::to_string).to_vec()),
            kubernetes,
            disable_default_cni: config.cluster.networking.disable_default_cni,
            dns_search: config.cluster.networking.dns_search.clone(),
            containerd_config_patches: config.cluster.containerd_config_patches.clone(),
            containerd_config_patches_json6902: config.containerd_patches_json6902(),
            interface: interfaces.interface,
            kubeadm_config_patches: merge,
            kubeadm_config_patches_json6902: json6902,
            cluster_interface: interfaces.cluster_interface,
            stop_after: self.stop_after.clone(),
            // kind's `nodes[].labels`, which kina-init gives the kubelet as
            // `node-labels` (as kind's kubeadm template does).
            node_labels: config
                .cluster
                .nodes
                .get(index)
                .map(|n| n.labels.clone())
                .unwrap_or_default(),
        })
    }

    /// Node `index`'s peers: every other node whose address is known.
    pub fn peers_of(&self, index: usize) -> Vec<Peer> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .filter_map(|(_, n)| {
                Some(Peer {
                    name: n.name.clone(),
                    address: n.address?.to_string(),
                    pod_cidr: n.pod_cidr.clone(),
                })
            })
            .collect()
    }

    /// Where nodes reach the API server: the control plane's address when
    /// it is fixed; otherwise its name, which every node's /etc/hosts maps
    /// to its current address (kina-init rewrites the entries when the host
    /// rewrites the spec after a start); kubeadm puts the name in the
    /// certificate.
    fn endpoint_host(&self, control_plane: &PlannedNode) -> String {
        match (self.addressing, control_plane.address) {
            (Addressing::Fixed, Some(address)) => address.to_string(),
            _ => control_plane.name.clone(),
        }
    }

    fn kubernetes_settings(
        &self,
        config: &ClusterConfig,
        node: &PlannedNode,
        secrets: &ClusterSecrets,
    ) -> anyhow::Result<KubernetesSettings> {
        let net = &config.cluster.networking;
        let control_plane = self
            .control_plane()
            .context("the plan has no control-plane node")?;
        let (merge, json6902) = config.cluster_kubeadm_patches();
        let mut sans = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        if let Some(api) = &self.api_server
            && !sans.contains(&api.address.to_string())
        {
            sans.push(api.address.to_string());
        }
        Ok(KubernetesSettings {
            pod_subnet: net.pod_subnet.clone(),
            service_subnet: net.service_subnet.clone(),
            dns_domain: "cluster.local".to_string(),
            control_plane_endpoint: format!(
                "{}:{API_SERVER_PORT}",
                self.endpoint_host(control_plane)
            ),
            api_server_cert_sans: sans,
            kube_proxy_mode: net.kube_proxy_mode,
            feature_gates: config.cluster.feature_gates.clone(),
            runtime_config: config.cluster.runtime_config.clone(),
            kubeadm_config_patches: merge,
            kubeadm_config_patches_json6902: json6902,
            bootstrap_token: Some(secrets.bootstrap_token.clone()),
            certificate_authority: (node.role == Role::ControlPlane).then(|| {
                CertificateAuthority {
                    cert_pem: secrets.ca_cert_pem.clone(),
                    key_pem: secrets.ca_key_pem.clone(),
                }
            }),
            ca_cert_hash: Some(secrets.ca_cert_hash.clone()),
            wait_for_coredns: node.role == Role::ControlPlane,
            timeout_seconds: DEFAULT_KUBERNETES_TIMEOUT_SECS,
        })
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    mod generated {
        use super::*;
        use proptest::prelude::*;
        use std::cell::Cell;
        use std::collections::BTreeSet;

        /// A port mapping: container port, host port (0: any free one), UDP.
        type Mapping = (u16, u16, bool);

        /// A kind config with one control plane, `mappings.len() - 1`
        /// workers and the given port mappings per node.
        fn render(pod_second: u8, mappings: &[Vec<Mapping>]) -> String {
            let mut text = format!(
                "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetworking:\n  podSubnet: 10.{pod_second}.0.0/16\nnodes:\n"
            );
            for (i, ports) in mappings.iter().enumerate() {
                let role = if i == 0 { "control-plane" } else { "worker" };
                text.push_str(&format!("- role: {role}\n"));
                if !ports.is_empty() {
                    text.push_str("  extraPortMappings:\n");
                }
                for (container, host, udp) in ports {
                    text.push_str(&format!(
                        "  - containerPort: {container}\n    hostPort: {host}\n    protocol: {}\n",
                        if *udp { "UDP" } else { "TCP" }
                    ));
                }
            }
            text
        }

        fn clusters() -> impl Strategy<Value = (u8, Vec<Vec<Mapping>>)> {
            // Host ports distinct across the cluster (kind refuses
            // duplicates), some of them 0.
            (
                (100u8..=250).prop_filter("not the QEMU segment's 10.89", |b| *b != 89),
                prop::collection::vec(
                    prop::collection::vec((1u16..=65535, 0u16..=3, any::<bool>()), 0..3),
                    1..6,
                ),
            )
                .prop_map(|(pod, nodes)| {
                    let mut next = 20000u16;
                    let nodes = nodes
                        .into_iter()
                        .map(|ports| {
                            ports
                                .into_iter()
                                .map(|(container, any, udp)| {
                                    next += 1;
                                    (container, if any == 0 { 0 } else { next }, udp)
                                })
                                .collect()
                        })
                        .collect();
                    (pod, nodes)
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 128,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            /// Whatever the config, the plan gives every node its own name
            /// and pod CIDR inside the pod subnet, and every port mapping
            /// exactly one forward on its own node; and it survives being
            /// written to cluster.json and read back.
            #[test]
            fn every_plan_keeps_nodes_apart(
                (pod, mappings) in clusters(),
                name in "[a-z][a-z0-9-]{0,20}",
            ) {
                let text = render(pod, &mappings);
                let config = ClusterConfig::parse(&text)
                    .map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?;
                let next_free = Cell::new(30000u16);
                let free_port = |_: Protocol, _: Ipv4Addr| {
                    next_free.set(next_free.get() + 1);
                    Ok(next_free.get())
                };
                let plan = plan(&PlanInputs {
                    provider: ProviderKind::Qemu,
                    config: &config,
                    name: &name,
                    image: "kina.local/node:base",
                    kubernetes_version: None,
                    stop_after: None,
                    cwd: Path::new("/work"),
                    free_port: &free_port,
                })
                .map_err(|e| TestCaseError::fail(format!("{e:#}\n{text}")))?;

                prop_assert_eq!(plan.nodes.len(), mappings.len());
                prop_assert_eq!(&plan.nodes[0].role, &Role::ControlPlane);
                let distinct = |v: Vec<String>| v.iter().collect::<BTreeSet<_>>().len() == v.len();
                prop_assert!(distinct(plan.nodes.iter().map(|n| n.name.clone()).collect()));
                let pod_net = Ipv4Cidr::parse(&format!("10.{pod}.0.0/16")).unwrap();
                let mut cidrs: Vec<Ipv4Cidr> = Vec::new();
                for node in &plan.nodes {
                    let cidr = Ipv4Cidr::parse(&node.pod_cidr).unwrap();
                    prop_assert!(pod_net.contains(cidr.network()));
                    prop_assert!(cidrs.iter().all(|c| !c.overlaps(&cidr)), "{} overlaps", node.pod_cidr);
                    cidrs.push(cidr);
                }
                let mut host_ports = BTreeSet::new();
                for (node, ports) in plan.nodes.iter().zip(&mappings) {
                    prop_assert_eq!(node.port_mappings.len(), ports.len());
                    for (mapping, (container, host, udp)) in node.port_mappings.iter().zip(ports) {
                        prop_assert_eq!(mapping.container_port, *container);
                        if *host != 0 {
                            prop_assert_eq!(mapping.host_port, *host);
                        }
                        let protocol = if *udp { Protocol::Udp } else { Protocol::Tcp };
                        prop_assert_eq!(mapping.protocol, protocol);
                        prop_assert!(host_ports.insert((*udp, mapping.host_port)));
                    }
                }
                let json = serde_json::to_string(&plan).unwrap();
                let back: ClusterPlan = serde_json::from_str(&json).unwrap();
                prop_assert_eq!(back, plan);
            }
        }
    }

    pub(crate) const THREE: &str = "kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
- role: worker
  extraPortMappings:
  - containerPort: 80
    hostPort: 0
  - containerPort: 53
    hostPort: 5353
    protocol: UDP
    listenAddress: 0.0.0.0
  extraMounts:
  - hostPath: shared
    containerPath: /srv
    readOnly: true
- role: worker
";

    fn no_free_port(_: Protocol, _: Ipv4Addr) -> anyhow::Result<u16> {
        Ok(31000)
    }

    fn plan_of(text: &str, kubernetes: Option<&str>) -> (ClusterConfig, ClusterPlan) {
        let config = ClusterConfig::parse(text).unwrap();
        let plan = plan(&PlanInputs {
            provider: ProviderKind::Apple,
            config: &config,
            name: "kina",
            image: "kina.local/node:base",
            kubernetes_version: kubernetes,
            stop_after: Some("containerd"),
            cwd: Path::new("/work"),
            free_port: &no_free_port,
        })
        .unwrap();
        (config, plan)
    }

    #[test]
    fn a_kernel_image_is_made_absolute_against_the_directory_up_ran_in() {
        let (_, plain) = plan_of(THREE, None);
        assert_eq!(plain.kernel_image, None);
        let (_, plan) = plan_of(
            &format!(
                "{THREE}---\nkind: Kina\napiVersion: kina.dev/v1alpha1\nkernelImage: kernels/vmlinux\n"
            ),
            None,
        );
        assert_eq!(
            plan.kernel_image.as_deref(),
            Some(Path::new("/work/kernels/vmlinux"))
        );
    }

    #[test]
    fn nodes_are_named_as_kind_names_them() {
        use Role::*;
        assert_eq!(
            node_names("kina", &[ControlPlane, Worker, Worker, Worker]),
            [
                "kina-control-plane",
                "kina-worker",
                "kina-worker2",
                "kina-worker3"
            ]
        );
    }

    #[test]
    fn every_node_gets_its_own_pod_cidr_and_no_address_before_the_provider_gives_one() {
        let (_, plan) = plan_of(THREE, None);
        let cidrs: Vec<&str> = plan.nodes.iter().map(|n| n.pod_cidr.as_str()).collect();
        assert_eq!(cidrs, ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]);
        assert!(plan.nodes.iter().all(|n| n.address.is_none()));
        assert_eq!(plan.provider_state, None);
    }

    #[test]
    fn a_cluster_without_kubernetes_forwards_no_api_server() {
        let (_, plan) = plan_of(THREE, None);
        assert_eq!(plan.api_server, None);
        assert!(plan.nodes[0].port_mappings.is_empty());
    }

    #[test]
    fn port_mappings_keep_kinds_fields_and_host_port_zero_gets_a_free_one() {
        let (_, plan) = plan_of(THREE, Some("v1.34.2"));
        assert_eq!(
            plan.api_server,
            Some(ApiServer {
                address: Ipv4Addr::LOCALHOST,
                port: 31000
            })
        );
        assert_eq!(
            plan.nodes[0].port_mappings,
            [PortMapping {
                protocol: Protocol::Tcp,
                listen_address: Ipv4Addr::LOCALHOST,
                host_port: 31000,
                container_port: API_SERVER_PORT,
            }]
        );
        assert_eq!(
            plan.nodes[1].port_mappings,
            [
                PortMapping {
                    protocol: Protocol::Tcp,
                    listen_address: Ipv4Addr::UNSPECIFIED,
                    host_port: 31000,
                    container_port: 80,
                },
                PortMapping {
                    protocol: Protocol::Udp,
                    listen_address: Ipv4Addr::UNSPECIFIED,
                    host_port: 5353,
                    container_port: 53,
                },
            ]
        );
        // The record spells them as kind's config does.
        let json = serde_json::to_value(&plan.nodes[1].port_mappings[1]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"protocol": "udp", "listenAddress": "0.0.0.0", "hostPort": 5353, "containerPort": 53})
        );
    }

    #[test]
    fn extra_mounts_are_made_absolute_against_the_directory_up_ran_in() {
        let (_, plan) = plan_of(THREE, None);
        assert_eq!(
            plan.nodes[1].mounts,
            [NodeMount {
                host_path: PathBuf::from("/work/shared"),
                container_path: "/srv".into(),
                read_only: true,
                propagation: Propagation::None,
            }]
        );
    }

    #[test]
    fn specs_name_the_known_peers_the_providers_interfaces_and_the_stop_phase() {
        let (config, mut plan) = plan_of(THREE, None);
        plan.nodes[0].address = Some(Ipv4Addr::new(192, 168, 64, 2));
        plan.nodes[2].address = Some(Ipv4Addr::new(192, 168, 64, 4));
        let interfaces = NodeInterfaces {
            interface: None,
            cluster_interface: Some(ClusterInterface {
                device: "eth1".into(),
                address: "10.89.0.3/24".into(),
            }),
        };
        let spec = plan
            .node_spec(1, &config, None, interfaces.clone())
            .unwrap();
        assert_eq!(spec.name, "kina-worker");
        assert_eq!(spec.role, Role::Worker);
        assert_eq!(spec.stop_after.as_deref(), Some("containerd"));
        assert_eq!(spec.kubernetes, None);
        assert_eq!(spec.cluster_interface, interfaces.cluster_interface);
        let peers: Vec<(&str, &str, &str)> = spec
            .peers
            .iter()
            .map(|p| (p.name.as_str(), p.address.as_str(), p.pod_cidr.as_str()))
            .collect();
        assert_eq!(
            peers,
            [
                ("kina-control-plane", "192.168.64.2", "10.244.0.0/24"),
                ("kina-worker2", "192.168.64.4", "10.244.2.0/24"),
            ]
        );
        // What kina-init reads back is what was planned.
        let text = serde_json::to_vec(&spec).unwrap();
        assert_eq!(NodeSpec::from_json(&text, "test").unwrap(), spec);
    }

    #[test]
    fn only_the_control_plane_gets_the_ca_key() {
        let (config, plan) = plan_of(THREE, Some("v1.34.2"));
        let secrets = crate::cluster_secrets::generate("kina").unwrap();
        let spec = |i| {
            plan.node_spec(i, &config, Some(&secrets), NodeInterfaces::default())
                .unwrap()
                .kubernetes
                .unwrap()
        };
        let (cp, worker) = (spec(0), spec(2));
        assert!(cp.certificate_authority.is_some());
        assert!(worker.certificate_authority.is_none());
        for k in [&cp, &worker] {
            assert_eq!(
                k.ca_cert_hash.as_deref(),
                Some(secrets.ca_cert_hash.as_str())
            );
            assert!(k.api_server_cert_sans.contains(&"127.0.0.1".to_string()));
        }
        assert!(cp.wait_for_coredns && !worker.wait_for_coredns);
        // A Kubernetes image without secrets is a programming error, named.
        let err = plan
            .node_spec(0, &config, None, NodeInterfaces::default())
            .unwrap_err();
        assert!(err.to_string().contains("secrets"), "{err}");
    }

    #[test]
    fn kinds_node_labels_reach_that_nodes_spec_only() {
        let text = THREE.replacen(
            "- role: worker\n",
            "- role: worker\n  labels:\n    ingress-ready: \"true\"\n    tier: web\n",
            1,
        );
        let (config, plan) = plan_of(&text, None);
        let labels = |i| {
            plan.node_spec(i, &config, None, NodeInterfaces::default())
                .unwrap()
                .node_labels
        };
        assert!(labels(0).is_empty());
        assert_eq!(
            labels(1).into_iter().collect::<Vec<_>>(),
            [
                ("ingress-ready".to_string(), "true".to_string()),
                ("tier".to_string(), "web".to_string())
            ]
        );
        assert!(labels(2).is_empty());
    }

    #[test]
    fn nodes_join_the_control_plane_by_address_only_when_addresses_are_fixed() {
        let (config, mut plan) = plan_of(THREE, Some("v1.34.2"));
        let secrets = crate::cluster_secrets::generate("kina").unwrap();
        plan.nodes[0].address = Some(Ipv4Addr::new(10, 89, 0, 2));
        let endpoint = |plan: &ClusterPlan| {
            plan.node_spec(1, &config, Some(&secrets), NodeInterfaces::default())
                .unwrap()
                .kubernetes
                .unwrap()
                .control_plane_endpoint
        };
        assert_eq!(endpoint(&plan), "kina-control-plane:6443");
        plan.addressing = Addressing::Fixed;
        assert_eq!(endpoint(&plan), "10.89.0.2:6443");
    }

    /// kind's node-shaping fields reach every node's spec, with a base
    /// image too (no Kubernetes section), since kina-init applies them in
    /// the network and containerd phases.
    #[test]
    fn every_spec_carries_the_cni_dns_and_containerd_settings() {
        let text = format!(
            "{THREE}networking:\n  disableDefaultCNI: true\n  dnsSearch: [corp.example]\n\
             containerdConfigPatches:\n- 'version = 2'\n\
             containerdConfigPatchesJSON6902:\n- '[{{\"op\": \"add\", \"path\": \"/debug\", \"value\": {{}}}}]'\n"
        );
        let (config, plan) = plan_of(&text, None);
        for i in 0..3 {
            let spec = plan
                .node_spec(i, &config, None, NodeInterfaces::default())
                .unwrap();
            assert!(spec.disable_default_cni);
            assert_eq!(spec.dns_search, Some(vec!["corp.example".to_string()]));
            assert_eq!(spec.containerd_config_patches, ["version = 2"]);
            assert_eq!(
                spec.containerd_config_patches_json6902,
                [serde_json::json!([{"op": "add", "path": "/debug", "value": {}}])]
            );
        }
        let (config, plan) = plan_of(THREE, None);
        let spec = plan
            .node_spec(0, &config, None, NodeInterfaces::default())
            .unwrap();
        assert!(!spec.disable_default_cni);
        assert_eq!(spec.dns_search, None);
    }
}
