//! The network phase in a scratch network namespace this test creates, with
//! one end of a veth pair as `eth0` standing in for the node's uplink (a real NIC exists only
//! inside a node VM): loopback up, the uplink's MTU carried into the ptp
//! configuration, routes to the peers' pod CIDRs through rtnetlink, and a
//! second run changes nothing.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn loopback_mtu_cni_config_and_peer_routes_are_set_idempotently() {
    for tool in [
        "/usr/sbin/ip",
        "/usr/sbin/ethtool",
        "/usr/sbin/iptables-restore",
    ] {
        assert!(
            std::path::Path::new(tool).exists(),
            "{tool} is missing: run scripts/install-test-deps"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("node.json");
    std::fs::write(
        &spec,
        r#"{"version":1,"name":"kina-worker","cluster":"kina","role":"worker","pod_cidr":"10.244.1.0/24",
            "peers":[{"name":"kina-control-plane","address":"192.168.64.2","pod_cidr":"10.244.0.0/24"},
                     {"name":"kina-worker2","address":"192.168.64.4","pod_cidr":"10.244.2.0/24"}]}"#,
    )
    .unwrap();
    let run = format!(
        "\"$0\" phase network --root {root} --spec {spec}",
        root = dir.path().display(),
        spec = spec.display()
    );
    let script = [
        "set -e",
        "ip link add eth0 mtu 1400 type veth peer name uplink-peer mtu 1400",
        "ip link set uplink-peer up",
        "ip addr add 192.168.64.3/24 dev eth0",
        &run,
        &run,
        "iptables -w -t nat -S",
        "ip -o link show lo",
        "ip -4 route show",
    ]
    .join("\n");
    let out = Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .arg(env!("CARGO_BIN_EXE_kina-init"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.matches("network ok: eth0 mtu 1400").count(),
        2,
        "{stdout}"
    );
    assert!(stdout.contains("2 peer route(s)"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(": lo:") && l.contains("UP")),
        "{stdout}"
    );
    assert!(
        stdout.contains("10.244.0.0/24 via 192.168.64.2 dev eth0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("10.244.2.0/24 via 192.168.64.4 dev eth0"),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("10.244.0.0/24 via").count(),
        1,
        "routes are replaced, not duplicated: {stdout}"
    );
    // The masquerade transaction, run twice: the chain's rules replaced,
    // the jump to it added once.
    assert_eq!(
        stdout
            .matches("-A POSTROUTING -s 10.244.1.0/24 -j KINA-MASQ")
            .count(),
        1,
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("-A KINA-MASQ -j MASQUERADE").count(),
        1,
        "{stdout}"
    );
    assert_eq!(
        stdout
            .matches("-A KINA-MASQ -d 10.244.0.0/24 -j RETURN")
            .count(),
        1,
        "{stdout}"
    );
    let conf: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("etc/cni/net.d/10-kina-ptp.conflist")).unwrap(),
    )
    .unwrap();
    assert_eq!(conf["plugins"][0]["mtu"], 1400);
    assert_eq!(
        conf["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
        "10.244.1.0/24"
    );
}
