//! What `kina up` will make, decided before anything is made: node names
//! in kind's scheme, each node's address on the cluster segment and its pod
//! CIDR, the API server's host port, and the node spec each node boots with.
//! A plan is pure data, so every decision is tested without a VM.

use std::net::Ipv4Addr;

use anyhow::{Context, bail};
use kina_contract::cidr::Ipv4Cidr;
use kina_contract::node_spec::{
    CertificateAuthority, ClusterInterface, KubernetesSettings, NODE_SPEC_VERSION, NodeSpec, Peer,
    Role,
};
use kina_qemu::vm::{ForwardProtocol, HostForward, Segment};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cluster_config::{self, ClusterConfig};
use crate::cluster_secrets::ClusterSecrets;

/// The cluster segment's subnet. Each cluster has a segment of its own (its
/// own multicast group and port), so every cluster can use the same one.
pub const SEGMENT_SUBNET: &str = "10.89.0.0/24";
/// The first node's host number on the segment (kind's docker network
/// starts its nodes at .2 too).
const FIRST_HOST: u8 = 2;
/// The API server's port inside the control-plane node.
pub const API_SERVER_PORT: u16 = 6443;
/// The device the cluster segment appears as in a QEMU node: its second
/// NIC (eth0 stays on QEMU's user network).
pub const SEGMENT_DEVICE: &str = "eth1";
/// The kernel profiles a node must pass when the config names none.
pub const DEFAULT_PROFILES: [&str; 2] = ["kubernetes-base", "ptp"];
/// How long kubeadm may take on a node before its phase gives up.
pub const DEFAULT_KUBERNETES_TIMEOUT_SECS: u64 = 900;

/// One node of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedNode {
    pub name: String,
    pub role: Role,
    /// Its address on the cluster's network (no prefix length). QEMU: the
    /// plan's segment address, fixed for the cluster's life. Apple: what
    /// `container inspect` said after the last start (`None` before the
    /// first), since vmnet hands out addresses itself.
    pub address: Option<Ipv4Addr>,
    pub pod_cidr: String,
    /// The segment NIC's MAC (QEMU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    pub cpus: u32,
    pub memory_mib: u32,
    pub host_forwards: Vec<HostForward>,
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

/// The segment every node of the cluster joins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentPlan {
    pub group: Ipv4Addr,
    pub port: u16,
    pub subnet: String,
}

impl SegmentPlan {
    /// The QEMU attachment of one node.
    pub fn for_node(&self, node: &PlannedNode) -> Segment {
        Segment {
            group: self.group,
            port: self.port,
            mac: node.mac.clone().unwrap_or_default(),
        }
    }
}

