//! A QEMU node's life: create (kernel, disk, initramfs if the kernel needs
//! one, accelerator), boot,
//! wait for a phase, exec, stop, remove. Everything a node owns lives in its
//! directory under `$KINA_DATA_DIR/nodes/<name>`, so removing the directory
//! after stopping the VM leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kina_builder::fetch::cache::Cache;
use kina_builder::platform::Arch;
use kina_contract::exec::Request;
use kina_contract::node_spec::{NODE_SPEC_PATH, NodeSpec};
use kina_contract::status::{NodeStatus, PhaseState, STATUS_PATH};
use serde::{Deserialize, Serialize};

use crate::accel::{AccelChoice, ProbeBoot, ProbeInputs, choose};
use crate::disk::{DiskExtras, node_root_disk, read_from_disk};
use crate::exec;
use crate::initramfs::build_initramfs;
pub use crate::node_error::NodeError;
use crate::node_kernel::{NodeBoot, NodeKernel, kernel_files};
use crate::vm::{
    Accel, HostForward, KINA_INIT_IN_IMAGE, NetAttach, RootDisk, Segment, VmConfig, VmError,
    command_line, node_cmdline,
};

/// The files of one node.
#[derive(Clone, Debug)]
pub struct NodePaths {
    pub dir: PathBuf,
    pub disk: PathBuf,
    pub initramfs: PathBuf,
    pub console_log: PathBuf,
    pub qemu_log: PathBuf,
    pub exec_socket: PathBuf,
    pub pid_file: PathBuf,
    pub record: PathBuf,
}

impl NodePaths {
    pub fn new(data_dir: &Path, name: &str) -> Self {
        let dir = data_dir.join("nodes").join(name);
        Self {
            disk: dir.join("disk.img"),
            initramfs: dir.join("initramfs.img"),
            console_log: dir.join("console.log"),
            qemu_log: dir.join("qemu.log"),
            exec_socket: dir.join("exec.sock"),
            pid_file: dir.join("qemu.pid"),
            record: dir.join("vm.json"),
            dir,
        }
    }
}

/// What `kina node list` shows and `start` needs again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub image: String,
    pub arch: Arch,
    pub kernel_release: String,
    pub accel: String,
    pub accel_reason: String,
    pub cpus: u32,
    pub memory_mib: u32,
    #[serde(default)]
    pub host_forwards: Vec<HostForward>,
    /// The cluster segment of a node in a multi-node cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<Segment>,
    /// With kina's initramfs or straight into kina-init.
    #[serde(default)]
    pub boot: NodeBoot,
}

pub struct CreateOptions {
    pub name: String,
    pub image: String,
    /// The OCI layout of kina's image store, which holds `image` (the
    /// caller resolves kina's directories; this crate reads no environment).
    pub image_store: PathBuf,
    pub arch: Arch,
    pub kernel: NodeKernel,
    pub cache: Cache,
    pub accel: AccelChoice,
    pub cpus: u32,
    pub memory_mib: u32,
    pub disk_size: u64,
    pub spec: NodeSpec,
    pub host_forwards: Vec<HostForward>,
    pub segment: Option<Segment>,
    /// More files for the node's disk: (absolute path, contents, mode).
    pub extra_files: Vec<(PathBuf, Vec<u8>, u32)>,
}

/// The node spec a single QEMU node boots with: QEMU's user network puts
/// it at 10.0.2.15 behind 10.0.2.2, with DNS at 10.0.2.3.
pub fn user_network_interface() -> kina_contract::node_spec::InterfaceConfig {
    kina_contract::node_spec::InterfaceConfig {
        address: "10.0.2.15/24".into(),
        gateway: Some("10.0.2.2".into()),
        nameservers: vec!["10.0.2.3".into()],
    }
}

/// Makes the node's kernel, disk and initramfs and boots it. On any error
/// the node's directory is removed: a failed create leaves nothing.
pub async fn create(data_dir: &Path, opts: CreateOptions) -> Result<NodeRecord, NodeError> {
    let paths = NodePaths::new(data_dir, &opts.name);
    if paths.dir.exists() {
        return Err(NodeError::Exists {
            name: opts.name.clone(),
            dir: paths.dir.clone(),
        });
    }
    let result = create_in(&paths, &opts).await;
    if result.is_err() {
        kill_vm(&paths);
        let _ = std::fs::remove_dir_all(&paths.dir);
    }
    result
}

