//! What the builder's integration tests share: a package tree built into a
//! real `.deb` by `dpkg-deb`, its lock entry, and one platform's inputs.

use std::path::Path;
use std::process::Command;

use kina_builder::assemble::path_filter::PathFilters;
use kina_builder::assemble::stages::{DebSource, PlatformInputs};
use kina_builder::deb::decoded::DecodedDebs;
use kina_builder::digest::Sha256Digest;
use kina_builder::lock::{LayerName, LockedPackage};
use kina_builder::platform::Arch;
use kina_builder::recipe::DebianArchive;
use kina_builder::rootfs::tree::Tree;

/// Writes `DEBIAN/control` for `package` (1.0-1, amd64) into the package
/// tree `root` and builds it with `dpkg-deb` into `deb`, with xz as
/// Debian's packages are; returns the `.deb`'s bytes.
pub fn dpkg_deb_build(root: &Path, deb: &Path, package: &str, description: &str) -> Vec<u8> {
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {package}\nVersion: 1.0-1\nArchitecture: amd64\nMaintainer: kina tests <tests@example.invalid>\nDescription: {description}\n"
        ),
    )
    .unwrap();
    let out = Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group", "-Zxz"])
        .arg(root)
        .arg(deb)
        .output()
        .expect("dpkg-deb is missing: install it (scripts/install-test-deps does)");
    assert!(out.status.success(), "dpkg-deb: {out:?}");
    std::fs::read(deb).unwrap()
}

/// The lock entry of `deb`, a build of [`dpkg_deb_build`], in the runtime
/// layer.
pub fn locked_package(package: &str, deb: &[u8]) -> LockedPackage {
    LockedPackage {
        platform: Arch::Amd64,
        name: package.into(),
        version: "1.0-1".into(),
        architecture: "amd64".into(),
        archive: DebianArchive::Debian,
        suite: "trixie".into(),
        filename: format!(
            "pool/main/{}/{package}/{package}_1.0-1_amd64.deb",
            &package[..1]
        ),
        size: deb.len() as u64,
        sha256: Sha256Digest::of(deb),
        source: package.into(),
        source_version: "1.0-1".into(),
        layer: LayerName::Runtime,
    }
}

/// amd64 inputs holding one package and nothing else a build adds.
pub fn platform_inputs(
    package: LockedPackage,
    source: DebSource,
    decoded: Option<DecodedDebs>,
    filters: PathFilters,
) -> PlatformInputs {
    PlatformInputs {
        arch: Arch::Amd64,
        debs: vec![(package, source)],
        decoded,
        artifacts: Vec::new(),
        images: Tree::new(),
        kina_init: b"\x7fELF kina-init".to_vec(),
        extra_files: Vec::new(),
        filters,
    }
}
