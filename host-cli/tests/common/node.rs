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
