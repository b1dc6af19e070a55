//! The QEMU node's three assets, built from real inputs and read back by
//! independent tools: the Debian cloud kernel (locked and fetched from the
//! host's apt mirror), the initramfs (GNU cpio), and the ext4 root disk
//! (e2fsprogs). Tools come from Debian packages: cpio, e2fsprogs, kmod, file
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
use kina_builder::fetch::mirror::DebianMirrors;
use kina_builder::platform::Arch;
use kina_qemu::disk::{DiskExtras, build_root_disk, build_stored_root_disk};
use kina_qemu::initramfs::{InitramfsError, build_initramfs};
use kina_qemu::kernel::{
    KernelArtifacts, KernelLock, KernelLockOptions, KernelRecipe, fetch_kernel, lock_kernel,
    write_kernel_lock,
};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn recipe_path() -> PathBuf {
    workspace().join("kernels/debian-cloud.toml")
}

fn mirrors() -> DebianMirrors {
    let host = kina_tests::host_mirrors().unwrap();
    DebianMirrors {
        debian: host.debian,
        security: host.debian_security,
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

/// The amd64 kernel fetched once into a cache of this test binary.
fn amd64_kernel() -> &'static (tempfile::TempDir, KernelArtifacts) {
    static KERNEL: OnceLock<(tempfile::TempDir, KernelArtifacts)> = OnceLock::new();
    KERNEL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let kernel = runtime()
            .block_on(fetch_kernel(kernel_lock(), Arch::Amd64, &cache, &mirrors()))
            .unwrap();
        (dir, kernel)
    })
}

// ---------------------------------------------------------------- kernel

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
    let shared_cache = Cache::open(shared.path()).unwrap();
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

// ---------------------------------------------------------------- initramfs

/// Stand-in init bytes: the archive layout is under test, not kina-init.
const FAKE_INIT: &[u8] = b"\x7fELF stand-in for kina-init";

fn gunzip(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn cpio_with_stdin(args: &[&str], dir: &Path, stdin: &[u8]) -> String {
    use std::io::Write;
    require_tool("cpio");
    let mut child = Command::new("cpio")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "cpio {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// modules.dep of the fetched kernel: module path → its dependencies.
fn modules_dep(kernel: &KernelArtifacts) -> Vec<(String, Vec<String>)> {
    std::fs::read_to_string(kernel.modules_dir.join("modules.dep"))
        .unwrap()
        .lines()
        .map(|l| {
            let (m, d) = l.split_once(':').unwrap();
            (
                m.to_string(),
                d.split_whitespace().map(str::to_string).collect(),
            )
        })
        .collect()
}

fn plain(path: &str) -> &str {
    path.strip_suffix(".xz").unwrap_or(path)
}

#[test]
fn the_initramfs_holds_init_a_console_and_virtio_blk_after_its_dependencies() {
    let (_, kernel) = amd64_kernel();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("initramfs.gz");
    let info = build_initramfs(kernel, FAKE_INIT, &out).unwrap();
    let archive = gunzip(&out);

    let listing = cpio_with_stdin(&["-itv", "--quiet"], dir.path(), &archive);
    let console = listing
        .lines()
        .find(|l| l.ends_with(" dev/console"))
        .unwrap_or_else(|| panic!("no dev/console in\n{listing}"));
    assert!(console.starts_with("crw-------"), "{console}");
    assert!(console.contains("5,"), "{console}");
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with(" init"))
    );

    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    cpio_with_stdin(&["-idm", "--quiet"], &root, &archive);
    assert_eq!(std::fs::read(root.join("init")).unwrap(), FAKE_INIT);
    for d in ["dev", "proc", "sys", "run", "newroot", "etc/kina"] {
        assert!(root.join(d).is_dir(), "{d}");
    }
    let list = std::fs::read_to_string(root.join("etc/kina/initramfs-modules")).unwrap();
    let order: Vec<&str> = list.lines().collect();
    assert_eq!(order, info.modules);
    let prefix = format!("/lib/modules/{}/", kernel.release);
    let position = |module: &str| {
        order
            .iter()
            .position(|p| p.strip_prefix(&prefix) == Some(plain(module)))
    };
    let dep = modules_dep(kernel);
    let (blk, blk_deps) = dep
        .iter()
        .find(|(m, _)| m.contains("/virtio_blk.ko"))
        .unwrap();
    let blk_at = position(blk).expect("virtio_blk in the load order");
    for d in blk_deps {
        assert!(position(d).unwrap() < blk_at, "{d} after virtio_blk");
    }
    // Every listed module: after its dependencies, stored decompressed.
    for (i, path) in order.iter().enumerate() {
        let (_, deps) = dep
            .iter()
            .find(|(m, _)| format!("{prefix}{}", plain(m)) == *path)
            .unwrap();
        for d in deps {
            assert!(position(d).unwrap() < i, "{d} after {path}");
        }
        let bytes = std::fs::read(root.join(path.trim_start_matches('/'))).unwrap();
        assert_eq!(&bytes[..4], b"\x7fELF", "{path} is not a plain ELF module");
    }
    eprintln!(
        "initramfs: {} bytes, {} modules",
        info.size,
        info.modules.len()
    );
}

