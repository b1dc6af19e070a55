//! `kina-init pod-network-check` with the generated pod-network
//! configuration and the real ptp, host-local and portmap CNI plugins
//! (Debian's containernetworking-plugins), entirely inside a scratch network
//! and mount namespace this test creates: two pods get addresses from the
//! node's pod CIDR, reach each other and the node, and DEL removes
//! everything. Nothing touches this machine's own network.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use kina_init::boot::cni_config::ptp_conflist;

#[test]
fn two_pods_on_the_ptp_network_reach_each_other_and_the_node_and_del_cleans_up() {
    for tool in [
        "/usr/lib/cni/ptp",
        "/usr/lib/cni/host-local",
        "/usr/lib/cni/portmap",
        "/usr/sbin/iptables",
        "/usr/bin/ping",
        "/usr/sbin/ip",
    ] {
        assert!(
            std::path::Path::new(tool).exists(),
            "{tool} is missing: run scripts/install-test-deps"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let mut list: serde_json::Value =
        serde_json::from_str(&ptp_conflist("10.244.7.0/24", 1500)).unwrap();
    list["plugins"][0]["ipam"]["dataDir"] = serde_json::json!(dir.path().join("ipam"));
    let conf = dir.path().join("kina.conflist");
    std::fs::write(&conf, serde_json::to_vec(&list).unwrap()).unwrap();

    let script = "set -e; ip link set lo up; mkdir -p /run/netns; mount -t tmpfs kina-test /run/netns; exec \"$0\" pod-network-check --json --conf \"$1\"";
    let out = Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
        ])
        .arg(env!("CARGO_BIN_EXE_kina-init"))
        .arg(&conf)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pods = report["pods"].as_array().unwrap();
    assert_eq!(pods.len(), 2);
    for pod in pods {
        let address = pod["address"].as_str().unwrap();
        assert!(address.starts_with("10.244.7."), "{pod}");
    }
    let checks = report["checks"].as_array().unwrap();
    let count = |name: &str| {
        checks
            .iter()
            .filter(|c| c["check"] == name && c["ok"] == true)
            .count()
    };
    assert_eq!(count("address"), 2, "{report:#}");
    assert_eq!(count("ping"), 4, "{report:#}");
    assert_eq!(count("del"), 2, "{report:#}");
    assert_eq!(count("cleanup"), 2, "{report:#}");
    let leases: Vec<String> = std::fs::read_dir(dir.path().join("ipam/kina"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("last_reserved") && n != "lock")
        .collect();
    assert!(leases.is_empty(), "leases left: {leases:?}");
}

#[test]
fn a_missing_plugin_is_named_before_anything_is_attached() {
    let dir = tempfile::tempdir().unwrap();
    let mut list: serde_json::Value =
        serde_json::from_str(&ptp_conflist("10.244.7.0/24", 1500)).unwrap();
    list["plugins"][1]["type"] = serde_json::json!("no-such-plugin");
    let conf = dir.path().join("kina.conflist");
    std::fs::write(&conf, serde_json::to_vec(&list).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kina-init"))
        .args(["pod-network-check", "--conf"])
        .arg(&conf)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("CNI plugin `no-such-plugin`"), "{stderr}");
}

/// The generated ptp configuration with kina's KINA-MASQ rules, in a scratch
/// node namespace wired to a second namespace that plays the segment: a
/// peer node (192.168.77.3, whose pods are 10.244.8.0/24) that is also the
/// gateway to an outside address. A pod's ping to a peer pod and to the
/// peer node arrives from the pod's own address; its ping to the outside
/// arrives from the node's. The peer's firewall counters say which.
#[test]
fn a_pod_keeps_its_address_towards_peer_pods_and_is_masqueraded_leaving_the_cluster() {
    use kina_contract::node_spec::{NodeSpec, Peer};
    use kina_init::boot::network::{masquerade_restore_input, unmasqueraded_destinations};

    let dir = tempfile::tempdir().unwrap();
    let mut list: serde_json::Value =
        serde_json::from_str(&ptp_conflist("10.244.7.0/24", 1500)).unwrap();
    list["plugins"][0]["ipam"]["dataDir"] = serde_json::json!(dir.path().join("ipam"));
    let conf = dir.path().join("kina.conflist");
    std::fs::write(&conf, serde_json::to_vec(&list).unwrap()).unwrap();
    let mut spec = NodeSpec::unnamed();
    spec.pod_cidr = "10.244.7.0/24".into();
    spec.peers = vec![Peer {
        name: "peer".into(),
        address: "192.168.77.3".into(),
        pod_cidr: "10.244.8.0/24".into(),
    }];
    let rules = masquerade_restore_input(&spec.pod_cidr, &unmasqueraded_destinations(&spec), false);
    let rules_file = dir.path().join("rules");
    std::fs::write(&rules_file, rules).unwrap();

    let script = r#"set -e
ip link set lo up
mkdir -p /run/netns /run/kina
mount -t tmpfs kina-test /run/netns
mount -t tmpfs kina-test /run/kina
ip netns add segment
ip link add n0 type veth peer name s0 netns segment
ip addr add 192.168.77.2/24 dev n0
ip link set n0 up
ip -n segment link set lo up
ip -n segment addr add 192.168.77.3/24 dev s0
ip -n segment link set s0 up
ip -n segment addr add 10.244.8.5/32 dev lo
ip -n segment addr add 198.51.100.7/32 dev lo
ip -n segment route add 10.244.7.0/24 via 192.168.77.2
ip route add 10.244.8.0/24 via 192.168.77.3
ip route add default via 192.168.77.3
echo 1 > /proc/sys/net/ipv4/ip_forward
iptables-restore -w --noflush < "$2"
for dst in 10.244.8.5 192.168.77.3 198.51.100.7; do
  for src in 10.244.7.0/24 192.168.77.2; do
    ip netns exec segment iptables -A INPUT -p icmp --icmp-type echo-request -s $src -d $dst -j ACCEPT
  done
done
"$0" pod attach p1 --conf "$1" >&2
for dst in 10.244.8.5 192.168.77.3 198.51.100.7; do
  ip netns exec p1 ping -c 1 -W 5 $dst >&2
done
ip netns exec segment iptables -n -v -x -L INPUT
"$0" pod detach p1 --conf "$1" >&2
"#;
    let out = Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
        ])
        .arg(env!("CARGO_BIN_EXE_kina-init"))
        .arg(&conf)
        .arg(&rules_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // `pkts bytes target prot opt in out source destination [icmp …]`.
    let arrived = |src: &str, dst: &str| -> u64 {
        stdout
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.len() > 8 && f[7] == src && f[8] == dst)
            .unwrap_or_else(|| panic!("no counter for {src} → {dst}:\n{stdout}"))[0]
            .parse()
            .unwrap()
    };
    let (pods, node) = ("10.244.7.0/24", "192.168.77.2");
    for dst in ["10.244.8.5", "192.168.77.3"] {
        assert_eq!(
            (arrived(pods, dst), arrived(node, dst)),
            (1, 0),
            "the ping to {dst} did not keep the pod's address:\n{stdout}"
        );
    }
    assert_eq!(
        (arrived(pods, "198.51.100.7"), arrived(node, "198.51.100.7")),
        (0, 1),
        "the ping leaving the cluster was not masqueraded:\n{stdout}"
    );
}
