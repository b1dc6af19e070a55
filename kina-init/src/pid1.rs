//! kina-init as PID 1: the boot sequence on its own thread while the main
//! thread handles signals, supervises services, reaps orphans, and shuts
//! the node down in order.
//!
//! Signals are blocked in every thread and read from a signalfd. PID 1 gets
//! no default action for a signal it has no handler for, but a blocked
//! signal is never discarded (kernel `sig_ignored`), so the signalfd sees
//! SIGTERM, SIGINT and SIGPWR like any process would, and shutdown runs in
//! one place instead of inside a signal handler.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use kina_contract::node_spec::{NODE_SPEC_PATH, NodeSpec, NodeSpecError};
use kina_contract::spec_delivery::digest;
use kina_contract::status::{NodeStatus, PhaseId, PhaseState, STATUS_PATH};
use nix::mount::{MsFlags, mount};
use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

use crate::boot::identity::write_hosts;
use crate::boot::network::{DEFAULT_UPLINK, sync_masquerade, sync_peer_routes};
use crate::boot::{BootContext, Phase, PhaseFailure, StatusFile, run_phases};
use crate::children;
use crate::exec_server;
use crate::kernel_probe::LiveProbes;
use crate::sequence::{Mode, phases};
use crate::supervise::{Backoff, ServiceEvent, Supervisor};

/// How long each service may take to stop after SIGTERM.
const SERVICE_GRACE: Duration = Duration::from_secs(10);
/// How long the remaining processes may take after SIGTERM.
const REST_GRACE: Duration = Duration::from_secs(5);
/// Supervision tick: restarts after backoff happen at most this late.
const TICK: Duration = Duration::from_millis(250);
/// How often the node spec is looked at for changed peers. The host puts
/// a new spec in force with `kina-init replace-spec` through the exec
/// channel, which writes the file inside the node, so a look is one read of
/// a few KiB of the node's own file; four a second leave most of the 2 s
/// the host is promised to applying the spec (a handful of `iptables` runs,
/// slow under QEMU's TCG). A look every tick,
/// rather than a signal from `replace-spec`, cannot miss a spec delivered
/// before this thread watches (during boot) or one put in place by hand,
/// and needs no wiring from the signalfd loop to this thread.
const PEER_CHECK: Duration = Duration::from_millis(250);

/// The kernel check's probes by how kina-init runs: the kernel's init owns
/// its VM's network namespace, a container's PID 1 does not.
static VM_PROBES: LiveProbes = LiveProbes::OWN_NAMESPACE;
static CONTAINER_PROBES: LiveProbes = LiveProbes::SCRATCH;

/// Stands in for a phase that cannot run because the node spec is
/// unreadable: the boot stops there with the spec's error.
struct SpecUnreadable {
    id: PhaseId,
    error: String,
}

impl Phase for SpecUnreadable {
    fn id(&self) -> PhaseId {
        self.id
    }

    fn run(&mut self, _ctx: &mut BootContext) -> Result<String, PhaseFailure> {
        Err(PhaseFailure {
            message: self.error.clone(),
            hint: format!(
                "the provider writes {NODE_SPEC_PATH} into the node; recreate the node with this kina"
            ),
        })
    }
}

fn load_spec(path: &Path) -> Result<NodeSpec, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    NodeSpec::from_json(&bytes, &path.display().to_string())
        .map_err(|e: NodeSpecError| e.to_string())
}

fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "kina-init: {line}");
}

