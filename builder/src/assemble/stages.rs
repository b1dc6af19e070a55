//! The root filesystem of one platform, built stage by stage; each stage's
//! difference from the previous one becomes one image layer.
//!
//! Stages only add or replace paths, so layers need no whiteouts, and the
//! lower stages do not depend on anything above them: a new Kubernetes patch
//! release reuses the `debian-base` and `runtime` layers byte for byte.

use crate::deb::reader::read_deb;
use crate::lock::{LayerName, LockedArtifact, LockedPackage};
use crate::platform::Arch;
use crate::rootfs::dpkg_db::{InstalledPackage, write_dpkg_database};
use crate::rootfs::path::setup_merged_usr;
use crate::rootfs::tree::{Node, Tree};
use crate::rootfs::unpack::Unpacker;
use crate::rootfs::{accounts, alternatives, ca_bundle};

use super::artifact::{ensure_parents, install_artifact};

/// Everything one platform's root filesystem is made from, already verified.
pub struct PlatformInputs {
    pub arch: Arch,
    pub debs: Vec<(LockedPackage, Vec<u8>)>,
    pub artifacts: Vec<(LockedArtifact, Vec<u8>)>,
    /// The preloaded-images OCI layout, already laid out as a tree.
    pub images: Tree,
    pub kina_init: Vec<u8>,
    /// Files kina writes itself into the top layer (SBOM, build info).
    pub extra_files: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{layer} layer ({arch}): package {package}: {message}")]
    Package {
        layer: &'static str,
        arch: Arch,
        package: String,
        message: String,
    },
    #[error("{layer} layer ({arch}): {message}")]
    Effects {
        layer: &'static str,
        arch: Arch,
        message: String,
    },
    #[error("{layer} layer ({arch}): {source}")]
    Artifact {
        layer: &'static str,
        arch: Arch,
        source: super::artifact::ArtifactError,
    },
    #[error("{layer} layer ({arch}) removed {path} from a lower layer; this is a kina bug")]
    Removed {
        layer: &'static str,
        arch: Arch,
        path: String,
    },
}

/// Where kina-init lives in every node image; the image entrypoint.
pub const KINA_INIT_PATH: &str = "usr/local/bin/kina-init";

/// Builds every stage and returns the non-empty layers, bottom to top.
pub fn build_layers(
    inputs: &PlatformInputs,
    epoch: u64,
) -> Result<Vec<(LayerName, Tree)>, StageError> {
    let arch = inputs.arch;
    let mut rootfs = Tree::new();
    setup_merged_usr(&mut rootfs, arch, epoch);
    let mut unpacker = Unpacker::new(arch);
    let mut installed: Vec<InstalledPackage> = Vec::new();
    let mut layers = Vec::new();

    for layer in LayerName::ALL {
        let lower = rootfs.clone();
        let name = layer.as_str();
        let package_err = |package: &str, message: String| StageError::Package {
            layer: name,
            arch,
            package: package.to_string(),
            message,
        };
        let effects_err = |message: String| StageError::Effects {
            layer: name,
            arch,
            message,
        };

        let mut unpacked_any = false;
        for (locked, bytes) in inputs.debs.iter().filter(|(p, _)| p.layer == layer) {
            let origin = format!(
                "{} {} ({})",
                locked.name, locked.version, locked.architecture
            );
            let deb =
                read_deb(bytes, &origin).map_err(|e| package_err(&locked.name, e.to_string()))?;
            let files = unpacker
                .unpack(&mut rootfs, &deb, &origin)
                .map_err(|e| package_err(&locked.name, e.to_string()))?;
            installed.push(InstalledPackage::new(&deb, files));
            unpacked_any = true;
        }
        if unpacked_any {
            // The effects are recomputed over every package installed so far,
            // as dpkg's databases describe the whole system.
            if layer == LayerName::DebianBase {
                // Without base-passwd (a minimal test repository) there are
                // no account masters to copy; dpkg would leave none either.
                if rootfs.contains(accounts::PASSWD_MASTER) {
                    accounts::write_accounts(&mut rootfs, epoch)
                        .map_err(|e| effects_err(e.to_string()))?;
                }
                rootfs.insert(
                    "etc/machine-id",
                    Node::file(Vec::new(), 0o444).with_mtime(epoch),
                );
            }
            alternatives::apply_alternatives(&mut rootfs, &installed, epoch)
                .map_err(|e| effects_err(e.to_string()))?;
            ca_bundle::write_ca_bundle(&mut rootfs, epoch);
            write_dpkg_database(&mut rootfs, &installed, arch, epoch)
                .map_err(|e| effects_err(e.to_string()))?;
        }

        for (artifact, bytes) in inputs.artifacts.iter().filter(|(a, _)| a.layer == layer) {
            install_artifact(&mut rootfs, artifact, bytes, epoch).map_err(|source| {
                StageError::Artifact {
                    layer: name,
                    arch,
                    source,
                }
            })?;
        }

        match layer {
            LayerName::Images => {
                for (path, node) in inputs.images.iter() {
                    ensure_parents(&mut rootfs, path, epoch);
                    rootfs.insert(path, node.clone());
                }
            }
            LayerName::KinaInit => {
                ensure_parents(&mut rootfs, KINA_INIT_PATH, epoch);
                rootfs.insert(
                    KINA_INIT_PATH,
                    Node::file(inputs.kina_init.clone(), 0o755).with_mtime(epoch),
                );
                for (path, contents) in &inputs.extra_files {
                    ensure_parents(&mut rootfs, path, epoch);
                    rootfs.insert(
                        path.clone(),
                        Node::file(contents.clone(), 0o644).with_mtime(epoch),
                    );
                }
            }
            _ => {}
        }

        if let Some(path) = rootfs.removed_since(&lower).next() {
            return Err(StageError::Removed {
                layer: name,
                arch,
                path: path.to_string(),
            });
        }
        let diff = rootfs.diff(&lower);
        if !diff.is_empty() {
            layers.push((layer, diff));
        }
    }
    Ok(layers)
}
