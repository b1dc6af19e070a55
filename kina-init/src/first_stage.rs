//! kina-init's first stage, as `/init` of the QEMU provider's initramfs
//! (see `kina_contract::initramfs`): load the virtio modules a distro
//! kernel needs to reach its disk, mount the root named on the kernel
//! command line, and hand over to the node's own kina-init.
//!
//! What it mounted for itself (/proc, /sys, /dev) is unmounted before the
//! switch, so the second stage starts from nothing mounted and detects VM
//! mode the same way with or without an initramfs.
//!
//! A kernel with everything built in boots with no initramfs and starts
//! kina-init as `init=`; the host's accelerator probe then reaches kina-init
//! there, which answers it the same way ([`answer_probe_as_init`]).

use std::ffi::CString;
use std::path::Path;
use std::time::{Duration, Instant};

use kina_contract::initramfs::{MODULE_LIST, PROBE_ARG, PROBE_OK};
use nix::errno::Errno;
use nix::kmod::{ModuleInitFlags, finit_module};
use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::boot::mount::needs_mount;

/// The node's kina-init on the root disk; `kina.init=` overrides it.
const SECOND_STAGE: &str = "/usr/local/bin/kina-init";
const NEW_ROOT: &str = "/newroot";
/// The root disk appears once virtio_blk has probed it; TCG is slow.
const ROOT_WAIT: Duration = Duration::from_secs(60);

pub fn is_first_stage() -> bool {
    std::process::id() == 1 && Path::new(MODULE_LIST).exists()
}

/// What the kernel command line says about the root filesystem.
#[derive(Debug, PartialEq, Eq)]
pub struct RootArgs {
    pub device: String,
    pub fstype: String,
    pub options: String,
    pub read_only: bool,
    pub init: String,
}

pub fn parse_cmdline(cmdline: &str) -> Result<RootArgs, String> {
    let mut args = RootArgs {
        device: String::new(),
        fstype: "ext4".into(),
        options: String::new(),
        read_only: false,
        init: SECOND_STAGE.into(),
    };
    for word in cmdline.split_whitespace() {
        match word.split_once('=') {
            Some(("root", v)) => args.device = v.to_string(),
            Some(("rootfstype", v)) => args.fstype = v.to_string(),
            Some(("rootflags", v)) => args.options = v.to_string(),
            Some(("kina.init", v)) => args.init = v.to_string(),
            None if word == "ro" => args.read_only = true,
            None if word == "rw" => args.read_only = false,
            _ => {}
        }
    }
    if !args.device.starts_with("/dev/") {
        return Err(format!(
            "the kernel command line names no root device (`root=/dev/…`): `{}`",
            cmdline.trim()
        ));
    }
    Ok(args)
}

fn say(line: &str) {
    eprintln!("kina-init[initramfs]: {line}");
}