/// Boots the node and runs until shutdown. Returns only in container mode.
pub fn run() -> std::process::ExitCode {
    let mode = Mode::detect();
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGPWR,
    ] {
        mask.add(s);
    }
    // Before any thread starts, so every thread inherits the mask.
    if let Err(e) = mask.thread_block() {
        say(&format!("cannot block signals: {e}"));
    }
    let signals = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
    {
        Ok(fd) => Some(fd),
        Err(e) => {
            say(&format!(
                "no signalfd ({e}): shutdown only through the exec channel"
            ));
            None
        }
    };
    say(&format!(
        "{} starting ({})",
        env!("CARGO_PKG_VERSION"),
        mode.label()
    ));

    let supervisor = Arc::new(Mutex::new(Supervisor::new(Backoff::default())));
    let boot_supervisor = Arc::clone(&supervisor);
    let boot = thread::Builder::new()
        .name("boot".into())
        .spawn(move || boot(mode, boot_supervisor));
    if let Err(e) = boot {
        say(&format!("cannot start the boot thread: {e}"));
    }
    if mode == Mode::Vm {
        let started = thread::Builder::new().name("exec".into()).spawn(|| {
            exec_server::serve(|| {
                // Routed through the signalfd like any shutdown request.
                let _ = kill(Pid::this(), Signal::SIGTERM);
            })
        });
        if let Err(e) = started {
            say(&format!("cannot start the exec channel: {e}"));
        }
    }

    loop {
        let reason = wait_for_signal(signals.as_ref());
        for event in supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .poll(Instant::now())
        {
            say(&describe(&event));
        }
        children::reap_orphans();
        if let Some(reason) = reason {
            shutdown(mode, &supervisor, reason);
            return std::process::ExitCode::SUCCESS;
        }
    }
}

/// Waits up to one tick; returns a shutdown reason if one arrived.
fn wait_for_signal(signals: Option<&SignalFd>) -> Option<&'static str> {
    let Some(fd) = signals else {
        thread::sleep(TICK);
        return None;
    };
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let _ = poll(&mut fds, TICK.as_millis() as u16);
    let mut reason = None;
    while let Ok(Some(info)) = fd.read_signal() {
        match Signal::try_from(info.ssi_signo as i32) {
            Ok(Signal::SIGTERM) => reason = Some("SIGTERM"),
            Ok(Signal::SIGINT) => reason = Some("SIGINT"),
            Ok(Signal::SIGPWR) => reason = Some("SIGPWR"),
            _ => {}
        }
    }
    reason
}

fn describe(event: &ServiceEvent) -> String {
    match event {
        ServiceEvent::Started { name, pid } => format!("{name} started (pid {pid})"),
        ServiceEvent::Exited {
            name,
            status,
            restart_in,
        } => format!(
            "{name} exited ({status}); restarting in {} ms",
            restart_in.as_millis()
        ),
        ServiceEvent::StartFailed {
            name,
            error,
            restart_in,
        } => format!(
            "{name} did not start: {error}; retrying in {} ms",
            restart_in.as_millis()
        ),
    }
}

fn boot(mode: Mode, supervisor: Arc<Mutex<Supervisor>>) {
    let spec = load_spec(Path::new(NODE_SPEC_PATH));
    let probes = match mode {
        Mode::Vm => &VM_PROBES,
        Mode::Container => &CONTAINER_PROBES,
    };
    let mut phases = phases(mode, supervisor, probes);
    let spec = match spec {
        Ok(spec) => spec,
        Err(error) => {
            // Mount and cgroups need no spec; the boot stops at identity.
            if let Some(p) = phases.iter_mut().find(|p| p.id() == PhaseId::Identity) {
                *p = Box::new(SpecUnreadable {
                    id: PhaseId::Identity,
                    error,
                });
            }
            NodeSpec::unnamed()
        }
    };
    let status = StatusFile::new(STATUS_PATH, NodeStatus::new(&spec.name, mode.label()));
    let mut ctx = BootContext {
        spec,
        kernel_report: None,
        status,
    };
    let started = Instant::now();
    // `load_spec` has checked the name; a spec that bypassed it boots on.
    let stop_after = ctx.spec.stop_after_phase().unwrap_or_else(|e| {
        say(&format!("node spec: stop_after {e}; booting every phase"));
        None
    });
    // From the start, not after the boot: the host rewrites specs while
    // nodes boot (Apple's addresses are known only once nodes run), and a
    // Kubernetes boot takes minutes.
    let (booted, status) = (ctx.spec.clone(), ctx.status.clone());
    let follower = thread::Builder::new()
        .name("peers".into())
        .spawn(move || follow_peers(Path::new(NODE_SPEC_PATH), &booted, &status));
    if let Err(e) = follower {
        say(&format!("cannot start following the node spec: {e}"));
    }
    let failed = run_phases(&mut phases, &mut ctx, &mut std::io::stderr(), stop_after);
    match failed {
        None => match &stop_after {
            Some(phase) => say(&format!(
                "boot stopped after phase {phase} as the node spec asks (stop_after), {} ms",
                started.elapsed().as_millis()
            )),
            None => say(&format!(
                "boot complete in {} ms",
                started.elapsed().as_millis()
            )),
        },
        Some(phase) => say(&format!(
            "boot stopped at phase {phase}; the node stays up for inspection (`kina-init status`)"
        )),
    }
}

