//! kina as people get it: `scripts/release`'s archives, checked the way a
//! user and the release pipeline use them, and the `kina` inside one run as
//! an installed binary from an empty home directory, from nothing to a
//! booted node and back.
//!
//! `scripts/release` runs once per test process (both tests share its
//! output) into the test build's own target directory, so a second run
//! reuses cargo's release builds; `KINA_RELEASE_DIR` names the output of a
//! run made earlier instead.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{require_tool, run_ok, target_dir, workspace_root};
use sha2::{Digest, Sha256};

/// The folder `scripts/release` wrote, made once for every test here.
fn release_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("KINA_RELEASE_DIR") {
            return PathBuf::from(dir);
        }
        let out = target_dir().join("release-test");
        let _ = std::fs::remove_dir_all(&out);
        let started = std::time::Instant::now();
        run_ok(
            Command::new(workspace_root().join("scripts/release"))
                .arg(&out)
                .env("CARGO_TARGET_DIR", target_dir())
                .env_remove("KINA_RELEASE_VERSION"),
        );
        eprintln!(
            "scripts/release took {:.0} s",
            started.elapsed().as_secs_f64()
        );
        out
    })
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Unpacks `kina-VERSION-linux-ARCH.tar.gz` with tar into `dir`; the path
/// of the `kina` inside.
fn unpack(arch: &str, dir: &Path) -> PathBuf {
    let name = format!("kina-{}-linux-{arch}", version());
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(release_dir().join(format!("{name}.tar.gz")))
            .arg("-C")
            .arg(dir),
    );
    dir.join(name).join("kina")
}

#[test]
fn archives_unpack_to_a_kina_that_reports_the_kina_init_it_carries_and_checksums_verify() {
    let dir = release_dir();
    // sha256sum, an independent reader, checks every listed file.
    run_ok(
        Command::new("sha256sum")
            .args(["-c", "SHA256SUMS"])
            .current_dir(dir),
    );
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    let listed: Vec<&str> = sums
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    let mut expected = Vec::new();
    for arch in ["amd64", "arm64"] {
        expected.push(format!("kina-{}-linux-{arch}.tar.gz", version()));
        expected.push(format!("kina-{}-linux-{arch}.spdx.json", version()));
    }
    expected.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, expected);

    // The files scripts/release embedded: scripts/build-kina-init's output.
    let inits: BTreeMap<&str, String> = [
        ("linux/amd64", "x86_64-unknown-linux-gnu"),
        ("linux/arm64", "aarch64-unknown-linux-gnu"),
    ]
    .into_iter()
    .map(|(platform, triple)| {
        let file = target_dir().join(triple).join("release/kina-init");
        (platform, format!("sha256:{}", sha256_file(&file)))
    })
    .collect();
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());

    let unpacked = tempfile::tempdir().unwrap();
    for arch in ["amd64", "arm64"] {
        let kina = unpack(arch, unpacked.path());
        let mut cmd = if arch == "arm64" {
            // kina links glibc dynamically (as cargo builds it for a
            // gnu target): the user-mode emulator takes Debian's arm64
            // loader and libraries from the cross sysroot
            // (libc6-arm64-cross, which gcc-aarch64-linux-gnu brings).
            let sysroot = Path::new("/usr/aarch64-linux-gnu");
            assert!(
                sysroot.join("lib/ld-linux-aarch64.so.1").exists(),
                "{}/lib/ld-linux-aarch64.so.1 is missing: run scripts/install-test-deps (libc6-arm64-cross)",
                sysroot.display()
            );
            let mut c = Command::new(require_tool("qemu-aarch64-static"));
            c.arg("-L").arg(sysroot).arg(&kina);
            c
        } else {
            Command::new(&kina)
        };
        let out = run_ok(cmd.args(["version", "--json"]));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["version"], version(), "{arch}");
        if let Some(head) = &head {
            assert_eq!(v["commit"], head.as_str(), "{arch}");
        }
        for entry in v["kina_init"].as_array().unwrap() {
            let platform = entry["platform"].as_str().unwrap();
            assert_eq!(
                entry["sha256"].as_str(),
                Some(inits[platform].as_str()),
                "{arch}'s kina carries another kina-init for {platform}"
            );
        }
        // The README travels along.
        assert!(kina.with_file_name("README.md").is_file());

        let sbom: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join(format!("kina-{}-linux-{arch}.spdx.json", version()))).unwrap(),
        )
        .unwrap();
        assert_eq!(sbom["spdxVersion"], "SPDX-2.3");
        let crates: BTreeMap<&str, &serde_json::Value> = sbom["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap(), p))
            .collect();
        // kina, its own crates and what they link; not the test-only crates.
        for name in ["kina", "kina-builder", "kina-contract", "clap", "tokio"] {
            assert!(crates.contains_key(name), "{arch}: SBOM lacks {name}");
        }
        for dev_only in ["proptest", "kina-tests"] {
            assert!(
                !crates.contains_key(dev_only),
                "{arch}: SBOM lists the test-only crate {dev_only}"
            );
        }
        // A registry crate carries Cargo.lock's checksum.
        let lock = std::fs::read_to_string(workspace_root().join("Cargo.lock")).unwrap();
        let clap = crates["clap"];
        let sum = clap["checksums"][0]["checksumValue"].as_str().unwrap();
        assert!(
            lock.contains(&format!(
                "name = \"clap\"\nversion = \"{}\"\nsource = \"registry+",
                clap["versionInfo"].as_str().unwrap()
            )) && lock.contains(&format!("checksum = \"{sum}\"")),
            "clap's checksum {sum} is not Cargo.lock's"
        );
    }
}

