//! The checks on a decoded config: kind's own (a valid name, one
//! control-plane node, ports and addresses, host ports taken once) and what
//! kina cannot do on any provider (IPv6, a second control-plane node).
//!
//! Each check is its own function; [`validate`] runs them in a fixed order
//! (name, networking, roles, each node's mounts, ports and patches,
//! containerd patches, the Kina document), which is the order the errors
//! are reported in. What only one provider cannot do is not here but in
//! `provider_refusals`: a config valid here may still be created on another
//! provider.

use std::net::IpAddr;

use kina_contract::cidr::Ipv4Cidr;
use kina_contract::containerd_config::{NodeRuntime, PatchError, config_text};
use kina_contract::node_spec::{NodeSpec, Role};
use serde_json::Value;

use super::patches::{PatchSet, Patches, json_patch_ops, json6902_patches, merge_patches};
use super::{Cluster, FieldError, IpFamily, KinaSettings, MemoryMib, Networking, Node, Protocol};

/// A name that can address an existing cluster: kind's characters
/// (lowercase letters, digits, `.` and `-`), starting with a letter or
/// digit, so it is never empty, `.`, `..` or a flag, since it names a
/// directory kina removes on `kina down`. Looser than the rule for new
/// clusters (`crate::cluster_name::check`), so a cluster an older kina made
/// under a name now refused can still be deleted.
pub fn check_cluster_name(name: &str) -> Result<(), String> {
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-';
    let starts_well = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    // A directory name: at most 255 bytes on every filesystem kina runs on.
    if !starts_well || !name.bytes().all(allowed) || name.len() > 255 {
        return Err(format!(
            "`{name}` is not a cluster name: use lowercase letters, digits, `.` and `-`, \
             starting with a letter or digit (as kind)"
        ));
    }
    Ok(())
}

/// Every check on the Cluster and Kina documents, errors pushed in the
/// order of the file; returns the kubeadm patches and the containerd JSON
/// 6902 patches as JSON.
pub(super) fn validate(
    cluster: &Cluster,
    kina: &KinaSettings,
    errors: &mut Vec<FieldError>,
) -> (Patches, Vec<Value>) {
    if let Some(name) = &cluster.name
        && let Err(problem) = crate::cluster_name::check(name)
    {
        errors.push(FieldError::cluster("name", problem));
    }
    networking(&cluster.networking, errors);
    dns_search(&cluster.networking, errors);
    subnets(&cluster.networking, cluster.nodes.len(), errors);
    roles(&cluster.nodes, errors);
    let mut bindings = api_server_binding(&cluster.networking);
    let mut patches = Patches {
        cluster: PatchSet {
            merge: merge_patches(
                &cluster.kubeadm_config_patches,
                "kubeadmConfigPatches",
                errors,
            ),
            json6902: json6902_patches(
                &cluster.kubeadm_config_patches_json6902,
                "kubeadmConfigPatchesJSON6902",
                errors,
            ),
        },
        nodes: Vec::new(),
    };
    for (n, node) in cluster.nodes.iter().enumerate() {
        mounts(n, node, errors);
        host_ports(n, node, &mut bindings, errors);
        patches.nodes.push(node_patches(n, node, errors));
    }
    let containerd = containerd_patches(cluster, errors);
    validate_kina(kina, cluster.nodes.len(), errors);
    (patches, containerd)
}

/// The IP family, and the API server's address and port.
fn networking(net: &Networking, errors: &mut Vec<FieldError>) {
    if net.ip_family != IpFamily::Ipv4 {
        let family = if net.ip_family == IpFamily::Ipv6 {
            "ipv6"
        } else {
            "dual"
        };
        errors.push(FieldError::cluster(
            "networking.ipFamily",
            format!(
                "{family} is not supported: kina supports ipv4 only (nodes get IPv4 addresses, \
                 and kina's ptp CNI, routes between nodes and masquerading are IPv4)"
            ),
        ));
    }
    if net.api_server_address.parse::<IpAddr>().is_err() {
        errors.push(FieldError::cluster(
            "networking.apiServerAddress",
            format!("`{}` is not an IP address", net.api_server_address),
        ));
    }
    if !(-1..=65535).contains(&net.api_server_port) {
        errors.push(FieldError::cluster(
            "networking.apiServerPort",
            format!(
                "{} is not a port (0 lets kina pick one)",
                net.api_server_port
            ),
        ));
    }
}

