//! The pod network's CNI configuration: the ptp plugin (a veth pair per pod
//! and host routes, so no bridge and no br_netfilter are needed, which is
//! what makes it work on Apple's kernels), host-local IPAM over this node's
//! pod CIDR, the MTU of eth0 and portmap for hostPorts. Masquerading is
//! not the plugin's: its `ipMasq` would hide a pod's address from pods on
//! other nodes, so the network phase's KINA-MASQ chain masquerades only
//! what leaves the cluster, as kindnet does in kind.

use serde_json::json;

pub const CNI_CONF_DIR: &str = "/etc/cni/net.d";
pub const CNI_CONF_FILE: &str = "10-kina-ptp.conflist";

/// The conflist for `pod_cidr`, with pods' MTU equal to the node's uplink
/// MTU (ptp routes, it does not encapsulate).
///
/// This is also why kina installs no TCP MSS clamp on Apple, where the
/// attachment MTU is 1280 (apple/container 1.2.2 `Utility.swift:310`) and
/// Apple's own `k8s` plugin clamps MSS to 1220 in mangle OUTPUT and FORWARD
/// (`K8sHelper.swift:340-341`): a pod's interface has the uplink's 1280, so
/// its kernel advertises an IPv4 MSS of 1240 in every SYN and sends no
/// segment larger than the link, and peers answer within that MSS: every
/// TCP packet to, from or between pods fits the 1280 link with nothing
/// rewritten. A clamp is needed where pods get a larger MTU than the path
/// (a CNI defaulting to 1500). 1220 is 1280 less an IPv6 header (40) and
/// TCP's (20); kina's pod network is IPv4, whose 1240 the kernel already
/// derives from the pod's MTU. A CNI installed with
/// `disableDefaultCNI` chooses its own MTU, as on any cluster.
pub fn ptp_conflist(pod_cidr: &str, mtu: u32) -> String {
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "kina",
        "plugins": [
            {
                "type": "ptp",
                "ipMasq": false,
                "mtu": mtu,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": pod_cidr }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": "/run/cni/kina-ipam"
                }
            },
            {
                "type": "portmap",
                "capabilities": { "portMappings": true }
            }
        ]
    });
    // A Value's pretty Display cannot fail, unlike serialising arbitrary types.
    format!("{conf:#}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conflist_carries_the_pod_cidr_mtu_and_portmap_without_masquerade() {
        let v: serde_json::Value =
            serde_json::from_str(&ptp_conflist("10.244.1.0/24", 1450)).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        let ptp = &v["plugins"][0];
        assert_eq!(ptp["type"], "ptp");
        assert_eq!(ptp["mtu"], 1450);
        assert_eq!(ptp["ipMasq"], false);
        assert_eq!(ptp["ipam"]["ranges"][0][0]["subnet"], "10.244.1.0/24");
        assert_eq!(v["plugins"][1]["type"], "portmap");
        assert_eq!(v["plugins"][1]["capabilities"]["portMappings"], true);
    }
}
