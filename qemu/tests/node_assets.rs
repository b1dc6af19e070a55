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

use kina_builder::debian::release::ValidUntilPolicy;
use kina_builder::fetch::cache::Cache;
use kina_builder::fetch::mirror::DebianMirrors;
use kina_builder::kernel::{
    KernelArtifacts, KernelLock, KernelLockOptions, fetch_kernel, lock_kernel,
};
use kina_builder::platform::Arch;
use kina_qemu::disk::{DiskExtras, build_stored_root_disk};
use kina_qemu::initramfs::{InitramfsError, build_initramfs};

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

/// A directory for one of this binary's shared fixtures. Statics are never
/// dropped, so a TempDir in one would be left in /tmp by every run (some
/// 600 MiB each); these live under the target directory instead, one
/// directory per test process, and each process removes those of
/// processes that are gone (two runs at once keep theirs).
fn fixture_dir(name: &str) -> PathBuf {
    static OURS: OnceLock<PathBuf> = OnceLock::new();
    let ours = OURS.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("node_assets-fixtures");
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

// ---------------------------------------------------------------- kernel

#[test]
fn the_cloud_kernel_config_meets_the_kubernetes_base_and_ptp_profiles() {
    use kina_contract::kernel::{KernelConfig, ProfileSet, check};
    let (_, kernel) = amd64_kernel();
    let config = KernelConfig::read(&kernel.config()).unwrap();
    let set = ProfileSet::shipped().unwrap();
    let report = check(
        &set,
        &["kubernetes-base".to_string(), "ptp".to_string()],
        Some(&config),
        None,
    )
    .unwrap();
    assert!(report.passed(), "{}", report.render(&[]));
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
        "initramfs: {} bytes, {} modules: {:?}",
        info.size,
        info.modules.len(),
        info.modules
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

// ---------------------------------------------------------------- root disk

const BASE_REFERENCE: &str = "kina.local/node:disk-test";

/// `recipes/base.toml` built for amd64 into a store of this test binary,
/// through the same code path as `kina image build`. kina-init is a
/// stand-in (the host's /bin/true, an amd64 ELF): the disk tests read the
/// filesystem and never run init. Downloads share the user's verified cache.
fn base_image_store() -> &'static PathBuf {
    use kina_builder::assemble::{BuildOptions, build_to_store};
    use kina_builder::fetch::http::Fetcher;
    use kina_builder::fetch::mirror::UrlRewrites;
    use kina_builder::fetch::progress::{Progress, ProgressMode};
    use kina_builder::lockgen::{LockOptions, lock_recipe};
    use kina_builder::oci::layer::Compression;
    use kina_builder::oci::registry::RegistryMirrors;
    use kina_builder::recipe::LoadedRecipe;
    use kina_builder::store::ImageStore;
    static STORE: OnceLock<PathBuf> = OnceLock::new();
    STORE.get_or_init(|| {
        let loaded = LoadedRecipe::load(&workspace().join("recipes/base.toml")).unwrap();
        let rt = runtime();
        let client = kina_builder::fetch::http::http_client().unwrap();
        let lock = rt
            .block_on(lock_recipe(
                &loaded,
                &LockOptions {
                    mirrors: mirrors(),
                    valid_until: ValidUntilPolicy::Warn,
                    registry_mirrors: RegistryMirrors::default(),
                },
                &client,
            ))
            .unwrap();
        let options = BuildOptions {
            platforms: vec![Arch::Amd64],
            reference: BASE_REFERENCE.into(),
            compression: Compression::Gzip,
            source_date_epoch: None,
            kina_init_overrides: [(Arch::Amd64, PathBuf::from("/bin/true"))].into(),
            mirrors: mirrors(),
            registry_mirrors: RegistryMirrors::default(),
        };
        let cache = Cache::open(Cache::default_root()).unwrap();
        let fetcher = Fetcher::new(
            cache,
            UrlRewrites::default(),
            Progress::new(ProgressMode::Quiet),
        )
        .unwrap();
        let dir = fixture_dir("image-store");
        let store = ImageStore::open(&dir).unwrap();
        rt.block_on(build_to_store(&loaded, &lock, &options, &fetcher, &store))
            .unwrap();
        dir
    })
}

const NODE_JSON: &str = "/etc/kina/node.json";

/// The base image's disk with the amd64 kernel's modules and a node.json.
fn base_disk() -> &'static PathBuf {
    static DISK: OnceLock<PathBuf> = OnceLock::new();
    DISK.get_or_init(|| {
        let store = base_image_store();
        let (_, kernel) = amd64_kernel();
        let out = fixture_dir("disk").join("root.ext4");
        let extras = DiskExtras {
            kernel_modules: Some((kernel.release.clone(), kernel.modules_dir.clone())),
            files: vec![(NODE_JSON.into(), b"{\"name\":\"n1\"}".to_vec(), 0o600)],
            ..DiskExtras::default()
        };
        let started = std::time::Instant::now();
        let info =
            build_stored_root_disk(store, BASE_REFERENCE, Arch::Amd64, &extras, &out).unwrap();
        eprintln!(
            "root disk of the base image: {} layers in {:.1?}",
            info.layers,
            started.elapsed()
        );
        out
    })
}

