//! The network phase: loopback up, the uplink's MTU, TSO off on it, the ptp
//! CNI configuration, and routes to the other nodes' pod CIDRs through their
//! node addresses (one L2 segment, so a plain next hop suffices).
//!
//! TCP between Apple VMs stalls when segments are forwarded into a veth with
//! TSO on, so it is turned off on the uplink. Links and routes go through
//! rtnetlink; TSO through `ethtool` from the node image (its ioctl would need
//! unsafe code kina-init does not carry).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use super::cni_config::{CNI_CONF_FILE, ptp_conflist};
use super::{BootContext, Phase, PhaseFailure};

pub struct NetworkPhase {
    pub uplink: String,
    /// `/etc/cni/net.d` under the node's root.
    pub cni_conf_dir: PathBuf,
}

fn fail(message: String) -> PhaseFailure {
    PhaseFailure {
        message,
        hint: "kina-init needs CAP_NET_ADMIN in the node's network namespace (Apple container: --cap-add ALL)".into(),
    }
}

/// `10.244.1.0/24` → (10.244.1.0, 24).
pub fn parse_cidr(cidr: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = cidr.split_once('/')?;
    let len: u8 = len.parse().ok()?;
    (len <= 32).then_some((ip.parse().ok()?, len))
}

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
    let mut links = handle.link().get().match_name(uplink.to_string()).execute();
    let link = links
        .try_next()
        .await
        .map_err(|e| PhaseFailure {
            message: format!("no network interface {uplink}: {e}"),
            hint: "the node needs one network interface on the cluster's segment (the provider attaches it)".into(),
        })?
        .ok_or_else(|| fail(format!("no network interface {uplink}")))?;
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
        .map_err(|e| fail(format!("setting {uplink} up: {e}")))?;
    let mut routes = 0;
    for peer in &ctx.spec.peers {
        let (dest, len) = parse_cidr(&peer.pod_cidr).ok_or_else(|| {
            fail(format!(
                "peer {}: pod CIDR `{}` is not an IPv4 CIDR",
                peer.name, peer.pod_cidr
            ))
        })?;
        let gateway: Ipv4Addr = peer.address.parse().map_err(|_| {
            fail(format!(
                "peer {}: address `{}` is not IPv4",
                peer.name, peer.address
            ))
        })?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dest, len)
            .gateway(gateway)
            .output_interface(link.header.index)
            .build();
        handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(|e| {
                fail(format!(
                    "route {} via {} ({}): {e}",
                    peer.pod_cidr, peer.address, peer.name
                ))
            })?;
        routes += 1;
    }
    Ok((mtu, routes))
}

impl Phase for NetworkPhase {
    fn name(&self) -> &'static str {
        "network"
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

        let tso = match Command::new("ethtool")
            .args(["-K", &self.uplink, "tso", "off"])
            .output()
        {
            Ok(out) if out.status.success() => "TSO off".to_string(),
            Ok(out) => {
                let err = String::from_utf8_lossy(&out.stderr);
                if err.contains("not supported")
                    || err.contains("Cannot change")
                    || err.contains("fixed")
                {
                    "TSO not offered by the device".to_string()
                } else {
                    return Err(fail(format!(
                        "ethtool -K {} tso off: {}",
                        self.uplink,
                        err.trim()
                    )));
                }
            }
            Err(e) => {
                return Err(PhaseFailure {
                    message: format!("cannot run ethtool: {e}"),
                    hint: "the node image needs ethtool (recipes/base.toml installs it)".into(),
                });
            }
        };

        std::fs::create_dir_all(&self.cni_conf_dir)
            .map_err(|e| fail(format!("creating {}: {e}", self.cni_conf_dir.display())))?;
        let conf = self.cni_conf_dir.join(CNI_CONF_FILE);
        std::fs::write(&conf, ptp_conflist(&ctx.spec.pod_cidr, mtu))
            .map_err(|e| fail(format!("writing {}: {e}", conf.display())))?;
        Ok(format!(
            "{} mtu {mtu}, {tso}, ptp over {}, {routes} peer route(s)",
            self.uplink, ctx.spec.pod_cidr
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
