//! `kina image inspect`: platforms, layers, sizes, labels and the SBOM summary.

use crate::dirs::KinaDirs;
use anyhow::Context;
use kina_builder::digest::Sha256Digest;
use kina_builder::oci_layout::LayoutEntry;
use kina_builder::store::ImageStore;
use serde::Serialize;

#[derive(Serialize)]
pub struct ImageSummary {
    pub reference: String,
    pub digest: String,
    pub platforms: Vec<PlatformSummary>,
}

#[derive(Serialize)]
pub struct PlatformSummary {
    pub platform: String,
    pub manifest: String,
    pub compressed_size: u64,
    pub created: String,
    pub labels: serde_json::Value,
    pub layers: Vec<LayerSummary>,
    /// Components listed in the platform's SBOM, counted by kind.
    pub components: std::collections::BTreeMap<String, usize>,
    /// The recipe's `leave_out` groups: name → what was left out and why.
    pub left_out: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
pub struct LayerSummary {
    pub name: String,
    pub digest: String,
    pub size: u64,
}

fn json(store: &ImageStore, digest: &str) -> anyhow::Result<serde_json::Value> {
    let digest: Sha256Digest = digest.parse()?;
    Ok(serde_json::from_slice(&store.blobs().read(&digest)?)?)
}

pub fn summarize(store: &ImageStore, entry: &LayoutEntry) -> anyhow::Result<ImageSummary> {
    let index = json(store, &entry.digest.oci())?;
    let mut platforms = Vec::new();
    for m in index["manifests"].as_array().into_iter().flatten() {
        let digest = m["digest"].as_str().unwrap_or_default();
        let manifest = json(store, digest)?;
        let config = json(
            store,
            manifest["config"]["digest"].as_str().unwrap_or_default(),
        )?;
        let layers: Vec<LayerSummary> = manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| LayerSummary {
                name: l["annotations"]["io.kina.layer"]
                    .as_str()
                    .unwrap_or("-")
                    .to_string(),
                digest: l["digest"].as_str().unwrap_or_default().to_string(),
                size: l["size"].as_u64().unwrap_or(0),
            })
            .collect();
        let components = layers
            .last()
            .map(|l| sbom_components(store, &l.digest))
            .transpose()?
            .unwrap_or_default();
        platforms.push(PlatformSummary {
            platform: format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap_or("?"),
                m["platform"]["architecture"].as_str().unwrap_or("?")
            ),
            manifest: digest.to_string(),
            compressed_size: layers.iter().map(|l| l.size).sum(),
            created: config["created"].as_str().unwrap_or_default().to_string(),
            left_out: left_out(&config["config"]["Labels"]),
            labels: config["config"]["Labels"].clone(),
            layers,
            components,
        });
    }
    Ok(ImageSummary {
        reference: entry.reference.clone(),
        digest: entry.digest.oci(),
        platforms,
    })
}

/// The labels kina writes for each `leave_out` group of the recipe
/// (`io.kina.left-out.<name>`), keyed by group name.
fn left_out(labels: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    labels
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix(kina_builder::assemble::LEFT_OUT_LABEL)?;
            Some((name.to_string(), v.as_str().unwrap_or_default().to_string()))
        })
        .collect()
}

/// Reads the SBOM kina puts in the top (kina-init) layer and counts its
/// packages by kind; an image without one (not built by kina) counts nothing.
fn sbom_components(
    store: &ImageStore,
    layer_digest: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, usize>> {
    use std::io::Read;
    let mut counts = std::collections::BTreeMap::new();
    let digest: Sha256Digest = layer_digest.parse()?;
    let file = std::fs::File::open(store.blobs().path(&digest))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.path()?.to_string_lossy() != kina_builder::assemble::SBOM_PATH {
            continue;
        }
        let mut text = String::new();
        entry.read_to_string(&mut text)?;
        let sbom: serde_json::Value = serde_json::from_str(&text)?;
        for p in sbom["packages"].as_array().into_iter().flatten() {
            let kind = p["comment"]
                .as_str()
                .and_then(|c| c.strip_prefix("kina component kind: "))
                .unwrap_or("other");
            *counts.entry(kind.to_string()).or_default() += 1;
        }
    }
    Ok(counts)
}

