//! The recipe's `leave_out` groups against real dpkg: a package built by
//! `dpkg-deb` is assembled with the filters of `recipes/base.toml` and also
//! installed by `dpkg --root` with the same filters, read back from the
//! dpkg configuration file the image carries. The image must hold exactly
//! the paths dpkg installed, list the left-out ones in the package's `.list`
//! as dpkg does, and `dpkg -V` run on the image must report exactly what it
//! reports on dpkg's own installation: the left-out paths, as missing.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use kina_builder::assemble::path_filter::{DPKG_CFG_PATH, PathFilters};
use kina_builder::assemble::stages::{PlatformInputs, StageError, build_layers};
use kina_builder::lock::LayerName;
use kina_builder::recipe::LoadedRecipe;
use kina_builder::rootfs::tree::{NodeKind, Tree};

const PACKAGE: &str = "node-tools";

const CNI_PLUGINS: &[&str] = &[
    "bandwidth",
    "bridge",
    "dhcp",
    "firewall",
    "host-device",
    "host-local",
    "ipvlan",
    "loopback",
    "macvlan",
    "portmap",
    "ptp",
    "sbr",
    "static",
    "tuning",
    "vlan",
    "vrf",
];

fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is missing: install it (scripts/install-test-deps does)"
    );
}

/// Files of a package shaped like Debian's containerd and CNI plugins with
/// documentation, manual pages and message catalogs; `skip` leaves paths out
/// of the package itself.
fn package_files(skip: &[&str]) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("usr/bin/containerd".into(), b"\x7fELF containerd".to_vec()),
        ("usr/bin/containerd-shim".into(), vec![b's'; 3000]),
        ("usr/bin/containerd-shim-runc-v1".into(), vec![b'1'; 5000]),
        ("usr/bin/containerd-shim-runc-v2".into(), vec![b'2'; 7000]),
        ("usr/bin/ctr".into(), b"\x7fELF ctr".to_vec()),
        (
            format!("usr/share/doc/{PACKAGE}/README.Debian"),
            b"readme\n".to_vec(),
        ),
        (
            format!("usr/share/doc/{PACKAGE}/copyright"),
            b"Format: https://example.invalid/copyright\n".to_vec(),
        ),
        (
            format!("usr/share/man/man8/{PACKAGE}.8.gz"),
            b"\x1f\x8bman".to_vec(),
        ),
        (
            format!("usr/share/locale/de/LC_MESSAGES/{PACKAGE}.mo"),
            b"mo".to_vec(),
        ),
        (
            "usr/share/locale/locale.alias".into(),
            b"C C.UTF-8\n".to_vec(),
        ),
        (
            "usr/share/info/tools.info.gz".into(),
            b"\x1f\x8binfo".to_vec(),
        ),
        // Shaped like libc6's converters and their configuration.
        (
            "usr/lib/x86_64-linux-gnu/gconv/ISO8859-2.so".into(),
            b"\x7fELF gconv".to_vec(),
        ),
        (
            "usr/lib/x86_64-linux-gnu/gconv/gconv-modules".into(),
            b"include gconv-modules.d/*.conf\n".to_vec(),
        ),
        (
            "usr/lib/x86_64-linux-gnu/gconv/gconv-modules.d/gconv-modules-extra.conf".into(),
            b"module ISO-8859-2// INTERNAL ISO8859-2 1\n".to_vec(),
        ),
    ];
    for plugin in CNI_PLUGINS {
        files.push((format!("usr/lib/cni/{plugin}"), plugin.as_bytes().to_vec()));
    }
    files.retain(|(path, _)| !skip.contains(&path.as_str()));
    files
}

