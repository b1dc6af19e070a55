//! The network phase: loopback up, the uplink's MTU, TSO off on it, the ptp
//! CNI configuration, and routes to the other nodes' pod CIDRs through their
//! node addresses (one L2 segment, so a plain next hop suffices).
//!
//! With kind's `disableDefaultCNI` the pod network is the user's CNI's:
//! no ptp configuration, no peer routes and no masquerading (kind then
//! installs no kindnet, which does all three), and the status says a CNI
//! is expected. kind's `dnsSearch` sets resolv.conf's search line.
//!
//! TCP between Apple VMs stalls when segments are forwarded into a veth with
//! TSO on, so it is turned off on the uplink. Links and routes go through
//! rtnetlink, TSO through ethtool's netlink family (`tso.rs`). A kernel
//! without ethtool netlink — Apple's containerization configs leave
//! `CONFIG_ETHTOOL_NETLINK` unset, and so kina's cilium-kpr kernels built
//! from them — gets the `ethtool` program from the node image instead, which
//! uses the ioctl (that would need unsafe code kina-init does not carry).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use futures_util::TryStreamExt;
use kina_contract::cidr::Ipv4Cidr;
use kina_contract::node_spec::{NodeSpec, Peer};
use kina_contract::status::{PhaseId, PodNetwork};
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use super::cni_config::{CNI_CONF_FILE, ptp_conflist};
use super::resolv_conf::with_search;
use super::tso::{TsoError, TsoOutcome};
use super::{BootContext, Phase, PhaseFailure};

/// The node's first interface: QEMU's user network or Apple's vmnet.
pub const DEFAULT_UPLINK: &str = "eth0";

pub struct NetworkPhase {
    /// The first link; the node link too unless the spec names a cluster
    /// interface.
    pub uplink: String,
    /// `/etc/cni/net.d` under the node's root.
    pub cni_conf_dir: PathBuf,
    /// Written when the spec names nameservers.
    pub resolv_conf: PathBuf,
    /// Whether the nat table is known to hold no rule of kina's yet: the
    /// VM's kernel started this kina-init as its init, and nothing set
    /// rules before it. The `iptables -C` that looks for the POSTROUTING
    /// jump is then left out, a process start (slow under TCG) that could
    /// only answer no.
    pub fresh_netfilter: bool,
}

fn fail(message: String) -> PhaseFailure {
    PhaseFailure {
        message,
        hint: "kina-init needs CAP_NET_ADMIN in the node's network namespace (Apple container: --cap-add ALL)".into(),
    }
}

/// `10.244.1.0/24` → (10.244.1.0, 24).
pub fn parse_cidr(cidr: &str) -> Option<(Ipv4Addr, u8)> {
    Ipv4Cidr::parse(cidr).ok().map(|c| (c.addr, c.prefix))
}

/// Adds or replaces a route via `gateway` on `link` (the default route
/// when `destination` is `None`), so a restarted kina-init converges.
async fn replace_route(
    handle: &Handle,
    destination: Option<(Ipv4Addr, u8)>,
    gateway: Ipv4Addr,
    link: u32,
) -> Result<(), rtnetlink::Error> {
    let mut route = RouteMessageBuilder::<Ipv4Addr>::new();
    if let Some((dest, len)) = destination {
        route = route.destination_prefix(dest, len);
    }
    let route = route.gateway(gateway).output_interface(link).build();
    handle.route().add(route).replace().execute().await
}

/// The index and MTU of `name`, set up.
async fn link_up(handle: &Handle, name: &str) -> Result<(u32, u32), PhaseFailure> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    let link = links
        .try_next()
        .await
        .map_err(|e| PhaseFailure {
            message: format!("no network interface {name}: {e}"),
            hint: "the node needs one network interface on the cluster's segment (the provider attaches it)".into(),
        })?
        .ok_or_else(|| fail(format!("no network interface {name}")))?;
    let mtu = link
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        })
        .unwrap_or(1500);
    handle
        .link()
        .set(LinkUnspec::new_with_index(link.header.index).up().build())
        .execute()
        .await
        .map_err(|e| fail(format!("setting {name} up: {e}")))?;
    Ok((link.header.index, mtu))
}