/// The pod and service subnets: IPv4 CIDRs, the pod subnet big enough for
/// a /24 per node, the service subnet small enough for kube-apiserver, and
/// the two apart.
fn subnets(net: &Networking, nodes: usize, errors: &mut Vec<FieldError>) {
    let pod = subnet(errors, "networking.podSubnet", &net.pod_subnet);
    let service = subnet(errors, "networking.serviceSubnet", &net.service_subnet);
    if let Some(pod) = pod {
        // kube-controller-manager gives every node a /24 of it
        // (--node-cidr-mask-size, 24 for IPv4).
        let per_node = if pod.prefix <= 24 {
            1u64 << (24 - pod.prefix)
        } else {
            0
        };
        if per_node < nodes as u64 {
            errors.push(FieldError::cluster(
                "networking.podSubnet",
                format!(
                    "{} is too small: every node gets a /24 of it, and there are {nodes} node(s)",
                    net.pod_subnet,
                ),
            ));
        }
    }
    if let Some(service) = service
        && service.prefix < 12
    {
        errors.push(FieldError::cluster(
            "networking.serviceSubnet",
            format!(
                "{} is too large: kube-apiserver accepts an IPv4 service range of /12 or smaller",
                net.service_subnet
            ),
        ));
    }
    if let (Some(pod), Some(service)) = (pod, service)
        && pod.overlaps(&service)
    {
        errors.push(FieldError::cluster(
            "networking.serviceSubnet",
            format!(
                "{} overlaps the pod subnet {}: a service address must never be a pod's",
                net.service_subnet, net.pod_subnet
            ),
        ));
    }
}

/// Roles: kind needs one control-plane node; kina runs exactly one.
fn roles(nodes: &[Node], errors: &mut Vec<FieldError>) {
    let control_planes: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.role == Role::ControlPlane)
        .map(|(i, _)| i)
        .collect();
    match control_planes.as_slice() {
        [] => errors.push(FieldError::cluster(
            "nodes",
            "no control-plane node: a cluster needs one (`role: control-plane`)",
        )),
        [_] => {}
        [first, rest @ ..] => {
            for i in rest {
                errors.push(FieldError::cluster(
                    format!("nodes[{i}].role"),
                    format!(
                        "a second control-plane node (nodes[{first}] is one): kina supports one \
                         control-plane node; kind's highly available control plane needs the \
                         external load balancer kind adds, which kina does not have"
                    ),
                ));
            }
        }
    }
}

/// A host listener taken so far: the field that took it, its address, port
/// and protocol.
type Binding = (String, IpAddr, i32, Protocol);

/// The API server's host port, when the config fixes one: the first
/// listener host ports must not collide with.
fn api_server_binding(net: &Networking) -> Vec<Binding> {
    let mut bindings = Vec::new();
    if net.api_server_port > 0
        && let Ok(addr) = net.api_server_address.parse::<IpAddr>()
    {
        bindings.push((
            "networking.apiServerPort".into(),
            addr,
            net.api_server_port,
            Protocol::Tcp,
        ));
    }
    bindings
}

/// Node `n`'s extra mounts: a host path, and an absolute path in the node.
fn mounts(n: usize, node: &Node, errors: &mut Vec<FieldError>) {
    for (m, mount) in node.extra_mounts.iter().enumerate() {
        let path = format!("nodes[{n}].extraMounts[{m}]");
        if mount.host_path.is_empty() {
            errors.push(FieldError::cluster(
                format!("{path}.hostPath"),
                "missing: the host path to mount",
            ));
        }
        if !mount.container_path.starts_with('/') {
            errors.push(FieldError::cluster(
                format!("{path}.containerPath"),
                if mount.container_path.is_empty() {
                    "missing: where the node sees the mount".into()
                } else {
                    format!("`{}` is not an absolute path", mount.container_path)
                },
            ));
        }
    }
}

