//! The sysctls phase against a read-only mount, the way Apple's `container`
//! mounts /proc/sys by default. The mount is a bind of a scratch directory in
//! a private mount namespace (`unshare --mount`, root as in CI), so this
//! machine's own sysctls are never touched.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use kina_init::boot::sysctls::NODE_SYSCTLS;

/// A stand-in /proc/sys holding every key with the needed value, except
/// `wrong`, which holds 0.
fn proc_sys(dir: &Path, wrong: Option<&str>) {
    for (key, value, _) in NODE_SYSCTLS {
        let p = dir.join(key.replace('.', "/"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let v = if Some(*key) == wrong { "0" } else { value };
        std::fs::write(p, format!("{v}\n")).unwrap();
    }
}

fn run_read_only(dir: &Path) -> Output {
    let script = format!(
        "mount --bind {d} {d} && mount -o remount,bind,ro {d} && exec \"$0\" phase sysctls --root {d}",
        d = dir.display()
    );
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .arg(env!("CARGO_BIN_EXE_kina-init"))
        .output()
        .unwrap()
}

#[test]
fn a_read_only_proc_sys_with_a_wrong_value_is_reported_precisely() {
    let dir = tempfile::tempdir().unwrap();
    proc_sys(dir.path(), Some("net.ipv4.ip_forward"));
    let out = run_read_only(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("is mounted read-only and net.ipv4.ip_forward is 0 (needs 1)"),
        "{stderr}"
    );
    assert!(stderr.contains("--read-only-path NONE"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("net/ipv4/ip_forward")).unwrap(),
        "0\n"
    );
}

#[test]
fn a_read_only_proc_sys_that_already_has_the_values_lets_the_boot_go_on() {
    let dir = tempfile::tempdir().unwrap();
    proc_sys(dir.path(), None);
    let out = run_read_only(dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "is read-only: {} already had the needed value",
            NODE_SYSCTLS.len()
        )),
        "{stdout}"
    );
}