async fn add_address(
    handle: &Handle,
    link: u32,
    name: &str,
    address: &str,
) -> Result<(), PhaseFailure> {
    let (ip, len) = parse_cidr(address).ok_or_else(|| {
        fail(format!(
            "node spec address `{address}` for {name} is not an IPv4 CIDR"
        ))
    })?;
    let added = handle.address().add(link, ip.into(), len).execute().await;
    // A restart of kina-init finds the address already there.
    match added {
        Err(e) if !e.to_string().contains("File exists") => {
            Err(fail(format!("adding {address} to {name}: {e}")))
        }
        _ => Ok(()),
    }
}

/// Sets up the uplink (and the cluster interface when the spec has one)
/// and the peer routes; returns the node link's name, MTU and route count.
async fn configure(
    handle: &Handle,
    uplink: &str,
    ctx: &BootContext,
) -> Result<(u32, usize), PhaseFailure> {
    handle
        .link()
        .set(LinkUnspec::new_with_name("lo").up().build())
        .execute()
        .await
        .map_err(|e| fail(format!("setting lo up: {e}")))?;
    let (index, mut mtu) = link_up(handle, uplink).await?;
    if let Some(iface) = &ctx.spec.interface {
        add_address(handle, index, uplink, &iface.address).await?;
        if let Some(gw) = &iface.gateway {
            let gateway: Ipv4Addr = gw
                .parse()
                .map_err(|_| fail(format!("node spec gateway `{gw}` is not IPv4")))?;
            replace_route(handle, None, gateway, index)
                .await
                .map_err(|e| fail(format!("default route via {gw}: {e}")))?;
        }
    }
    let mut node_link = index;
    if let Some(cluster) = &ctx.spec.cluster_interface {
        let (index, cluster_mtu) = link_up(handle, &cluster.device).await?;
        add_address(handle, index, &cluster.device, &cluster.address).await?;
        node_link = index;
        mtu = cluster_mtu;
    }
    let routes = peer_routes(handle, node_link, routed_peers(&ctx.spec))
        .await
        .map_err(fail)?;
    Ok((mtu, routes))
}

/// The peers whose pod CIDRs kina routes: all of them, unless the pod
/// network is the user's CNI's (`disable_default_cni`), which routes its
/// own pod addresses.
pub fn routed_peers(spec: &NodeSpec) -> &[Peer] {
    if spec.disable_default_cni {
        &[]
    } else {
        &spec.peers
    }
}

/// A route to each peer's pod CIDR through the peer's node address,
/// replacing what a route to that CIDR said before (the peer came back with
/// another address).
async fn peer_routes(handle: &Handle, link: u32, peers: &[Peer]) -> Result<usize, String> {
    for peer in peers {
        let (dest, len) = parse_cidr(&peer.pod_cidr).ok_or_else(|| {
            format!(
                "peer {}: pod CIDR `{}` is not an IPv4 CIDR",
                peer.name, peer.pod_cidr
            )
        })?;
        let gateway: Ipv4Addr = peer
            .address
            .parse()
            .map_err(|_| format!("peer {}: address `{}` is not IPv4", peer.name, peer.address))?;
        replace_route(handle, Some((dest, len)), gateway, link)
            .await
            .map_err(|e| {
                format!(
                    "route {} via {} ({}): {e}",
                    peer.pod_cidr, peer.address, peer.name
                )
            })?;
    }
    Ok(peers.len())
}

/// Runs `f` with an rtnetlink handle and the index of `uplink`.
fn with_uplink<T>(
    uplink: &str,
    f: impl AsyncFnOnce(&Handle, u32) -> Result<T, String>,
) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| format!("starting the netlink runtime: {e}"))?;
    runtime.block_on(async {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|e| format!("opening rtnetlink: {e}"))?;
        tokio::spawn(connection);
        let mut links = handle.link().get().match_name(uplink.to_string()).execute();
        let link = links
            .try_next()
            .await
            .map_err(|e| format!("no network interface {uplink}: {e}"))?
            .ok_or_else(|| format!("no network interface {uplink}"))?;
        f(&handle, link.header.index).await
    })
}

/// Brings the routes to the peers' pod CIDRs in line with `spec`'s peers
/// again (none when the pod network is the user's CNI's): the host
/// rewrites the node spec when a node's address changes, and the routes
/// follow. `uplink` is the node's first link (its default node link).
pub fn sync_peer_routes(spec: &NodeSpec, uplink: &str) -> Result<usize, String> {
    let peers = routed_peers(spec);
    with_uplink(spec.node_link(uplink), async |handle, link| {
        peer_routes(handle, link, peers).await
    })
}

