//! `kina kernel check --config FILE`: can this kernel run a node, with which network?

use std::path::Path;

use anyhow::bail;
use kina_contract::kernel::report::Verdict;
use kina_contract::kernel::{KernelConfig, ProfileSet, check};

pub fn run(config_path: &Path, profiles: &[String], json: bool) -> anyhow::Result<()> {
    let set = ProfileSet::shipped()?;
    let config = KernelConfig::read(config_path)?;
    let requested: Vec<String> = if profiles.is_empty() {
        vec!["kubernetes-base".into(), "ptp".into()]
    } else {
        profiles.to_vec()
    };
    let report = check(&set, &requested, Some(&config), None)?;
    // Which networks would work on this kernel: offered as the way out.
    let all: Vec<String> = set.all().iter().map(|p| p.name.clone()).collect();
    let everything = check(&set, &all, Some(&config), None)?;
    let passing: Vec<String> = everything
        .profiles
        .iter()
        .filter(|p| p.verdict == Verdict::Pass && p.name != "kubernetes-base")
        .map(|p| p.name.clone())
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render(&passing));
    }
    if !report.passed() {
        let failed: Vec<&str> = report
            .profiles
            .iter()
            .filter(|p| p.verdict == Verdict::Fail)
            .map(|p| p.name.as_str())
            .collect();
        bail!(
            "{} does not meet kernel profile(s) {}",
            config_path.display(),
            failed.join(", ")
        );
    }
    Ok(())
}
