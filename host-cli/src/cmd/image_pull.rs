//! `kina image pull`: an image from a registry into the local store.

use kina_builder::oci::distribution::{self, BlobReport};
use kina_builder::store::ImageStore;

use super::image_push::{options, print_blob, print_summary};
use crate::cli::PullArgs;

pub async fn run(args: PullArgs, quiet: bool) -> anyhow::Result<()> {
    let opts = options(&args.registry)?;
    let store = ImageStore::open(ImageStore::default_root())?;
    let mut progress = |r: &BlobReport| {
        if !quiet {
            print_blob(r, "pulled");
        }
    };
    let summary = distribution::pull(&store, &args.reference, None, &opts, &mut progress).await?;
    if !quiet {
        print_summary(&summary, "pulled");
    }
    if let Some(d) = summary.index_digest {
        println!("{}@{}", args.reference, d.oci());
    }
    Ok(())
}