/// The uplink's IPv4 address: the node IP kubelet and the API server
/// advertise (Apple's vminitd or the spec's interface set it).
pub fn uplink_ipv4(uplink: &str) -> Result<Ipv4Addr, String> {
    with_uplink(uplink, async |handle, link| {
        let mut addresses = handle.address().get().set_link_index_filter(link).execute();
        while let Some(message) = addresses
            .try_next()
            .await
            .map_err(|e| format!("reading {uplink}'s addresses: {e}"))?
        {
            for attribute in message.attributes {
                if let AddressAttribute::Address(std::net::IpAddr::V4(ip)) = attribute {
                    return Ok(ip);
                }
            }
        }
        Err(format!("{uplink} has no IPv4 address"))
    })
}

impl Phase for NetworkPhase {
    fn id(&self) -> PhaseId {
        PhaseId::Network
    }

    fn run(&mut self, ctx: &mut BootContext) -> Result<String, PhaseFailure> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| fail(format!("starting the netlink runtime: {e}")))?;
        let uplink = self.uplink.clone();
        let (mtu, routes) = runtime.block_on(async {
            let (connection, handle, _) =
                rtnetlink::new_connection().map_err(|e| fail(format!("opening rtnetlink: {e}")))?;
            tokio::spawn(connection);
            configure(&handle, &uplink, ctx).await
        })?;

        let node_link = ctx.spec.node_link(&self.uplink).to_string();
        let tso = match super::tso::tso_off(&node_link) {
            Ok(TsoOutcome::Off) => "TSO off".to_string(),
            Ok(TsoOutcome::Fixed) => "TSO fixed on by the device".to_string(),
            Err(TsoError::Unavailable(why)) => ethtool_tso_off(&node_link, &why)?,
            Err(TsoError::Failed(message)) => return Err(fail(message)),
        };

        self.write_cni_config(&ctx.spec, mtu)?;
        if let Some(iface) = &ctx.spec.interface
            && !iface.nameservers.is_empty()
        {
            let text: String = iface
                .nameservers
                .iter()
                .map(|n| format!("nameserver {n}\n"))
                .collect();
            std::fs::write(&self.resolv_conf, text)
                .map_err(|e| fail(format!("writing {}: {e}", self.resolv_conf.display())))?;
        }
        let search = match &ctx.spec.dns_search {
            Some(domains) => {
                self.set_dns_search(domains)?;
                format!(", DNS search `{}`", domains.join(" "))
            }
            None => String::new(),
        };
        masquerade_for(&ctx.spec, self.fresh_netfilter)?;
        if ctx.spec.disable_default_cni {
            let _ = ctx.status.update(|s| s.pod_network = PodNetwork::UserCni);
            return Ok(format!(
                "{node_link} mtu {mtu}, {tso}{search}; no CNI configuration, peer routes or \
                 masquerading (disableDefaultCNI): a CNI is expected"
            ));
        }
        Ok(format!(
            "{node_link} mtu {mtu}, {tso}{search}, ptp over {}, {routes} peer route(s), masquerading what leaves the cluster",
            ctx.spec.pod_cidr
        ))
    }
}

impl NetworkPhase {
    /// kina's ptp configuration, or, when the pod network is the user's
    /// CNI's, none: a configuration kina wrote before is removed so that
    /// containerd finds only the user's.
    fn write_cni_config(&self, spec: &NodeSpec, mtu: u32) -> Result<(), PhaseFailure> {
        let conf = self.cni_conf_dir.join(CNI_CONF_FILE);
        if spec.disable_default_cni {
            return match std::fs::remove_file(&conf) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(fail(format!("removing {}: {e}", conf.display())))
                }
                _ => Ok(()),
            };
        }
        std::fs::create_dir_all(&self.cni_conf_dir)
            .map_err(|e| fail(format!("creating {}: {e}", self.cni_conf_dir.display())))?;
        std::fs::write(&conf, ptp_conflist(&spec.pod_cidr, mtu))
            .map_err(|e| fail(format!("writing {}: {e}", conf.display())))
    }

    /// resolv.conf's search line set to `domains` (kind's `dnsSearch`).
    fn set_dns_search(&self, domains: &[String]) -> Result<(), PhaseFailure> {
        let existing = match std::fs::read_to_string(&self.resolv_conf) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(fail(format!("reading {}: {e}", self.resolv_conf.display())));
            }
        };
        let text = with_search(&existing, domains).map_err(|e| PhaseFailure {
            message: format!("node spec: {e}"),
            hint: "fix networking.dnsSearch in the cluster config".into(),
        })?;
        std::fs::write(&self.resolv_conf, text)
            .map_err(|e| fail(format!("writing {}: {e}", self.resolv_conf.display())))
    }
}

