//! The generated pod-network configuration with the real ptp and host-local
//! CNI plugins (Debian's containernetworking-plugins), entirely inside a
//! scratch network and mount namespace this test creates: two pods get
//! addresses from the node's pod CIDR, reach each other and the node, and
//! DEL removes everything. Nothing touches this machine's own network.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use kina_init::boot::cni_config::ptp_conflist;

#[test]
fn two_pods_on_the_ptp_network_reach_each_other_and_the_node_and_del_cleans_up() {
    for tool in [
        "/usr/lib/cni/ptp",
        "/usr/lib/cni/host-local",
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
    // The generated conflist's ptp plugin, as one network config (the CNI
    // runtime hands each plugin of a list its own config like this).
    let list: serde_json::Value =
        serde_json::from_str(&ptp_conflist("10.244.7.0/24", 1500)).unwrap();
    let mut ptp = list["plugins"][0].clone();
    ptp["cniVersion"] = list["cniVersion"].clone();
    ptp["name"] = list["name"].clone();
    ptp["ipam"]["dataDir"] = serde_json::json!(dir.path().join("ipam"));
    let conf = dir.path().join("ptp.json");
    std::fs::write(&conf, serde_json::to_vec(&ptp).unwrap()).unwrap();

    let cni = |cmd: &str, pod: &str| {
        format!(
            "CNI_COMMAND={cmd} CNI_CONTAINERID={pod} CNI_NETNS=/run/netns/{pod} CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni /usr/lib/cni/ptp < {conf}",
            conf = conf.display()
        )
    };
    let script = [
        "set -e".to_string(),
        "ip link set lo up".into(),
        "mkdir -p /run/netns && mount -t tmpfs kina-test /run/netns".into(),
        "ip netns add pod1 && ip netns add pod2".into(),
        format!(
            "{} > {}/pod1.json",
            cni("ADD", "pod1"),
            dir.path().display()
        ),
        format!(
            "{} > {}/pod2.json",
            cni("ADD", "pod2"),
            dir.path().display()
        ),
        "P2=$(ip netns exec pod2 ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)".into(),
        "GW=$(ip netns exec pod1 ip -4 route show default | awk '{print $3}')".into(),
        "ip netns exec pod1 ping -c1 -W5 \"$P2\" >/dev/null && echo pod-to-pod-ok".into(),
        "ip netns exec pod1 ping -c1 -W5 \"$GW\" >/dev/null && echo pod-to-node-ok".into(),
        cni("DEL", "pod1"),
        cni("DEL", "pod2"),
        "echo links-after: $(ip -o link show | grep -c veth || true)".into(),
        "echo routes-after: $(ip -4 route show | grep -c 10.244.7 || true)".into(),
    ]
    .join("\n");
    let out = Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for pod in ["pod1", "pod2"] {
        let result: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(format!("{pod}.json"))).unwrap())
                .unwrap();
        let address = result["ips"][0]["address"].as_str().unwrap();
        assert!(address.starts_with("10.244.7."), "{pod} got {address}");
    }
    assert!(
        stdout.contains("pod-to-pod-ok") && stdout.contains("pod-to-node-ok"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("links-after: 0") && stdout.contains("routes-after: 0"),
        "{stdout}"
    );
    let leases: Vec<_> = std::fs::read_dir(dir.path().join("ipam/kina"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(
        leases
            .iter()
            .all(|n| n.to_string_lossy().starts_with("last_reserved")
                || n.to_string_lossy() == "lock"),
        "leases left: {leases:?}"
    );
}
