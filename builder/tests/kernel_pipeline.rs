//! The node kernel's pipeline against the real Debian archive (the host's
//! apt mirror): locking `kernels/debian-cloud.toml` pins what the signed
//! index lists, relocking rewrites nothing, and fetching unpacks a bootable
//! kernel with its modules once. The unpacked kernel's use (initramfs, node
//! disk, boot) is tested in the qemu crate. Needs `file` and kmod's depmod
//! (scripts/install-test-deps); a missing tool fails the test.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use kina_builder::debian::archive::fetch_suite;
use kina_builder::debian::keyring::Keyring;
use kina_builder::debian::packages::parse_packages;
use kina_builder::debian::release::ValidUntilPolicy;
use kina_builder::fetch::cache::Cache;
use kina_builder::fetch::mirror::{DebianMirrors, HostApt};
use kina_builder::kernel::{
    KernelArtifacts, KernelLock, KernelLockOptions, KernelRecipe, fetch_kernel, lock_kernel,
    write_kernel_lock,
};
use kina_builder::platform::Arch;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn recipe_path() -> PathBuf {
    workspace().join("kernels/debian-cloud.toml")
}

fn mirrors() -> DebianMirrors {
    let host = HostApt::read(HostApt::default_dir());
    DebianMirrors {
        debian: host
            .debian
            .expect("the host's apt sources name a Debian mirror"),
        security: host
            .security
            .expect("the host's apt sources name a security mirror"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn require_tool(name: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("PATH=$PATH:/usr/sbin:/sbin command -v {name}"))
        .output()
        .unwrap()
        .status
        .success();
    assert!(
        found,
        "`{name}` is missing: install its Debian package (scripts/install-test-deps)"
    );
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One lock of the real archive for the whole test binary.
fn kernel_lock() -> &'static KernelLock {
    static LOCK: OnceLock<KernelLock> = OnceLock::new();
    LOCK.get_or_init(|| {
        let opts = KernelLockOptions {
            mirrors: mirrors(),
            valid_until: ValidUntilPolicy::Warn,
        };
        runtime()
            .block_on(lock_kernel(&recipe_path(), &opts))
            .unwrap()
    })
}

/// A directory for one of this binary's shared fixtures. Statics are never
/// dropped, so a TempDir in one would be left in /tmp by every run (some
/// 600 MiB each); these live under the target directory instead, one
/// directory per test process, and each process removes those of
/// processes that are gone (two runs at once keep theirs).
fn fixture_dir(name: &str) -> PathBuf {
    static OURS: OnceLock<PathBuf> = OnceLock::new();
    let ours = OURS.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernel_pipeline-fixtures");
        std::fs::create_dir_all(&root).unwrap();
        for entry in std::fs::read_dir(&root).unwrap() {
            let path = entry.unwrap().path();
            let pid = path
                .file_name()
                .and_then(|n| n.to_str()?.parse::<u32>().ok());
            if pid.is_none_or(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                std::fs::remove_dir_all(&path).unwrap();
            }
        }
        root.join(std::process::id().to_string())
    });
    let dir = ours.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The amd64 kernel fetched once into a cache of this test binary.
fn amd64_kernel() -> &'static (PathBuf, KernelArtifacts) {
    static KERNEL: OnceLock<(PathBuf, KernelArtifacts)> = OnceLock::new();
    KERNEL.get_or_init(|| {
        let dir = fixture_dir("kernel-cache");
        let cache = Cache::open(&dir).unwrap();
        let kernel = runtime()
            .block_on(fetch_kernel(kernel_lock(), Arch::Amd64, &cache, &mirrors()))
            .unwrap();
        (dir, kernel)
    })
}

#[test]
fn locking_pins_the_cloud_kernel_the_metapackage_depends_on_with_the_signed_index_digest() {
    let lock = kernel_lock();
    let amd64 = lock.for_arch(Arch::Amd64).unwrap();
    assert_eq!(amd64.metapackage, "linux-image-cloud-amd64");
    assert!(
        amd64.package.starts_with("linux-image-") && amd64.package.ends_with("-cloud-amd64"),
        "{}",
        amd64.package
    );
    assert_eq!(
        format!("linux-image-{}", amd64.kernel_release),
        amd64.package
    );
    let arm64 = lock.for_arch(Arch::Arm64).unwrap();
    assert!(arm64.package.ends_with("-cloud-arm64"), "{}", arm64.package);

    // Read the suite again, independently of the lock, and find the pinned file.
    let (recipe, _) = KernelRecipe::load(&recipe_path()).unwrap();
    let keyring = Keyring::load(&recipe.debian.keyring, &workspace().join("kernels")).unwrap();
    let source = recipe
        .debian
        .sources
        .iter()
        .find(|s| s.archive == amd64.archive && s.suites.contains(&amd64.suite))
        .unwrap();
    let index = runtime()
        .block_on(fetch_suite(
            &reqwest::Client::new(),
            mirrors().url_for(amd64.archive),
            &amd64.suite,
            &source.components,
            &[Arch::Amd64],
            &keyring,
            ValidUntilPolicy::Warn,
        ))
        .unwrap();
    let records: Vec<_> = index
        .packages
        .iter()
        .flat_map(|p| parse_packages(&p.text, amd64.archive, &amd64.suite, Arch::Amd64).unwrap())
        .collect();
    let record = records
        .iter()
        .find(|r| r.name == amd64.package && r.version.to_string() == amd64.version)
        .unwrap_or_else(|| panic!("{} {} not in the index", amd64.package, amd64.version));
    assert_eq!(record.sha256, amd64.sha256);
    assert_eq!(record.filename, amd64.filename);
    assert_eq!(record.size, amd64.size);
}

