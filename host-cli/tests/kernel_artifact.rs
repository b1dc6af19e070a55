//! Kernels as OCI artifacts: `kina kernel push`, `pull`, `list` and
//! `check --kernel` against Debian's `docker-registry` on loopback, read
//! back by an independent client (skopeo). The kernels are small built-kernel
//! directories made here with `BuiltKernel::install`: the packaging does not
//! depend on a kernel's size or on it having been compiled.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::registry::*;
use common::*;
use kina::dirs::KinaDirs;
use kina::kernel_store::KernelStore;
use kina_builder::digest::Sha256Digest;
use kina_builder::kernel::artifact::{
    KERNEL_ARTIFACT_TYPE, KERNEL_IMAGE_MEDIA_TYPE, KERNEL_KCONFIG_MEDIA_TYPE,
    KERNEL_REPORT_MEDIA_TYPE,
};
use kina_builder::kernel::{BUILT_KERNEL_SCHEMA, BuiltKernel, BuiltKernelMeta, KernelFormat};
use kina_builder::platform::Arch;
use kina_contract::kernel::ProfileSet;

/// A kernel config setting every symbol `profile` (and what it includes)
/// names, except `without`.
fn config_for(profile: &str, without: Option<&str>) -> String {
    let set = ProfileSet::shipped().unwrap();
    let mut config = String::from("# test config\n");
    for (_, option) in set.expanded(profile).unwrap() {
        for symbol in &option.symbols {
            if Some(symbol.as_str()) != without {
                config.push_str(&format!("CONFIG_{symbol}=y\n"));
            }
        }
    }
    config
}

