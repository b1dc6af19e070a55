//! Runtime probes of the running kernel, for the profiles in `kernels/`.
//!
//! Each probe asks the kernel for the feature itself and reads the answer as
//! the engine needs it: success proves presence, a definite absence error
//! (ENOENT, EOPNOTSUPP, EAFNOSUPPORT, EPROTONOSUPPORT, ENOSYS) proves
//! absence, and a permission error (EPERM, EACCES, EROFS: a masked /proc in
//! Apple's default container, a missing capability) proves nothing, so the
//! engine falls back to the kernel config and says so. A feature that a
//! module not loaded yet provides is reported as that module (the node's
//! modules phase loads it). Probes change nothing in the caller: no module
//! is loaded, and namespace work happens on a scratch thread that unshares
//! its own network namespace, which disappears with the thread (in a VM's
//! boot, a link added to kina-init's own namespace is deleted again).

use std::io::ErrorKind;
use std::path::Path;
use std::time::{Duration, Instant};

use kina_contract::kernel::{
    KernelConfig, LOCAL_PROFILES_DIR, Probe, ProbeOutcome, ProbeRunner, ProfileSet, Report, check,
};
use nix::errno::Errno;

/// Probes against the kernel this process runs on.
pub struct LiveProbes {
    pub links: LinkProbeNamespace,
}

/// Where a link probe adds its scratch link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkProbeNamespace {
    /// A network namespace of the probe's own, gone with its thread, so
    /// nothing outside it ever sees the link: for a check on a machine
    /// that others use (`kina-init check-kernel`, a container's boot).
    Scratch,
    /// The process's own namespace, the link deleted again before the probe
    /// answers: for the boot of a VM, where kina-init is the kernel's init
    /// and nothing else runs yet. Creating a namespace initialises every
    /// per-namespace part of the network stack, 110–150 ms under TCG,
    /// which was most of the boot's kernel check.
    Own,
}

impl LiveProbes {
    pub const SCRATCH: Self = Self {
        links: LinkProbeNamespace::Scratch,
    };
    pub const OWN_NAMESPACE: Self = Self {
        links: LinkProbeNamespace::Own,
    };
}

fn classify_errno(errno: Errno, what: &str) -> ProbeOutcome {
    match errno {
        Errno::ENOENT
        | Errno::EOPNOTSUPP
        | Errno::EAFNOSUPPORT
        | Errno::EPROTONOSUPPORT
        | Errno::ENOSYS
        | Errno::ENODEV => ProbeOutcome::Absent(format!("{what}: {}", errno.desc())),
        other => ProbeOutcome::CannotVerify(format!("{what}: {}", other.desc())),
    }
}

fn classify_io(err: &std::io::Error, what: &str) -> ProbeOutcome {
    match err.raw_os_error() {
        Some(code) => classify_errno(Errno::from_raw(code), what),
        None if err.kind() == ErrorKind::NotFound => {
            ProbeOutcome::Absent(format!("{what}: not found"))
        }
        None => ProbeOutcome::CannotVerify(format!("{what}: {err}")),
    }
}

fn proc_file(path: &str) -> ProbeOutcome {
    match std::fs::metadata(path) {
        Ok(_) => ProbeOutcome::Present(format!("{path} exists")),
        Err(e) => classify_io(&e, path),
    }
}

fn filesystem(name: &str) -> ProbeOutcome {
    match std::fs::read_to_string("/proc/filesystems") {
        Ok(text) => {
            if text
                .lines()
                .any(|l| l.split_whitespace().last() == Some(name))
            {
                ProbeOutcome::Present(format!("{name} in /proc/filesystems"))
            } else {
                ProbeOutcome::Absent(format!("{name} not in /proc/filesystems"))
            }
        }
        Err(e) => classify_io(&e, "/proc/filesystems"),
    }
}

