//! A kernel kina built boots a node: the base image under QEMU (TCG) with
//! no initramfs and no modules, kina-init started by the kernel as `init=`
//! from the root disk, through every phase to ready; inside it, kina-init's
//! live check passes `cilium-kpr` (BPF JIT on, `bpf(2)` answering, AF_ALG
//! hash sockets opening); and the accelerator probe's boot of that kernel
//! (the node's disk read-only, `kina.probe`) gets kina-init's answer. One
//! node per architecture, arm64 as Apple's VMs run it, on
//! `qemu-system-aarch64 -machine virt`.
//!
//! In the same run the node boots on Debian's cloud kernel (with kina's
//! initramfs) too, and both times from QEMU's start to ready are printed:
//! a measurement, not an assertion.
//!
//! The built kernel comes from `kina kernel build --recipe cilium-kpr
//! --arch …` on the user's cache (kernel_build.rs builds it first; cargo
//! runs test binaries one after another).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::node::{
    NodeGuard, build_base_image, console, exec, exec_ok, kernel_recipe, node_dir,
    require_node_tools,
};
use common::{kina, run_ok};
use kina_builder::kernel::BuiltKernel;
use kina_builder::platform::Arch;
use kina_qemu::accel::{ProbeBoot, ProbeInputs, ProbeOutcome, probe};
use kina_qemu::vm::Accel;

/// The built kernel the test boots: `kina kernel build --recipe cilium-kpr`
/// for `arch`, on the user's cache, where kernel_build.rs's builds already
/// are (a machine that built it once does not build it again).
fn built_kernel(arch: &str) -> BuiltKernel {
    let data = tempfile::tempdir().unwrap();
    let out = common::run_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_kina"))
            .env(
                "KINA_CACHE_DIR",
                kina_builder::fetch::cache::Cache::default_root(),
            )
            .env("KINA_DATA_DIR", data.path())
            .args(["kernel", "build", "--recipe", "cilium-kpr", "--arch", arch]),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout.lines().last().unwrap_or_default().trim().to_string();
    let built = BuiltKernel::open(Path::new(&dir))
        .unwrap_or_else(|e| panic!("kina kernel build printed {dir:?}: {e}"));
    assert_eq!(built.meta.arch.to_string(), arch, "{:?}", built.meta);
    built
}

