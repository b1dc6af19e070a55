//! `kina kernel check`: can this kernel run a node, with which network?
//! The kernel is a config file (`--config`), or a kina kernel (`--kernel`):
//! a registry reference, whose `.config` comes from the artifact (pulled now
//! if this machine does not have it), or a built-kernel directory.

use std::path::Path;

use anyhow::{Context, bail};
use kina_builder::kernel::BuiltKernel;
use kina_builder::platform::Arch;
use kina_contract::kernel::report::{Report, Verdict};
use kina_contract::kernel::{KernelConfig, ProfileSet, check};

use super::image_push::options;
use crate::cli::KernelCheckArgs;
use crate::dirs::KinaDirs;
use crate::kernel_store::KernelStore;

const DEFAULT_PROFILES: [&str; 2] = ["kubernetes-base", "ptp"];

/// The check of `config` against `requested`, and the networks this kernel
/// would run (offered as the way out when it fails).
fn check_config(
    set: &ProfileSet,
    config: &KernelConfig,
    requested: &[String],
) -> anyhow::Result<(Report, Vec<String>)> {
    let report = check(set, requested, Some(config), None)?;
    let all: Vec<String> = set.all().iter().map(|p| p.name.clone()).collect();
    let everything = check(set, &all, Some(config), None)?;
    let passing = everything
        .profiles
        .iter()
        .filter(|p| p.verdict == Verdict::Pass && p.name != "kubernetes-base")
        .map(|p| p.name.clone())
        .collect();
    Ok((report, passing))
}

fn failed(report: &Report) -> String {
    report
        .profiles
        .iter()
        .filter(|p| p.verdict == Verdict::Fail)
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn run(args: KernelCheckArgs, dirs: &KinaDirs, quiet: bool) -> anyhow::Result<()> {
    let set = ProfileSet::shipped()?;
    if let Some(reference) = &args.kernel {
        return check_kernel(&set, reference, &args, dirs, quiet).await;
    }
    let Some(config_path) = &args.config else {
        bail!("name the kernel to check: --config FILE or --kernel REF");
    };
    let config = KernelConfig::read(config_path)?;
    let requested: Vec<String> = if args.profiles.is_empty() {
        DEFAULT_PROFILES.iter().map(|p| p.to_string()).collect()
    } else {
        args.profiles.clone()
    };
    let (report, passing) = check_config(&set, &config, &requested)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render(&passing));
    }
    if !report.passed() {
        bail!(
            "{} does not meet kernel profile(s) {}",
            config_path.display(),
            failed(&report)
        );
    }
    Ok(())
}

/// The kernels `reference` names, one per architecture asked for.
async fn kernels_of(
    reference: &str,
    args: &KernelCheckArgs,
    dirs: &KinaDirs,
) -> anyhow::Result<Vec<BuiltKernel>> {
    let arch: Option<Arch> = args
        .arch
        .as_deref()
        .map(str::parse)
        .transpose()
        .context("--arch")?;
    if Path::new(reference).join("kernel.json").is_file() {
        let kernel = BuiltKernel::open(Path::new(reference))?;
        if let Some(arch) = arch
            && arch != kernel.meta.arch
        {
            bail!(
                "--kernel {reference} is a {} kernel, not {arch}",
                kernel.meta.arch
            );
        }
        return Ok(vec![kernel]);
    }
    let store = KernelStore::open(dirs)?;
    let stored = match store.find(reference)? {
        Some(stored) => stored,
        None => {
            let opts = options(&args.registry)?;
            store
                .pull(reference, &opts, &mut |_| {})
                .await
                .with_context(|| format!("pulling kernel {reference} to check it"))?
                .0
        }
    };
    let arches: Vec<Arch> = match arch {
        Some(arch) => vec![arch],
        None => stored.platforms.iter().map(|p| p.arch).collect(),
    };
    arches
        .into_iter()
        .map(|a| Ok(store.built_kernel(&stored, a)?))
        .collect()
}

async fn check_kernel(
    set: &ProfileSet,
    reference: &str,
    args: &KernelCheckArgs,
    dirs: &KinaDirs,
    quiet: bool,
) -> anyhow::Result<()> {
    let kernels = kernels_of(reference, args, dirs).await?;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for kernel in &kernels {
        let config = KernelConfig::read(&kernel.config_path())?;
        // By default a kernel is checked for what it was built to pass.
        let requested: Vec<String> = if !args.profiles.is_empty() {
            args.profiles.clone()
        } else if !kernel.meta.profiles.is_empty() {
            kernel.meta.profiles.clone()
        } else {
            DEFAULT_PROFILES.iter().map(|p| p.to_string()).collect()
        };
        let (report, passing) = check_config(set, &config, &requested)?;
        let platform = kernel.meta.arch.platform();
        if !report.passed() {
            failures.push(format!("{platform}: {}", failed(&report)));
        }
        if args.json {
            results.push(serde_json::json!({
                "platform": platform,
                "release": kernel.meta.release,
                "report": report,
            }));
        } else {
            if !quiet {
                println!("{reference} {platform} ({})", kernel.meta.release);
            }
            print!("{}", report.render(&passing));
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    if !failures.is_empty() {
        bail!(
            "kernel {reference} does not meet kernel profile(s) {}",
            failures.join("; ")
        );
    }
    Ok(())
}