/// cgroup v2 controllers available to this process's cgroup: those its
/// parent delegates (`cgroup.controllers` of its own cgroup).
fn cgroup_controller(name: &str) -> ProbeOutcome {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        })
        .unwrap_or_else(|| "/".to_string());
    let path = Path::new("/sys/fs/cgroup")
        .join(own.trim_start_matches('/'))
        .join("cgroup.controllers");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            if text.split_whitespace().any(|c| c == name) {
                ProbeOutcome::Present(format!("{name} in {}", path.display()))
            } else {
                // Not delegated to us says nothing about the kernel itself.
                ProbeOutcome::CannotVerify(format!("{name} not delegated in {}", path.display()))
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            ProbeOutcome::CannotVerify(format!("no cgroup v2 hierarchy at {}", path.display()))
        }
        Err(e) => classify_io(&e, &path.display().to_string()),
    }
}

fn socket(family: &str, socket_type: Option<&str>, protocol: Option<&str>) -> ProbeOutcome {
    use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
    let af = match family {
        "inet" => AddressFamily::Inet,
        "inet6" => AddressFamily::Inet6,
        "netlink" => AddressFamily::Netlink,
        "alg" => AddressFamily::Alg,
        "packet" => AddressFamily::Packet,
        other => {
            return ProbeOutcome::CannotVerify(format!("kina does not know socket family {other}"));
        }
    };
    let ty = match socket_type.unwrap_or(if af == AddressFamily::Netlink {
        "raw"
    } else {
        "seqpacket"
    }) {
        "stream" => SockType::Stream,
        "dgram" => SockType::Datagram,
        "raw" => SockType::Raw,
        _ => SockType::SeqPacket,
    };
    let proto = match protocol {
        Some("netfilter") => Some(SockProtocol::NetlinkNetFilter),
        Some("route") => Some(SockProtocol::NetlinkRoute),
        _ => None,
    };
    let what = format!(
        "socket({family}{})",
        protocol.map(|p| format!(", {p}")).unwrap_or_default()
    );
    // The kernel would request `net-pf-16-proto-12` through its modprobe
    // helper; that alias is nfnetlink's (`net/netfilter/nfnetlink.c`,
    // MODULE_ALIAS_NET_PF_PROTO(PF_NETLINK, NETLINK_NETFILTER)).
    if family == "netlink"
        && protocol == Some("netfilter")
        && let Some(loadable) = loadable("nfnetlink")
    {
        return loadable;
    }
    match socket(af, ty, SockFlag::SOCK_CLOEXEC, proto) {
        Ok(_fd) => ProbeOutcome::Present(what),
        Err(e) => classify_errno(e, &what),
    }
}

/// Whether the kernel can make links of `link_type`. A loaded module
/// (`/sys/module/KIND`) answers, and a module not loaded yet is reported
/// as one ([`loadable`]). Otherwise the link is created through
/// rtnetlink, in `namespace`, on a thread of its own (a scratch namespace
/// is that thread's, and goes when it ends). In-process: an `ip` per probe
/// cost more under TCG than the whole check should. The kernel answers an
/// unknown link kind with EOPNOTSUPP (after trying to load
/// `rtnl-link-KIND`), which is read as absent, as `ip` reports "Unknown
/// device type".
fn netlink_link(link_type: &str, namespace: LinkProbeNamespace) -> ProbeOutcome {
    let loaded = Path::new("/sys/module").join(link_type);
    if loaded.is_dir() {
        return ProbeOutcome::Present(format!("{link_type} module loaded ({})", loaded.display()));
    }
    if let Some(loadable) = loadable(link_type) {
        return loadable;
    }
    add_link_probe(link_type, namespace)
}