/// Wraps the error of step `phase` of node `name`, keeping it as the source.
fn step<'a, E>(name: &'a str, phase: &'static str) -> impl FnOnce(E) -> NodeError + 'a
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    move |e| NodeError::Step {
        name: name.to_string(),
        phase,
        source: e.into(),
    }
}

async fn create_in(paths: &NodePaths, opts: &CreateOptions) -> Result<NodeRecord, NodeError> {
    // Before any download: the image must be in the store.
    let store = &opts.image_store;
    let stored = store.join("index.json").exists()
        && kina_builder::store::ImageStore::open(store)
            .and_then(|s| s.find(&opts.image))
            .is_ok();
    if !stored {
        return Err(NodeError::ImageNotStored {
            name: opts.name.clone(),
            image: opts.image.clone(),
            store: store.clone(),
        });
    }
    std::fs::create_dir_all(&paths.dir).map_err(step(&opts.name, "node directory"))?;
    let kernel = kernel_files(&opts.kernel, opts.arch, &opts.cache)
        .await
        .map_err(step(&opts.name, "kernel"))?;

    let spec_json = serde_json::to_vec_pretty(&opts.spec).map_err(step(&opts.name, "node spec"))?;
    // Where a Debian system keeps it: kina-init's kernel check reads it to
    // tell "built as a module, not loaded yet" from "absent", and kubeadm's
    // preflight reads it too (a built kernel has no modules at all).
    let config = std::fs::read(&kernel.config).map_err(step(&opts.name, "kernel"))?;
    let extras = DiskExtras {
        kernel_modules: kernel
            .debian
            .as_ref()
            .map(|k| (k.release.clone(), k.modules_dir.clone())),
        files: vec![(
            PathBuf::from(format!("/boot/config-{}", kernel.release)),
            config,
            0o644,
        )],
        size_bytes: opts.disk_size,
    };
    // The node's own files go into its clone of the shared base disk.
    let node_files: Vec<(PathBuf, Vec<u8>, u32)> =
        // 0600: later spec versions carry the cluster's secrets.
        std::iter::once((PathBuf::from(NODE_SPEC_PATH), spec_json, 0o600))
            .chain(opts.extra_files.iter().cloned())
            .collect();
    // Seconds of CPU and disk work: off the async workers, so the nodes of
    // a cluster are made side by side and the runtime stays responsive.
    tokio::task::block_in_place(|| {
        node_root_disk(
            &opts.image_store,
            &opts.image,
            opts.arch,
            &extras,
            &node_files,
            &data_dir_of(paths).join("disks"),
            &paths.disk,
        )
        .map_err(step(&opts.name, "root disk"))?;
        // A built kernel mounts the disk itself: no initramfs.
        let Some(debian) = &kernel.debian else {
            return Ok(());
        };
        let kina_init = read_from_disk(&paths.disk, KINA_INIT_IN_IMAGE, &paths.dir)
            .map_err(step(&opts.name, "initramfs"))?;
        build_initramfs(debian, &kina_init, &paths.initramfs)
            .map(drop)
            .map_err(step(&opts.name, "initramfs"))
    })?;

    let probe_boot = match kernel.boot {
        NodeBoot::Initramfs => ProbeBoot::Initramfs(&paths.initramfs),
        NodeBoot::Direct { .. } => ProbeBoot::RootDisk(&paths.disk),
    };
    let decision = tokio::task::block_in_place(|| {
        choose(
            opts.accel,
            &ProbeInputs {
                arch: opts.arch,
                kernel: &kernel.image,
                boot: probe_boot,
                cache_dir: &data_dir_of(paths).join("qemu"),
                timeout: Duration::from_secs(15),
            },
        )
    })
    .map_err(step(&opts.name, "accelerator"))?;
    // The kernel stays where the cache keeps it; the node points at a copy
    // so cache pruning never breaks a node.
    let vmlinuz = paths.dir.join("vmlinuz");
    std::fs::copy(&kernel.image, &vmlinuz).map_err(step(&opts.name, "kernel"))?;
    let record = NodeRecord {
        name: opts.name.clone(),
        image: opts.image.clone(),
        arch: opts.arch,
        kernel_release: kernel.release.clone(),
        accel: decision.accel.clone(),
        accel_reason: decision.reason.clone(),
        cpus: opts.cpus,
        memory_mib: opts.memory_mib,
        host_forwards: opts.host_forwards.clone(),
        segment: opts.segment.clone(),
        boot: kernel.boot.clone(),
    };
    let text = serde_json::to_vec_pretty(&record).map_err(step(&opts.name, "node record"))?;
    kina_builder::fsutil::write_atomic(&paths.record, &text)
        .map_err(step(&opts.name, "node record"))?;
    start(paths, &record)?;
    Ok(record)
}

