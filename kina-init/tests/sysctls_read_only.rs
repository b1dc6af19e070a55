//! The sysctls phase against a read-only mount, the way Apple's `container`
//! mounts /proc/sys by default. The mount is a bind of a scratch directory in
//! a private mount namespace (`unshare --mount`, root as in CI), so this
//! machine's own sysctls are never touched.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn a_read_only_proc_sys_is_reported_precisely() {
    let dir = tempfile::tempdir().unwrap();
    for key in ["net/ipv4/ip_forward", "fs/inotify/max_user_watches"] {
        let p = dir.path().join(key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "0\n").unwrap();
    }
    let script = format!(
        "mount --bind {d} {d} && mount -o remount,bind,ro {d} && exec \"$0\" phase sysctls --root {d}",
        d = dir.path().display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .arg(env!("CARGO_BIN_EXE_kina-init"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("is mounted read-only: cannot set net.ipv4.ip_forward=1"),
        "{stderr}"
    );
    assert!(stderr.contains("--read-only-path NONE"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("net/ipv4/ip_forward")).unwrap(),
        "0\n"
    );
}
