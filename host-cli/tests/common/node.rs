//! Driving QEMU nodes through the real `kina` binary, as a user does.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use super::{kina, kina_init_flags, require_tool, run_ok, workspace_root};

/// Every tool a node boot needs on the host; missing ones fail the test.
pub fn require_node_tools(arch: &str) {
    for tool in ["mke2fs", "debugfs", "e2fsck", "depmod"] {
        require_tool(tool);
    }
    require_tool(match arch {
        "arm64" => "qemu-system-aarch64",
        _ => "qemu-system-x86_64",
    });
}

/// Builds recipes/base.toml for `arch` into the environment's store, from
/// the host's Debian mirror.
pub fn build_base_image(env: &Path, arch: &str) {
    let recipe = workspace_root().join("recipes/base.toml");
    run_ok(
        kina(env)
            .args(["-q", "image", "build", "--platform", arch, "--recipe"])
            .arg(&recipe)
            .args(kina_init_flags()),
    );
}

pub fn kernel_recipe() -> PathBuf {
    workspace_root().join("kernels/debian-cloud.toml")
}

/// `kina node create` with the base image; returns its output.
pub fn create_node(env: &Path, name: &str, arch: &str, extra: &[&str]) -> Output {
    kina(env)
        .args(["node", "create", name, "--image", "kina.local/node:base"])
        .args(["--platform", arch, "--kernel"])
        .arg(kernel_recipe())
        .args(["--timeout", "900"])
        .args(extra)
        .output()
        .unwrap()
}

pub fn exec(env: &Path, name: &str, argv: &[&str], stdin: &[u8]) -> Output {
    let mut child = kina(env)
        .args(["node", "exec", "-i", name, "--"])
        .args(argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// `exec` that must succeed; returns stdout.
pub fn exec_ok(env: &Path, name: &str, argv: &[&str]) -> String {
    let out = exec(env, name, argv, b"");
    assert!(
        out.status.success(),
        "{argv:?} in node {name} failed ({}):\nstdout: {}\nstderr: {}\nconsole:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        console(env, name)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn node_dir(env: &Path, name: &str) -> PathBuf {
    env.join("data/nodes").join(name)
}

pub fn console(env: &Path, name: &str) -> String {
    std::fs::read_to_string(node_dir(env, name).join("console.log")).unwrap_or_default()
}

/// Removes the node whatever state it is in, so a failed test leaves no VM.
pub struct NodeGuard<'a> {
    pub env: &'a Path,
    pub name: &'a str,
}

impl Drop for NodeGuard<'_> {
    fn drop(&mut self) {
        let _ = kina(self.env).args(["node", "rm", self.name]).output();
    }
}

/// `kina-init check-kernel --json` in the node (live probes) against
/// `kina kernel check` on the host with the node kernel's own config: the
/// same verdicts, and the same presence for every option.
pub fn assert_kernel_report_matches_config(env: &Path, name: &str) {
    let node_report: serde_json::Value = serde_json::from_str(&exec_ok(
        env,
        name,
        &[
            "kina-init",
            "check-kernel",
            "--profile",
            "kubernetes-base",
            "--profile",
            "ptp",
            "--profile",
            "bridge",
            "--json",
        ],
    ))
    .unwrap();
    let release = exec_ok(env, name, &["uname", "-r"]).trim().to_string();
    let config = exec(env, name, &["cat", &format!("/boot/config-{release}")], b"");
    let host_config = env.join("kernel.config");
    std::fs::write(&host_config, &config.stdout).unwrap();
    let host_report: serde_json::Value = serde_json::from_slice(
        &run_ok(
            kina(env)
                .args(["kernel", "check", "--json", "--config"])
                .arg(&host_config)
                .args([
                    "--profile",
                    "kubernetes-base",
                    "--profile",
                    "ptp",
                    "--profile",
                    "bridge",
                ]),
        )
        .stdout,
    )
    .unwrap();
    let present =
        |p: &serde_json::Value| matches!(p.as_str(), Some("present" | "builtin" | "module"));
    let mut probed = 0;
    for (live, offline) in node_report["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .zip(host_report["profiles"].as_array().unwrap())
    {
        assert_eq!(live["name"], offline["name"]);
        assert_eq!(
            live["verdict"], offline["verdict"],
            "profile {}",
            live["name"]
        );
        for (l, o) in live["options"]
            .as_array()
            .unwrap()
            .iter()
            .zip(offline["options"].as_array().unwrap())
        {
            assert_eq!(l["symbols"], o["symbols"]);
            assert_eq!(
                present(&l["presence"]),
                present(&o["presence"]),
                "{} live {} ({}) vs config {}",
                l["symbols"],
                l["presence"],
                l["evidence"],
                o["presence"]
            );
            if l["evidence"].as_str().unwrap_or("").starts_with("probe:") {
                probed += 1;
            }
        }
    }
    assert!(probed > 10, "the node probed only {probed} options live");
}

/// Two pods on the node's ptp network reach each other and the node, and
/// DEL cleans up (kina-init's own check, run through the exec channel).
pub fn assert_pod_network_works(env: &Path, name: &str) {
    let check = exec(
        env,
        name,
        &["kina-init", "pod-network-check", "--json"],
        b"",
    );
    assert!(
        check.status.success(),
        "pod network check failed:\n{}\n{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
