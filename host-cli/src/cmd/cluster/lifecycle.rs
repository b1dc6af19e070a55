//! `kina stop` and `kina start` of a whole cluster.

use super::{open, parse_wait};
use crate::cluster::lifecycle;
use crate::cluster::progress::Steps;
use crate::dirs::KinaDirs;

pub async fn stop(dirs: &KinaDirs, name: &str, quiet: bool) -> anyhow::Result<()> {
    let (provider, plan) = open(dirs, name)?;
    for line in lifecycle::stop(&provider, &plan, &Steps::new(quiet)).await? {
        eprintln!("{line}");
    }
    Ok(())
}

pub async fn start(dirs: &KinaDirs, name: &str, wait: &str, quiet: bool) -> anyhow::Result<()> {
    let wait = parse_wait(wait)?;
    let (provider, plan) = open(dirs, name)?;
    lifecycle::start(&provider, dirs, plan, wait, &Steps::new(quiet)).await
}
