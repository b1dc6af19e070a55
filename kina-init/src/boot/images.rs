//! The images phase: the control-plane images the node image carries (an
//! OCI layout at /var/lib/kina/images, written by `kina image build`) go
//! into containerd's k8s.io namespace on first boot through containerd's API
//! (`image_import`), unpacked for the CRI, so kubeadm finds them
//! without a registry. A copy of the imported index marks the work done:
//! later boots skip it, and a node image with other images imports again.

use std::path::{Path, PathBuf};

use kina_contract::containerd_config::{CONFIG_PATH, cri_snapshotter};
use kina_contract::status::PhaseId;

use super::{BootContext, Phase, PhaseFailure};
use crate::containerd_socket::SOCKET;
use crate::image_import::{Imported, Importer};

pub struct ImagesPhase {
    pub root: PathBuf,
}

const LAYOUT: &str = "var/lib/kina/images";
const MARKER: &str = "var/lib/kina/images.imported";

impl Phase for ImagesPhase {
    fn id(&self) -> PhaseId {
        PhaseId::Images
    }

    fn run(&mut self, _ctx: &mut BootContext) -> Result<String, PhaseFailure> {
        let layout = self.root.join(LAYOUT);
        let index_path = layout.join("index.json");
        let index = match std::fs::read(&index_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok("the node image preloads no images".into());
            }
            Err(e) => {
                return Err(PhaseFailure {
                    message: format!("reading {}: {e}", index_path.display()),
                    hint: "rebuild the node image (`kina image build`)".into(),
                });
            }
        };
        let count = serde_json::from_slice::<serde_json::Value>(&index)
            .ok()
            .and_then(|v| v.get("manifests").and_then(|m| m.as_array()).map(Vec::len))
            .ok_or_else(|| PhaseFailure {
                message: format!("{} is not an OCI image index", index_path.display()),
                hint: "rebuild the node image (`kina image build`)".into(),
            })?;
        let marker = self.root.join(MARKER);
        if std::fs::read(&marker).is_ok_and(|m| m == index) {
            return Ok(format!("{count} preloaded image(s) already imported"));
        }
        let imported = import_layout(&self.root, &layout).map_err(|e| PhaseFailure {
            message: format!("importing {}: {e}", layout.display()),
            hint: "read /var/log/kina/containerd.log; the node image's preloaded images may be damaged: rebuild it".into(),
        })?;
        std::fs::write(&marker, &index).map_err(|e| PhaseFailure {
            message: format!("writing {}: {e}", marker.display()),
            hint: "the node's /var must be writable".into(),
        })?;
        let applied: usize = imported.iter().map(|i| i.layers_applied).sum();
        Ok(format!(
            "imported {count} preloaded image(s) ({applied} layer(s) unpacked)"
        ))
    }
}

/// The layout into the k8s.io namespace, unpacked into the snapshotter the
/// CRI was configured with (the containerd phase wrote that file).
fn import_layout(root: &Path, layout: &Path) -> Result<Vec<Imported>, String> {
    let config_path = root.join(CONFIG_PATH.trim_start_matches('/'));
    let config = std::fs::read_to_string(&config_path)
        .map_err(|e| format!("reading {}: {e}", config_path.display()))?;
    let snapshotter = cri_snapshotter(&config)?;
    let socket = root.join(SOCKET.trim_start_matches('/'));
    let mut importer =
        Importer::connect(&socket, "k8s.io", &snapshotter).map_err(|e| e.to_string())?;
    let imported = importer.import_layout(layout).map_err(|e| e.to_string())?;
    importer.finish().map_err(|e| e.to_string())?;
    Ok(imported)
}
