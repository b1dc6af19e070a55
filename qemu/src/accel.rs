//! Choosing between KVM and TCG.
//!
//! `/dev/kvm` being present and openable does not mean a guest boots: on
//! some hosts (nested or patched hypervisors) KVM exists yet a standard
//! kernel hangs under it. So kina boots the node's own kernel once with
//! `kina.probe` on the command line, which makes kina-init print a line and
//! power off, and uses KVM only if that line shows up in time: a Debian
//! kernel boots into its initramfs (kina-init's first stage answers); a
//! kernel with everything built in mounts the node's disk read-only and
//! starts kina-init from it as `init=`, the way the node itself boots. The verdict is kept per host boot and kernel, so the probe's
//! cost is paid once.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kina_builder::platform::Arch;
use kina_contract::initramfs::{PROBE_ARG, PROBE_OK};
use serde::{Deserialize, Serialize};

use crate::vm::{
    Accel, KINA_INIT_IN_IMAGE, NetAttach, RootDisk, VmConfig, VmError, console_device, spawn,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelChoice {
    /// KVM when the probe shows it works, else TCG.
    Auto,
    /// KVM or an error saying why not.
    Kvm,
    Tcg,
}

impl std::str::FromStr for AccelChoice {
    type Err = AccelError;
    fn from_str(s: &str) -> Result<Self, AccelError> {
        match s {
            "auto" => Ok(AccelChoice::Auto),
            "kvm" => Ok(AccelChoice::Kvm),
            "tcg" => Ok(AccelChoice::Tcg),
            other => Err(AccelError::UnknownChoice(other.to_string())),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccelDecision {
    pub accel: String,
    /// Why, in one line (for `kina` output and the node's record).
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AccelError {
    #[error("accelerator `{0}`: use auto, kvm or tcg")]
    UnknownChoice(String),
    #[error("KVM was requested but {0}; use --accel tcg or auto")]
    KvmUnusable(String),
    #[error("accelerator probe: making its scratch directory: {0}")]
    ProbeScratch(#[source] std::io::Error),
    #[error("accelerator probe: {0}")]
    ProbeSpawn(#[source] VmError),
}

/// What one boot of the node's kernel with the probe argument showed.
#[derive(Debug)]
pub enum ProbeOutcome {
    /// The first stage said it booted, after this long.
    Booted(Duration),
    /// Why the kernel is taken not to work under KVM here.
    Failed(String),
}

/// How the probed kernel reaches kina-init.
#[derive(Clone, Copy, Debug)]
pub enum ProbeBoot<'a> {
    /// kina's initramfs, whose first stage answers the probe.
    Initramfs(&'a Path),
    /// The node's root disk (read-only), kina-init as `init=`: a kernel
    /// with everything built in, booted with no initramfs.
    RootDisk(&'a Path),
}

pub struct ProbeInputs<'a> {
    pub arch: Arch,
    pub kernel: &'a Path,
    pub boot: ProbeBoot<'a>,
    /// Where the verdict is cached (per host boot and kernel).
    pub cache_dir: &'a Path,
    pub timeout: Duration,
}

fn host_arch() -> Option<Arch> {
    match std::env::consts::ARCH {
        "x86_64" => Some(Arch::Amd64),
        "aarch64" => Some(Arch::Arm64),
        _ => None,
    }
}

fn cache_file(inputs: &ProbeInputs) -> Option<PathBuf> {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let kernel = std::fs::read(inputs.kernel).ok()?;
    let digest = kina_builder::digest::Sha256Digest::of(&kernel);
    Some(inputs.cache_dir.join(format!(
        "kvm-probe-{}-{}.json",
        boot_id.trim(),
        &digest.hex()[..16]
    )))
}

pub fn choose(choice: AccelChoice, inputs: &ProbeInputs) -> Result<AccelDecision, AccelError> {
    let tcg = |reason: String| AccelDecision {
        accel: "tcg".into(),
        reason,
    };
    if choice == AccelChoice::Tcg {
        return Ok(tcg("TCG requested".into()));
    }
    let refuse = |why: String| match choice {
        AccelChoice::Kvm => Err(AccelError::KvmUnusable(why)),
        _ => Ok(tcg(why)),
    };
    if host_arch() != Some(inputs.arch) {
        return refuse(format!(
            "an {} node cannot use KVM on a {} host",
            inputs.arch,
            std::env::consts::ARCH
        ));
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return refuse(format!("/dev/kvm is not usable ({e})"));
    }
    let cached = cache_file(inputs);
    if let Some(path) = &cached
        && let Ok(bytes) = std::fs::read(path)
        && let Ok(decision) = serde_json::from_slice::<AccelDecision>(&bytes)
        // A cached failure does not stop an explicit --accel kvm from retrying.
        && (decision.accel == "kvm" || choice == AccelChoice::Auto)
    {
        return if decision.accel == "kvm" {
            Ok(decision)
        } else {
            refuse(decision.reason)
        };
    }
    let decision = match probe(inputs, Accel::Kvm)? {
        ProbeOutcome::Booted(took) => AccelDecision {
            accel: "kvm".into(),
            reason: format!("KVM boot probe passed in {} ms", took.as_millis()),
        },
        ProbeOutcome::Failed(why) => tcg(format!("KVM boot probe failed: {why}")),
    };
    if let Some(path) = &cached {
        let _ = std::fs::create_dir_all(inputs.cache_dir);
        if let Ok(bytes) = serde_json::to_vec(&decision) {
            let _ = kina_builder::fsutil::write_atomic(path, &bytes);
        }
    }
    if decision.accel == "kvm" {
        Ok(decision)
    } else {
        refuse(decision.reason)
    }
}

/// Boots the kernel under `accel` with the probe argument (KVM for the
/// verdict; tests run the same boot under TCG to show the answer comes). An
/// error is a probe that could not be run at all, not a verdict on KVM.
pub fn probe(inputs: &ProbeInputs, accel: Accel) -> Result<ProbeOutcome, AccelError> {
    let work = tempfile::tempdir().map_err(AccelError::ProbeScratch)?;
    let console = work.path().join("console.log");
    let console_arg = format!("console={}", console_device(inputs.arch));
    let (initramfs, disk, cmdline) = match inputs.boot {
        ProbeBoot::Initramfs(initramfs) => (
            Some(initramfs.to_path_buf()),
            None,
            format!("{console_arg} {PROBE_ARG} panic=-1 quiet"),
        ),
        ProbeBoot::RootDisk(disk) => (
            None,
            Some(RootDisk {
                path: disk.to_path_buf(),
                read_only: true,
            }),
            format!(
                "{console_arg} root=/dev/vda rootfstype=ext4 ro init={KINA_INIT_IN_IMAGE} \
                 {PROBE_ARG} panic=-1 quiet"
            ),
        ),
    };
    let cfg = VmConfig {
        arch: inputs.arch,
        accel,
        cpus: 1,
        memory_mib: 512,
        kernel: inputs.kernel.to_path_buf(),
        initramfs,
        disk,
        cmdline,
        console_log: console.clone(),
        exec_socket: None,
        net: NetAttach::None,
        segment: None,
    };
    let stderr_log = work.path().join("qemu.stderr");
    let mut child = spawn(&cfg, &stderr_log).map_err(AccelError::ProbeSpawn)?;
    let started = Instant::now();
    let outcome = loop {
        let text = std::fs::read_to_string(&console).unwrap_or_default();
        if text.contains(PROBE_OK) {
            break ProbeOutcome::Booted(started.elapsed());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            let _ = std::fs::File::open(&stderr_log).and_then(|mut f| f.read_to_string(&mut err));
            break ProbeOutcome::Failed(format!(
                "QEMU exited ({status}) before the kernel booted: {}",
                err.trim()
            ));
        }
        if started.elapsed() > inputs.timeout {
            break ProbeOutcome::Failed(format!(
                "the kernel did not boot within {} s",
                inputs.timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    Ok(outcome)
}