/// `kina node create` for `kernel` (a recipe file or a built kernel's
/// directory), waiting for ready; returns the seconds from QEMU's start
/// (the create's `✓ booting kernel` line, printed once QEMU has started)
/// to ready, and everything the create printed.
fn create_timed(
    env: &Path,
    name: &str,
    arch: &str,
    kernel: &Path,
    profiles: &[&str],
) -> (f64, String) {
    let mut child = kina(env)
        .args(["node", "create", name, "--image", "kina.local/node:base"])
        .args(["--platform", arch, "--accel", "tcg", "--kernel"])
        .arg(kernel)
        .args(profiles.iter().flat_map(|p| ["--profile", *p]))
        .args(["--wait", "ready", "--timeout", "900"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut said = String::new();
    let mut booted = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if line.contains("✓ booting kernel") {
            booted = Some(Instant::now());
        }
        said.push_str(&line);
        said.push('\n');
    }
    let out = child.wait_with_output().unwrap();
    let ready = Instant::now();
    assert!(
        out.status.success(),
        "kina node create {name} failed:\n{said}\nconsole:\n{}",
        console(env, name)
    );
    let booted = booted.unwrap_or_else(|| panic!("no `✓ booting kernel` line:\n{said}"));
    (ready.duration_since(booted).as_secs_f64(), said)
}

fn phases_all_ok(env: &Path, name: &str) {
    let status: serde_json::Value =
        serde_json::from_slice(&run_ok(kina(env).args(["node", "status", name, "--json"])).stdout)
            .unwrap();
    assert_eq!(status["mode"], "vm-pid1", "{status}");
    for p in status["phases"].as_array().unwrap() {
        assert_eq!(p["state"], "ok", "phase {} did not pass: {p}", p["name"]);
    }
}

/// `cilium-kpr` passes inside the node, and what only a live kernel can
/// answer was asked of it: BPF JIT, `bpf(2)`, AF_ALG hash sockets.
fn assert_cilium_kpr_passes_live(env: &Path, name: &str) {
    let out = exec(
        env,
        name,
        &[
            "kina-init",
            "check-kernel",
            "--profile",
            "cilium-kpr",
            "--json",
        ],
        b"",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check-kernel --profile cilium-kpr failed in {name}:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["modules_supported"], false, "{report}");
    let profiles = report["profiles"].as_array().unwrap();
    let kpr = profiles.iter().find(|p| p["name"] == "cilium-kpr").unwrap();
    assert_eq!(kpr["verdict"], "pass", "{kpr}");
    for symbol in ["BPF_JIT", "BPF_SYSCALL", "CRYPTO_USER_API_HASH"] {
        let option = profiles
            .iter()
            .flat_map(|p| p["options"].as_array().unwrap())
            .find(|o| o["symbols"][0] == symbol)
            .unwrap_or_else(|| panic!("no option {symbol} in {report}"));
        let evidence = option["evidence"].as_str().unwrap();
        assert!(
            evidence.starts_with("probe:"),
            "{symbol} was not probed live: {option}"
        );
        assert!(
            matches!(option["presence"].as_str(), Some("present" | "builtin")),
            "{symbol}: {option}"
        );
    }
    // The JIT is on, not only built.
    assert_eq!(
        exec_ok(env, name, &["cat", "/proc/sys/net/core/bpf_jit_enable"]).trim(),
        "1"
    );
}

fn boots_on_a_built_kernel(arch: &str) {
    require_node_tools(arch);
    let built = built_kernel(arch);
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path();
    build_base_image(env, arch);

    // --- Debian's cloud kernel and kina's initramfs, for the comparison.
    let debian_name = format!("deb-{arch}");
    let debian = {
        let _guard = NodeGuard {
            env,
            name: &debian_name,
        };
        let (took, _) = create_timed(env, &debian_name, arch, &kernel_recipe(), &[]);
        took
    };

    // --- The built kernel: no initramfs, kina-init as init=.
    let name = format!("kk-{arch}");
    let _guard = NodeGuard { env, name: &name };
    let (took, said) = create_timed(
        env,
        &name,
        arch,
        &built.dir,
        &["kubernetes-base", "ptp", "cilium-kpr"],
    );
    assert!(
        said.contains(&format!("kina-built kernel {}", built.meta.recipe)),
        "{said}"
    );
    phases_all_ok(env, &name);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(node_dir(env, &name).join("vm.json")).unwrap())
            .unwrap();
    assert_eq!(record["boot"]["kind"], "direct", "{record}");
    assert!(
        !node_dir(env, &name).join("initramfs.img").exists(),
        "an initramfs was made for a kernel that needs none"
    );
    let text = console(env, &name);
    assert!(!text.contains("kina-init[initramfs]"), "{text}");
    assert!(text.contains("kina-init: mount ok ("), "{text}");
    assert!(
        text.contains("no module support (CONFIG_MODULES unset): nothing to load"),
        "{text}"
    );
    assert_eq!(
        exec_ok(env, &name, &["uname", "-r"]).trim(),
        built.meta.release
    );
    let cmdline = exec_ok(env, &name, &["cat", "/proc/cmdline"]);
    assert!(
        cmdline.contains("init=/usr/local/bin/kina-init"),
        "{cmdline}"
    );
    // No modules on the disk; the kernel's config where kina-init and
    // kubeadm look for it.
    let listing = exec(env, &name, &["ls", "/lib/modules"], b"");
    assert!(
        String::from_utf8_lossy(&listing.stdout).trim().is_empty(),
        "modules on a built kernel's node: {}",
        String::from_utf8_lossy(&listing.stdout)
    );
    assert_eq!(
        exec_ok(
            env,
            &name,
            &["cat", &format!("/boot/config-{}", built.meta.release)]
        )
        .as_bytes(),
        std::fs::read(built.config_path()).unwrap()
    );
    assert_cilium_kpr_passes_live(env, &name);

    let stopped = run_ok(kina(env).args(["node", "stop", &name]));
    assert!(String::from_utf8_lossy(&stopped.stdout).contains("powered off"));

    // --- The accelerator probe's boot of this kernel, under TCG here (the
    // verdict boot is KVM's): the node's disk read-only, kina-init as
    // init= answers `kina.probe`.
    let node = node_dir(env, &name);
    let probed = probe(
        &ProbeInputs {
            arch: arch.parse::<Arch>().unwrap(),
            kernel: &node.join("vmlinuz"),
            boot: ProbeBoot::RootDisk(&node.join("disk.img")),
            cache_dir: &env.join("probe-cache"),
            timeout: Duration::from_secs(300),
        },
        Accel::Tcg,
    )
    .unwrap();
    assert!(
        matches!(probed, ProbeOutcome::Booted(_)),
        "the probe boot of the built kernel: {probed:?}"
    );
    println!(
        "{arch} boot to ready under TCG, from QEMU's start: kina-built kernel {} ({}) {took:.1} s, \
         Debian's cloud kernel with kina's initramfs {debian:.1} s",
        built.meta.recipe, built.meta.release
    );
}

#[test]
fn an_amd64_node_boots_a_kina_built_kernel_with_no_initramfs_and_passes_cilium_kpr() {
    boots_on_a_built_kernel("amd64");
}

#[test]
fn an_arm64_node_boots_a_kina_built_kernel_with_no_initramfs_and_passes_cilium_kpr() {
    boots_on_a_built_kernel("arm64");
}
