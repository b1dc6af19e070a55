//! `kina image rm`: remove images and the blobs only they used.

use crate::dirs::KinaDirs;
use kina_builder::store::ImageStore;

pub fn run(references: &[String], all: bool, dirs: &KinaDirs) -> anyhow::Result<()> {
    let store = ImageStore::open(dirs.images())?;
    let targets: Vec<String> = if all {
        store.list()?.into_iter().map(|e| e.reference).collect()
    } else {
        references.to_vec()
    };
    for reference in targets {
        let freed = store.remove(&reference)?;
        println!(
            "removed {reference} ({} freed)",
            super::image_build::human(freed)
        );
    }
    Ok(())
}