/// TSO off with the `ethtool` program, for a kernel without ethtool netlink
/// (`why`), where only its ioctl can.
fn ethtool_tso_off(link: &str, why: &str) -> Result<String, PhaseFailure> {
    match crate::children::output(Command::new("ethtool").args(["-K", link, "tso", "off"])) {
        Ok(out) if out.status.success() => Ok("TSO off (ethtool)".to_string()),
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("not supported") || err.contains("Cannot change") || err.contains("fixed")
            {
                Ok("TSO not offered by the device".to_string())
            } else {
                Err(fail(format!("ethtool -K {link} tso off: {}", err.trim())))
            }
        }
        Err(e) => Err(PhaseFailure {
            message: format!("cannot run ethtool ({why}): {e}"),
            hint: "the node image needs ethtool (recipes/base.toml installs it) when the kernel has no ethtool netlink".into(),
        }),
    }
}

/// The iptables rules (iptables-nft in the node image) that let pods reach
/// beyond the cluster: traffic from this node's pods leaves with the node's
/// address unless it goes to one of `kept` (pod networks and the other
/// nodes, which route pod CIDRs back), so pods on other nodes see the
/// sender's pod address, as kindnet's masquerade agent arranges in kind.
/// The ptp plugin's own `ipMasq` is off: its per-pod rule would masquerade
/// everything outside this node's pod CIDR after these rules returned.
///
/// Written as one `iptables-restore --noflush` transaction (one process
/// instead of one per rule, each slow to start under TCG; and atomic): the
/// chain of its own is declared, which creates it or, when a
/// second run (kina-init restarted, peers changed) finds it, flushes it
/// (`iptables-restore(8)`), so its rules are replaced rather than
/// duplicated. The POSTROUTING jump is added unless `hooked` says it is
/// already there (`iptables -C` answers that; restore has no check).
pub fn masquerade_restore_input(pod_cidr: &str, kept: &[String], hooked: bool) -> String {
    let mut lines = vec![
        "*nat".to_string(),
        format!(":{MASQ_CHAIN} - [0:0]"),
        format!("-F {MASQ_CHAIN}"),
    ];
    for net in kept {
        lines.push(format!("-A {MASQ_CHAIN} -d {net} -j RETURN"));
    }
    lines.push(format!("-A {MASQ_CHAIN} -j MASQUERADE"));
    if !hooked {
        lines.push(format!("-A {}", masquerade_jump(pod_cidr).join(" ")));
    }
    lines.push("COMMIT".into());
    lines.join("\n") + "\n"
}

/// The nat POSTROUTING rule that sends this node's pods' traffic through
/// the chain.
fn masquerade_jump(pod_cidr: &str) -> [&str; 5] {
    ["POSTROUTING", "-s", pod_cidr, "-j", MASQ_CHAIN]
}

const MASQ_CHAIN: &str = "KINA-MASQ";

/// The destinations of `spec`'s pods that keep the pod's address: this
/// node's pod CIDR, the cluster's pod subnet when the node runs Kubernetes,
/// every peer's pod CIDR (a base-image cluster has no cluster subnet) and
/// every peer's node address. The rest of the node network is not kept:
/// the host sits on it too (Apple's vmnet gateway, a registry on the Mac)
/// and has no route back to pod addresses.
pub fn unmasqueraded_destinations(spec: &NodeSpec) -> Vec<String> {
    let mut kept = vec![spec.pod_cidr.clone()];
    if let Some(kubernetes) = &spec.kubernetes {
        kept.push(kubernetes.pod_subnet.clone());
    }
    kept.extend(spec.peers.iter().map(|p| p.pod_cidr.clone()));
    kept.extend(spec.peers.iter().map(|p| format!("{}/32", p.address)));
    let mut seen = std::collections::HashSet::new();
    kept.retain(|d| seen.insert(d.clone()));
    kept
}

/// Masquerading for `spec`: what leaves the cluster only; nothing when
/// the pod network is the user's CNI's, which masquerades as it chooses.
/// `fresh`: see [`NetworkPhase::fresh_netfilter`].
fn masquerade_for(spec: &NodeSpec, fresh: bool) -> Result<(), PhaseFailure> {
    if spec.disable_default_cni {
        return Ok(());
    }
    masquerade(&spec.pod_cidr, &unmasqueraded_destinations(spec), fresh)
}