/// `debugfs -R "<request>"` on `disk`, stdout.
fn debugfs(disk: &Path, request: &str) -> String {
    require_tool("debugfs");
    let out = run_ok(Command::new("debugfs").arg("-R").arg(request).arg(disk));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The token after `field` in debugfs `stat` output (`Mode:`, `User:`, `Group:`, `Type:`).
fn stat_field(disk: &Path, path: &str, field: &str) -> String {
    let stat = debugfs(disk, &format!("stat {path}"));
    let mut tokens = stat.split_whitespace();
    tokens
        .find(|t| *t == field)
        .and_then(|_| tokens.next())
        .unwrap_or_else(|| panic!("no {field} for {path} in:\n{stat}"))
        .to_string()
}

#[test]
fn the_base_image_disk_is_a_clean_ext4_filesystem_labelled_kina_root() {
    require_tool("e2fsck");
    let disk = base_disk();
    run_ok(Command::new("e2fsck").arg("-fn").arg(disk));
    let out = run_ok(Command::new("dumpe2fs").arg("-h").arg(disk));
    let header = String::from_utf8_lossy(&out.stdout);
    assert!(
        header.contains("Filesystem volume name:   kina-root"),
        "{header}"
    );
}

#[test]
fn etc_shadow_keeps_mode_0640_and_group_shadow() {
    let disk = base_disk();
    assert_eq!(stat_field(disk, "/etc/shadow", "Mode:"), "0640");
    assert_eq!(stat_field(disk, "/etc/shadow", "User:"), "0");
    assert_eq!(stat_field(disk, "/etc/shadow", "Group:"), "42");
}

#[test]
fn setuid_binaries_keep_their_setuid_bit() {
    let disk = base_disk();
    assert_eq!(stat_field(disk, "/usr/bin/su", "Mode:"), "04755");
}

#[test]
fn node_json_is_root_owned_0600() {
    let disk = base_disk();
    assert_eq!(stat_field(disk, NODE_JSON, "Mode:"), "0600");
    assert_eq!(stat_field(disk, NODE_JSON, "User:"), "0");
    assert_eq!(
        debugfs(disk, &format!("cat {NODE_JSON}")),
        "{\"name\":\"n1\"}"
    );
}

#[test]
fn kernel_modules_land_under_usr_lib_through_the_usrmerge_symlink() {
    let disk = base_disk();
    let (_, kernel) = amd64_kernel();
    assert_eq!(stat_field(disk, "/lib", "Type:"), "symlink");
    let dep = debugfs(
        disk,
        &format!("cat /usr/lib/modules/{}/modules.dep", kernel.release),
    );
    assert!(
        dep.contains("/virtio_blk.ko"),
        "modules.dep missing on disk"
    );
}

// A hand-made OCI layout, to feed the disk builder layers no builder makes.

enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a str),
    Symlink(&'a str, &'a str),
    /// A file with one extended attribute, as a PAX `SCHILY.xattr.` record.
    FileWithXattr(&'a str, &'a str, &'a [u8]),
}

/// A tar stream whose names are written verbatim into the headers (the tar
/// crate's path setters refuse `..`, which is the point of some tests).
fn raw_tar(entries: &[E]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        let (name, data, kind, mode) = match entry {
            E::Dir(n) => (*n, "", tar::EntryType::Directory, 0o755),
            E::File(n, d) => (*n, *d, tar::EntryType::Regular, 0o644),
            E::FileWithXattr(n, key, value) => {
                let key = format!("SCHILY.xattr.{key}");
                builder
                    .append_pax_extensions([(key.as_str(), *value)])
                    .unwrap();
                (*n, "", tar::EntryType::Regular, 0o755)
            }
            E::Symlink(n, target) => {
                header.set_link_name(target).unwrap();
                (*n, "", tar::EntryType::Symlink, 0o777)
            }
        };
        header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data.as_bytes()).unwrap();
    }
    builder.into_inner().unwrap()
}

/// The name [`layout_of`] gives its one image.
const LAYOUT_REF: &str = "kina-test/layers:1";