/// Builds the package with `dpkg-deb` (md5sums as dh_md5sums writes them),
/// plus a symlink to a shim that the filters leave out.
fn build_deb(dir: &Path, files: &[(String, Vec<u8>)]) -> Vec<u8> {
    require("dpkg-deb");
    let root = dir.join("pkg");
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    let mut md5sums = String::new();
    for (path, contents) in files {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, contents).unwrap();
        let mode = if path.starts_with("usr/bin/") || path.starts_with("usr/lib/cni/") {
            0o755
        } else {
            0o644
        };
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        let digest = Command::new("md5sum").arg(&file).output().unwrap();
        let hex = String::from_utf8(digest.stdout).unwrap();
        md5sums.push_str(&format!("{}  {path}\n", &hex[..32]));
    }
    symlink("containerd-shim", root.join("usr/bin/shim-link")).unwrap();
    std::fs::write(root.join("DEBIAN/md5sums"), md5sums).unwrap();
    common::dpkg_deb_build(
        &root,
        &dir.join("node-tools.deb"),
        PACKAGE,
        "test package for leave_out",
    )
}

fn base_recipe() -> LoadedRecipe {
    LoadedRecipe::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes/base.toml")).unwrap()
}

fn inputs(deb: Vec<u8>, filters: PathFilters) -> PlatformInputs {
    common::platform_inputs(
        common::locked_package(PACKAGE, &deb),
        deb.into(),
        None,
        filters,
    )
}

/// The whole root filesystem: every layer applied in order (kina's layers
/// only add or replace paths).
fn rootfs(layers: &[(LayerName, Tree)]) -> Tree {
    let mut tree = Tree::new();
    for (_, layer) in layers {
        for (path, node) in layer.iter() {
            tree.insert(path, node.clone());
        }
    }
    tree
}

/// Writes `tree` to `dir` as a node would see it.
fn materialize(tree: &Tree, dir: &Path) {
    for (path, node) in tree.iter() {
        let target = dir.join(path);
        match &node.kind {
            NodeKind::Dir => std::fs::create_dir_all(&target).unwrap(),
            NodeKind::File(data) => std::fs::write(&target, data).unwrap(),
            NodeKind::Symlink(to) => symlink(to, &target).unwrap(),
            NodeKind::Hardlink(to) => std::fs::hard_link(dir.join(to), &target).unwrap(),
        }
    }
}

/// dpkg's `--path-exclude`/`--path-include` options from the configuration
/// file kina wrote into the image.
fn dpkg_options(cfg: &str) -> Vec<String> {
    cfg.lines()
        .filter(|l| l.starts_with("path-"))
        .map(|l| format!("--{l}"))
        .collect()
}

/// Installs `deb` with real dpkg into a fresh root with `options`.
fn dpkg_install(root: &Path, deb: &Path, options: &[String]) {
    require("dpkg");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let out = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-not-root",
            "--force-depends",
        ])
        .args(options)
        .arg("--install")
        .arg(deb)
        .output()
        .unwrap();
    assert!(out.status.success(), "dpkg --install: {out:?}");
}