/// The link probe proper: adds a `link_type` link in `namespace` (and
/// deletes it again in the caller's own), whether or not a loaded module
/// already answers.
pub fn add_link_probe(link_type: &str, namespace: LinkProbeNamespace) -> ProbeOutcome {
    let link_type = link_type.to_string();
    let handle = std::thread::spawn(move || {
        if namespace == LinkProbeNamespace::Scratch
            && let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        {
            return classify_errno(e, "unshare(CLONE_NEWNET)");
        }
        let what = format!("rtnetlink: add a {link_type} link");
        let message = match link_type.as_str() {
            "veth" => rtnetlink::LinkVeth::new(PROBE_LINK, PROBE_PEER).build(),
            "vxlan" => rtnetlink::LinkVxlan::new(PROBE_LINK, 42).port(4789).build(),
            "bridge" => rtnetlink::LinkBridge::new(PROBE_LINK).build(),
            other => {
                return ProbeOutcome::CannotVerify(format!(
                    "no link probe for type {other} (kina-init knows veth, vxlan and bridge)"
                ));
            }
        };
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
        {
            Ok(r) => r,
            Err(e) => return ProbeOutcome::CannotVerify(format!("{what}: {e}")),
        };
        runtime.block_on(async {
            // The socket belongs to the namespace of the thread that opens it.
            let (connection, handle, _) = match rtnetlink::new_connection() {
                Ok(c) => c,
                Err(e) => return classify_io(&e, &what),
            };
            tokio::spawn(connection);
            match handle.link().add(message).execute().await {
                Ok(()) if namespace == LinkProbeNamespace::Own => {
                    match delete_link(&handle, PROBE_LINK).await {
                        Ok(()) => ProbeOutcome::Present(what),
                        Err(e) => ProbeOutcome::Present(format!(
                            "{what} (but deleting {PROBE_LINK} again failed: {e})"
                        )),
                    }
                }
                Ok(()) => ProbeOutcome::Present(what),
                Err(rtnetlink::Error::NetlinkError(e)) => classify_io(&e.to_io(), &what),
                Err(e) => ProbeOutcome::CannotVerify(format!("{what}: {e}")),
            }
        })
    });
    handle
        .join()
        .unwrap_or_else(|_| ProbeOutcome::CannotVerify("link probe thread failed".into()))
}

/// The answer for a feature that `module` provides when the running
/// kernel has it as a module not loaded yet (see
/// [`ModulesPhase::loadable_file`](crate::boot::modules::ModulesPhase::loadable_file)).
fn loadable(module: &str) -> Option<ProbeOutcome> {
    let file = crate::boot::modules::ModulesPhase::for_running_kernel().loadable_file(module)?;
    Some(ProbeOutcome::Loadable(format!(
        "{module} not loaded yet, its module is {}",
        file.display()
    )))
}

/// The names of a link probe's scratch link (and a veth's peer, which goes
/// with it).
pub const PROBE_LINK: &str = "kina-probe0";
const PROBE_PEER: &str = "kina-probe1";

async fn delete_link(handle: &rtnetlink::Handle, name: &str) -> Result<(), rtnetlink::Error> {
    use futures_util::TryStreamExt;
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    if let Some(link) = links.try_next().await? {
        handle.link().del(link.header.index).execute().await?;
    }
    Ok(())
}

impl ProbeRunner for LiveProbes {
    fn run(&self, probe: &Probe) -> ProbeOutcome {
        match probe {
            Probe::ConfigOnly => ProbeOutcome::CannotVerify("no runtime probe".into()),
            Probe::ProcFile { path } => proc_file(path),
            Probe::Filesystem { name } => filesystem(name),
            Probe::CgroupController { name } => cgroup_controller(name),
            Probe::Socket {
                family,
                socket_type,
                protocol,
            } => socket(family, socket_type.as_deref(), protocol.as_deref()),
            Probe::NetlinkLink { link_type } => netlink_link(link_type, self.links),
            // bpf(2) is compiled in exactly when this sysctl exists; calling
            // it needs unsafe code kina-init does not carry.
            Probe::Syscall { name } if name == "bpf" => {
                proc_file("/proc/sys/kernel/unprivileged_bpf_disabled")
            }
            Probe::Syscall { name } => {
                ProbeOutcome::CannotVerify(format!("no probe for syscall {name}"))
            }
            // net.core.bpf_jit_enable is registered only with CONFIG_BPF_JIT.
            Probe::BpfJit => match std::fs::read_to_string("/proc/sys/net/core/bpf_jit_enable") {
                Ok(v) if v.trim() != "0" => {
                    ProbeOutcome::Present(format!("bpf_jit_enable={}", v.trim()))
                }
                Ok(_) => {
                    ProbeOutcome::Absent("bpf_jit_enable=0 (JIT compiled in but disabled)".into())
                }
                Err(e) => classify_io(&e, "/proc/sys/net/core/bpf_jit_enable"),
            },
        }
    }
}

