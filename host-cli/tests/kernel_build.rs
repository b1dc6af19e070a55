//! `kina kernel build`: kernels from verified sources, checked before they
//! are compiled, reproducible, and cached in the user's cache directory.
//!
//! The real builds of both architectures live in this one test binary and
//! use the user's cache (`KINA_CACHE_DIR`, else `~/.cache/kina`), so a
//! machine that built them once (and the boot tests after this binary) finds
//! them there; a cached kernel is still opened, digest-checked and checked
//! against its profile, so the test can fail with a cache too.
//!
//! Inputs: Debian's `linux` orig tarball from the Debian mirror (the host's
//! apt sources or `KINA_DEBIAN_MIRROR`), Apple's kernel configs as pinned
//! reference inputs (served through `KINA_URL_REWRITE` by scripts/test).

// Test support: a failed step should stop the test with what went wrong.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use kina_builder::digest::Sha256Digest;
use kina_builder::fetch::cache::Cache;
use kina_builder::fetch::http::{FetchItem, Fetcher};
use kina_builder::fetch::mirror::UrlRewrites;
use kina_builder::fetch::progress::{Progress, ProgressMode};
use kina_builder::kernel::build::{
    BuildDir, Requirement, SourceTree, Toolchain, config_values, dropped, fragment, fragment_text,
    unpack_source,
};
use kina_builder::kernel::kconfig::{KconfigIndex, kernel_arch};
use kina_builder::kernel::{BuiltKernel, KernelFormat, KernelLock, LockedSource};
use kina_builder::lockgen::deb_url;
use kina_builder::platform::Arch;
use kina_contract::kernel::{KernelConfig, Presence, ProfileSet, check};
use kina_tests::reference_inputs::{debian_mirrors, fetch_reference_input};

use common::{run_err, run_ok};

const RECIPE: &str = include_str!("../../kernels/cilium-kpr.toml");
const LOCK: &str = include_str!("../../kernels/cilium-kpr.lock");

fn user_cache() -> PathBuf {
    Cache::default_root()
}

/// `kina` on the user's cache (where built kernels are kept), with the
/// environment's URL rewrites and mirrors, and its own data directory.
fn kina_user(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kina"));
    cmd.env("KINA_CACHE_DIR", user_cache())
        .env("KINA_DATA_DIR", data)
        .env_remove("SOURCE_DATE_EPOCH");
    cmd
}

fn shipped_lock() -> KernelLock {
    KernelLock::from_text(
        LOCK,
        Path::new("kernels/cilium-kpr.lock"),
        RECIPE,
        Path::new("kernels/cilium-kpr.toml"),
    )
    .unwrap()
}

/// The shipped recipe's Linux source: where the mirror serves it, its digest.
fn locked_source() -> (String, Sha256Digest, u64) {
    let Some(LockedSource::Debian {
        archive,
        filename,
        size,
        sha256,
        ..
    }) = shipped_lock().source
    else {
        panic!("kernels/cilium-kpr.lock pins no Debian source");
    };
    (
        deb_url(&debian_mirrors().unwrap(), archive, &filename),
        sha256,
        size,
    )
}

/// The verified orig tarball in the user's download cache.
fn source_tarball() -> PathBuf {
    let (url, sha256, size) = locked_source();
    let cache = Cache::open(user_cache()).unwrap();
    let fetcher = Fetcher::new(
        cache,
        UrlRewrites::default(),
        Progress::new(ProgressMode::Plain),
    )
    .unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(fetcher.fetch(&FetchItem {
            url,
            sha256,
            size: Some(size),
            label: "linux orig tarball".into(),
        }))
        .unwrap()
}

/// The unpacked tree, where `kina kernel build` keeps it.
fn source_tree() -> SourceTree {
    let (_, sha256, _) = locked_source();
    unpack_source(&source_tarball(), &sha256, &user_cache().join("kernels")).unwrap()
}

fn requirements(set: &ProfileSet, profile: &str) -> Vec<Requirement> {
    set.expanded(profile)
        .unwrap()
        .into_iter()
        .filter(|(_, o)| o.required)
        .map(|(_, o)| Requirement {
            symbols: o.symbols.clone(),
            all: o.all,
        })
        .collect()
}

