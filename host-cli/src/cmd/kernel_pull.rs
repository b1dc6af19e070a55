//! `kina kernel pull REF`: a kernel artifact into the local kernel store,
//! every digest verified, each architecture unpacked as a built-kernel
//! directory (`crate::kernel_store`).

use super::blob_bars::{self, BlobBars};
use super::image_push::{options, print_summary};
use crate::cli::PullArgs;
use crate::dirs::KinaDirs;
use crate::kernel_store::KernelStore;

pub async fn run(args: PullArgs, dirs: &KinaDirs, quiet: bool) -> anyhow::Result<()> {
    let mut opts = options(&args.registry)?;
    let store = KernelStore::open(dirs)?;
    let bars = BlobBars::for_terminal(quiet);
    opts.progress = bars.as_ref().map(|b| b.byte_progress());
    let mut progress = blob_bars::reporter(bars, quiet, "pulled");
    let (stored, summary) = store.pull(&args.reference, &opts, &mut progress).await?;
    if !quiet {
        print_summary(&summary, "pulled");
        for p in &stored.platforms {
            println!(
                "kernel   {} {} {} (profiles: {})",
                p.arch,
                p.meta.recipe,
                p.meta.release,
                p.meta.profiles.join(", ")
            );
        }
    }
    println!("{}@{}", args.reference, stored.digest.oci());
    Ok(())
}
