//! `kina load image-archive` and `kina load image`: images into the
//! nodes' containerd, streamed through the provider's exec into
//! `kina-init images import -`, which imports and unpacks them as
//! `ctr images import` does (nodes carry no `ctr`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use kina_builder::store::ImageStore;

use super::open;
use crate::cluster::ClusterPlan;
use crate::dirs::KinaDirs;
use crate::provider::Provider;
use crate::scratch::ScratchFile;

/// The nodes `--nodes` names (all when empty), refusing names not in the
/// cluster.
fn chosen_nodes<'a>(plan: &'a ClusterPlan, only: &[String]) -> anyhow::Result<Vec<&'a str>> {
    for wanted in only {
        if !plan.nodes.iter().any(|n| &n.name == wanted) {
            bail!(
                "--nodes {wanted}: not a node of cluster {} (its nodes: {})",
                plan.name,
                plan.nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(plan
        .nodes
        .iter()
        .filter(|n| only.is_empty() || only.contains(&n.name))
        .map(|n| n.name.as_str())
        .collect())
}

/// Checks that `path` is an OCI image archive (an OCI layout in a tar, as
/// `kina load image` exports one, `skopeo copy oci-archive:` and `docker save` since
/// Docker 25 write it) before any node sees it.
fn check_archive(path: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("opening image archive {}", path.display()))?;
    let mut archive = tar::Archive::new(file);
    let entries = archive
        .entries()
        .with_context(|| format!("{} is not a tar archive", path.display()))?;
    let mut docker_only = false;
    for entry in entries {
        let entry =
            entry.with_context(|| format!("{} is not a readable tar archive", path.display()))?;
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().trim_start_matches("./").to_string());
        match name.as_deref() {
            Ok("index.json") => return Ok(()),
            Ok("manifest.json") => docker_only = true,
            _ => {}
        }
    }
    if docker_only {
        bail!(
            "{} is a `docker save` archive from before Docker 25 (manifest.json without index.json): \
             save the image with Docker 25 or later, or convert it with \
             `skopeo copy docker-archive:{} oci-archive:NEW.tar`",
            path.display(),
            path.display()
        )
    }
    bail!(
        "{} is not an image archive: it has no index.json (an OCI layout in a tar)",
        path.display()
    )
}

pub fn archives(
    dirs: &KinaDirs,
    name: &str,
    archives: &[PathBuf],
    only: &[String],
) -> anyhow::Result<()> {
    let (provider, plan) = open(dirs, name)?;
    let chosen = chosen_nodes(&plan, only)?;
    for archive in archives {
        check_archive(archive)?;
    }
    for archive in archives {
        for node_name in &chosen {
            let mut file = std::fs::File::open(archive)
                .with_context(|| format!("opening image archive {}", archive.display()))?;
            let out = provider
                .exec(
                    node_name,
                    &["kina-init", "images", "import", "-"],
                    &mut file,
                    Duration::from_secs(600),
                )
                .with_context(|| format!("loading {} into {node_name}", archive.display()))?;
            for line in String::from_utf8_lossy(&out).lines() {
                eprintln!("{node_name}: {line}");
            }
        }
    }
    Ok(())
}

pub fn images(
    dirs: &KinaDirs,
    name: &str,
    references: &[String],
    only: &[String],
) -> anyhow::Result<()> {
    // The cluster and its nodes first: a wrong name costs no export.
    let (_, plan) = open(dirs, name)?;
    chosen_nodes(&plan, only)?;
    let store = ImageStore::open(dirs.images()).context("opening the image store")?;
    let mut exported = Vec::new();
    for (i, reference) in references.iter().enumerate() {
        let archive = ScratchFile::in_dir(&dirs.scratch(), "load", i)?;
        store
            .export(reference, archive.path(), 0)
            .with_context(|| format!("exporting {reference} from the image store"))?;
        exported.push(archive);
    }
    let paths: Vec<PathBuf> = exported.iter().map(|a| a.path().to_path_buf()).collect();
    archives(dirs, name, &paths, only)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive_with(dir: &Path, name: &str, members: &[&str]) -> PathBuf {
        let path = dir.join(name);
        let mut builder = tar::Builder::new(std::fs::File::create(&path).unwrap());
        for member in members {
            let mut header = tar::Header::new_gnu();
            header.set_size(2);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, member, &b"{}"[..])
                .unwrap();
        }
        builder.finish().unwrap();
        path
    }

    #[test]
    fn only_oci_archives_reach_the_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let oci = archive_with(dir.path(), "oci.tar", &["oci-layout", "./index.json"]);
        check_archive(&oci).unwrap();
        // Docker 25 and later write both files: that is an OCI archive.
        let docker25 = archive_with(dir.path(), "d25.tar", &["manifest.json", "index.json"]);
        check_archive(&docker25).unwrap();

        let old = archive_with(dir.path(), "old.tar", &["manifest.json", "abc/layer.tar"]);
        let err = format!("{:#}", check_archive(&old).unwrap_err());
        assert!(
            err.contains("old.tar")
                && err.contains("before Docker 25")
                && err.contains("skopeo copy docker-archive:"),
            "{err}"
        );
        let neither = archive_with(dir.path(), "neither.tar", &["hello.txt"]);
        let err = format!("{:#}", check_archive(&neither).unwrap_err());
        assert!(
            err.contains("neither.tar") && err.contains("no index.json"),
            "{err}"
        );
        let text = dir.path().join("text.tar");
        std::fs::write(&text, b"plain text, not a tar").unwrap();
        assert!(check_archive(&text).is_err());
    }
}