/// Which provider runs a cluster's nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    #[default]
    Qemu,
    Apple,
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
    /// Ports of the segments of the clusters that already exist.
    pub ports_in_use: &'a [u16],
    /// What else tells this cluster from a namesake: kina's data directory,
    /// so two users' (or two test runs') clusters called `kina` get
    /// different segments.
    pub segment_scope: &'a str,
    /// Picks a free host port for `hostPort: 0` and the API server.
    pub free_port: &'a dyn Fn(ForwardProtocol, Ipv4Addr) -> anyhow::Result<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterPlan {
    #[serde(default)]
    pub provider: ProviderKind,
    pub name: String,
    pub image: String,
    pub kubernetes_version: Option<String>,
    pub stop_after: Option<String>,
    /// `None` for clusters without Kubernetes.
    pub api_server: Option<ApiServer>,
    /// The QEMU nodes' own L2 segment; Apple nodes share a vmnet network.
    pub segment: Option<SegmentPlan>,
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
/// of a cluster.
fn mac_for(cluster: &str, index: usize) -> String {
    let d = digest_of(cluster);
    format!(
        "52:54:00:{:02x}:{:02x}:{:02x}",
        d[4],
        d[5],
        (index as u8).wrapping_add(1)
    )
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

pub fn plan(inputs: &PlanInputs) -> anyhow::Result<ClusterPlan> {
    let config = inputs.config;
    let net = &config.cluster.networking;
    let pod_subnet = Ipv4Cidr::parse(&net.pod_subnet)
        .map_err(|e| anyhow::anyhow!("networking.podSubnet {}: {e}", net.pod_subnet))?;
    let qemu = inputs.provider == ProviderKind::Qemu;
    let segment = qemu.then(|| segment_for(inputs.name, inputs.segment_scope, inputs.ports_in_use));
    // The config check (`unsupported_on`) refused subnets overlapping it.
    let segment_net = Ipv4Cidr::parse(SEGMENT_SUBNET)
        .map_err(|e| anyhow::anyhow!("segment subnet {SEGMENT_SUBNET}: {e}"))?;
    let roles: Vec<Role> = config
        .cluster
        .nodes
        .iter()
        .map(|n| n.role.clone())
        .collect();
    let names = node_names(inputs.name, &roles);
    let mut nodes = Vec::new();
    let mut api_server = None;
    for (i, ((name, role), node)) in names
        .into_iter()
        .zip(roles)
        .zip(&config.cluster.nodes)
        .enumerate()
    {
        let host = u8::try_from(i)
            .ok()
            .and_then(|i| i.checked_add(FIRST_HOST))
            .filter(|h| *h < 255)
            .context("more nodes than the cluster segment has addresses")?;
        let mut forwards = Vec::new();
        if role == Role::ControlPlane && inputs.kubernetes_version.is_some() {
            let address: Ipv4Addr = net.api_server_address.parse().with_context(|| {
                format!(
                    "networking.apiServerAddress {}: kina forwards IPv4 host addresses only",
                    net.api_server_address
                )
            })?;
            let port = match u16::try_from(net.api_server_port) {
                Ok(0) | Err(_) => (inputs.free_port)(ForwardProtocol::Tcp, address)?,
                Ok(p) => p,
            };
            forwards.push(HostForward {
                protocol: ForwardProtocol::Tcp,
                address,
                host_port: port,
                node_port: API_SERVER_PORT,
            });
            api_server = Some(ApiServer {
                address: if address.is_unspecified() {
                    Ipv4Addr::LOCALHOST
                } else {
                    address
                },
                port,
            });
        }
        for (p, mapping) in node.extra_port_mappings.iter().enumerate() {
            let field = format!("nodes[{i}].extraPortMappings[{p}]");
            let protocol = match mapping.protocol {
                cluster_config::Protocol::Tcp => ForwardProtocol::Tcp,
                cluster_config::Protocol::Udp => ForwardProtocol::Udp,
                cluster_config::Protocol::Sctp => {
                    bail!("{field}.protocol: kina forwards TCP and UDP only")
                }
            };
            let address: Ipv4Addr = mapping.listen_address.parse().with_context(|| {
                format!(
                    "{field}.listenAddress {}: kina forwards IPv4 host addresses only",
                    mapping.listen_address
                )
            })?;
            let node_port = u16::try_from(mapping.container_port)
                .ok()
                .filter(|p| *p > 0)
                .with_context(|| {
                    format!(
                        "{field}.containerPort {}: not a port",
                        mapping.container_port
                    )
                })?;
            let host_port = match u16::try_from(mapping.host_port) {
                Ok(0) | Err(_) => (inputs.free_port)(protocol, address)?,
                Ok(p) => p,
            };
            forwards.push(HostForward {
                protocol,
                address,
                host_port,
                node_port,
            });
        }
        let resources = config.node_resources(i);
        nodes.push(PlannedNode {
            name,
            role,
            address: qemu
                .then(|| Ipv4Addr::from(u32::from(segment_net.network()) + u32::from(host))),
            pod_cidr: pod_cidr(&pod_subnet, i)?,
            mac: qemu.then(|| mac_for(inputs.name, i)),
            cpus: resources.cpus,
            memory_mib: resources.memory_mib,
            host_forwards: forwards,
        });
    }
    Ok(ClusterPlan {
        provider: inputs.provider,
        name: inputs.name.to_string(),
        image: inputs.image.to_string(),
        kubernetes_version: inputs.kubernetes_version.map(str::to_string),
        stop_after: inputs.stop_after.map(str::to_string),
        api_server,
        segment,
        nodes,
    })
}

impl ClusterPlan {
    pub fn control_plane(&self) -> Option<&PlannedNode> {
        self.nodes.iter().find(|n| n.role == Role::ControlPlane)
    }

    /// The spec node `index` boots with. `secrets` are the cluster's CA and
    /// token when the image carries Kubernetes; only the control plane gets
    /// the CA's key. Peers whose address is not known yet (Apple nodes not
    /// started) are left out; the spec is written again once they are.
    pub fn node_spec(
        &self,
        index: usize,
        config: &ClusterConfig,
        secrets: Option<&ClusterSecrets>,
    ) -> anyhow::Result<NodeSpec> {
        let node = self
            .nodes
            .get(index)
            .with_context(|| format!("no node {index} in the plan"))?;
        // QEMU nodes: eth0 on QEMU's user network, eth1 on the segment.
        // Apple's vminitd configures eth0 itself.
        let (interface, cluster_interface) = match &self.segment {
            Some(segment) => {
                let prefix = Ipv4Cidr::parse(&segment.subnet)
                    .map_err(|e| anyhow::anyhow!("segment subnet {}: {e}", segment.subnet))?
                    .prefix;
                let address = node
                    .address
                    .with_context(|| format!("node {} has no segment address", node.name))?;
                (
                    Some(kina_qemu::node::user_network_interface()),
                    Some(ClusterInterface {
                        device: SEGMENT_DEVICE.to_string(),
                        address: format!("{address}/{prefix}"),
                    }),
                )
            }
            None => (None, None),
        };
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
            interface,
            kubeadm_config_patches: merge,
            kubeadm_config_patches_json6902: json6902,
            cluster_interface,
            stop_after: self.stop_after.clone(),
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

    /// Where nodes reach the API server. QEMU: the control plane's fixed
    /// segment address. Apple: its name, which every node's /etc/hosts maps
    /// to its current address (kina-init rewrites the entries when the host
    /// rewrites the spec after a start), since vmnet may give it another
    /// address on every start; kubeadm puts the name in the certificate.
    fn endpoint_host(&self, control_plane: &PlannedNode) -> String {
        match (self.provider, control_plane.address) {
            (ProviderKind::Qemu, Some(address)) => address.to_string(),
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
                (100u8..=250).prop_filter("not the segment's 10.89", |b| *b != 89),
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

            /// Whatever the config, the plan gives every node its own name,
            /// segment address, MAC and pod CIDR inside the pod subnet, every
            /// port mapping exactly one forward on its own node, and a
            /// segment port no other cluster uses; and it survives being
            /// written to cluster.json and read back.
            #[test]
            fn every_plan_keeps_nodes_apart(
                (pod, mappings) in clusters(),
                name in "[a-z][a-z0-9-]{0,20}",
                scope in "/[a-z]{1,10}",
                in_use in prop::collection::vec(40000u16..60000, 0..50),
            ) {
                let text = render(pod, &mappings);
                let config = ClusterConfig::parse(&text)
                    .map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?;
                let next_free = Cell::new(30000u16);
                let free_port = |_: ForwardProtocol, _: Ipv4Addr| {
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
                    ports_in_use: &in_use,
                    segment_scope: &scope,
                    free_port: &free_port,
                })
                .map_err(|e| TestCaseError::fail(format!("{e:#}\n{text}")))?;

                prop_assert_eq!(plan.nodes.len(), mappings.len());
                prop_assert_eq!(&plan.nodes[0].role, &Role::ControlPlane);
                let distinct = |v: Vec<String>| v.iter().collect::<BTreeSet<_>>().len() == v.len();
                prop_assert!(distinct(plan.nodes.iter().map(|n| n.name.clone()).collect()));
                prop_assert!(distinct(plan.nodes.iter().map(|n| n.mac.clone().unwrap_or_default()).collect()));
                let segment = plan.segment.clone().unwrap();
                prop_assert!(segment.group.is_multicast());
                prop_assert!((40000..60000).contains(&segment.port));
                prop_assert!(!in_use.contains(&segment.port));
                let segment_net = Ipv4Cidr::parse(&segment.subnet).unwrap();
                let pod_net = Ipv4Cidr::parse(&format!("10.{pod}.0.0/16")).unwrap();
                let mut addresses = BTreeSet::new();
                let mut cidrs: Vec<Ipv4Cidr> = Vec::new();
                for node in &plan.nodes {
                    let address = node.address.unwrap();
                    prop_assert!(segment_net.contains(address));
                    prop_assert!(address.octets()[3] >= 2 && address.octets()[3] < 255);
                    prop_assert!(addresses.insert(address));
                    let cidr = Ipv4Cidr::parse(&node.pod_cidr).unwrap();
                    prop_assert!(pod_net.contains(cidr.network()));
                    prop_assert!(cidrs.iter().all(|c| !c.overlaps(&cidr)), "{} overlaps", node.pod_cidr);
                    cidrs.push(cidr);
                }
                let mut host_ports = BTreeSet::new();
                for (node, ports) in plan.nodes.iter().zip(&mappings) {
                    prop_assert_eq!(node.host_forwards.len(), ports.len());
                    for (forward, (container, host, udp)) in node.host_forwards.iter().zip(ports) {
                        prop_assert_eq!(forward.node_port, *container);
                        if *host != 0 {
                            prop_assert_eq!(forward.host_port, *host);
                        }
                        let protocol = if *udp { ForwardProtocol::Udp } else { ForwardProtocol::Tcp };
                        prop_assert_eq!(forward.protocol, protocol);
                        prop_assert!(host_ports.insert((*udp, forward.host_port)));
                    }
                }
                let json = serde_json::to_string(&plan).unwrap();
                let back: ClusterPlan = serde_json::from_str(&json).unwrap();
                prop_assert_eq!(back, plan);
            }
        }
    }

    const THREE: &str = "kind: Cluster
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
- role: worker
";

    fn no_free_port(_: ForwardProtocol, _: Ipv4Addr) -> anyhow::Result<u16> {
        Ok(31000)
    }

    fn plan_of(text: &str, kubernetes: Option<&str>) -> (ClusterConfig, ClusterPlan) {
        let config = ClusterConfig::parse(text).unwrap();
        let plan = plan(&PlanInputs {
            provider: ProviderKind::Qemu,
            config: &config,
            name: "kina",
            image: "kina.local/node:base",
            kubernetes_version: kubernetes,
            stop_after: Some("containerd"),
            ports_in_use: &[],
            segment_scope: "/data",
            free_port: &no_free_port,
        })
        .unwrap();
        (config, plan)
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
    fn every_node_gets_its_own_address_pod_cidr_and_mac_on_one_segment() {
        let (_, plan) = plan_of(THREE, None);
        let addresses: Vec<String> = plan
            .nodes
            .iter()
            .map(|n| n.address.unwrap().to_string())
            .collect();
        assert_eq!(addresses, ["10.89.0.2", "10.89.0.3", "10.89.0.4"]);
        let cidrs: Vec<&str> = plan.nodes.iter().map(|n| n.pod_cidr.as_str()).collect();
        assert_eq!(cidrs, ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]);
        let mut macs: Vec<&str> = plan.nodes.iter().filter_map(|n| n.mac.as_deref()).collect();
        macs.sort();
        macs.dedup();
        assert_eq!(macs.len(), 3);
        assert!(macs.iter().all(|m| m.starts_with("52:54:00:")));
        assert!(plan.segment.unwrap().group.is_multicast());
    }

    #[test]
    fn a_cluster_without_kubernetes_forwards_no_api_server() {
        let (_, plan) = plan_of(THREE, None);
        assert_eq!(plan.api_server, None);
        assert!(plan.nodes[0].host_forwards.is_empty());
    }

    #[test]
    fn port_mappings_become_forwards_and_host_port_zero_gets_a_free_one() {
        let (_, plan) = plan_of(THREE, Some("v1.34.2"));
        assert_eq!(
            plan.api_server,
            Some(ApiServer {
                address: Ipv4Addr::LOCALHOST,
                port: 31000
            })
        );
        assert_eq!(
            plan.nodes[0].host_forwards,
            [HostForward::loopback_tcp(31000, API_SERVER_PORT)]
        );
        assert_eq!(
            plan.nodes[1].host_forwards,
            [
                HostForward {
                    protocol: ForwardProtocol::Tcp,
                    address: Ipv4Addr::UNSPECIFIED,
                    host_port: 31000,
                    node_port: 80,
                },
                HostForward {
                    protocol: ForwardProtocol::Udp,
                    address: Ipv4Addr::UNSPECIFIED,
                    host_port: 5353,
                    node_port: 53,
                },
            ]
        );
    }

    #[test]
    fn specs_name_the_peers_the_segment_link_and_the_stop_phase() {
        let (config, plan) = plan_of(THREE, None);
        let spec = plan.node_spec(1, &config, None).unwrap();
        assert_eq!(spec.name, "kina-worker");
        assert_eq!(spec.role, Role::Worker);
        assert_eq!(spec.stop_after.as_deref(), Some("containerd"));
        assert_eq!(spec.kubernetes, None);
        assert_eq!(
            spec.cluster_interface,
            Some(ClusterInterface {
                device: "eth1".into(),
                address: "10.89.0.3/24".into()
            })
        );
        let peers: Vec<(&str, &str, &str)> = spec
            .peers
            .iter()
            .map(|p| (p.name.as_str(), p.address.as_str(), p.pod_cidr.as_str()))
            .collect();
        assert_eq!(
            peers,
            [
                ("kina-control-plane", "10.89.0.2", "10.244.0.0/24"),
                ("kina-worker2", "10.89.0.4", "10.244.2.0/24"),
            ]
        );
        // What kina-init reads back is what was planned.
        let text = serde_json::to_vec(&spec).unwrap();
        assert_eq!(NodeSpec::from_json(&text, "test").unwrap(), spec);
    }

    #[test]
    fn only_the_control_plane_gets_the_ca_key_and_workers_join_its_segment_address() {
        let (config, plan) = plan_of(THREE, Some("v1.34.2"));
        let secrets = crate::cluster_secrets::generate("kina").unwrap();
        let cp = plan.node_spec(0, &config, Some(&secrets)).unwrap();
        let worker = plan.node_spec(2, &config, Some(&secrets)).unwrap();
        let (cp, worker) = (cp.kubernetes.unwrap(), worker.kubernetes.unwrap());
        assert!(cp.certificate_authority.is_some());
        assert!(worker.certificate_authority.is_none());
        for k in [&cp, &worker] {
            assert_eq!(k.control_plane_endpoint, "10.89.0.2:6443");
            assert_eq!(
                k.ca_cert_hash.as_deref(),
                Some(secrets.ca_cert_hash.as_str())
            );
            assert!(k.api_server_cert_sans.contains(&"127.0.0.1".to_string()));
        }
        assert!(cp.wait_for_coredns && !worker.wait_for_coredns);
        // A Kubernetes image without secrets is a programming error, named.
        let err = plan.node_spec(0, &config, None).unwrap_err();
        assert!(err.to_string().contains("secrets"), "{err}");
    }

    #[test]
    fn apple_nodes_get_addresses_from_vmnet_and_join_the_control_plane_by_name() {
        let config = ClusterConfig::parse(THREE).unwrap();
        let mut plan = plan(&PlanInputs {
            provider: ProviderKind::Apple,
            config: &config,
            name: "kina",
            image: "kina.local/node:v1.34.2",
            kubernetes_version: Some("v1.34.2"),
            stop_after: None,
            ports_in_use: &[],
            segment_scope: "/data",
            free_port: &no_free_port,
        })
        .unwrap();
        assert_eq!(plan.segment, None);
        assert!(
            plan.nodes
                .iter()
                .all(|n| n.address.is_none() && n.mac.is_none())
        );
        let secrets = crate::cluster_secrets::generate("kina").unwrap();
        // Before any start: no peers known, no QEMU interfaces.
        let spec = plan.node_spec(1, &config, Some(&secrets)).unwrap();
        assert!(spec.peers.is_empty());
        assert_eq!(spec.interface, None);
        assert_eq!(spec.cluster_interface, None);
        assert_eq!(
            spec.kubernetes.unwrap().control_plane_endpoint,
            "kina-control-plane:6443"
        );
        // Once the control plane has an address, it is a peer.
        plan.nodes[0].address = Some(Ipv4Addr::new(192, 168, 64, 2));
        let spec = plan.node_spec(1, &config, Some(&secrets)).unwrap();
        let peers: Vec<(&str, &str)> = spec
            .peers
            .iter()
            .map(|p| (p.name.as_str(), p.address.as_str()))
            .collect();
        assert_eq!(peers, [("kina-control-plane", "192.168.64.2")]);
    }

    #[test]
    fn a_segment_port_another_cluster_uses_is_never_reused() {
        let first = segment_for("kina", "/data", &[]);
        let second = segment_for("kina", "/data", &[first.port]);
        assert_ne!(first.port, second.port);
        assert!((40000..60000).contains(&second.port));
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
}