/// Node `n`'s port mappings: ports in range, a listen address, and one
/// listener per address, port and protocol across nodes, 0.0.0.0 and ::
/// taking the port on every address (kind's rule). `bindings` holds the
/// listeners taken so far.
fn host_ports(n: usize, node: &Node, bindings: &mut Vec<Binding>, errors: &mut Vec<FieldError>) {
    for (p, mapping) in node.extra_port_mappings.iter().enumerate() {
        let path = format!("nodes[{n}].extraPortMappings[{p}]");
        if !(1..=65535).contains(&mapping.container_port) {
            errors.push(FieldError::cluster(
                format!("{path}.containerPort"),
                if mapping.container_port == 0 {
                    "missing: the node's port to forward to".into()
                } else {
                    format!("{} is not a port", mapping.container_port)
                },
            ));
        }
        if !(-1..=65535).contains(&mapping.host_port) {
            errors.push(FieldError::cluster(
                format!("{path}.hostPort"),
                format!("{} is not a port (0 lets kina pick one)", mapping.host_port),
            ));
            continue;
        }
        let Ok(addr) = mapping.listen_address.parse::<IpAddr>() else {
            errors.push(FieldError::cluster(
                format!("{path}.listenAddress"),
                format!("`{}` is not an IP address", mapping.listen_address),
            ));
            continue;
        };
        if mapping.host_port <= 0 {
            continue; // kina picks a free port
        }
        let binding = (path, addr, mapping.host_port, mapping.protocol);
        if let Err(e) = take(bindings, binding) {
            errors.push(e);
        }
    }
}

/// Adds `binding` to `bindings`, unless an earlier one holds its port.
fn take(bindings: &mut Vec<Binding>, binding: Binding) -> Result<(), FieldError> {
    let (path, addr, port, protocol) = &binding;
    let taken = bindings.iter().find(|(_, a, p, proto)| {
        p == port && proto == protocol && (a == addr || a.is_unspecified() || addr.is_unspecified())
    });
    if let Some((other, other_addr, _, _)) = taken {
        return Err(FieldError::cluster(
            format!("{path}.hostPort"),
            format!(
                "{port}/{} on {addr} is already taken by {other} (on {other_addr})",
                protocol.as_str(),
            ),
        ));
    }
    bindings.push(binding);
    Ok(())
}

/// Node `n`'s own kubeadm patches, as JSON.
fn node_patches(n: usize, node: &Node, errors: &mut Vec<FieldError>) -> PatchSet {
    PatchSet {
        merge: merge_patches(
            &node.kubeadm_config_patches,
            &format!("nodes[{n}].kubeadmConfigPatches"),
            errors,
        ),
        json6902: json6902_patches(
            &node.kubeadm_config_patches_json6902,
            &format!("nodes[{n}].kubeadmConfigPatchesJSON6902"),
            errors,
        ),
    }
}

/// containerd's patches: TOML for the merge patches, JSON 6902 operations
/// for the others (returned as JSON), and together applicable to kina's
/// containerd configuration for at least one containerd line (1.7 or 2.x:
/// which one an image has is only known in the node, where kina-init
/// applies them and names a patch that fails there).
fn containerd_patches(cluster: &Cluster, errors: &mut Vec<FieldError>) -> Vec<Value> {
    let before = errors.len();
    for (i, text) in cluster.containerd_config_patches.iter().enumerate() {
        if let Err(err) = text.parse::<toml::Table>() {
            let at = err.span().map_or(String::new(), |span| {
                let before = text.get(..span.start).unwrap_or(text);
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |n| n + 1) + 1;
                format!(" at line {line} column {column}")
            });
            errors.push(FieldError::cluster(
                format!("containerdConfigPatches[{i}]"),
                format!("not TOML: {}{at}", err.message().trim_end()),
            ));
        }
    }
    let mut json6902 = Vec::new();
    for (i, text) in cluster
        .containerd_config_patches_json6902
        .iter()
        .enumerate()
    {
        match json_patch_ops(text) {
            Ok(ops) => json6902.push(ops),
            Err(message) => errors.push(FieldError::cluster(
                format!("containerdConfigPatchesJSON6902[{i}]"),
                message,
            )),
        }
    }
    if errors.len() == before {
        errors.extend(containerd_patches_apply(
            &cluster.containerd_config_patches,
            &json6902,
        ));
    }
    json6902
}