/// Keeps the node's view of its peers in line with the node spec for the
/// node's whole life: routes to their pod CIDRs, their /etc/hosts entries
/// (the Apple provider's API endpoint is the control plane's name) and the
/// masquerading exemptions. The host replaces every node's spec when a node
/// comes back at another address, and on Apple while nodes boot. Following
/// starts once the network phase has set all this up from the booted spec,
/// so the two never race; a change that cannot be applied is retried.
///
/// The file's bytes, not its mtime, tell a new spec: two specs written
/// within one timestamp tick of a file system still differ.
fn follow_peers(path: &Path, booted: &NodeSpec, status: &StatusFile) {
    let network_done = || {
        status
            .snapshot()
            .phase(PhaseId::Network)
            .is_some_and(|p| p.state == PhaseState::Ok)
    };
    // `None`: the first look compares the file with what the boot used.
    let mut seen: Option<Vec<u8>> = None;
    let mut applied = booted.peers.clone();
    // The last problem said, so a lasting one is said once.
    let mut last_error = String::new();
    let report = |last: &mut String, error: String| {
        if error != *last {
            say(&error);
            *last = error;
        }
    };
    loop {
        thread::sleep(PEER_CHECK);
        if !network_done() {
            continue;
        }
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                report(
                    &mut last_error,
                    format!(
                        "cannot read the node spec {}, keeping the routes: {e}",
                        path.display()
                    ),
                );
                continue;
            }
        };
        if seen.as_ref() == Some(&bytes) {
            continue;
        }
        let spec = match NodeSpec::from_json(&bytes, &path.display().to_string()) {
            Ok(spec) => spec,
            Err(e) => {
                seen = Some(bytes);
                report(
                    &mut last_error,
                    format!("node spec changed but cannot be read, keeping the routes: {e}"),
                );
                continue;
            }
        };
        if spec.peers == applied {
            seen = Some(bytes);
            continue;
        }
        let applying = Instant::now();
        match apply_peers(&spec) {
            Ok(routes) => {
                say(&format!(
                    "node spec {} in force: {routes} peer route(s), /etc/hosts and masquerading \
                     updated in {} ms",
                    digest(&bytes),
                    applying.elapsed().as_millis()
                ));
                applied = spec.peers;
                seen = Some(bytes);
                last_error.clear();
            }
            // `seen` stays: the next look tries again.
            Err(e) => report(
                &mut last_error,
                format!("node spec changed, but the node could not follow yet (retrying): {e}"),
            ),
        }
    }
}

fn apply_peers(spec: &NodeSpec) -> Result<usize, String> {
    let routes = sync_peer_routes(spec, DEFAULT_UPLINK)?;
    write_hosts(Path::new("/etc/hosts"), &spec.name, &spec.peers)?;
    sync_masquerade(spec)?;
    Ok(routes)
}

/// Services in reverse start order, then every other process, then power
/// off (VM) or exit (container), all within bounded time.
fn shutdown(mode: Mode, supervisor: &Mutex<Supervisor>, reason: &str) {
    say(&format!("{reason}: shutting down"));
    let started = Instant::now();
    let ended = supervisor
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .stop_all(SERVICE_GRACE);
    for (name, how) in ended {
        say(&format!("{name} {how}"));
    }
    // kill(-1) reaches every process but kina-init itself.
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    let deadline = Instant::now() + REST_GRACE;
    let mut left = true;
    while Instant::now() < deadline {
        if !reap_all() {
            left = false;
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    if left {
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        while reap_all() {
            thread::sleep(Duration::from_millis(20));
        }
    }
    nix::unistd::sync();
    say(&format!("stopped in {} ms", started.elapsed().as_millis()));
    if mode == Mode::Vm {
        // A clean ext4 for the next boot: read-only before power off.
        if let Err(e) = mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        ) {
            say(&format!("remounting / read-only: {e}"));
        }
        nix::unistd::sync();
        say("power off");
        let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
        say(&format!("power off failed: {e}"));
    }
}

/// Reaps whatever has exited; whether any child is left at all.
fn reap_all() -> bool {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(nix::sys::wait::WaitStatus::StillAlive) => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}
