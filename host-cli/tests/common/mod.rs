//! Helpers for driving the real `kina` binary the way a user does.

#![allow(dead_code)]
// Test support: a failed step should stop the test with what went wrong.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod node;
pub mod registry;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host-cli lives inside the workspace")
        .to_path_buf()
}

/// Cargo's target directory of this test run (`CARGO_TARGET_DIR` or the
/// workspace's `target/`), read off the `kina` cargo built for the test:
/// `scripts/build-kina-init` writes into the same one.
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_kina"))
        .parent()
        .and_then(Path::parent)
        .expect("cargo builds kina at TARGET_DIR/PROFILE/kina")
        .to_path_buf()
}

/// The release kina-init `scripts/build-kina-init` builds for a Rust target
/// triple such as `x86_64-unknown-linux-gnu`.
pub fn kina_init_path(rust_target: &str) -> PathBuf {
    target_dir().join(rust_target).join("release/kina-init")
}

/// The kina-init binaries `scripts/build-kina-init` produces; the tests need
/// both and fail (not skip) when they are missing.
pub fn kina_init_flags() -> Vec<String> {
    let mut flags = Vec::new();
    for (arch, target) in [
        ("amd64", "x86_64-unknown-linux-gnu"),
        ("arm64", "aarch64-unknown-linux-gnu"),
    ] {
        let path = kina_init_path(target);
        assert!(
            path.exists(),
            "{} is missing: run scripts/build-kina-init first (scripts/test does)",
            path.display()
        );
        flags.push("--kina-init".into());
        flags.push(format!("{arch}={}", path.display()));
    }
    flags
}

/// A `kina` command with its own cache and store, isolated from the user's.
pub fn kina(env_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kina"));
    cmd.env("KINA_CACHE_DIR", env_dir.join("cache"))
        .env("KINA_DATA_DIR", env_dir.join("data"))
        .env_remove("KINA_DEBIAN_MIRROR")
        .env_remove("KINA_DEBIAN_SECURITY_MIRROR")
        .env_remove("KINA_URL_REWRITE")
        .env_remove("SOURCE_DATE_EPOCH");
    cmd
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn run_err(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        !out.status.success(),
        "{cmd:?} succeeded but should have failed\nstdout:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A tool from a Debian package the tests rely on; missing means the test
/// setup (scripts/install-test-deps) did not run, which is a failure.
pub fn require_tool(name: &str) -> PathBuf {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "`{name}` is not installed: run scripts/install-test-deps (scripts/test does)"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Copies a recipe into `dir` so its lock is written there, not into the repository.
pub fn copy_recipe(name: &str, dir: &Path) -> PathBuf {
    let src = workspace_root().join("recipes").join(name);
    let dst = dir.join(name);
    std::fs::copy(&src, &dst).expect("copy recipe");
    dst
}

/// The head of a test recipe: name, tag, both architectures, and a Debian
/// section reading `suite` of a loopback repository signed by `keyring`.
pub fn recipe_head(
    name: &str,
    mirror: &str,
    suite: &str,
    keyring: &Path,
    packages: &[&str],
) -> String {
    let list = packages
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"schema = 1
name = "{name}"
tag = "kina.local/node:{name}"
architectures = ["amd64", "arm64"]

[debian]
mirror = "{mirror}"
security_mirror = "{mirror}"
sources = [{{ archive = "debian", suites = ["{suite}"], components = ["main"] }}]
keyring = ["{key}"]
packages = [{list}]
"#,
        key = keyring.display()
    )
}

/// One platform of an image, copied out by skopeo and unpacked by umoci:
/// independent readers of what kina wrote.
pub struct Unpacked {
    /// `oci:<dir>:node`, the single-platform copy.
    pub layout: String,
    pub rootfs: PathBuf,
}

/// `source` is a skopeo image name such as `oci-archive:<file>:<ref>`.
pub fn unpack_platform(source: &str, arch: &str, dir: &Path) -> Unpacked {
    let copy = dir.join(format!("layout-{arch}"));
    let layout = format!("oci:{}:node", copy.display());
    run_ok(Command::new("skopeo").args([
        "--override-os",
        "linux",
        "--override-arch",
        arch,
        "copy",
        source,
        &layout,
    ]));
    let bundle = dir.join(format!("bundle-{arch}"));
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:node", copy.display()))
            .arg(&bundle),
    );
    Unpacked {
        layout,
        rootfs: bundle.join("rootfs"),
    }
}
