//! The node's boot sequence for each way kina-init runs, and the last two
//! phases, which only report.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::cgroups::CgroupsPhase;
use super::containerd::ContainerdPhase;
use super::identity::IdentityPhase;
use super::images::ImagesPhase;
use super::kernel::KernelPhase;
use super::modules::ModulesPhase;
use super::mount::MountPhase;
use super::network::{DEFAULT_UPLINK, NetworkPhase};
use super::sysctls::SysctlsPhase;
use super::{BootContext, Phase, PhaseFailure};
use crate::kernel_probe::LiveProbes;
use crate::kubernetes::KubernetesPhase;
use crate::supervise::Supervisor;

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
    fn name(&self) -> &'static str {
        "ready"
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
    name: &'static str,
    make: F,
}

impl<F: FnMut() -> Box<dyn Phase>> Phase for Deferred<F> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn run(&mut self, ctx: &mut BootContext) -> Result<String, PhaseFailure> {
        (self.make)().run(ctx)
    }
}

/// Every phase, in `kina_contract::status::PHASES` order.
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
            name: "cgroups",
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