/// An OCI layout with one single-platform manifest of gzip layers.
fn layout_of(dir: &Path, layers: &[Vec<u8>]) -> PathBuf {
    use std::io::Write;
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = kina_builder::digest::Sha256Digest::of(bytes);
        std::fs::write(blobs.join(digest.hex()), bytes).unwrap();
        serde_json::json!({"digest": digest.oci(), "size": bytes.len()})
    };
    let mut descriptors = Vec::new();
    for tar in layers {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(tar).unwrap();
        let mut d = put(&gz.finish().unwrap());
        d["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip".into();
        descriptors.push(d);
    }
    let mut config =
        put(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#);
    config["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": descriptors,
    });
    let mut entry = put(&serde_json::to_vec(&manifest).unwrap());
    entry["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
    entry["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": LAYOUT_REF });
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [entry]});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    layout
}

fn small_disk() -> DiskExtras {
    DiskExtras {
        size_bytes: 64 << 20,
        ..DiskExtras::default()
    }
}

#[test]
fn whiteouts_and_opaque_directories_hide_lower_layer_content() {
    let dir = tempfile::tempdir().unwrap();
    let lower = raw_tar(&[
        E::Dir("a/"),
        E::File("a/old", "x"),
        E::File("b", "gone"),
        E::File("c", "kept"),
    ]);
    let upper = raw_tar(&[
        E::Dir("a/"),
        E::File("a/new", "y"),
        E::File("a/.wh..wh..opq", ""),
        E::File(".wh.b", ""),
    ]);
    let layout = layout_of(dir.path(), &[lower, upper]);
    let out = dir.path().join("disk.ext4");
    build_stored_root_disk(&layout, LAYOUT_REF, Arch::Amd64, &small_disk(), &out).unwrap();
    let listing = debugfs(&out, "ls -l /a");
    assert!(
        listing.contains(" new") && !listing.contains(" old"),
        "{listing}"
    );
    let root = debugfs(&out, "ls /");
    assert!(root.split_whitespace().any(|w| w == "c"), "{root}");
    assert!(!root.split_whitespace().any(|w| w == "b"), "{root}");
}

#[test]
fn file_capabilities_in_a_layer_survive_onto_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let caps: &[u8] = &[
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let layer = raw_tar(&[
        E::Dir("usr/"),
        E::Dir("usr/bin/"),
        E::FileWithXattr("usr/bin/ping", "security.capability", caps),
    ]);
    let layout = layout_of(dir.path(), &[layer]);
    let out = dir.path().join("disk.ext4");
    build_stored_root_disk(&layout, LAYOUT_REF, Arch::Amd64, &small_disk(), &out).unwrap();
    let attrs = debugfs(&out, "ea_list /usr/bin/ping");
    assert!(
        attrs.contains("security.capability (20) = 01 00 00 02 00 20"),
        "{attrs}"
    );
}

/// Builds a disk from a layout whose single layer is `entries`; asserts it
/// fails naming `entry`, with no disk and no staging directory left.
fn assert_refused(entries: &[E], entry: &str) {
    let dir = tempfile::tempdir().unwrap();
    let layout = layout_of(dir.path(), &[raw_tar(entries)]);
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("disk.ext4");
    let err =
        build_stored_root_disk(&layout, LAYOUT_REF, Arch::Amd64, &small_disk(), &out).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("layer ") && message.contains("refused"),
        "{message}"
    );
    assert!(message.contains(entry), "{message}");
    let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!dir.path().join("escape").exists());
}

#[test]
fn a_layer_entry_climbing_out_with_dotdot_is_refused_and_leaves_nothing() {
    assert_refused(&[E::File("../escape", "boom")], "../escape");
}

#[test]
fn a_layer_entry_with_an_absolute_path_is_refused() {
    assert_refused(&[E::File("/tmp/escape", "boom")], "/tmp/escape");
}

#[test]
fn a_layer_writing_through_a_symlink_that_leaves_the_root_is_refused() {
    assert_refused(
        &[E::Symlink("up", "../../.."), E::File("up/escape", "boom")],
        "up/escape",
    );
}

#[test]
fn a_layer_blob_that_does_not_match_its_digest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let layout = layout_of(dir.path(), &[raw_tar(&[E::File("f", "data")])]);
    let manifest_blob = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            std::fs::read(p)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|v| v.get("layers").is_some())
        })
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_blob).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let layer_path = layout
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&layer_path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&layer_path, bytes).unwrap();
    let out = dir.path().join("disk.ext4");
    let err =
        build_stored_root_disk(&layout, LAYOUT_REF, Arch::Amd64, &small_disk(), &out).unwrap_err();
    assert!(err.to_string().contains("sha256"), "{err}");
    assert!(!out.exists());
}