fn satisfied(req: &Requirement, values: &BTreeMap<String, String>) -> bool {
    let y = |s: &String| values.get(s).map(String::as_str) == Some("y");
    if req.all {
        req.symbols.iter().all(y)
    } else {
        req.symbols.iter().any(y)
    }
}

/// (a) Apple's configs with `cilium-kpr`, on the real source: the fragment
/// sets only what the base lacks, each symbol needed by some requirement the
/// base leaves unmet; olddefconfig keeps every one; the engine of `kina
/// kernel check` then passes every required option as built in.
#[test]
fn apple_configs_get_a_minimal_fragment_that_olddefconfig_keeps() {
    let tree = source_tree();
    let set = ProfileSet::shipped().unwrap();
    let reqs = requirements(&set, "cilium-kpr");
    for (arch, input) in [
        (Arch::Arm64, "apple-containerization-arm64.config"),
        (Arch::Amd64, "apple-containerization-x86_64.config"),
    ] {
        let base = fetch_reference_input(input).unwrap();
        let base_values = config_values(&String::from_utf8_lossy(&base));
        let kconfig = KconfigIndex::read(&tree.dir, arch).unwrap();
        let symbols = fragment(&base_values, &reqs, &kconfig);
        eprintln!("{arch}: fragment {symbols:?}");
        // The two gaps the prototype hit on Apple's kernels.
        for known in ["BPF_JIT", "CRYPTO_USER_API_HASH"] {
            assert!(symbols.iter().any(|s| s == known), "{arch}: {symbols:?}");
        }
        for s in &symbols {
            assert_ne!(
                base_values.get(s).map(String::as_str),
                Some("y"),
                "{arch}: CONFIG_{s} is already built in"
            );
            assert!(
                reqs.iter()
                    .any(|r| r.symbols.contains(s) && !satisfied(r, &base_values)),
                "{arch}: CONFIG_{s} answers no unmet requirement"
            );
        }
        for r in reqs.iter().filter(|r| !satisfied(r, &base_values)) {
            assert!(
                r.symbols.iter().any(|s| symbols.contains(s)),
                "{arch}: unmet {r:?} gets nothing"
            );
        }

        let objdir = tempfile::tempdir().unwrap();
        let build = BuildDir {
            source: tree.clone(),
            objdir: objdir.path().join("obj"),
            toolchain: Toolchain::detect(arch).unwrap(),
            log: objdir.path().join("build.log"),
            jobs: 2,
        };
        let configured = build.configure(&base, &fragment_text(&symbols)).unwrap();
        let values = config_values(&configured);
        let lost = dropped(&symbols, &values, &kconfig);
        assert!(lost.is_empty(), "{arch}: olddefconfig dropped {lost:?}");
        let config = KernelConfig::from_bytes(configured.as_bytes(), "configured").unwrap();
        assert!(
            !config.modules_supported(),
            "{arch}: Apple's configs have no modules"
        );
        let report = check(&set, &["cilium-kpr".into()], Some(&config), None).unwrap();
        assert!(report.passed(), "{arch}:\n{}", report.render(&[]));
        for o in report.profiles[0].options.iter().filter(|o| o.required) {
            assert_eq!(
                o.presence,
                Presence::Builtin,
                "{arch}: {}",
                o.config_names()
            );
        }
    }
}

