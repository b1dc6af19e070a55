//! `kina kernel list`: the kernels this machine has, pulled (or pushed)
//! ones from the local kernel store and built ones from the build cache.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::dirs::KinaDirs;
use crate::kernel_store::{self, KernelStore};

#[derive(Serialize)]
struct Pulled {
    reference: String,
    digest: String,
    arches: Vec<String>,
    releases: Vec<String>,
    profiles: Vec<String>,
    recipes: Vec<String>,
}

#[derive(Serialize)]
struct Built {
    recipe: String,
    arch: String,
    release: String,
    profiles: Vec<String>,
    dir: String,
}

#[derive(Serialize)]
struct Listing {
    pulled: Vec<Pulled>,
    built: Vec<Built>,
}

/// The distinct values of `f` over `items`, in order.
fn distinct<T>(items: &[T], f: impl Fn(&T) -> Vec<String>) -> Vec<String> {
    items
        .iter()
        .flat_map(f)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

pub fn run(dirs: &KinaDirs, json: bool) -> anyhow::Result<()> {
    let store = KernelStore::open(dirs)?;
    let pulled: Vec<Pulled> = store
        .list()?
        .into_iter()
        .map(|k| Pulled {
            digest: k.digest.oci(),
            arches: k.platforms.iter().map(|p| p.arch.to_string()).collect(),
            releases: distinct(&k.platforms, |p| vec![p.meta.release.clone()]),
            profiles: distinct(&k.platforms, |p| p.meta.profiles.clone()),
            recipes: distinct(&k.platforms, |p| vec![p.meta.recipe.clone()]),
            reference: k.reference,
        })
        .collect();
    let mut built = Vec::new();
    for (dir, opened) in kernel_store::built_kernels(dirs)? {
        match opened {
            Ok(k) => built.push(Built {
                recipe: k.meta.recipe,
                arch: k.meta.arch.to_string(),
                release: k.meta.release,
                profiles: k.meta.profiles,
                dir: dir.display().to_string(),
            }),
            Err(e) => tracing::warn!("skipping {}: {e}", dir.display()),
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&Listing { pulled, built })?
        );
        return Ok(());
    }
    println!(
        "{:<40} {:<21} {:<13} {:<12} PROFILES",
        "REFERENCE", "DIGEST", "ARCHES", "RELEASE"
    );
    for k in &pulled {
        println!(
            "{:<40} {:<21} {:<13} {:<12} {}",
            k.reference,
            &k.digest[..21.min(k.digest.len())],
            k.arches.join(","),
            k.releases.join(","),
            k.profiles.join(",")
        );
    }
    if !built.is_empty() {
        println!();
        println!(
            "{:<20} {:<6} {:<12} {:<20} DIRECTORY",
            "RECIPE", "ARCH", "RELEASE", "PROFILES"
        );
        for b in &built {
            println!(
                "{:<20} {:<6} {:<12} {:<20} {}",
                b.recipe,
                b.arch,
                b.release,
                b.profiles.join(","),
                b.dir
            );
        }
    }
    Ok(())
}
