//! What a provider cannot honour in a config that is otherwise valid: a
//! mount's propagation across a VM boundary, SCTP port forwarding, a kernel
//! recipe on Apple's `container`, subnets that collide with QEMU's
//! networks, and so on.
//!
//! These are refused before anything boots, naming the field and why,
//! instead of being silently ignored. Checks every provider shares come
//! first; the rest are in one function per provider and per node part, so
//! what one provider refuses reads in one place.

use kina_contract::cidr::Ipv4Cidr;

use super::{
    Cluster, ClusterConfig, FieldError, KinaSettings, Mount, Networking, Node, PortMapping,
    Propagation, Protocol, Provider,
};

impl ClusterConfig {
    /// The fields `provider` cannot honour, each saying why; empty when the
    /// config can be created as written.
    pub fn unsupported_on(&self, provider: Provider) -> Vec<FieldError> {
        let c = &self.cluster;
        let mut out = refused_anywhere(c);
        match provider {
            Provider::Qemu => out.extend(qemu_subnet_overlaps(&c.networking)),
            Provider::AppleContainer => out.extend(apple_kernel_refusal(&self.kina)),
        }
        for (n, node) in c.nodes.iter().enumerate() {
            out.extend(kindest_image_refusal(n, node));
            for (m, mount) in node.extra_mounts.iter().enumerate() {
                let path = format!("nodes[{n}].extraMounts[{m}]");
                match provider {
                    Provider::Qemu => out.push(qemu_mount_refusal(path, mount)),
                    Provider::AppleContainer => out.extend(apple_mount_refusals(&path, mount)),
                }
            }
            for (p, mapping) in node.extra_port_mappings.iter().enumerate() {
                let path = format!("nodes[{n}].extraPortMappings[{p}]");
                out.extend(sctp_refusal(provider, &path, mapping));
            }
        }
        out
    }
}

/// What no provider does yet: leave out the CNI, set DNS search domains,
/// patch containerd's config.
fn refused_anywhere(c: &Cluster) -> Vec<FieldError> {
    let mut out = Vec::new();
    if c.networking.disable_default_cni {
        out.push(FieldError::cluster(
            "networking.disableDefaultCNI",
            "kina's ptp CNI is part of the node: kina-init writes its config, the routes to \
             the other nodes' pods and the masquerading at every boot, so there is no \
             default CNI to leave out and another CNI would run alongside it",
        ));
    }
    if c.networking.dns_search.is_some() {
        out.push(FieldError::cluster(
            "networking.dnsSearch",
            "kina cannot set the nodes' DNS search domains yet: the node spec carries \
             nameservers only",
        ));
    }
    if !c.containerd_config_patches.is_empty() {
        out.push(FieldError::cluster(
            "containerdConfigPatches",
            "kina cannot patch containerd's config yet: kina-init writes it itself and the \
             node spec carries no containerd patches",
        ));
    }
    if !c.containerd_config_patches_json6902.is_empty() {
        out.push(FieldError::cluster(
            "containerdConfigPatchesJSON6902",
            "kina cannot patch containerd's config yet: kina-init writes it itself and the \
             node spec carries no containerd patches",
        ));
    }
    out
}

/// A kernel recipe on Apple's `container`, which boots a kernel image.
fn apple_kernel_refusal(kina: &KinaSettings) -> Option<FieldError> {
    kina.kernel.is_some().then(|| {
        FieldError::kina(
            "kernel",
            "a kernel recipe is for QEMU nodes: Apple's `container --kernel` takes a kernel \
             image, and kina does not turn its recipe's Debian kernel into one yet; leave \
             `kernel` out to boot Apple's default kernel, which kina-init checks at boot",
        )
    })
}

/// Pod and service subnets overlapping the networks a QEMU node is on.
fn qemu_subnet_overlaps(net: &Networking) -> Vec<FieldError> {
    let node_nets = [
        (
            qemu_node_network(),
            "the QEMU provider's user network (each node's eth0)",
        ),
        (
            Ipv4Cidr::parse(crate::cluster::plan::SEGMENT_SUBNET).ok(),
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

/// The network QEMU's user-mode networking puts a node on.
fn qemu_node_network() -> Option<Ipv4Cidr> {
    Ipv4Cidr::parse(&kina_qemu::node::user_network_interface().address).ok()
}

/// One of kind's own node images, which no kina provider can boot.
fn kindest_image_refusal(n: usize, node: &Node) -> Option<FieldError> {
    let image = node
        .image
        .as_ref()
        .filter(|image| is_kindest_image(image))?;
    Some(FieldError::cluster(
        format!("nodes[{n}].image"),
        format!(
            "{image} is one of kind's node images, made to run as a container under \
             systemd; a kina node boots a kina node image (`kina image list`; leave \
             `image` out for kina's default)"
        ),
    ))
}

pub(super) fn is_kindest_image(image: &str) -> bool {
    let repo = image
        .strip_prefix("docker.io/")
        .or_else(|| image.strip_prefix("index.docker.io/"))
        .unwrap_or(image);
    repo.starts_with("kindest/node:") || repo.starts_with("kindest/node@") || repo == "kindest/node"
}

/// Any mount on QEMU, whose VMs have no shared-directory device.
fn qemu_mount_refusal(path: String, mount: &Mount) -> FieldError {
    FieldError::cluster(
        path,
        format!(
            "the QEMU provider cannot share host directories with a node yet \
             (its VMs have no virtiofs or 9p device), so {} cannot appear at {}",
            mount.host_path, mount.container_path
        ),
    )
}

/// What an Apple `container` mount cannot do across the VM boundary.
fn apple_mount_refusals(path: &str, mount: &Mount) -> Vec<FieldError> {
    let mut out = Vec::new();
    if mount.propagation != Propagation::None {
        out.push(FieldError::cluster(
            format!("{path}.propagation"),
            format!(
                "{:?} propagation needs the host and the node to share a kernel; a \
                 kina node is a VM with its own, so mounts made later on either side \
                 never reach the other (use None)",
                mount.propagation
            ),
        ));
    }
    if mount.selinux_relabel {
        out.push(FieldError::cluster(
            format!("{path}.selinuxRelabel"),
            "relabelling gives the host directory the SELinux label of the \
             container using it (docker's `:Z`); macOS has no SELinux and a kina node \
             is a VM, not a container with a label",
        ));
    }
    out
}

/// SCTP, which neither provider's port forwarding carries.
fn sctp_refusal(provider: Provider, path: &str, mapping: &PortMapping) -> Option<FieldError> {
    if mapping.protocol != Protocol::Sctp {
        return None;
    }
    let why = match provider {
        Provider::Qemu => "QEMU's user-mode network forwards TCP and UDP only",
        Provider::AppleContainer => "Apple's container forwards TCP and UDP ports only",
    };
    Some(FieldError::cluster(
        format!("{path}.protocol"),
        format!("SCTP cannot be forwarded: {why}"),
    ))
}