/// (a) A site profile requiring an option whose dependency Apple's config
/// cannot meet (`MODULE_UNLOAD` lives inside `if MODULES`) is refused by
/// name, with the missing dependency, before anything is compiled.
#[test]
fn an_option_whose_dependency_the_base_lacks_is_refused_before_compiling() {
    let (url, sha256, _) = locked_source();
    source_tarball();
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tmp.path().join("site.toml");
    let arm64 =
        kina_tests::reference_inputs::reference_input("apple-containerization-arm64.config")
            .unwrap();
    let kina_tests::reference_inputs::Origin::Url(config_url) = arm64.origin else {
        panic!("the arm64 config is pinned by URL");
    };
    std::fs::write(
        &recipe,
        format!(
            "schema = 1\nname = \"site-modules\"\narchitectures = [\"arm64\"]\n[build]\nprofiles = [\"site-modules\"]\n[build.source.tarball]\nurl = \"{url}\"\nsha256 = \"{}\"\n[build.config.arm64]\nurl = \"{config_url}\"\nsha256 = \"{}\"\n",
            sha256.hex(),
            arm64.sha256
        ),
    )
    .unwrap();
    let profile = tmp.path().join("site-modules.toml");
    std::fs::write(
        &profile,
        "name = \"site-modules\"\ndescription = \"a driver the site loads and unloads\"\n[[option]]\nsymbols = [\"MODULE_UNLOAD\"]\nwhy = \"the site unloads its driver\"\nprobe = { kind = \"config-only\" }\n",
    )
    .unwrap();
    let data = tmp.path().join("data");
    run_ok(
        kina_user(&data)
            .args(["kernel", "lock", "--recipe"])
            .arg(&recipe),
    );
    let err = run_err(
        kina_user(&data)
            .args(["kernel", "build", "--arch", "arm64", "--recipe"])
            .arg(&recipe)
            .arg("--profile-file")
            .arg(&profile),
    );
    assert!(
        err.contains("CONFIG_MODULE_UNLOAD (not set): needs MODULES (CONFIG_MODULES is not set)"),
        "{err}"
    );
    assert!(err.contains("nothing was compiled"), "{err}");
    assert!(!err.contains("compiling Image"), "{err}");
}

fn check_magic(built: &BuiltKernel) {
    let bytes = std::fs::read(built.kernel_path()).unwrap();
    match built.meta.format {
        // The x86 boot protocol's "HdrS" at 0x202.
        KernelFormat::BzImage => assert_eq!(&bytes[0x202..0x206], b"HdrS"),
        // arm64's Image header magic "ARM\x64" at offset 56 (booting.rst).
        KernelFormat::ArmImage => assert_eq!(&bytes[56..60], b"ARM\x64"),
    }
}

/// (b) The shipped recipe built for both architectures through `kina kernel
/// build`, cached in the user's cache: the directory opens with matching
/// digests, the kernel is the format the providers boot, its config passes
/// `kina kernel check --profile cilium-kpr`, and a second build is a lookup.
#[test]
fn the_shipped_recipe_builds_for_both_architectures_and_passes_cilium_kpr() {
    let (_, source_sha256, _) = locked_source();
    let tmp = tempfile::tempdir().unwrap();
    for arch in ["amd64", "arm64"] {
        for round in ["first", "second"] {
            let started = std::time::Instant::now();
            let out = run_ok(kina_user(tmp.path()).args([
                "kernel",
                "build",
                "--recipe",
                "cilium-kpr",
                "--arch",
                arch,
            ]));
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let dir = PathBuf::from(stdout.lines().last().unwrap().trim());
            let built = BuiltKernel::open(&dir).unwrap();
            let size = std::fs::metadata(built.kernel_path()).unwrap().len();
            eprintln!(
                "{arch} {round} build: {:.0} s, {} ({size} bytes){}",
                started.elapsed().as_secs_f64(),
                built.meta.release,
                if stderr.contains("cached:") {
                    ", cached"
                } else {
                    ""
                }
            );
            if round == "second" {
                assert!(stderr.contains("cached:"), "{stderr}");
            }
            assert_eq!(built.meta.arch.to_string(), arch);
            assert_eq!(built.meta.source_sha256, source_sha256);
            assert_eq!(built.meta.profiles, vec!["cilium-kpr".to_string()]);
            assert_eq!(built.meta.format, KernelFormat::for_arch(built.meta.arch));
            assert!(
                built.meta.release.starts_with("6.18.5"),
                "{}",
                built.meta.release
            );
            check_magic(&built);
            run_ok(
                kina_user(tmp.path())
                    .args(["kernel", "check", "--profile", "cilium-kpr", "--config"])
                    .arg(built.config_path()),
            );
            let report: serde_json::Value =
                serde_json::from_slice(&std::fs::read(built.report_path()).unwrap()).unwrap();
            assert_eq!(report["profiles"][0]["verdict"], "pass", "{report}");
        }
    }
}