/// The running kernel's config for fallbacks: /proc/config.gz, else
/// /boot/config-$(uname -r), as moby's check-config and kubeadm look.
pub fn running_kernel_config() -> Option<KernelConfig> {
    if let Ok(c) = KernelConfig::read(Path::new("/proc/config.gz")) {
        return Some(c);
    }
    let release = nix::sys::utsname::uname()
        .ok()?
        .release()
        .to_string_lossy()
        .into_owned();
    KernelConfig::read(&Path::new("/boot").join(format!("config-{release}"))).ok()
}

/// Where a check's time went, for the boot's phase line and
/// `check-kernel`: under emulation one probe (a module load, a namespace)
/// can cost more than all the others, and the line should say which.
#[derive(Clone, Debug, Default)]
pub struct CheckTimes {
    pub total: Duration,
    /// Reading and parsing the running kernel's config.
    pub config: Duration,
    /// The probe that took longest, by its short name, and how long.
    pub slowest_probe: Option<(String, Duration)>,
}

impl std::fmt::Display for CheckTimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "{:.1} ms (kernel config {:.1} ms",
            ms(self.total),
            ms(self.config)
        )?;
        if let Some((probe, took)) = &self.slowest_probe {
            write!(f, ", slowest probe {probe} {:.1} ms", ms(*took))?;
        }
        write!(f, ")")
    }
}

/// A probe's short name for [`CheckTimes`].
fn probe_name(probe: &Probe) -> String {
    match probe {
        Probe::ConfigOnly => "config-only".into(),
        Probe::ProcFile { path } => path.clone(),
        Probe::Filesystem { name } => format!("filesystem {name}"),
        Probe::CgroupController { name } => format!("cgroup controller {name}"),
        Probe::Socket {
            family, protocol, ..
        } => match protocol {
            Some(p) => format!("socket {family}/{p}"),
            None => format!("socket {family}"),
        },
        Probe::NetlinkLink { link_type } => format!("{link_type} link"),
        Probe::Syscall { name } => format!("syscall {name}"),
        Probe::BpfJit => "bpf jit".into(),
    }
}

/// Times each probe it passes on, keeping the slowest.
struct TimedProbes<'a> {
    runner: &'a dyn ProbeRunner,
    slowest: std::cell::RefCell<Option<(String, Duration)>>,
}

impl ProbeRunner for TimedProbes<'_> {
    fn run(&self, probe: &Probe) -> ProbeOutcome {
        let started = Instant::now();
        let outcome = self.runner.run(probe);
        let took = started.elapsed();
        let mut slowest = self.slowest.borrow_mut();
        if slowest.as_ref().is_none_or(|(_, longest)| took > *longest) {
            *slowest = Some((probe_name(probe), took));
        }
        outcome
    }
}

/// Checks the running kernel; returns the report and where its time went.
pub fn check_running_kernel(
    profiles: &[String],
    runner: &dyn ProbeRunner,
) -> Result<(Report, CheckTimes), String> {
    let started = Instant::now();
    let mut set = ProfileSet::shipped().map_err(|e| e.to_string())?;
    set.add_dir(Path::new(LOCAL_PROFILES_DIR))
        .map_err(|e| e.to_string())?;
    let config_started = Instant::now();
    let config = running_kernel_config();
    let config_took = config_started.elapsed();
    let timed = TimedProbes {
        runner,
        slowest: std::cell::RefCell::default(),
    };
    let report = check(&set, profiles, config.as_ref(), Some(&timed)).map_err(|e| e.to_string())?;
    Ok((
        report,
        CheckTimes {
            total: started.elapsed(),
            config: config_took,
            slowest_probe: timed.slowest.into_inner(),
        },
    ))
}
