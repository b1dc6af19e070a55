//! Reading a file back from a built node disk with e2fsprogs' debugfs: no
//! mount and no privileges beyond reading the image, so the node's
//! initramfs can take kina-init from the very disk the node boots.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A file of the node's disk, read with e2fsprogs' debugfs (no mount, no
/// privileges needed beyond reading the image).
pub(crate) fn read_from_disk(
    disk: &Path,
    path: &str,
    scratch: &Path,
) -> Result<Vec<u8>, DiskReadError> {
    let out_path = scratch.join(".extract.tmp");
    let out = Command::new("debugfs")
        .args(["-R", &format!("dump {path} {}", out_path.display())])
        .arg(disk)
        .output()
        .map_err(DiskReadError::Debugfs)?;
    let bytes = std::fs::read(&out_path).map_err(|source| DiskReadError::Missing {
        path: path.to_string(),
        disk: disk.to_path_buf(),
        source,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })?;
    let _ = std::fs::remove_file(&out_path);
    if bytes.is_empty() {
        return Err(DiskReadError::Empty {
            path: path.to_string(),
            disk: disk.to_path_buf(),
        });
    }
    Ok(bytes)
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DiskReadError {
    #[error("cannot run debugfs (install e2fsprogs): {0}")]
    Debugfs(#[source] std::io::Error),
    #[error("{path} is not on the node disk {disk} ({source}): {stderr}")]
    Missing {
        path: String,
        disk: PathBuf,
        source: std::io::Error,
        stderr: String,
    },
    #[error("{path} on {disk} is empty")]
    Empty { path: String, disk: PathBuf },
}
