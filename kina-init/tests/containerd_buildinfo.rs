//! containerd's major version read from real containerd binaries without
//! running them (`boot::go_buildinfo`), checked against what each binary
//! says when it is run: trixie's 1.7.24 (the base image's) and sid's
//! 2.1.9, both Debian builds, pinned in `kina_tests::reference_inputs` and
//! fetched by kina's download code.
//!
//! x86_64 Linux hosts only: the pinned binaries are Debian's amd64 builds.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use kina_contract::containerd_config::containerd_major;
use kina_init::boot::go_buildinfo::{containerd_major_of_package, main_package};

#[test]
fn the_recorded_import_path_gives_the_major_the_binary_prints() {
    let dir = tempfile::tempdir().unwrap();
    for (input, major) in [
        ("debian-containerd-1.7.24-amd64", 1),
        ("debian-containerd-2.1.9-amd64", 2),
    ] {
        let bytes = kina_tests::fetch_reference_input(input).unwrap_or_else(|e| panic!("{e:#}"));
        let path = dir.path().join(input);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();

        let package = main_package(&path).unwrap();
        assert_eq!(
            containerd_major_of_package(&package),
            Some(major),
            "{input}: {package}"
        );

        let printed = Command::new(&path).arg("--version").output().unwrap();
        let printed = String::from_utf8_lossy(&printed.stdout);
        assert_eq!(
            containerd_major(&printed),
            Some(major),
            "{input}: {printed}"
        );
    }
}
