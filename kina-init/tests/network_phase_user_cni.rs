//! The network phase of a node whose pod network is the user's CNI (kind's
//! `disableDefaultCNI`), with kind's `dnsSearch`, in a scratch network
//! namespace this test creates (one end of a veth pair as `eth0`, as in
//! network_phase.rs): no ptp configuration (a stale one kina wrote is
//! removed), no routes to the peers' pod CIDRs, no KINA-MASQ chain, the
//! status saying a CNI is expected, and resolv.conf's search line set; a
//! second run changes nothing. Nothing touches this machine's network.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use kina_contract::status::{NodeStatus, PodNetwork};

#[test]
fn a_node_left_to_the_users_cni_gets_no_cni_config_no_peer_routes_and_no_masquerading() {
    for tool in ["/usr/sbin/ip", "/usr/sbin/ethtool", "/usr/sbin/iptables"] {
        assert!(
            std::path::Path::new(tool).exists(),
            "{tool} is missing: run scripts/install-test-deps"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let net_d = root.join("etc/cni/net.d");
    std::fs::create_dir_all(&net_d).unwrap();
    // What a kina-init without the setting would have left, and the
    // user's own CNI's file, which stays.
    std::fs::write(net_d.join("10-kina-ptp.conflist"), "{}").unwrap();
    std::fs::write(net_d.join("05-cilium.conflist"), "{}").unwrap();
    std::fs::write(
        root.join("etc/resolv.conf"),
        "nameserver 10.0.2.3\nsearch host.example\n",
    )
    .unwrap();
    let spec = dir.path().join("node.json");
    std::fs::write(
        &spec,
        r#"{"version":1,"name":"kina-worker","cluster":"kina","role":"worker","pod_cidr":"10.244.1.0/24",
            "disable_default_cni":true,"dns_search":["corp.example","lab.example"],
            "peers":[{"name":"kina-control-plane","address":"192.168.64.2","pod_cidr":"10.244.0.0/24"}]}"#,
    )
    .unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let run = format!(
        "\"$0\" phase network --root {root} --spec {spec}",
        root = root.display(),
        spec = spec.display()
    );
    let script = [
        "set -e",
        "ip link add eth0 mtu 1400 type veth peer name uplink-peer mtu 1400",
        "ip link set uplink-peer up",
        "ip addr add 192.168.64.3/24 dev eth0",
        &run,
        &run,
        "echo '== routes'",
        "ip -4 route show",
        "echo '== nat'",
        "iptables -t nat -S",
    ]
    .join("\n");
    let out = Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .arg(env!("CARGO_BIN_EXE_kina-init"))
        // Where the phase run by hand keeps its status.
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("a CNI is expected").count(), 2, "{stdout}");
    let (_, routes) = stdout.split_once("== routes").unwrap();
    let (routes, nat) = routes.split_once("== nat").unwrap();
    assert!(
        !routes.contains("10.244."),
        "no pod CIDR is routed: {routes}"
    );
    assert!(routes.contains("192.168.64.0/24 dev eth0"), "{routes}");
    assert!(!nat.contains("KINA-MASQ"), "nothing is masqueraded: {nat}");
    assert!(!net_d.join("10-kina-ptp.conflist").exists());
    assert!(net_d.join("05-cilium.conflist").exists());
    assert_eq!(
        std::fs::read_to_string(root.join("etc/resolv.conf")).unwrap(),
        "search corp.example lab.example\nnameserver 10.0.2.3\n"
    );
    let status: NodeStatus =
        serde_json::from_slice(&std::fs::read(tmp.join("kina-init-phase-status.json")).unwrap())
            .unwrap();
    assert_eq!(status.pod_network, PodNetwork::UserCni);
    assert!(status.render().contains("a CNI is expected"));
}
