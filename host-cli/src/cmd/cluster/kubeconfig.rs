//! `kina kubeconfig` / `kina export kubeconfig` / `kina get kubeconfig`.

use std::io::Write;

use super::open;
use crate::cli::KubeconfigArgs;
use crate::cluster::kubeconfig::{self, KubeconfigFiles};
use crate::dirs::KinaDirs;

pub fn run(dirs: &KinaDirs, args: KubeconfigArgs) -> anyhow::Result<()> {
    if args.print {
        return print(dirs, &args.cluster.resolve());
    }
    let (provider, plan) = open(dirs, &args.cluster.resolve())?;
    let path = kubeconfig::merge(&provider, &plan, &KubeconfigFiles::from_env())?;
    eprintln!(
        "Set kubectl context to \"{}\" in {}",
        kubeconfig::context_name(&plan.name),
        path.display()
    );
    Ok(())
}

pub fn print(dirs: &KinaDirs, name: &str) -> anyhow::Result<()> {
    let (provider, plan) = open(dirs, name)?;
    let entry = kubeconfig::entry(&provider, &plan)?;
    let text = crate::kubeconfig::render(&entry)?;
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}
