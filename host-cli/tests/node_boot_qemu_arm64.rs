//! The arm64 node, as Apple silicon runs it: the base image's arm64 variant
//! with Debian's arm64 cloud kernel, booted by qemu-system-aarch64 under
//! TCG (KVM cannot run an arm64 guest on an amd64 host). The slowest VM
//! test; it runs in CI like the others.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::node::{
    NodeGuard, assert_kernel_report_matches_config, assert_pod_network_works, build_base_image,
    console, create_node, require_node_tools,
};
use common::{kina, run_ok};

#[test]
fn an_arm64_base_image_boots_to_ready_under_qemu_system_aarch64() {
    require_node_tools("arm64");
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path();
    build_base_image(env, "arm64");
    let _guard = NodeGuard { env, name: "a1" };
    let created = create_node(env, "a1", "arm64", &["--accel", "auto", "--wait", "ready"]);
    let stderr = String::from_utf8_lossy(&created.stderr);
    assert!(
        created.status.success(),
        "kina node create failed:\n{stderr}\nconsole:\n{}",
        console(env, "a1")
    );
    assert!(
        stderr.contains("under tcg (an arm64 node cannot use KVM"),
        "{stderr}"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&run_ok(kina(env).args(["node", "status", "a1", "--json"])).stdout)
            .unwrap();
    for p in status["phases"].as_array().unwrap() {
        assert_eq!(p["state"], "ok", "phase {} did not pass: {p}", p["name"]);
    }
    assert_eq!(
        common::node::exec_ok(env, "a1", &["uname", "-m"]).trim(),
        "aarch64"
    );
    assert_kernel_report_matches_config(env, "a1");
    assert_pod_network_works(env, "a1");
    let stopped = run_ok(kina(env).args(["node", "stop", "a1"]));
    assert!(String::from_utf8_lossy(&stopped.stdout).contains("powered off"));
    run_ok(kina(env).args(["node", "rm", "a1"]));
}