fn dpkg_verify(root: &Path) -> String {
    let out = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--verify", PACKAGE])
        .output()
        .unwrap();
    assert!(out.status.success(), "dpkg --verify: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The package's paths that exist under `root`, from its `.list`.
fn present(root: &Path, list: &str) -> BTreeSet<String> {
    list.lines()
        .filter(|p| *p != "/.")
        .filter(|p| {
            root.join(p.trim_start_matches('/'))
                .symlink_metadata()
                .is_ok()
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn the_image_leaves_out_what_dpkg_path_exclude_leaves_out_and_dpkg_verify_agrees() {
    let work = tempfile::tempdir().unwrap();
    let deb = build_deb(work.path(), &package_files(&[]));
    let recipe = base_recipe();
    let built = build_layers(
        &inputs(deb, PathFilters::new(&recipe.recipe.leave_out)),
        1_700_000_000,
    )
    .unwrap();
    let tree = rootfs(&built.layers);

    // The configuration file a later `apt install` in the node obeys.
    let Some(NodeKind::File(cfg)) = tree.get(DPKG_CFG_PATH).map(|n| &n.kind) else {
        panic!("the image has no /{DPKG_CFG_PATH}");
    };
    let options = dpkg_options(std::str::from_utf8(cfg).unwrap());
    assert!(options.contains(&"--path-exclude=/usr/bin/containerd-shim".to_string()));

    // Real dpkg installs the same .deb with the options read from that file.
    let dpkg_root = work.path().join("dpkg-root");
    dpkg_install(&dpkg_root, &work.path().join("node-tools.deb"), &options);
    let dpkg_list =
        std::fs::read_to_string(dpkg_root.join(format!("var/lib/dpkg/info/{PACKAGE}.list")))
            .unwrap();

    // kina's .list names the same paths, left-out ones included.
    let Some(NodeKind::File(list)) = tree
        .get(&format!("var/lib/dpkg/info/{PACKAGE}.list"))
        .map(|n| &n.kind)
    else {
        panic!("no .list for {PACKAGE}");
    };
    let list = String::from_utf8(list.to_vec()).unwrap();
    let set = |text: &str| text.lines().map(str::to_string).collect::<BTreeSet<_>>();
    assert_eq!(set(&list), set(&dpkg_list));
    for listed in [
        "/usr/bin/containerd-shim",
        "/usr/lib/cni/vrf",
        "/usr/share/man/man8/node-tools.8.gz",
    ] {
        assert!(list.lines().any(|l| l == listed), "{listed} not in .list");
    }

    // The image holds exactly the package paths dpkg installed.
    let image_root = work.path().join("image-root");
    materialize(&tree, &image_root);
    assert_eq!(present(&image_root, &list), present(&dpkg_root, &dpkg_list));
    for gone in [
        "usr/bin/containerd-shim",
        "usr/bin/containerd-shim-runc-v1",
        "usr/lib/cni/dhcp",
        "usr/share/doc/node-tools/README.Debian",
        "usr/share/man/man8/node-tools.8.gz",
        "usr/share/locale/de",
        "usr/share/info/tools.info.gz",
        "usr/bin/ctr",
        "usr/lib/x86_64-linux-gnu/gconv/ISO8859-2.so",
    ] {
        assert!(!tree.contains(gone), "/{gone} is in the image");
    }
    for kept in [
        "usr/bin/containerd-shim-runc-v2",
        "usr/bin/shim-link",
        "usr/lib/cni/ptp",
        "usr/lib/cni/host-local",
        "usr/lib/cni/portmap",
        "usr/lib/cni/loopback",
        "usr/lib/cni/bridge",
        "usr/share/doc/node-tools/copyright",
        "usr/share/locale/locale.alias",
        "usr/lib/x86_64-linux-gnu/gconv/gconv-modules",
        "usr/lib/x86_64-linux-gnu/gconv/gconv-modules.d/gconv-modules-extra.conf",
    ] {
        assert!(tree.contains(kept), "/{kept} was left out");
    }

    // dpkg -V on the image says what it says on dpkg's own installation:
    // each left-out path, missing, and nothing else.
    let ours = dpkg_verify(&image_root);
    assert_eq!(ours, dpkg_verify(&dpkg_root));
    assert!(ours.lines().all(|l| l.starts_with("missing ")), "{ours}");
    assert!(ours.contains("/usr/bin/containerd-shim-runc-v1"), "{ours}");

    // What each group left out, for the image labels and `kina image inspect`.
    let shims = &built.left_out["containerd-old-shims"];
    assert_eq!((shims.paths, shims.bytes), (2, 8000));
    assert_eq!(built.left_out["unused-cni-plugins"].paths, 11);
    assert_eq!(built.left_out["ctr"].paths, 1);
    assert_eq!(built.left_out["gconv"].paths, 1);
}

#[test]
fn a_listed_binary_no_package_ships_fails_the_build_naming_the_group_and_path() {
    let work = tempfile::tempdir().unwrap();
    let deb = build_deb(work.path(), &package_files(&["usr/lib/cni/vrf"]));
    let recipe = base_recipe();
    let err = build_layers(
        &inputs(deb, PathFilters::new(&recipe.recipe.leave_out)),
        1_700_000_000,
    )
    .err()
    .expect("the build must fail");
    assert!(
        matches!(&err, StageError::NothingLeftOut { group, pattern, .. }
            if group == "unused-cni-plugins" && pattern == "/usr/lib/cni/vrf"),
        "{err}"
    );
    assert!(err.to_string().contains("/usr/lib/cni/vrf"), "{err}");
}
