//! `kina image pull`: an image from a registry into the local store.

use kina_builder::oci::distribution;
use kina_builder::store::ImageStore;

use super::blob_bars::{self, BlobBars};
use super::image_push::{options, print_summary};
use crate::cli::PullArgs;
use crate::dirs::KinaDirs;

pub async fn run(args: PullArgs, dirs: &KinaDirs, quiet: bool) -> anyhow::Result<()> {
    let mut opts = options(&args.registry)?;
    let store = ImageStore::open(dirs.images())?;
    let bars = BlobBars::for_terminal(quiet);
    opts.progress = bars.as_ref().map(|b| b.byte_progress());
    let mut progress = blob_bars::reporter(bars, quiet, "pulled");
    let summary = distribution::pull(&store, &args.reference, None, &opts, &mut progress).await?;
    if !quiet {
        print_summary(&summary, "pulled");
    }
    if let Some(d) = summary.index_digest {
        println!("{}@{}", args.reference, d.oci());
    }
    Ok(())
}