/// A built-kernel directory at `dir`: `kernel_len` bytes of noise as the
/// boot image, `config` as its `.config`.
fn built_kernel(dir: &Path, arch: Arch, kernel_len: usize, config: &str) -> BuiltKernel {
    let src = dir.with_extension("src");
    std::fs::create_dir_all(&src).unwrap();
    let kernel = noise(arch as u64 + 11, kernel_len);
    std::fs::write(src.join("kernel"), &kernel).unwrap();
    std::fs::write(src.join("config"), config).unwrap();
    let meta = BuiltKernelMeta {
        schema: BUILT_KERNEL_SCHEMA,
        recipe: "cilium-kpr".into(),
        arch,
        release: "6.17.8".into(),
        format: KernelFormat::for_arch(arch),
        kernel_sha256: Sha256Digest::of(&kernel),
        config_sha256: Sha256Digest::of(config.as_bytes()),
        profiles: vec!["cilium-kpr".into()],
        source_sha256: Sha256Digest::of(b"linux_6.17.8.orig.tar.xz"),
        base_config_sha256: Sha256Digest::of(format!("config-{arch}").as_bytes()),
        toolchain: "gcc (Debian 14.2.0-19) 14.2.0".into(),
    };
    let report = format!(r#"{{"kernel":"6.17.8","arch":"{arch}","profiles":[]}}"#);
    BuiltKernel::install(
        dir,
        &meta,
        &src.join("kernel"),
        &src.join("config"),
        report.as_bytes(),
    )
    .unwrap()
}

/// Two kernels, both passing cilium-kpr.
fn two_kernels(root: &Path) -> (BuiltKernel, BuiltKernel) {
    let config = config_for("cilium-kpr", None);
    (
        built_kernel(&root.join("amd64"), Arch::Amd64, 200 * 1024, &config),
        built_kernel(&root.join("arm64"), Arch::Arm64, 300 * 1024, &config),
    )
}

fn kernel_push(env: &Path, target: &str, kernels: &[&BuiltKernel]) -> Command {
    let mut cmd = kina(env);
    cmd.args(["kernel", "push", target])
        .env("DOCKER_CONFIG", env.join("docker"));
    for k in kernels {
        cmd.arg("--kernel").arg(&k.dir);
    }
    cmd
}

fn kernel_cmd(env: &Path, args: &[&str]) -> Command {
    let mut cmd = kina(env);
    cmd.arg("kernel")
        .args(args)
        .env("DOCKER_CONFIG", env.join("docker"));
    cmd
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn push_writes_a_multi_arch_artifact_skopeo_reads_and_pull_round_trips_it() {
    require_tool("skopeo");
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let (amd, arm) = two_kernels(&work.path().join("built"));
    let env = work.path().join("a");
    let target = format!("{}/kina/kernel:6.17", registry.host());

    let out = run_ok(&mut kernel_push(&env, &target, &[&arm, &amd]));
    let text = stdout(&out);
    // 2 configs, 2 kernels, 2 reports, the .config both share (once), 2
    // manifests, the index.
    assert_eq!(blob_lines(&text).len(), 10, "{text}");

    // skopeo reads the index kina pushed: one manifest per platform, each
    // an artifact of kina's type.
    let index = skopeo_raw(&target, &[]);
    let index_digest = Sha256Digest::of(&index);
    assert!(
        text.contains(&format!("{target}@{}", index_digest.oci())),
        "{text}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&index).unwrap();
    assert_eq!(doc["mediaType"], "application/vnd.oci.image.index.v1+json");
    let entries = doc["manifests"].as_array().unwrap();
    let platforms: Vec<(String, String)> = entries
        .iter()
        .map(|m| {
            (
                m["platform"]["os"].as_str().unwrap().to_string(),
                m["platform"]["architecture"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        platforms,
        vec![
            ("linux".to_string(), "amd64".to_string()),
            ("linux".to_string(), "arm64".to_string())
        ]
    );
    for (entry, kernel) in entries.iter().zip([&amd, &arm]) {
        let digest = entry["digest"].as_str().unwrap();
        let by_digest = format!("{}/kina/kernel@{digest}", registry.host());
        let raw = skopeo_raw(&by_digest, &[]);
        assert_eq!(Sha256Digest::of(&raw).oci(), digest);
        let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(manifest["artifactType"], KERNEL_ARTIFACT_TYPE);
        assert_eq!(manifest["config"]["mediaType"], KERNEL_ARTIFACT_TYPE);
        let layers: Vec<(&str, &str)> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["mediaType"].as_str().unwrap(),
                    l["digest"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            layers,
            vec![
                (
                    KERNEL_IMAGE_MEDIA_TYPE,
                    kernel.meta.kernel_sha256.oci().as_str()
                ),
                (
                    KERNEL_KCONFIG_MEDIA_TYPE,
                    kernel.meta.config_sha256.oci().as_str()
                ),
                (
                    KERNEL_REPORT_MEDIA_TYPE,
                    Sha256Digest::of(&std::fs::read(kernel.report_path()).unwrap())
                        .oci()
                        .as_str()
                ),
            ]
        );
        // The config blob, fetched by skopeo, is the kernel's description.
        let config = skopeo_raw(&by_digest, &["--config"]);
        let meta: BuiltKernelMeta = serde_json::from_slice(&config).unwrap();
        assert_eq!(meta, kernel.meta);
    }
    // skopeo copies the whole artifact, checking every digest as it goes.
    let copy = work.path().join("skopeo-copy");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--all", "--src-tls-verify=false"])
            .arg(format!("docker://{target}"))
            .arg(format!("oci:{}:kernel", copy.display())),
    );
    let copied: serde_json::Value =
        serde_json::from_slice(&std::fs::read(copy.join("index.json")).unwrap()).unwrap();
    assert_eq!(copied["manifests"][0]["digest"], index_digest.oci());

    // Pull into an empty data directory: each architecture unpacks to a
    // built-kernel directory holding the pushed bytes.
    let env_b = work.path().join("b");
    let out = run_ok(&mut kernel_cmd(&env_b, &["pull", &target]));
    let text = stdout(&out);
    assert!(text.contains("pulled 10 blobs"), "{text}");
    assert!(text.contains(&index_digest.oci()), "{text}");
    let dirs = KinaDirs::at(env_b.join("data"), env_b.join("cache"));
    let store = KernelStore::open(&dirs).unwrap();
    let stored = store.find(&target).unwrap().unwrap();
    assert_eq!(stored.digest, index_digest);
    for original in [&amd, &arm] {
        let pulled = store.built_kernel(&stored, original.meta.arch).unwrap();
        assert!(pulled.dir.starts_with(env_b.join("data/kernels/platforms")));
        let reopened = BuiltKernel::open(&pulled.dir).unwrap();
        assert_eq!(reopened.meta, original.meta);
        for (a, b) in [
            (reopened.kernel_path(), original.kernel_path()),
            (reopened.config_path(), original.config_path()),
            (reopened.report_path(), original.report_path()),
        ] {
            assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap());
        }
    }
    // The boot side's entry point finds it without the network: the
    // registry is gone, and resolve still answers from the store.
    drop(registry);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let resolved = runtime
        .block_on(store.resolve(&target, Arch::Arm64, &Default::default()))
        .unwrap();
    assert_eq!(resolved.meta, arm.meta);

    // kina kernel list shows it with both architectures.
    let out = run_ok(&mut kernel_cmd(&env_b, &["list", "--json"]));
    let listed = json_of(&out);
    let pulled = &listed["pulled"][0];
    assert_eq!(pulled["reference"], target.as_str());
    assert_eq!(pulled["digest"], index_digest.oci());
    assert_eq!(pulled["arches"], serde_json::json!(["amd64", "arm64"]));
    assert_eq!(pulled["releases"], serde_json::json!(["6.17.8"]));
    assert_eq!(pulled["profiles"], serde_json::json!(["cilium-kpr"]));
    let out = run_ok(&mut kernel_cmd(&env_b, &["list"]));
    assert!(stdout(&out).contains(&target), "{}", stdout(&out));
}

#[test]
fn a_tampered_blob_is_refused_on_pull_and_leaves_nothing_behind() {
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let (amd, arm) = two_kernels(&work.path().join("built"));
    let env = work.path().join("a");
    let target = format!("{}/kina/kernel:6.17", registry.host());
    run_ok(&mut kernel_push(&env, &target, &[&amd, &arm]));

    // One byte of the arm64 kernel flipped in the registry's own storage:
    // the registry serves it as it is, same length, other bytes.
    let digest = arm.meta.kernel_sha256;
    let hex = digest.hex();
    let stored = registry
        .dir
        .path()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(&hex)
        .join("data");
    let mut bytes = std::fs::read(&stored).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&stored, &bytes).unwrap();

    let env_b = work.path().join("b");
    let err = run_err(&mut kernel_cmd(&env_b, &["pull", &target]));
    assert!(
        err.contains(&digest.oci())
            && err.contains(&Sha256Digest::of(&bytes).oci())
            && err.contains("nothing was stored"),
        "{err}"
    );
    // Nothing of it is kept: no blob, no name, no unpacked kernel.
    let root = env_b.join("data/kernels");
    let blobs = files(&root.join("oci/blobs"));
    assert!(blobs.is_empty(), "{blobs:?}");
    assert!(files(&root.join("platforms")).is_empty());
    let out = run_ok(&mut kernel_cmd(&env_b, &["list", "--json"]));
    assert_eq!(json_of(&out)["pulled"], serde_json::json!([]));

    // check --kernel pulls the same way, and refuses the same way.
    let err = run_err(&mut kernel_cmd(&env_b, &["check", "--kernel", &target]));
    assert!(err.contains(&digest.oci()), "{err}");
    assert!(files(&root.join("oci/blobs")).is_empty());
}

#[test]
fn check_reads_the_config_from_the_artifact_per_architecture() {
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let built = work.path().join("built");
    let good = config_for("cilium-kpr", None);
    let no_jit = config_for("cilium-kpr", Some("BPF_JIT"));
    let amd = built_kernel(&built.join("amd64"), Arch::Amd64, 4096, &no_jit);
    let arm = built_kernel(&built.join("arm64"), Arch::Arm64, 4096, &good);
    let env = work.path().join("a");
    let target = format!("{}/kina/kernel:mixed", registry.host());
    run_ok(&mut kernel_push(&env, &target, &[&amd, &arm]));

    // A machine that never pulled it: check pulls, then checks each
    // architecture for what the kernel says it was built for.
    let env_b = work.path().join("b");
    let err = run_err(&mut kernel_cmd(&env_b, &["check", "--kernel", &target]));
    assert!(
        err.contains("linux/amd64: cilium") && !err.contains("linux/arm64"),
        "{err}"
    );
    let out = run_ok(&mut kernel_cmd(
        &env_b,
        &["check", "--kernel", &target, "--arch", "arm64", "--json"],
    ));
    let reports = json_of(&out);
    assert_eq!(reports.as_array().unwrap().len(), 1);
    assert_eq!(reports[0]["platform"], "linux/arm64");
    // Asked for a profile the amd64 kernel does meet, it passes.
    run_ok(&mut kernel_cmd(
        &env_b,
        &[
            "check",
            "--kernel",
            &target,
            "--arch",
            "amd64",
            "--profile",
            "kubernetes-base",
        ],
    ));
    // A built-kernel directory is checked the same way, no registry needed.
    let dir = arm.dir.display().to_string();
    run_ok(&mut kernel_cmd(&env_b, &["check", "--kernel", &dir]));
}

#[test]
fn push_by_recipe_takes_the_build_cache_and_a_node_image_is_not_a_kernel() {
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let env = work.path().join("a");
    // What `kina kernel build` leaves: built-kernel directories under
    // <cache>/kernels/built/<key>/.
    let cache = env.join("cache/kernels/built");
    let (amd, arm) = two_kernels(&cache);
    let out = run_ok(&mut kernel_cmd(&env, &["list", "--json"]));
    let listed = json_of(&out);
    assert_eq!(listed["built"].as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(listed["built"][0]["recipe"], "cilium-kpr");

    let target = format!("{}/kina/kernel:cilium-kpr", registry.host());
    let out = run_ok(&mut kernel_cmd(
        &env,
        &["push", &target, "--recipe", "cilium-kpr"],
    ));
    assert!(stdout(&out).contains("pushed 10 blobs"), "{}", stdout(&out));
    let index: serde_json::Value = serde_json::from_slice(&skopeo_raw(&target, &[])).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    let err = run_err(&mut kernel_cmd(
        &env,
        &["push", &target, "--recipe", "nope"],
    ));
    assert!(err.contains("no kernel built from recipe `nope`"), "{err}");
    let err = run_err(&mut kernel_cmd(
        &env,
        &["push", "127.0.0.1:1/kina/other:v1"],
    ));
    assert!(
        err.contains("no kernel `127.0.0.1:1/kina/other:v1`") && err.contains("--kernel DIR"),
        "{err}"
    );
    // The pushed artifact is in the local store too: pushing it again by
    // name alone sends nothing.
    let out = run_ok(&mut kernel_cmd(&env, &["push", &target]));
    assert!(stdout(&out).contains("pushed 0 blobs"), "{}", stdout(&out));
    let _ = (amd, arm);

    // A node image under a kernel's name is refused by what it is.
    make_image(&env, "local/node:v1", 1024);
    let node = format!("{}/kina/node:v1", registry.host());
    run_ok(&mut push(&env, &node, "local/node:v1"));
    let env_b = work.path().join("b");
    let err = run_err(&mut kernel_cmd(&env_b, &["pull", &node]));
    assert!(
        err.contains("is not a kina kernel") && err.contains("kina image pull"),
        "{err}"
    );
    assert!(files(&env_b.join("data/kernels/oci/blobs")).is_empty());
    assert!(files(&env_b.join("data/kernels/platforms")).is_empty());
}