fn data_dir_of(paths: &NodePaths) -> PathBuf {
    paths
        .dir
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn vm_config(paths: &NodePaths, record: &NodeRecord) -> VmConfig {
    let accel = if record.accel == "kvm" {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    VmConfig {
        arch: record.arch,
        accel,
        cpus: record.cpus,
        memory_mib: record.memory_mib,
        kernel: paths.dir.join("vmlinuz"),
        initramfs: (!record.boot.is_direct()).then(|| paths.initramfs.clone()),
        disk: Some(RootDisk {
            path: paths.disk.clone(),
            read_only: false,
        }),
        cmdline: node_cmdline(record.arch, record.boot.is_direct(), accel),
        console_log: paths.console_log.clone(),
        exec_socket: Some(paths.exec_socket.clone()),
        net: NetAttach::User {
            host_forwards: record.host_forwards.clone(),
        },
        segment: record.segment.clone(),
    }
}

/// Boots the node's VM in the background (QEMU daemonizes once its devices
/// are set up, so a bad configuration is reported here, not later).
pub fn start(paths: &NodePaths, record: &NodeRecord) -> Result<(), NodeError> {
    if running_pid(paths).is_some() {
        return Err(NodeError::AlreadyRunning {
            name: record.name.clone(),
        });
    }
    let _ = std::fs::remove_file(&paths.exec_socket);
    let _ = std::fs::remove_file(&paths.pid_file);
    let (program, mut args) = command_line(&vm_config(paths, record));
    args.extend([
        "-daemonize".to_string(),
        "-pidfile".to_string(),
        paths.pid_file.display().to_string(),
    ]);
    let fail = step(&record.name, "start");
    let out = match Command::new(&program).args(&args).output() {
        Ok(out) => out,
        Err(source) => return Err(fail(VmError::Spawn { program, source })),
    };
    if !out.status.success() {
        return Err(fail(VmError::Refused {
            program,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }));
    }
    Ok(())
}

/// The QEMU pid of a running node; checked against /proc so a stale pid
/// file never names someone else's process.
pub fn running_pid(paths: &NodePaths) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(&paths.pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let disk = paths.disk.display().to_string();
    String::from_utf8_lossy(&cmdline)
        .contains(&disk)
        .then_some(pid)
}

fn kill_vm(paths: &NodePaths) {
    if let Some(pid) = running_pid(paths) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while running_pid(paths).is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub fn load(data_dir: &Path, name: &str) -> Result<(NodePaths, NodeRecord), NodeError> {
    let paths = NodePaths::new(data_dir, name);
    let record = std::fs::read(&paths.record)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| NodeError::NotFound {
            name: name.to_string(),
            dir: paths.dir.clone(),
        })?;
    Ok((paths, record))
}

pub fn list(data_dir: &Path) -> Vec<(NodeRecord, bool)> {
    let mut nodes: Vec<(NodeRecord, bool)> = std::fs::read_dir(data_dir.join("nodes"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (paths, record) = load(data_dir, &name).ok()?;
            Some((record, running_pid(&paths).is_some()))
        })
        .collect();
    nodes.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    nodes
}

/// The last lines of the console, for errors.
pub fn console_tail(paths: &NodePaths, lines: usize) -> String {
    let text = std::fs::read_to_string(&paths.console_log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The node's status file, read through the exec channel.
pub fn status(paths: &NodePaths, name: &str, timeout: Duration) -> Result<NodeStatus, NodeError> {
    let out = exec::run(
        &paths.exec_socket,
        &["cat", STATUS_PATH],
        &mut std::io::empty(),
        timeout,
    )
    .map_err(|e| NodeError::Exec(e, name.to_string()))?;
    serde_json::from_slice(&out.stdout).map_err(|source| NodeError::Status {
        name: name.to_string(),
        source,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// Waits until `phase` is done, failing early when a phase fails or the
/// VM exits.
pub fn wait_for_phase(
    paths: &NodePaths,
    name: &str,
    phase: &str,
    timeout: Duration,
) -> Result<NodeStatus, NodeError> {
    let started = Instant::now();
    let mut last = "no answer yet".to_string();
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if let Some(status) = check_phase(paths, name, phase, left, &mut last)? {
            return Ok(status);
        }
        if started.elapsed() > timeout {
            return Err(timed_out(paths, name, phase, timeout, last));
        }
        std::thread::sleep(PHASE_POLL);
    }
}

/// How often [`wait_for_phase`] looks at a booting node.
pub const PHASE_POLL: Duration = Duration::from_millis(500);

/// One look at a booting node: the status once `phase` is done, `None`
/// while it is on its way (`last` then says where it is), an error when a
/// phase failed or the VM exited. For callers that wait their own way
/// (several nodes at once, cancellable).
pub fn check_phase(
    paths: &NodePaths,
    name: &str,
    phase: &str,
    time_left: Duration,
    last: &mut String,
) -> Result<Option<NodeStatus>, NodeError> {
    if !check_vm(paths, name, last)? {
        return Ok(None);
    }
    match status(
        paths,
        name,
        time_left.clamp(Duration::from_secs(1), Duration::from_secs(30)),
    ) {
        Ok(s) => {
            if let Some(f) = s.failed() {
                return Err(NodeError::BootFailed {
                    name: name.to_string(),
                    phase: f.name.clone(),
                    message: f.message.clone(),
                    hint: f.hint.clone().unwrap_or_default(),
                    console: paths.console_log.clone(),
                });
            }
            if s.phase(phase).is_some_and(|p| p.state == PhaseState::Ok) {
                return Ok(Some(s));
            }
            if let Some(p) = s.phases.iter().rfind(|p| p.state != PhaseState::Pending) {
                *last = format!("{} {:?}", p.name, p.state);
            }
        }
        Err(e) => *last = e.to_string(),
    }
    Ok(None)
}

/// Whether a booting node's VM still runs: `true` when it does, `false`
/// when it was just booted once more after its kernel died early (`last`
/// says so), an error when it exited for good.
pub fn check_vm(paths: &NodePaths, name: &str, last: &mut String) -> Result<bool, NodeError> {
    if running_pid(paths).is_some() {
        return Ok(true);
    }
    if reboot_after_early_kernel_death(paths) {
        *last = "rebooted once: the kernel died before kina-init ran".to_string();
        return Ok(false);
    }
    Err(NodeError::VmExited {
        name: name.to_string(),
        console: paths.console_log.clone(),
        tail: console_tail(paths, 30),
    })
}

/// Debian's cloud kernel has died in early boot under TCG on 2-vCPU hosts
/// (QEMU 7.2: "Oops: int3" in sched_clock_cpu, a breakpoint of the
/// kernel's live code patching seen by the second vCPU) before kina-init
/// printed anything; booting the same VM again went through. So a node
/// whose kernel died before kina-init's first console line is booted once
/// more; its first console is kept as `console.log.1` (which also marks
/// that the second chance was used). Returns whether it was rebooted.
fn reboot_after_early_kernel_death(paths: &NodePaths) -> bool {
    let first_console = paths.dir.join("console.log.1");
    let console = std::fs::read_to_string(&paths.console_log).unwrap_or_default();
    if !kernel_died_early(&console, first_console.exists()) {
        return false;
    }
    let Some(record) = std::fs::read(&paths.record)
        .ok()
        .and_then(|b| serde_json::from_slice::<NodeRecord>(&b).ok())
    else {
        return false;
    };
    if std::fs::rename(&paths.console_log, &first_console).is_err() {
        return false;
    }
    tracing::warn!(
        "node {}: the kernel died before kina-init ran (console kept as {}); booting it once more",
        record.name,
        first_console.display()
    );
    if start(paths, &record).is_ok() {
        return true;
    }
    // The error that follows points at console.log: put it back.
    let _ = std::fs::rename(&first_console, &paths.console_log);
    false
}

/// A console that shows the kernel ran but kina-init never did, on a node
/// not rebooted for it before. An empty console means QEMU itself did not
/// get that far: booting again would not help.
fn kernel_died_early(console: &str, already_rebooted: bool) -> bool {
    !already_rebooted && !console.trim().is_empty() && !console.contains("kina-init")
}

/// The error of a node that did not reach `phase` within `timeout`.
pub fn timed_out(
    paths: &NodePaths,
    name: &str,
    phase: &str,
    timeout: Duration,
    last: String,
) -> NodeError {
    NodeError::Timeout {
        name: name.to_string(),
        phase: phase.to_string(),
        secs: timeout.as_secs(),
        last,
        console: paths.console_log.clone(),
    }
}

/// Asks kina-init to shut down in order and waits for the VM to exit; a
/// node that does not answer in time is killed. Says which happened; it
/// cannot fail, since killing is the way out of every other outcome.
pub fn stop(paths: &NodePaths, timeout: Duration) -> &'static str {
    if running_pid(paths).is_none() {
        return "not running";
    }
    let asked = exec::call(
        &paths.exec_socket,
        &Request::Poweroff,
        b"",
        Duration::from_secs(10),
        |_, _| {},
    );
    let deadline = Instant::now() + timeout;
    while running_pid(paths).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if running_pid(paths).is_none() && asked.is_ok() {
        return "powered off";
    }
    kill_vm(paths);
    "killed (it did not power off in time)"
}

/// Stops the node if it runs and removes everything it owns.
pub fn remove(data_dir: &Path, name: &str) -> Result<(), NodeError> {
    let paths = NodePaths::new(data_dir, name);
    if !paths.dir.exists() {
        return Err(NodeError::NotFound {
            name: name.to_string(),
            dir: paths.dir,
        });
    }
    stop(&paths, Duration::from_secs(30));
    std::fs::remove_dir_all(&paths.dir).map_err(|source| NodeError::Remove {
        name: name.to_string(),
        dir: paths.dir.clone(),
        source,
    })
}

/// Kills the node's VM without a shutdown and removes everything it owns:
/// for `kina down` and for cleaning up after a failed or interrupted `kina
/// up`, where nothing on the node is kept. Returns whether there was a node.
pub fn destroy(data_dir: &Path, name: &str) -> Result<bool, NodeError> {
    let paths = NodePaths::new(data_dir, name);
    if !paths.dir.exists() {
        return Ok(false);
    }
    kill_vm(&paths);
    std::fs::remove_dir_all(&paths.dir).map_err(|source| NodeError::Remove {
        name: name.to_string(),
        dir: paths.dir.clone(),
        source,
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::kernel_died_early;

    #[test]
    fn only_a_kernel_that_died_before_kina_init_gets_a_second_boot() {
        let oops = "[    0.912] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n[    0.913] RIP: 0010:sched_clock_cpu+0x5/0x1d0\n";
        assert!(kernel_died_early(oops, false));
        assert!(!kernel_died_early(oops, true), "once only");
        let booted = "kina-init: mount ok (11 ms): mounted /proc\nkina-init: kernel FAILED\n";
        assert!(
            !kernel_died_early(booted, false),
            "kina-init ran: a real failure"
        );
        assert!(
            !kernel_died_early("", false),
            "QEMU never got to the kernel"
        );
    }
}