/// The patches applied to kina's containerd configuration for containerd
/// 1.7 and for 2.x (as `kina up --dry-run` assumes the nodes); an error
/// naming the failing patch when they apply to neither.
fn containerd_patches_apply(merge: &[String], json6902: &[Value]) -> Option<FieldError> {
    let spec = NodeSpec {
        containerd_config_patches: merge.to_vec(),
        containerd_config_patches_json6902: json6902.to_vec(),
        ..NodeSpec::unnamed()
    };
    let mut failure = None;
    for major in [1, 2] {
        let node = match NodeRuntime::assumed(major, None) {
            Ok(node) => node,
            Err(e) => {
                return Some(FieldError::cluster(
                    "containerdConfigPatches",
                    e.to_string(),
                ));
            }
        };
        match config_text(&spec, &node) {
            Ok(_) => return None,
            Err(e) => failure = Some(e),
        }
    }
    failure.map(|e| match e {
        PatchError::Patch { patch, reason } => FieldError::cluster(
            patch,
            format!(
                "{reason} (on kina's containerd configuration for containerd 1.7 and 2.x; \
                 `kina up --dry-run` prints it)"
            ),
        ),
        PatchError::Base(message) => FieldError::cluster("containerdConfigPatches", message),
    })
}

/// kind's `networking.dnsSearch`: domains that make one resolv.conf line.
fn dns_search(net: &Networking, errors: &mut Vec<FieldError>) {
    for (i, domain) in net.dns_search.iter().flatten().enumerate() {
        if domain.is_empty() || domain.chars().any(|c| c.is_whitespace() || c.is_control()) {
            errors.push(FieldError::cluster(
                format!("networking.dnsSearch[{i}]"),
                format!(
                    "{domain:?} is not a search domain: write one domain per entry, without spaces"
                ),
            ));
        }
    }
}

/// The Kina document: CPUs and memory above 0, named kernel profiles, and
/// no more node entries than nodes.
fn validate_kina(kina: &KinaSettings, nodes: usize, errors: &mut Vec<FieldError>) {
    if kina.cpus == 0 {
        errors.push(FieldError::kina("cpus", "a node needs at least 1 CPU"));
    }
    if kina.memory.0 == 0 {
        errors.push(FieldError::kina("memory", "a node needs memory"));
    }
    if let Some(profiles) = &kina.kernel_profiles {
        for (i, p) in profiles.iter().enumerate() {
            if p.trim().is_empty() {
                errors.push(FieldError::kina(
                    format!("kernelProfiles[{i}]"),
                    "empty: name a kernel profile (kernels/profiles)",
                ));
            }
        }
    }
    if kina.nodes.len() > nodes {
        errors.push(FieldError::kina(
            "nodes",
            format!(
                "{} entries, but the Cluster document has {nodes} node(s): entry i sets node i",
                kina.nodes.len()
            ),
        ));
    }
    for (i, node) in kina.nodes.iter().enumerate() {
        if node.cpus == Some(0) {
            errors.push(FieldError::kina(
                format!("nodes[{i}].cpus"),
                "a node needs at least 1 CPU",
            ));
        }
        if node.memory == Some(MemoryMib(0)) {
            errors.push(FieldError::kina(
                format!("nodes[{i}].memory"),
                "a node needs memory",
            ));
        }
    }
}

fn subnet(errors: &mut Vec<FieldError>, path: &str, text: &str) -> Option<Ipv4Cidr> {
    Ipv4Cidr::parse(text)
        .map_err(|message| errors.push(FieldError::cluster(path, message)))
        .ok()
}
