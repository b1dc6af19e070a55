//! Applying OCI layers to a directory, as a container runtime does, but
//! refusing (not clamping) anything that would write outside it.
//!
//! Semantics follow the OCI image spec's layer changeset rules
//! (image-spec/layer.md): entries in stream order, an existing entry replaced
//! unless both are directories, `.wh.<name>` deleting `<name>` from lower
//! layers and `.wh..wh..opq` emptying its directory of lower-layer content.
//! Parent paths resolve through symlinks inside the root (usrmerge's
//! `lib -> usr/lib`), the way containerd's continuity/fs.RootPath does; a
//! link chain that climbs above the root is an error naming the entry.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

/// Why an entry could not be applied; the caller adds layer and entry names.
pub type EntryProblem = String;

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// An entry path as a list of normal components; absolute paths and `..`
/// are hostile (a layer never needs them).
pub fn entry_components(raw: &Path) -> Result<Vec<OsString>, EntryProblem> {
    let mut out = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err("refused: absolute path".into());
            }
            Component::ParentDir => return Err("refused: path contains `..`".into()),
        }
    }
    Ok(out)
}

/// Resolves `components` (a directory path inside `root`) to a real path
/// below `root`, following symlinks as the node would see them.
pub fn resolve_in_root(root: &Path, components: &[OsString]) -> Result<PathBuf, EntryProblem> {
    let mut resolved: Vec<OsString> = Vec::new();
    let mut pending: Vec<OsString> = components.iter().rev().cloned().collect();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            if resolved.pop().is_none() {
                return Err(
                    "refused: a symlink in its path points outside the root filesystem".into(),
                );
            }
            continue;
        }
        if part == "." || part.is_empty() {
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err("too many levels of symlinks in its path".into());
                }
                let target = std::fs::read_link(&candidate).map_err(|e| e.to_string())?;
                if target.is_absolute() {
                    resolved.clear();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => pending.push(n.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => resolved.push(part),
        }
    }
    let mut path = root.to_path_buf();
    path.extend(&resolved);
    Ok(path)
}

