//! `kina image list`: the node images in the local store.

use kina_builder::store::ImageStore;

use super::image_inspect::{ImageSummary, summarize};
use crate::dirs::KinaDirs;

pub fn run(dirs: &KinaDirs, json: bool) -> anyhow::Result<()> {
    let store = ImageStore::open(dirs.images())?;
    let summaries: Vec<ImageSummary> = store
        .list()?
        .iter()
        .map(|e| summarize(&store, e))
        .collect::<Result<_, _>>()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summaries)?);
        return Ok(());
    }
    println!(
        "{:<40} {:<21} {:<24} {:>10}",
        "REFERENCE", "DIGEST", "PLATFORMS", "SIZE"
    );
    for s in &summaries {
        println!(
            "{:<40} {:<21} {:<24} {:>10}",
            s.reference,
            &s.digest[..21.min(s.digest.len())],
            s.platforms
                .iter()
                .map(|p| p.platform.as_str())
                .collect::<Vec<_>>()
                .join(","),
            super::image_build::human(s.platforms.iter().map(|p| p.compressed_size).sum())
        );
    }
    Ok(())
}
