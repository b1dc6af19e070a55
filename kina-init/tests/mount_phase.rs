//! The mount phase on a scratch root in a private mount namespace
//! (`unshare --mount`, root as in CI): it mounts what is missing and leaves
//! what is already mounted alone. This machine's mounts are never touched.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn missing_filesystems_are_mounted_and_present_ones_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    // /run is mounted beforehand (as vminitd would); the phase must not mount it again.
    let script = format!(
        "mount --bind {r} {r} && mkdir -p {r}/run && mount -t tmpfs -o size=1m,mode=0700 pre-mounted {r}/run && \"$0\" phase mount --root {r} && cat /proc/self/mountinfo",
        r = root
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .arg(env!("CARGO_BIN_EXE_kina-init"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mounted = |point: &str, fs: &str| {
        stdout.lines().any(|l| {
            l.split_whitespace().nth(4) == Some(&format!("{root}{point}")[..])
                && l.contains(&format!(" - {fs} "))
        })
    };
    for (point, fs) in [
        ("/proc", "proc"),
        ("/sys", "sysfs"),
        ("/dev", "devtmpfs"),
        ("/dev/pts", "devpts"),
        ("/tmp", "tmpfs"),
        ("/sys/fs/cgroup", "cgroup2"),
    ] {
        assert!(mounted(point, fs), "{point} ({fs}) not mounted:\n{stdout}");
    }
    let run_mounts = stdout
        .lines()
        .filter(|l| l.split_whitespace().nth(4) == Some(&format!("{root}/run")[..]))
        .count();
    assert_eq!(
        run_mounts, 1,
        "the pre-mounted /run was mounted over:\n{stdout}"
    );
    assert!(stdout.lines().any(|l| l.contains("pre-mounted")));
    assert!(
        !dir.path().join("proc/self").exists(),
        "the mounts stayed inside the namespace"
    );
}