/// Runs the first stage; returns only if the switch failed, after saying why.
pub fn run() {
    let started = Instant::now();
    match switch_root(started) {
        Ok(never) => match never {},
        Err(e) => {
            say(&format!("cannot start the node: {e}"));
            say("the VM stays up so its console can be read; power it off from the host");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
}

fn switch_root(started: Instant) -> Result<std::convert::Infallible, String> {
    for (point, fs) in [("/proc", "proc"), ("/sys", "sysfs"), ("/dev", "devtmpfs")] {
        // Whatever is already there with the right type is kept: mounting
        // devtmpfs again where it is mounted fails with EBUSY.
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok();
        if !needs_mount(Path::new(point), fs, mountinfo.as_deref())? {
            continue;
        }
        std::fs::create_dir_all(point).map_err(|e| format!("creating {point}: {e}"))?;
        mount(Some(fs), point, Some(fs), MsFlags::empty(), None::<&str>)
            .map_err(|e| format!("mounting {fs} on {point}: {e}"))?;
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline")
        .map_err(|e| format!("reading /proc/cmdline: {e}"))?;
    if cmdline.split_whitespace().any(|w| w == PROBE_ARG) {
        // The host's accelerator probe: reaching this line proves the
        // kernel boots; power off at once.
        say(PROBE_OK);
        let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
        return Err(format!("power off after the probe: {e}"));
    }
    let list =
        std::fs::read_to_string(MODULE_LIST).map_err(|e| format!("reading {MODULE_LIST}: {e}"))?;
    let mut loaded = 0;
    for module in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let file = std::fs::File::open(module).map_err(|e| format!("opening {module}: {e}"))?;
        match finit_module(&file, c"", ModuleInitFlags::empty()) {
            Ok(()) => loaded += 1,
            Err(Errno::EEXIST) => {}
            Err(e) => return Err(format!("loading {module}: {e}")),
        }
    }
    let args = parse_cmdline(&cmdline)?;
    let waited = Instant::now();
    while !Path::new(&args.device).exists() {
        if waited.elapsed() > ROOT_WAIT {
            return Err(format!(
                "root device {} did not appear within {} s (loaded {loaded} module(s) from {MODULE_LIST})",
                args.device,
                ROOT_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::create_dir_all(NEW_ROOT).map_err(|e| format!("creating {NEW_ROOT}: {e}"))?;
    let flags = if args.read_only {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    mount(
        Some(args.device.as_str()),
        NEW_ROOT,
        Some(args.fstype.as_str()),
        flags,
        Some(args.options.as_str()),
    )
    .map_err(|e| {
        format!(
            "mounting {} ({}) on {NEW_ROOT}: {e}",
            args.device, args.fstype
        )
    })?;
    let init = Path::new(NEW_ROOT).join(args.init.trim_start_matches('/'));
    if !init.exists() {
        return Err(format!(
            "{} is not on the root disk {}: is it a kina node image?",
            args.init, args.device
        ));
    }
    say(&format!(
        "loaded {loaded} module(s), mounted {} in {} ms; switching root",
        args.device,
        started.elapsed().as_millis()
    ));
    for point in ["/dev", "/sys", "/proc"] {
        umount2(point, MntFlags::MNT_DETACH).map_err(|e| format!("unmounting {point}: {e}"))?;
    }
    // The initramfs stays in memory under the new root; drop what it held.
    let _ = std::fs::remove_dir_all("/lib/modules");
    let _ = std::fs::remove_file("/init");
    std::env::set_current_dir(NEW_ROOT).map_err(|e| format!("entering {NEW_ROOT}: {e}"))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|e| format!("moving {NEW_ROOT} to /: {e}"))?;
    nix::unistd::chroot(".").map_err(|e| format!("chroot into the root disk: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("entering /: {e}"))?;
    let program = CString::new(args.init.clone()).map_err(|e| format!("init path: {e}"))?;
    nix::unistd::execv(&program, std::slice::from_ref(&program))
        .map_err(|e| format!("starting {}: {e}", args.init))
}

/// The host's accelerator probe when kina-init is the kernel's `init=`
/// straight from the root disk (a kernel with everything built in, booted
/// with no initramfs): [`PROBE_ARG`] on the command line means say
/// [`PROBE_OK`] and power off, as the first stage does. Anything else
/// returns with nothing left mounted, so the boot that follows detects VM
/// mode (no /proc) as it would have without this look.
pub fn answer_probe_as_init() {
    if std::process::id() != 1 {
        return;
    }
    let mounted_proc = !Path::new("/proc/self").exists()
        && mount(
            Some("proc"),
            "/proc",
            Some("proc"),
            MsFlags::empty(),
            None::<&str>,
        )
        .is_ok();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if cmdline.split_whitespace().any(|w| w == PROBE_ARG) {
        eprintln!("kina-init: {PROBE_OK}");
        let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
        eprintln!("kina-init: power off after the probe: {e}");
        // The host's probe kills the VM once it has read the line.
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    if mounted_proc {
        let _ = umount2("/proc", MntFlags::MNT_DETACH);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_comes_from_the_kernel_command_line() {
        let args = parse_cmdline("console=ttyS0 root=/dev/vda rootfstype=ext4 rw quiet\n").unwrap();
        assert_eq!(args.device, "/dev/vda");
        assert_eq!(args.fstype, "ext4");
        assert!(!args.read_only);
        assert_eq!(args.init, SECOND_STAGE);
        let args = parse_cmdline("root=/dev/vdb ro kina.init=/sbin/other").unwrap();
        assert!(args.read_only);
        assert_eq!(args.init, "/sbin/other");
        let err = parse_cmdline("root=LABEL=kina console=ttyS0").unwrap_err();
        assert!(err.contains("root=/dev/"), "{err}");
    }
}
