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
