//! The kernel phase: the node's required profiles must pass, or the boot
//! stops naming the missing options and the way out.

use kina_contract::kernel::ProbeRunner;
use kina_contract::kernel::report::Verdict;
use kina_contract::status::PhaseId;

use super::{BootContext, Phase, PhaseFailure};
use crate::kernel_probe::check_running_kernel;

pub struct KernelPhase<'a> {
    pub probes: &'a dyn ProbeRunner,
}

impl Phase for KernelPhase<'_> {
    fn id(&self) -> PhaseId {
        PhaseId::Kernel
    }

    fn run(&mut self, ctx: &mut BootContext) -> Result<String, PhaseFailure> {
        let profiles = ctx.spec.required_kernel_profiles.clone();
        let (report, times) =
            check_running_kernel(&profiles, self.probes).map_err(|e| PhaseFailure {
                message: format!("cannot check the kernel: {e}"),
                hint: "name known profiles in the node spec (kina kernel check lists them)".into(),
            })?;
        let report_failed: Vec<String> = report
            .profiles
            .iter()
            .filter(|p| p.verdict == Verdict::Fail)
            .map(|p| p.name.clone())
            .collect();
        let failed: Vec<String> = report
            .profiles
            .iter()
            .filter(|p| p.verdict == Verdict::Fail)
            .map(|p| {
                let missing: Vec<String> = p.missing().map(|o| o.config_names()).collect();
                format!("{} needs {}", p.name, missing.join(", "))
            })
            .collect();
        let summary = format!(
            "profiles {} checked in {times}{}",
            profiles.join(", "),
            match report.modules_supported {
                Some(false) => "; no module support",
                _ => "",
            }
        );
        ctx.kernel_report = Some(report);
        if failed.is_empty() {
            Ok(summary)
        } else {
            Err(PhaseFailure {
                message: format!(
                    "the kernel lacks what this node needs: {}",
                    failed.join("; ")
                ),
                hint: format!(
                    "boot a kernel built with those options ({}; kina's QEMU provider uses Debian's cloud kernel by default), or choose a network whose profile passes (`kina-init check-kernel --profile P`)",
                    kina_contract::kernel::report::build_way_out(
                        report_failed.first().map_or("cilium-kpr", String::as_str)
                    )
                ),
            })
        }
    }
}