/// (c) Two builds of one recipe in two cache directories give the same
/// bytes: a test recipe whose base is `make tinyconfig` (built small, so CI
/// can afford two builds), served on loopback with the source tarball.
#[test]
fn two_builds_of_one_recipe_give_identical_bytes() {
    let tree = source_tree();
    let tmp = tempfile::tempdir().unwrap();
    let serve = tmp.path().join("serve");
    std::fs::create_dir_all(&serve).unwrap();
    // The base config: `make tinyconfig` of this source for x86_64.
    let objdir = tmp.path().join("tiny");
    let status = Command::new("make")
        .arg("-C")
        .arg(&tree.dir)
        .arg(format!("O={}", objdir.display()))
        .arg(format!("ARCH={}", kernel_arch(Arch::Amd64)))
        .arg("tinyconfig")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let tiny = std::fs::read(objdir.join(".config")).unwrap();
    std::fs::write(serve.join("tiny.config"), &tiny).unwrap();
    std::os::unix::fs::symlink(source_tarball(), serve.join("linux.tar.xz")).unwrap();
    let server = kina_tests::HttpServer::serve_dir(&serve).unwrap();
    let (_, source_sha256, _) = locked_source();
    let recipe = tmp.path().join("tiny.toml");
    std::fs::write(
        &recipe,
        format!(
            "schema = 1\nname = \"tiny\"\narchitectures = [\"amd64\"]\n[build]\nprofiles = [\"site-elf\"]\n[build.source.tarball]\nurl = \"{url}/linux.tar.xz\"\nsha256 = \"{}\"\n[build.config.amd64]\nurl = \"{url}/tiny.config\"\nsha256 = \"{}\"\n",
            source_sha256.hex(),
            Sha256Digest::of(&tiny).hex(),
            url = server.url()
        ),
    )
    .unwrap();
    let profile = tmp.path().join("site-elf.toml");
    std::fs::write(
        &profile,
        "name = \"site-elf\"\ndescription = \"runs ELF programs\"\n[[option]]\nsymbols = [\"BINFMT_ELF\"]\nwhy = \"init is an ELF binary\"\nprobe = { kind = \"config-only\" }\n",
    )
    .unwrap();
    // A cache of its own per build: two cold builds in different paths.
    let kina_in = |name: &str| {
        let env = tmp.path().join(name);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kina"));
        cmd.env("KINA_CACHE_DIR", env.join("cache"))
            .env("KINA_DATA_DIR", env.join("data"))
            .env_remove("KINA_URL_REWRITE")
            .env_remove("SOURCE_DATE_EPOCH");
        cmd
    };
    run_ok(
        kina_in("one")
            .args(["kernel", "lock", "--recipe"])
            .arg(&recipe),
    );
    let mut outputs = Vec::new();
    for (i, name) in ["one", "two", "one"].iter().enumerate() {
        let mut cmd = kina_in(name);
        let out_dir = tmp.path().join(format!("out-{i}"));
        let out = run_ok(
            cmd.args(["kernel", "build", "--arch", "amd64", "--recipe"])
                .arg(&recipe)
                .arg("--profile-file")
                .arg(&profile)
                .arg("--output")
                .arg(&out_dir),
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if i == 2 {
            assert!(
                stderr.contains("cached:") && !stderr.contains("compiling"),
                "the third build is a lookup: {stderr}"
            );
        } else {
            assert!(stderr.contains("fragment: CONFIG_BINFMT_ELF=y"), "{stderr}");
        }
        outputs.push(BuiltKernel::open(&out_dir).unwrap());
    }
    let (a, b) = (&outputs[0], &outputs[1]);
    assert!(
        std::fs::read(a.kernel_path()).unwrap() == std::fs::read(b.kernel_path()).unwrap(),
        "{} and {} differ",
        a.kernel_path().display(),
        b.kernel_path().display()
    );
    assert_eq!(
        std::fs::read(a.config_path()).unwrap(),
        std::fs::read(b.config_path()).unwrap()
    );
    assert_eq!(a.meta, b.meta);
    assert_eq!(outputs[2].meta, a.meta);
}