/// Removes whatever is at `path` (not following a symlink there).
fn remove_existing(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Applies one layer's tar stream to `root`. Errors are `(entry, problem)`.
pub fn apply_layer(root: &Path, tar_stream: impl Read) -> Result<(), (String, EntryProblem)> {
    let mut archive = tar::Archive::new(tar_stream);
    let mut created: HashSet<PathBuf> = HashSet::new();
    let entries = archive
        .entries()
        .map_err(|e| ("(tar stream)".to_string(), e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ("(tar stream)".to_string(), e.to_string()))?;
        let raw = entry
            .path()
            .map_err(|e| ("(tar stream)".to_string(), e.to_string()))?
            .into_owned();
        let name = raw.display().to_string();
        apply_entry(root, &mut entry, &raw, &mut created).map_err(|p| (name, p))?;
    }
    Ok(())
}

fn apply_entry(
    root: &Path,
    entry: &mut tar::Entry<'_, impl Read>,
    raw: &Path,
    created: &mut HashSet<PathBuf>,
) -> Result<(), EntryProblem> {
    let components = entry_components(raw)?;
    let header = entry.header();
    let kind = header.entry_type();
    let mode = header.mode().map_err(|e| e.to_string())? & 0o7777;
    let uid = header.uid().map_err(|e| e.to_string())?;
    let gid = header.gid().map_err(|e| e.to_string())?;
    let mtime = header.mtime().unwrap_or(0);
    let Some((file_name, parents)) = components.split_last() else {
        // `./` itself: the root directory's metadata.
        if kind.is_dir() {
            set_owner_mode(root, uid, gid, mode)?;
        }
        return Ok(());
    };
    let parent = resolve_in_root(root, parents)?;
    let file_str = file_name.to_string_lossy();

    if file_str == OPAQUE {
        let entries = match std::fs::read_dir(&parent) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        for child in entries {
            let child = child.map_err(|e| e.to_string())?.path();
            if !created.contains(&child) {
                remove_existing(&child).map_err(|e| e.to_string())?;
            }
        }
        return Ok(());
    }
    if let Some(hidden) = file_str.strip_prefix(WHITEOUT) {
        if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
            return Err(format!("refused: whiteout of `{hidden}`"));
        }
        return remove_existing(&parent.join(hidden)).map_err(|e| e.to_string());
    }

    std::fs::create_dir_all(&parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    let dest = parent.join(file_name);
    match kind {
        EntryType::Directory => {
            let is_dir = std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir());
            if !is_dir {
                remove_existing(&dest).map_err(|e| e.to_string())?;
                std::fs::create_dir(&dest).map_err(|e| e.to_string())?;
            }
            set_owner_mode(&dest, uid, gid, mode)?;
        }
        EntryType::Regular | EntryType::Continuous => {
            remove_existing(&dest).map_err(|e| e.to_string())?;
            let mut file = std::fs::File::create_new(&dest).map_err(|e| e.to_string())?;
            std::io::copy(entry, &mut file).map_err(|e| e.to_string())?;
            drop(file);
            set_owner_mode(&dest, uid, gid, mode)?;
        }
        EntryType::Symlink => {
            let target = entry
                .link_name()
                .map_err(|e| e.to_string())?
                .ok_or("symlink without a target")?;
            remove_existing(&dest).map_err(|e| e.to_string())?;
            std::os::unix::fs::symlink(&target, &dest).map_err(|e| e.to_string())?;
            std::os::unix::fs::lchown(&dest, Some(uid_u32(uid)?), Some(uid_u32(gid)?))
                .map_err(|e| e.to_string())?;
        }
        EntryType::Link => {
            let target = entry
                .link_name()
                .map_err(|e| e.to_string())?
                .ok_or("hard link without a target")?;
            let target_components =
                entry_components(&target).map_err(|p| format!("hard link target: {p}"))?;
            let Some((target_name, target_parents)) = target_components.split_last() else {
                return Err("hard link to the root directory".into());
            };
            let source = resolve_in_root(root, target_parents)?.join(target_name);
            if std::fs::symlink_metadata(&source).is_ok_and(|m| m.is_dir()) {
                return Err("hard link to a directory".into());
            }
            if source != dest {
                remove_existing(&dest).map_err(|e| e.to_string())?;
                std::fs::hard_link(&source, &dest)
                    .map_err(|e| format!("linking to {}: {e}", target.display()))?;
            }
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            use nix::sys::stat::{Mode, SFlag, makedev, mknod};
            let flag = match kind {
                EntryType::Char => SFlag::S_IFCHR,
                EntryType::Block => SFlag::S_IFBLK,
                _ => SFlag::S_IFIFO,
            };
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            remove_existing(&dest).map_err(|e| e.to_string())?;
            mknod(
                &dest,
                flag,
                Mode::from_bits_truncate(mode),
                makedev(major.into(), minor.into()),
            )
            .map_err(|e| format!("mknod: {e}"))?;
            set_owner_mode(&dest, uid, gid, mode)?;
        }
        // PAX and GNU long-name records are consumed by the tar crate; other
        // types (sparse, volume labels) never appear in image layers.
        other => return Err(format!("unsupported tar entry type {other:?}")),
    }
    if let Some(xattrs) = entry.pax_extensions().map_err(|e| e.to_string())? {
        for ext in xattrs {
            let ext = ext.map_err(|e| e.to_string())?;
            if let Some(key) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                xattr::set(&dest, key, ext.value_bytes())
                    .map_err(|e| format!("setting xattr {key}: {e}"))?;
            }
        }
    }
    if !kind.is_symlink() && !kind.is_hard_link() {
        set_mtime(&dest, mtime);
    }
    created.insert(dest);
    Ok(())
}

fn uid_u32(id: u64) -> Result<u32, EntryProblem> {
    u32::try_from(id).map_err(|_| format!("owner id {id} does not fit 32 bits"))
}

/// chown before chmod: chown clears setuid/setgid bits, so the reverse order
/// would lose them (chown(2)).
fn set_owner_mode(path: &Path, uid: u64, gid: u64, mode: u32) -> Result<(), EntryProblem> {
    std::os::unix::fs::lchown(path, Some(uid_u32(uid)?), Some(uid_u32(gid)?))
        .map_err(|e| format!("chown: {e}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod: {e}"))
}

/// Best effort: mke2fs copies mtimes, but a wrong one breaks nothing.
fn set_mtime(path: &Path, mtime: u64) {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    let secs = i64::try_from(mtime).unwrap_or(0);
    let ts = TimeSpec::new(secs, 0);
    let _ = utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &ts,
        &ts,
        UtimensatFlags::NoFollowSymlink,
    );
}