#[test]
fn the_arm64_kernel_fetches_as_an_arm64_image_and_gets_an_initramfs() {
    require_tool("file");
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let kernel = runtime()
        .block_on(fetch_kernel(kernel_lock(), Arch::Arm64, &cache, &mirrors()))
        .unwrap();
    assert!(
        kernel.release.ends_with("-cloud-arm64"),
        "{}",
        kernel.release
    );
    let out = run_ok(Command::new("file").arg("-bz").arg(&kernel.vmlinuz));
    let description = String::from_utf8_lossy(&out.stdout);
    eprintln!("arm64 vmlinuz: {description}");
    assert!(
        description.contains("ARM64") || description.contains("Aarch64"),
        "{description}"
    );
    let info = build_initramfs(&kernel, FAKE_INIT, &dir.path().join("initramfs.gz")).unwrap();
    assert!(
        info.modules.iter().any(|m| m.ends_with("/virtio_blk.ko")),
        "{:?}",
        info.modules
    );
}

// ------------------------------------------------------- host disk full

/// A tmpfs of `mib` MiB, a real filesystem that fills up (root, as in CI),
/// unmounted when dropped so a failing test leaves no mount behind.
struct SmallFilesystem {
    _dir: tempfile::TempDir,
    mount: PathBuf,
}

impl SmallFilesystem {
    fn new(mib: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("small");
        std::fs::create_dir(&mount).unwrap();
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
                .arg(&mount),
        );
        Self { _dir: dir, mount }
    }

    fn left(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.mount)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
    }
}

/// A layout whose one layer holds file `name` of `mib` MiB (small once
/// gzipped).
fn layout_with_file(dir: &Path, name: &str, mib: usize) -> PathBuf {
    let contents = "k".repeat(mib << 20);
    layout_of(dir, &[raw_tar(&[E::File(name, &contents)])])
}

/// The error of building a disk of `size_bytes` from `layout` at `out`.
fn build_error(layout: &Path, size_bytes: u64, out: &Path) -> String {
    let extras = DiskExtras {
        size_bytes,
        ..DiskExtras::default()
    };
    build_stored_root_disk(layout, LAYOUT_REF, Arch::Amd64, &extras, out)
        .unwrap_err()
        .to_string()
}

#[test]
fn a_host_that_fills_up_while_unpacking_is_reported_as_full_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let layout = layout_with_file(dir.path(), "big", 6);
    let small = SmallFilesystem::new(4);
    let out = small.mount.join("disk.ext4");
    let message = build_error(&layout, small_disk().size_bytes, &out);
    assert!(
        message.contains("no space left on the host")
            && message.contains(&small.mount.display().to_string())
            && message.contains("KINA_DATA_DIR"),
        "{message}"
    );
    assert!(!message.contains("broken or hostile"), "{message}");
    assert_eq!(small.left(), Vec::<PathBuf>::new());
}

#[test]
fn a_disk_the_host_cannot_hold_is_refused_before_mke2fs_saying_how_much_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let layout = layout_with_file(dir.path(), "big", 3);
    let small = SmallFilesystem::new(8);
    let out = small.mount.join("disk.ext4");
    // 3 MiB of files fit in the tmpfs, but not with a 1 GiB filesystem's
    // journal and tables beside them.
    let message = build_error(&layout, 1 << 30, &out);
    assert!(
        message.contains("no space left on the host") && message.contains("needs about"),
        "{message}"
    );
    assert_eq!(small.left(), Vec::<PathBuf>::new());
}

/// The other way round: a node disk too small for the image's files is
/// the node's problem (`--disk-size`), on a host with room to spare, even
/// when a file's name is the very text of ENOSPC.
#[test]
fn a_node_disk_too_small_for_the_image_is_not_taken_for_a_full_host() {
    let dir = tempfile::tempdir().unwrap();
    let layout = layout_with_file(dir.path(), "No space left on device", 20);
    let out = dir.path().join("disk.ext4");
    let message = build_error(&layout, 8 << 20, &out);
    assert!(
        message.contains("mke2fs for") && message.contains("--disk-size"),
        "{message}"
    );
    assert!(!message.contains("on the host"), "{message}");
    assert!(!out.exists());
}

#[test]
fn a_disk_that_fits_the_host_is_built_on_a_small_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let layout = layout_with_file(dir.path(), "big", 3);
    let small = SmallFilesystem::new(32);
    let out = small.mount.join("disk.ext4");
    build_stored_root_disk(&layout, LAYOUT_REF, Arch::Amd64, &small_disk(), &out).unwrap();
    assert_eq!(small.left(), vec![out.clone()]);
    assert!(debugfs(&out, "ls -l /").contains(" big"));
}
