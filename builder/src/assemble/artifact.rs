//! Installing pinned upstream artifacts (release binaries and archives) into
//! the in-memory root filesystem.
//!
//! Archives come from outside Debian's trust chain but are digest-pinned; their
//! entries still pass the same path checks as a `.deb`, because a pinned
//! archive can be hostile too.

use std::io::Read;

use crate::lock::LockedArtifact;
use crate::recipe::Install;
use crate::rootfs::path::canonicalize_in_tree;
use crate::rootfs::tree::{Node, NodeKind, Tree};

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact {name} {version} ({url}): {problem}")]
    Invalid {
        name: String,
        version: String,
        url: String,
        problem: String,
    },
}

/// Adds `artifact` (whose verified bytes are `data`) to `tree`, owned by root,
/// with every timestamp set to `mtime`.
pub fn install_artifact(
    tree: &mut Tree,
    artifact: &LockedArtifact,
    data: &[u8],
    mtime: u64,
) -> Result<Vec<String>, ArtifactError> {
    let fail = |problem: String| ArtifactError::Invalid {
        name: artifact.name.clone(),
        version: artifact.version.clone(),
        url: artifact.url.clone(),
        problem,
    };
    match &artifact.install {
        Install::File { path, mode } => {
            let path = canonicalize_in_tree(tree, path).map_err(|e| fail(e.to_string()))?;
            ensure_parents(tree, &path, mtime);
            tree.insert(
                path.clone(),
                Node::file(data.to_vec(), *mode).with_mtime(mtime),
            );
            Ok(vec![path])
        }
        Install::TarGz {
            dest,
            strip_components,
            files,
        } => {
            let gz = flate2::read::GzDecoder::new(data);
            let mut archive = tar::Archive::new(gz);
            let mut installed = Vec::new();
            let entries = archive
                .entries()
                .map_err(|e| fail(format!("not a tar.gz archive: {e}")))?;
            for entry in entries {
                let mut entry = entry.map_err(|e| fail(format!("corrupt archive: {e}")))?;
                let raw = entry.path_bytes().into_owned();
                let raw = String::from_utf8(raw)
                    .map_err(|_| fail("an entry name is not UTF-8".into()))?;
                let stripped: Vec<&str> = raw
                    .split('/')
                    .filter(|c| !c.is_empty() && *c != ".")
                    .skip(*strip_components as usize)
                    .collect();
                if stripped.is_empty() {
                    continue;
                }
                let relative = stripped.join("/");
                if !files.is_empty() && !files.iter().any(|f| f.trim_matches('/') == relative) {
                    continue;
                }
                let kind = entry.header().entry_type();
                let mode = entry
                    .header()
                    .mode()
                    .map_err(|e| fail(format!("entry {raw}: {e}")))?
                    & 0o7777;
                let target = format!("{}/{relative}", dest.trim_matches('/'));
                let path = canonicalize_in_tree(tree, &target)
                    .map_err(|e| fail(format!("entry {raw}: {e}")))?;
                let node = if kind.is_dir() {
                    Node::dir(mode)
                } else if kind.is_file() {
                    let mut contents = Vec::new();
                    entry
                        .read_to_end(&mut contents)
                        .map_err(|e| fail(format!("entry {raw}: {e}")))?;
                    Node::file(contents, mode)
                } else if kind.is_symlink() {
                    let link = entry
                        .link_name()
                        .map_err(|e| fail(format!("entry {raw}: {e}")))?
                        .ok_or_else(|| fail(format!("symlink {raw} has no target")))?;
                    Node::symlink(link.to_string_lossy().into_owned())
                } else {
                    return Err(fail(format!(
                        "entry {raw} is a {kind:?}; only files, directories and symlinks are installed"
                    )));
                };
                ensure_parents(tree, &path, mtime);
                if matches!(node.kind, NodeKind::Dir) && tree.contains(&path) {
                    continue;
                }
                tree.insert(path.clone(), node.with_mtime(mtime));
                installed.push(path);
            }
            if installed.is_empty() {
                return Err(fail(format!(
                    "nothing was installed: the archive has none of {files:?} under {strip_components} stripped components"
                )));
            }
            if let Some(missing) = files.iter().find(|f| {
                let want = format!("{}/{}", dest.trim_matches('/'), f.trim_matches('/'));
                !installed.contains(&want)
            }) {
                return Err(fail(format!("the archive has no `{missing}`")));
            }
            Ok(installed)
        }
    }
}

/// Creates missing parent directories (0755 root) so every layer entry has a
/// parent, as tar unpackers and `umoci` expect.
pub fn ensure_parents(tree: &mut Tree, path: &str, mtime: u64) {
    let mut prefix = String::new();
    let components: Vec<&str> = path.split('/').collect();
    for component in &components[..components.len().saturating_sub(1)] {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(component);
        if !tree.contains(&prefix) {
            tree.insert(prefix.clone(), Node::dir(0o755).with_mtime(mtime));
        }
    }
}
