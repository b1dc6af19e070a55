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

/// Runs `script` (with the kina-init binary as `$0`) in a private mount
/// namespace; returns (success, stdout, stderr).
fn in_mount_namespace(script: &str) -> (bool, String, String) {
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(env!("CARGO_BIN_EXE_kina-init"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// As the kernel's init of a kernel built with `CONFIG_DEVTMPFS_MOUNT=y` and
/// booted with no initramfs: devtmpfs is already on /dev and /proc is not
/// mounted, so kina-init cannot read mountinfo until it has mounted /proc.
/// The phase runs chrooted into a scratch root shaped like that (the host's
/// /usr bound in for the binary's libraries).
#[test]
fn devtmpfs_the_kernel_mounted_on_dev_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().display().to_string();
    let script = format!(
        "set -e
mount --bind {r} {r}
mkdir -p {r}/usr {r}/dev
mount --bind /usr {r}/usr
for d in bin lib lib64 sbin; do
  if [ -L /$d ]; then ln -s \"$(readlink /$d)\" {r}/$d
  elif [ -d /$d ]; then mkdir {r}/$d && mount --bind /$d {r}/$d
  fi
done
mount -t devtmpfs devtmpfs {r}/dev
cp \"$0\" {r}/kina-init
chroot {r} /kina-init phase mount --root /
cat /proc/self/mountinfo"
    );
    let (ok, stdout, stderr) = in_mount_namespace(&script);
    assert!(ok, "{stdout}\n{stderr}");
    let at = |point: &str| {
        stdout
            .lines()
            .filter(|l| l.split_whitespace().nth(4) == Some(&format!("{r}{point}")[..]))
            .map(|l| l.split(" - ").nth(1).unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    let dev = at("/dev");
    assert_eq!(
        dev.len(),
        1,
        "devtmpfs was mounted again on /dev:\n{stdout}"
    );
    assert!(dev[0].starts_with("devtmpfs "), "{dev:?}");
    for (point, fs) in [
        ("/proc", "proc "),
        ("/sys", "sysfs "),
        ("/dev/pts", "devpts "),
    ] {
        assert!(
            at(point).iter().any(|m| m.starts_with(fs)),
            "{point} not mounted:\n{stdout}"
        );
    }
}

#[test]
fn another_filesystem_on_dev_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().display().to_string();
    let script = format!(
        "mount --bind {r} {r} && mkdir -p {r}/dev && mount -t tmpfs not-dev {r}/dev && \"$0\" phase mount --root {r}"
    );
    let (ok, stdout, stderr) = in_mount_namespace(&script);
    assert!(!ok, "the phase mounted over a tmpfs on /dev:\n{stdout}");
    assert!(
        stderr.contains(&format!("{r}/dev"))
            && stderr.contains("tmpfs")
            && stderr.contains("devtmpfs"),
        "{stderr}"
    );
}