/// Rebuilds the masquerading rules when the spec's peers changed (a peer
/// that was not known at boot, or one at a new address, must be kept too).
pub fn sync_masquerade(spec: &NodeSpec) -> Result<(), String> {
    masquerade_for(spec, false).map_err(|f| f.message)
}

fn masquerade(pod_cidr: &str, kept: &[String], fresh: bool) -> Result<(), PhaseFailure> {
    let cannot_run = |tool: &str, e: std::io::Error| PhaseFailure {
        message: format!("cannot run {tool}: {e}"),
        hint: "the node image needs iptables (recipes/base.toml installs it)".into(),
    };
    let hooked = !fresh
        && crate::children::output(
            Command::new("iptables")
                .args(["-w", "-t", "nat", "-C"])
                .args(masquerade_jump(pod_cidr)),
        )
        .map_err(|e| cannot_run("iptables", e))?
        .status
        .success();
    let input = masquerade_restore_input(pod_cidr, kept, hooked);
    let out = crate::children::output_with_input(
        Command::new("iptables-restore").args(["-w", "--noflush"]),
        input.as_bytes(),
    )
    .map_err(|e| cannot_run("iptables-restore", e))?;
    if !out.status.success() {
        return Err(fail(format!(
            "iptables-restore --noflush refused the masquerade rules: {}\nrules:\n{input}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masquerading_keeps_what_it_is_given_and_is_hooked_once() {
        let kept = ["10.244.1.0/24".to_string(), "10.244.0.0/24".to_string()];
        assert_eq!(
            masquerade_restore_input("10.244.1.0/24", &kept, false),
            "*nat\n:KINA-MASQ - [0:0]\n-F KINA-MASQ\n\
             -A KINA-MASQ -d 10.244.1.0/24 -j RETURN\n\
             -A KINA-MASQ -d 10.244.0.0/24 -j RETURN\n\
             -A KINA-MASQ -j MASQUERADE\n\
             -A POSTROUTING -s 10.244.1.0/24 -j KINA-MASQ\nCOMMIT\n"
        );
        let again = masquerade_restore_input("10.244.1.0/24", &kept, true);
        assert!(!again.contains("POSTROUTING"), "{again}");
    }

    fn peer(name: &str, address: &str, pod_cidr: &str) -> Peer {
        Peer {
            name: name.into(),
            address: address.into(),
            pod_cidr: pod_cidr.into(),
        }
    }

    #[test]
    fn only_traffic_leaving_the_cluster_is_masqueraded() {
        let mut spec = NodeSpec::unnamed();
        spec.pod_cidr = "10.244.1.0/24".into();
        spec.peers = vec![
            peer("cp", "192.168.64.2", "10.244.0.0/24"),
            peer("w2", "192.168.64.4", "10.244.2.0/24"),
        ];
        assert_eq!(
            unmasqueraded_destinations(&spec),
            [
                "10.244.1.0/24",
                "10.244.0.0/24",
                "10.244.2.0/24",
                "192.168.64.2/32",
                "192.168.64.4/32",
            ]
        );
        let settings: kina_contract::node_spec::KubernetesSettings = serde_json::from_str(
            r#"{"pod_subnet":"10.244.0.0/16","service_subnet":"10.96.0.0/16",
                "dns_domain":"cluster.local","control_plane_endpoint":"192.168.64.2:6443"}"#,
        )
        .unwrap();
        spec.kubernetes = Some(settings);
        let kept = unmasqueraded_destinations(&spec);
        assert_eq!(kept[..2], ["10.244.1.0/24", "10.244.0.0/16"]);
        // Neither the node network as a whole (the host is on it) nor
        // anything beyond it is kept.
        assert!(
            !kept.iter().any(|d| d.starts_with("192.168.64.0")),
            "{kept:?}"
        );
        assert_eq!(kept.len(), 6);
    }

    #[test]
    fn cidrs_parse_and_nonsense_does_not() {
        assert_eq!(
            parse_cidr("10.244.1.0/24"),
            Some((Ipv4Addr::new(10, 244, 1, 0), 24))
        );
        assert_eq!(parse_cidr("10.244.1.0/33"), None);
        assert_eq!(parse_cidr("fd00::/64"), None);
        assert_eq!(parse_cidr("10.244.1.0"), None);
    }
}
