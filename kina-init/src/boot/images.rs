//! The images phase: the control-plane images the node image carries (an
//! OCI layout at /var/lib/kina/images, written by `kina image build`) go
//! into containerd's k8s.io namespace on first boot, so kubeadm finds them
//! without a registry. A copy of the imported index marks the work done:
//! later boots skip it, and a node image with other images imports again.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::containerd::SOCKET;
use kina_contract::status::PhaseId;

use super::{BootContext, Phase, PhaseFailure};
use crate::children;

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
        let mut child = children::spawn(
            Command::new("ctr")
                .args([
                    "--address",
                    SOCKET,
                    "--namespace",
                    "k8s.io",
                    "images",
                    "import",
                    "-",
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .map_err(|e| PhaseFailure {
            message: format!("cannot run ctr: {e}"),
            hint: "the node image needs containerd's ctr".into(),
        })?;
        let pid = child.id();
        // ctr reads an OCI archive; the layout is streamed to it as one.
        let streamed = child.stdin.take().map(|stdin| {
            let mut archive = tar::Builder::new(stdin);
            archive.mode(tar::HeaderMode::Deterministic);
            archive.follow_symlinks(false);
            archive
                .append_dir_all(".", &layout)
                .and_then(|()| archive.into_inner())
                .and_then(|mut s| s.flush())
        });
        let out = child.wait_with_output();
        children::release(pid);
        let out = out.map_err(|e| PhaseFailure {
            message: format!("waiting for ctr images import: {e}"),
            hint: "see the console log".into(),
        })?;
        if !out.status.success() {
            return Err(PhaseFailure {
                message: format!(
                    "ctr images import of {} failed ({}): {}",
                    layout.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                hint: "read /var/log/kina/containerd.log; the node image's preloaded images may be damaged: rebuild it".into(),
            });
        }
        if let Some(Err(e)) = streamed {
            return Err(PhaseFailure {
                message: format!("streaming {} to ctr: {e}", layout.display()),
                hint: "the node's disk may be damaged; rebuild the node".into(),
            });
        }
        std::fs::write(&marker, &index).map_err(|e| PhaseFailure {
            message: format!("writing {}: {e}", marker.display()),
            hint: "the node's /var must be writable".into(),
        })?;
        Ok(format!("imported {count} preloaded image(s)"))
    }
}