pub fn run(reference: &str, dirs: &KinaDirs, as_json: bool) -> anyhow::Result<()> {
    let store = ImageStore::open(dirs.images())?;
    let entry = store.find(reference)?;
    let summary = summarize(&store, &entry).with_context(|| format!("reading {reference}"))?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    println!("{}\n  index {}", summary.reference, summary.digest);
    for p in &summary.platforms {
        println!(
            "  {} manifest {} created {}",
            p.platform, p.manifest, p.created
        );
        if let Some(labels) = p.labels.as_object() {
            for (k, v) in labels {
                if !k.starts_with(kina_builder::assemble::LEFT_OUT_LABEL) {
                    println!("    label {k}={}", v.as_str().unwrap_or_default());
                }
            }
        }
        for (name, what) in &p.left_out {
            println!("    left out {name}: {what}");
        }
        for l in &p.layers {
            println!(
                "    layer {:<12} {:>10}  {}",
                l.name,
                super::image_build::human(l.size),
                l.digest
            );
        }
        println!(
            "    total {:>18}",
            super::image_build::human(p.compressed_size)
        );
        if !p.components.is_empty() {
            let parts: Vec<String> = p
                .components
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect();
            println!(
                "    sbom  {} in /{}",
                parts.join(", "),
                kina_builder::assemble::SBOM_PATH
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use kina_builder::assemble::left_out_labels;
    use kina_builder::assemble::path_filter::PathFilters;
    use kina_builder::assemble::stages::LeftOut;
    use kina_builder::lock::LayerName;
    use kina_builder::oci::image::{ImageConfigParams, write_index, write_platform_image};
    use kina_builder::oci::layer::{Compression, write_layer};
    use kina_builder::platform::Arch;
    use kina_builder::recipe::LoadedRecipe;
    use kina_builder::rootfs::tree::{Node, Tree};

    use super::*;

    #[test]
    fn inspect_lists_every_leave_out_group_of_the_base_recipe_with_what_it_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let recipe =
            LoadedRecipe::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes/base.toml"))
                .unwrap();
        let filters = PathFilters::new(&recipe.recipe.leave_out);
        let mut tally = BTreeMap::new();
        tally.insert(
            "containerd-old-shims".to_string(),
            LeftOut {
                paths: 2,
                bytes: 20_918_808,
            },
        );
        let mut tree = Tree::new();
        tree.insert("etc", Node::dir(0o755));
        let layer = write_layer(&tree, 0, Compression::Gzip, store.blobs()).unwrap();
        let params = ImageConfigParams {
            arch: Arch::Amd64,
            created_epoch: 0,
            entrypoint: vec!["/usr/local/bin/kina-init".into()],
            stop_signal: "SIGTERM".into(),
            env: Vec::new(),
            labels: left_out_labels(&filters, &tally).into_iter().collect(),
        };
        let manifest =
            write_platform_image(&params, &[(LayerName::KinaInit, layer)], store.blobs()).unwrap();
        let (digest, size) = write_index(&[manifest], store.blobs()).unwrap();
        store
            .tag(LayoutEntry {
                media_type: kina_builder::store::INDEX_MEDIA_TYPE.into(),
                digest,
                size,
                reference: "kina.local/node:t".into(),
            })
            .unwrap();

        let summary = summarize(&store, &store.find("kina.local/node:t").unwrap()).unwrap();
        let left_out = &summary.platforms[0].left_out;
        let names: Vec<&str> = left_out.keys().map(String::as_str).collect();
        let mut expected: Vec<&str> = recipe
            .recipe
            .leave_out
            .iter()
            .map(|g| g.name.as_str())
            .collect();
        expected.sort();
        assert_eq!(names, expected);
        let shims = &left_out["containerd-old-shims"];
        assert!(
            shims.starts_with(
                "2 paths, 20918808 bytes (/usr/bin/containerd-shim /usr/bin/containerd-shim-runc-v1): containerd's deprecated shims"
            ),
            "{shims}"
        );
        assert!(
            left_out["unused-cni-plugins"].contains("/usr/lib/cni/dhcp"),
            "{left_out:?}"
        );
    }
}
