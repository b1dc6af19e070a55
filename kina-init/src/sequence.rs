//! The node's boot sequence for each way kina-init runs, and the last two
//! phases, which only report. The composition root of the boot: it puts the
//! generic phases of `boot` and the Kubernetes phase in order, so neither
//! module needs the other's phases.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kina_contract::status::PhaseId;

use crate::boot::cgroups::CgroupsPhase;
use crate::boot::containerd::ContainerdPhase;
use crate::boot::identity::IdentityPhase;
use crate::boot::images::ImagesPhase;
use crate::boot::kernel::KernelPhase;
use crate::boot::modules::ModulesPhase;
use crate::boot::mount::MountPhase;
use crate::boot::network::{DEFAULT_UPLINK, NetworkPhase};
use crate::boot::sysctls::SysctlsPhase;
use crate::boot::{BootContext, Phase, PhaseFailure};
use crate::kernel_probe::LiveProbes;
use crate::kubernetes::KubernetesPhase;
use crate::supervise::{Backoff, Supervisor};

/// How kina-init was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The kernel's init in a QEMU VM: nothing is mounted yet, and shutdown
    /// ends with power off.
    Vm,
    /// PID 1 of a PID namespace that Apple's vminitd set up: /proc, /sys,
    /// cgroup2 and /dev are mounted, and shutdown is an exit.
    Container,
}

impl Mode {
    /// The kernel starts init with nothing mounted (kina's initramfs
    /// unmounts what it used before switching root); vminitd mounts /proc
    /// before it starts the container's entrypoint.
    pub fn detect() -> Self {
        if std::process::id() == 1 && !std::path::Path::new("/proc/self").exists() {
            Mode::Vm
        } else {
            Mode::Container
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Mode::Vm => "vm-pid1",
            Mode::Container => "container-pid1",
        }
    }
}

struct ReadyPhase;

impl Phase for ReadyPhase {
    fn id(&self) -> PhaseId {
        PhaseId::Ready
    }

    fn run(&mut self, ctx: &mut BootContext) -> Result<String, PhaseFailure> {
        Ok(match ctx.status.snapshot().kubernetes {
            Some(k) if k.ready => format!(
                "node {} is ready; Kubernetes {} reports it Ready at {}",
                ctx.spec.name, k.version, k.node_ip
            ),
            _ => format!("node {} is ready", ctx.spec.name),
        })
    }
}

/// A phase whose set-up must wait until it runs.
struct Deferred<F> {
    id: PhaseId,
    make: F,
}

impl<F: FnMut() -> Box<dyn Phase>> Phase for Deferred<F> {
    fn id(&self) -> PhaseId {
        self.id
    }

    fn run(&mut self, ctx: &mut BootContext) -> Result<String, PhaseFailure> {
        (self.make)().run(ctx)
    }
}

/// Every phase, in [`PhaseId::ALL`] order.
pub fn phases(
    mode: Mode,
    supervisor: Arc<Mutex<Supervisor>>,
    probes: &'static LiveProbes,
) -> Vec<Box<dyn Phase>> {
    let root = PathBuf::from("/");
    vec![
        Box::new(MountPhase { root: root.clone() }),
        // Its cgroup is read from /proc, which the mount phase provides.
        Box::new(Deferred {
            id: PhaseId::Cgroups,
            make: || -> Box<dyn Phase> { Box::new(CgroupsPhase::for_this_process()) },
        }),
        Box::new(IdentityPhase {
            root: root.clone(),
            set_kernel_hostname: true,
        }),
        Box::new(KernelPhase { probes }),
        Box::new(ModulesPhase::for_running_kernel()),
        Box::new(SysctlsPhase {
            root: PathBuf::from("/proc/sys"),
        }),
        Box::new(NetworkPhase {
            uplink: DEFAULT_UPLINK.into(),
            cni_conf_dir: root.join("etc/cni/net.d"),
            resolv_conf: root.join("etc/resolv.conf"),
            fresh_netfilter: mode == Mode::Vm,
        }),
        Box::new(ContainerdPhase {
            root: root.clone(),
            supervisor: supervisor.clone(),
            timeout: match mode {
                // Under TCG containerd takes seconds to start.
                Mode::Vm => Duration::from_secs(120),
                Mode::Container => Duration::from_secs(60),
            },
        }),
        Box::new(ImagesPhase { root }),
        Box::new(KubernetesPhase::for_node(supervisor, DEFAULT_UPLINK)),
        Box::new(ReadyPhase),
    ]
}

/// The phases `kina-init phase NAME` runs on their own: those that need
/// nothing an earlier phase found out.
pub const BY_HAND: [PhaseId; 4] = [
    PhaseId::Mount,
    PhaseId::Network,
    PhaseId::Sysctls,
    PhaseId::Kubernetes,
];

/// One phase on its own, for debugging a node and for testing phases in a
/// scratch root (`root`, `/` by default). `None` for a phase not in
/// [`BY_HAND`]; an error if the thread that runs the Kubernetes phase's
/// services cannot start.
pub fn by_hand(id: PhaseId, root: Option<PathBuf>) -> std::io::Result<Option<Box<dyn Phase>>> {
    let node_root = || root.clone().unwrap_or_else(|| PathBuf::from("/"));
    Ok(Some(match id {
        PhaseId::Sysctls => Box::new(SysctlsPhase {
            root: root.clone().unwrap_or_else(|| PathBuf::from("/proc/sys")),
        }),
        PhaseId::Mount => Box::new(MountPhase { root: node_root() }),
        PhaseId::Network => Box::new(NetworkPhase {
            uplink: DEFAULT_UPLINK.into(),
            cni_conf_dir: node_root().join("etc/cni/net.d"),
            resolv_conf: node_root().join("etc/resolv.conf"),
            // By hand, on a node that has booted: its rules may be there.
            fresh_netfilter: false,
        }),
        // Runs kubeadm with the spec's settings; on a node of a base image
        // it says which binaries the image lacks.
        PhaseId::Kubernetes => {
            let supervisor = Arc::new(Mutex::new(Supervisor::new(Backoff::default())));
            // PID 1's loop polls the supervisor at boot; by hand, a thread does.
            let polled = Arc::clone(&supervisor);
            std::thread::Builder::new()
                .name("supervise".into())
                .spawn(move || {
                    loop {
                        polled
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .poll(Instant::now());
                        std::thread::sleep(Duration::from_millis(100));
                    }
                })?;
            let mut phase = KubernetesPhase::for_node(supervisor, DEFAULT_UPLINK);
            if let Some(root) = root {
                phase.paths.root = root;
            }
            Box::new(phase)
        }
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_runs_every_phase_once_in_status_order() {
        static PROBES: LiveProbes = LiveProbes::SCRATCH;
        let supervisor = Arc::new(Mutex::new(Supervisor::new(Backoff::default())));
        for mode in [Mode::Vm, Mode::Container] {
            let ids: Vec<PhaseId> = phases(mode, supervisor.clone(), &PROBES)
                .iter()
                .map(|p| p.id())
                .collect();
            assert_eq!(ids, PhaseId::ALL, "{mode:?}");
        }
    }
}