/// The node architecture of this host, as the archives name it.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    }
}

/// Removes the cluster whatever happened, so a failed test leaves no VM.
struct Down<'a>(&'a Installed);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = self.0.kina(&["down"]).output();
    }
}

/// A user's machine: an empty home (HOME and every XDG folder inside it),
/// an empty working directory in it, and a PATH of the folder kina was
/// installed into and the system's folders, where QEMU and e2fsprogs are.
/// Nothing of the checkout or of cargo is reachable through them.
struct Installed {
    home: tempfile::TempDir,
    bin: PathBuf,
}

impl Installed {
    fn new(kina: &Path) -> Self {
        let home = tempfile::tempdir().unwrap();
        let bin = home.path().join(".local/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(kina, bin.join("kina")).unwrap();
        std::fs::create_dir_all(home.path().join("work")).unwrap();
        Self { home, bin }
    }

    fn kina(&self, args: &[&str]) -> Command {
        let home = self.home.path();
        let mut cmd = Command::new("kina");
        cmd.env_clear()
            .env(
                "PATH",
                format!(
                    "{}:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    self.bin.display()
                ),
            )
            .env("HOME", home)
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_STATE_HOME", home.join(".local/state"))
            .current_dir(home.join("work"))
            .args(args);
        // The machine's Debian mirror, when it is set the way a user sets it.
        for var in ["KINA_DEBIAN_MIRROR", "KINA_DEBIAN_SECURITY_MIRROR"] {
            if let Some(value) = std::env::var_os(var) {
                cmd.env(var, value);
            }
        }
        // PATH, not an absolute path, finds kina, as in a user's shell.
        cmd
    }

    fn ok(&self, args: &[&str]) -> std::process::Output {
        run_ok(&mut self.kina(args))
    }
}

/// QEMU processes whose command line mentions `dir`.
fn qemu_processes_of(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("qemu-system") && c.contains(&needle))
        .collect()
}

#[test]
fn an_installed_kina_builds_checks_and_boots_from_an_empty_home() {
    let qemu = match host_arch() {
        "arm64" => "qemu-system-aarch64",
        _ => "qemu-system-x86_64",
    };
    for tool in ["mke2fs", "debugfs", qemu] {
        require_tool(tool);
    }
    let unpacked = tempfile::tempdir().unwrap();
    let user = Installed::new(&unpack(host_arch(), unpacked.path()));
    let home = user.home.path();

    // Where kina keeps things: the XDG folders, nothing else.
    let out = user.ok(&["version", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["data_dir"].as_str().unwrap(),
        home.join(".local/share/kina").to_str().unwrap()
    );
    assert_eq!(
        v["cache_dir"].as_str().unwrap(),
        home.join(".cache/kina").to_str().unwrap()
    );
    let carried: BTreeMap<String, String> = v["kina_init"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["platform"].as_str().unwrap().to_string(),
                k["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();

    // A public kernel config (pinned by URL and sha256) against the
    // built-in profiles.
    let config = home.join("config-6.1.0-56-cloud-amd64");
    std::fs::write(
        &config,
        kina_tests::fetch_reference_input("debian-6.1.0-56-cloud-amd64.config")
            .unwrap_or_else(|e| panic!("{e:#}")),
    )
    .unwrap();
    let out = user.ok(&[
        "kernel",
        "check",
        "--json",
        "--config",
        config.to_str().unwrap(),
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for profile in report["profiles"].as_array().unwrap() {
        assert_eq!(profile["verdict"], "pass", "{profile}");
    }

    // From nothing: `up` builds the default node image (this host's
    // platform) as its first step, then boots one node under TCG to
    // containerd-ready.
    let down = Down(&user);
    let started = std::time::Instant::now();
    let out = user.ok(&[
        "up",
        "--accel",
        "tcg",
        "--stop-after",
        "containerd",
        "--wait",
        "10m",
    ]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!(
            "Building node image kina.local/node:base (linux/{}) from the built-in base recipe",
            host_arch()
        )),
        "{said}"
    );
    eprintln!(
        "kina up (one node, TCG, to containerd): {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let nodes = String::from_utf8(user.ok(&["get", "nodes"]).stdout).unwrap();
    assert!(nodes.contains("kina-control-plane"), "{nodes}");
    user.ok(&["down"]);
    drop(down);

    // The base image for both platforms, from the built-in recipe, with
    // the kina-init the binary carries, in place of up's one-platform one.
    user.ok(&["image", "build"]);
    let list = String::from_utf8(user.ok(&["image", "list"]).stdout).unwrap();
    assert!(list.contains("kina.local/node:base"), "{list}");
    let inspect = user.ok(&["image", "inspect", "kina.local/node:base", "--json"]);
    let summary: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    for platform in summary["platforms"].as_array().unwrap() {
        let name = platform["platform"].as_str().unwrap();
        assert_eq!(
            format!(
                "sha256:{}",
                platform["labels"]["io.kina.kina-init.sha256"]
                    .as_str()
                    .unwrap()
            ),
            carried[name],
            "{name}: the image's kina-init is not the one kina carries"
        );
    }

    let clusters: Vec<String> =
        serde_json::from_slice(&user.ok(&["get", "clusters", "--json"]).stdout).unwrap();
    assert!(clusters.is_empty(), "{clusters:?}");
    let left = qemu_processes_of(home);
    assert!(left.is_empty(), "VMs left running: {left:?}");
    assert_eq!(
        std::fs::read_dir(home.join("work")).unwrap().count(),
        0,
        "kina wrote into the working directory"
    );
}