#[test]
fn two_initramfs_builds_of_the_same_inputs_are_byte_identical() {
    let (_, kernel) = amd64_kernel();
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.gz");
    let b = dir.path().join("b.gz");
    build_initramfs(kernel, FAKE_INIT, &a).unwrap();
    build_initramfs(kernel, FAKE_INIT, &b).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

/// A copy of the kernel's module indexes with virtio_blk removed from
/// modules.dep, and `extra_builtin` added to modules.builtin.
fn kernel_without_virtio_blk(dir: &Path, extra_builtin: &str) -> KernelArtifacts {
    let (_, kernel) = amd64_kernel();
    let modules = dir.join("lib/modules").join(&kernel.release);
    std::fs::create_dir_all(&modules).unwrap();
    let dep: String = std::fs::read_to_string(kernel.modules_dir.join("modules.dep"))
        .unwrap()
        .lines()
        .filter(|l| !l.contains("/virtio_blk.ko"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(modules.join("modules.dep"), dep).unwrap();
    let mut builtin = std::fs::read_to_string(kernel.modules_dir.join("modules.builtin")).unwrap();
    assert!(!builtin.contains("/virtio_blk.ko"));
    builtin.push_str(extra_builtin);
    std::fs::write(modules.join("modules.builtin"), builtin).unwrap();
    std::os::unix::fs::symlink(kernel.modules_dir.join("kernel"), modules.join("kernel")).unwrap();
    KernelArtifacts {
        modules_dir: modules,
        root: dir.to_path_buf(),
        ..kernel.clone()
    }
}

#[test]
fn a_first_stage_module_the_kernel_lacks_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = kernel_without_virtio_blk(dir.path(), "");
    let out = dir.path().join("initramfs.gz");
    let err = build_initramfs(&kernel, FAKE_INIT, &out).unwrap_err();
    assert!(
        matches!(err, InitramfsError::UnknownModule { ref module, .. } if module == "virtio_blk")
    );
    assert!(err.to_string().contains("virtio_blk"), "{err}");
    assert!(!out.exists());
}

#[test]
fn a_built_in_first_stage_module_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = kernel_without_virtio_blk(dir.path(), "kernel/drivers/block/virtio_blk.ko\n");
    let out = dir.path().join("initramfs.gz");
    let info = build_initramfs(&kernel, FAKE_INIT, &out).unwrap();
    assert!(info.modules.iter().all(|m| !m.contains("virtio_blk")));
    assert!(info.modules.iter().any(|m| m.contains("virtio_net")));
}