#[test]
fn the_shipped_kernel_lock_matches_the_shipped_recipe_and_pins_both_architectures() {
    let shipped = KernelLock::shipped().unwrap();
    let from_files = KernelLock::read(
        &workspace().join("kernels/debian-cloud.lock"),
        &recipe_path(),
    )
    .unwrap();
    assert_eq!(shipped, from_files);
    for arch in [Arch::Amd64, Arch::Arm64] {
        let kernel = shipped.for_arch(arch).unwrap();
        assert_eq!(
            format!("linux-image-{}", kernel.kernel_release),
            kernel.package
        );
    }
}

#[test]
fn the_kernel_lock_is_written_only_when_its_bytes_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("debian-cloud.lock");
    assert!(write_kernel_lock(kernel_lock(), &path).unwrap());
    let first = std::fs::read(&path).unwrap();
    assert!(!write_kernel_lock(kernel_lock(), &path).unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), first);
    let text = String::from_utf8(first).unwrap();
    let reread: KernelLock = toml::from_str(&text).unwrap();
    assert_eq!(&reread, kernel_lock());
}

#[test]
fn fetching_unpacks_a_bzimage_and_a_modules_tree_with_virtio_blk() {
    require_tool("file");
    let (_, kernel) = amd64_kernel();
    let release = &kernel_lock().for_arch(Arch::Amd64).unwrap().kernel_release;
    assert_eq!(&kernel.release, release);
    assert_eq!(
        kernel.modules_dir,
        kernel.root.join("lib/modules").join(release)
    );
    let out = run_ok(Command::new("file").arg("-b").arg(&kernel.vmlinuz));
    let description = String::from_utf8_lossy(&out.stdout);
    assert!(description.contains("bzImage"), "{description}");
    let dep = std::fs::read_to_string(kernel.modules_dir.join("modules.dep")).unwrap();
    assert!(
        dep.lines().any(|l| l.contains("/virtio_blk.ko")),
        "modules.dep lacks virtio_blk"
    );
}

#[test]
fn a_second_fetch_reuses_the_unpacked_kernel_without_the_network() {
    let (shared, _) = amd64_kernel();
    let locked = kernel_lock().for_arch(Arch::Amd64).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let shared_cache = Cache::open(shared).unwrap();
    std::fs::copy(
        shared_cache.blob_path(&locked.sha256),
        cache.blob_path(&locked.sha256),
    )
    .unwrap();
    let first = runtime()
        .block_on(fetch_kernel(kernel_lock(), Arch::Amd64, &cache, &mirrors()))
        .unwrap();
    // No .deb and no reachable mirror: only the unpacked directory can answer.
    std::fs::remove_file(cache.blob_path(&locked.sha256)).unwrap();
    let nowhere = DebianMirrors {
        debian: "http://127.0.0.1:9/debian".into(),
        security: "http://127.0.0.1:9/debian-security".into(),
    };
    let second = runtime()
        .block_on(fetch_kernel(kernel_lock(), Arch::Amd64, &cache, &nowhere))
        .unwrap();
    assert_eq!(first, second);
    assert!(second.vmlinuz.is_file());
}

#[test]
fn a_lock_with_a_wrong_sha256_is_refused_and_leaves_no_kernel_directory() {
    let mut lock = kernel_lock().clone();
    let wrong = kina_builder::digest::Sha256Digest::of(b"not the kernel");
    for kernel in &mut lock.kernels {
        kernel.sha256 = wrong;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let err = runtime()
        .block_on(fetch_kernel(&lock, Arch::Amd64, &cache, &mirrors()))
        .unwrap_err();
    assert!(err.to_string().contains("sha256"), "{err}");
    let kernels = dir.path().join("kernels");
    let left: Vec<_> = std::fs::read_dir(&kernels)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(cache.get(&wrong).unwrap().is_none());
}
