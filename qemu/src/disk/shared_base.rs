//! Root disks made once per image and cloned per node. Every node of an
//! image, kernel and disk size starts from the same filesystem, so it is
//! made once (`mke2fs -d` of the layers, the kernel's modules and the
//! image-wide files: seconds) and kept in the data directory's `disks/`;
//! a node's disk is a clone of it, reflinked where the host filesystem
//! shares extents (btrfs, XFS: nothing is copied until written) and
//! otherwise copied sparsely, and the node's own files (its spec) are then
//! written into the clone with e2fsprogs' `debugfs`, as mke2fs would have
//! put them there, and read back to check. Node disks stay plain ext4
//! images that e2fsck, debugfs and QEMU's raw driver read as before, and no
//! node depends on a kept base: pruning one never breaks a node.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kina_builder::digest::Sha256Digest;
use kina_builder::platform::Arch;
use nix::fcntl::copy_file_range;
use nix::unistd::{Whence, lseek};
use sha2::{Digest as _, Sha256};

use super::{DiskError, DiskExtras, DiskInfo, build_stored_root_disk, io_err};
use crate::disk::extract::{DiskReadError, read_from_disk};

/// How many bases are kept besides the one in use (the least recently
/// used go first): enough for a few images and kernels side by side.
const KEEP_BASES: usize = 4;

/// A node's root disk at `out`: the shared base for `extras` (made under
/// `bases` when missing) cloned, then `node_files` written into the clone.
pub fn node_root_disk(
    layout: &Path,
    reference: &str,
    arch: Arch,
    extras: &DiskExtras,
    node_files: &[(PathBuf, Vec<u8>, u32)],
    bases: &Path,
    out: &Path,
) -> Result<DiskInfo, DiskError> {
    let (manifest_digest, layers) = super::platform_layers(layout, reference, arch)?;
    std::fs::create_dir_all(bases).map_err(io_err(bases))?;
    let key = base_key(&manifest_digest, extras);
    let base = bases.join(format!("{key}.img"));
    let lock_path = bases.join(format!("{key}.lock"));
    // One builder per base; the nodes of a cluster made side by side wait
    // here for the first, then clone what it made.
    let lock = kina_builder::fsutil::lock_file(&lock_path).map_err(io_err(&lock_path))?;
    let info = if base.is_file() {
        DiskInfo {
            path: base.clone(),
            size_bytes: extras.size_bytes,
            manifest_digest,
            layers: layers.len(),
        }
    } else {
        build_stored_root_disk(layout, reference, arch, extras, &base)?
    };
    // Its mtime orders the bases for pruning: the least recently used go.
    File::options()
        .write(true)
        .open(&base)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()))
        .map_err(io_err(&base))?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let staging = tempfile::Builder::new()
        .prefix(".kina-disk-clone-")
        .tempdir_in(&dir)
        .map_err(io_err(&dir))?;
    let clone = staging.path().join("disk.img");
    clone_file(&base, &clone)?;
    drop(lock);
    write_node_files(&clone, node_files, staging.path())?;
    std::fs::rename(&clone, out).map_err(io_err(out))?;
    prune_bases(bases, &base);
    Ok(DiskInfo {
        path: out.to_path_buf(),
        ..info
    })
}

/// What a base depends on: the image's platform manifest (which pins its
/// layers), the kernel's modules, the image-wide files and the size.
fn base_key(manifest: &Sha256Digest, extras: &DiskExtras) -> String {
    let mut hash = Sha256::new();
    hash.update(b"kina node base disk 1\n");
    hash.update(manifest.hex().as_bytes());
    hash.update(extras.size_bytes.to_le_bytes());
    if let Some((release, modules)) = &extras.kernel_modules {
        hash.update(b"\nmodules ");
        hash.update(release.as_bytes());
        hash.update(b" ");
        hash.update(modules.as_os_str().as_encoded_bytes());
    }
    for (path, contents, mode) in &extras.files {
        hash.update(b"\nfile ");
        hash.update(path.as_os_str().as_encoded_bytes());
        hash.update(mode.to_le_bytes());
        hash.update(Sha256::digest(contents));
    }
    hex::encode(hash.finalize())
}

/// `from` to the new file `to`: a reflink where the filesystem makes one,
/// else a copy of the data extents only. (`std::fs::copy` would fill the
/// holes: an 8 GiB disk holding 400 MB would become 8 GiB on the host.)
fn clone_file(from: &Path, to: &Path) -> Result<(), DiskError> {
    if reflink_copy::reflink(from, to).is_ok() {
        return Ok(());
    }
    let _ = std::fs::remove_file(to);
    sparse_copy(from, to).map_err(|source| DiskError::Io {
        path: to.to_path_buf(),
        source,
    })
}

/// Copies the data extents of `from` (found with SEEK_DATA/SEEK_HOLE) with
/// copy_file_range, leaving its holes as holes in `to`.
fn sparse_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    let source = File::open(from)?;
    let length = source.metadata()?.len();
    let target = File::create_new(to)?;
    target.set_len(length)?;
    let length = i64::try_from(length).map_err(std::io::Error::other)?;
    let mut offset: i64 = 0;
    while offset < length {
        let data = match lseek(&source, offset, Whence::SeekData) {
            Ok(data) => data,
            Err(nix::errno::Errno::ENXIO) => break, // only a hole is left
            Err(e) => return Err(e.into()),
        };
        let hole = lseek(&source, data, Whence::SeekHole)?;
        let mut from_at = data;
        let mut to_at = data;
        while from_at < hole {
            let chunk = usize::try_from(hole - from_at).map_err(std::io::Error::other)?;
            let n = copy_file_range(
                &source,
                Some(&mut from_at),
                &target,
                Some(&mut to_at),
                chunk,
            )?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{} ended while being copied", from.display()),
                ));
            }
        }
        offset = hole;
    }
    target.sync_all()
}

/// Writes each file into the ext4 image `disk` with debugfs (owned by
/// root, with its mode), replacing what is there, then reads each back:
/// debugfs goes on past a failed command, so its exit status proves little.
fn write_node_files(
    disk: &Path,
    files: &[(PathBuf, Vec<u8>, u32)],
    scratch: &Path,
) -> Result<(), DiskError> {
    if files.is_empty() {
        return Ok(());
    }
    let mut commands = String::new();
    for (i, (path, contents, mode)) in files.iter().enumerate() {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(DiskError::Extra {
                path: path.clone(),
                problem: "not an absolute file path".into(),
            });
        };
        let text = |p: &Path| p.to_str().map(str::to_string);
        let (Some(parent_text), Some(name_text)) = (text(parent), name.to_str()) else {
            return Err(DiskError::Extra {
                path: path.clone(),
                problem: "not UTF-8".into(),
            });
        };
        if !parent_text.starts_with('/')
            || [&parent_text, name_text]
                .iter()
                .any(|s| s.contains(['"', '\n', ' ']))
        {
            return Err(DiskError::Extra {
                path: path.clone(),
                problem: "must be absolute, without spaces, quotes or newlines".into(),
            });
        }
        // debugfs copies the host file's mode and owner, as mke2fs -d does.
        let source = scratch.join(format!("file-{i}"));
        let mut file = File::create_new(&source).map_err(io_err(&source))?;
        file.write_all(contents).map_err(io_err(&source))?;
        std::fs::set_permissions(&source, std::fs::Permissions::from_mode(*mode))
            .map_err(io_err(&source))?;
        let mut ancestors: Vec<&Path> = parent.ancestors().collect();
        ancestors.reverse();
        for dir in ancestors.iter().skip(1) {
            commands.push_str(&format!("mkdir {}\n", dir.display()));
        }
        commands.push_str(&format!(
            "cd {parent_text}\nrm {name_text}\nwrite {} {name_text}\n",
            source.display()
        ));
    }
    let script = scratch.join("debugfs-commands");
    std::fs::write(&script, commands).map_err(io_err(&script))?;
    let out = Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&script)
        .arg(disk)
        .output()
        .map_err(|e| DiskError::MkfsMissing {
            out: disk.to_path_buf(),
            problem: format!("debugfs: {e}"),
        })?;
    for (path, contents, _) in files {
        let text = path.to_string_lossy();
        let back = match read_from_disk(disk, &text, scratch) {
            // debugfs dumps an empty file as nothing, which reads as "empty".
            Err(DiskReadError::Empty { .. }) if contents.is_empty() => Ok(Vec::new()),
            other => other,
        };
        let back = back.map_err(|e| DiskError::Extra {
            path: path.clone(),
            problem: format!(
                "not written into the node's disk: {e} (debugfs said: {})",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })?;
        if &back != contents {
            return Err(DiskError::Extra {
                path: path.clone(),
                problem: "read back from the node's disk with other contents".into(),
            });
        }
    }
    Ok(())
}

/// Removes all but the [`KEEP_BASES`] most recently used bases besides
/// `current`, each only when no node is being made from it (its lock is
/// free). Nothing fails over a base left behind: it costs only space.
fn prune_bases(bases: &Path, current: &Path) {
    let Ok(listing) = std::fs::read_dir(bases) else {
        return;
    };
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = listing
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "img") && p != current)
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    found.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, old) in found.into_iter().skip(KEEP_BASES) {
        let lock_path = old.with_extension("lock");
        let Ok(lock) = File::options().write(true).open(&lock_path) else {
            continue;
        };
        if lock.try_lock().is_ok() {
            let _ = std::fs::remove_file(&old);
            let _ = std::fs::remove_file(&lock_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_sparse_copy_keeps_the_holes_and_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        {
            let mut f = File::create(&from).unwrap();
            f.set_len(64 << 20).unwrap();
            use std::io::{Seek, SeekFrom};
            f.seek(SeekFrom::Start(1 << 20)).unwrap();
            f.write_all(&[7u8; 8192]).unwrap();
            f.seek(SeekFrom::Start(40 << 20)).unwrap();
            f.write_all(b"tail data").unwrap();
        }
        let to = dir.path().join("to");
        sparse_copy(&from, &to).unwrap();
        assert_eq!(std::fs::read(&from).unwrap(), std::fs::read(&to).unwrap());
        let (a, b) = (from.metadata().unwrap(), to.metadata().unwrap());
        assert_eq!(a.len(), b.len());
        // The copy allocates about what the source does, far below 64 MiB.
        assert!(
            b.blocks() * 512 < 1 << 20,
            "{} bytes allocated",
            b.blocks() * 512
        );
        assert!(
            sparse_copy(&from, &to).is_err(),
            "an existing target is kept"
        );
    }

    #[test]
    fn the_base_key_changes_with_each_input() {
        let manifest = Sha256Digest::of(b"manifest");
        let base = DiskExtras::default();
        let key = base_key(&manifest, &base);
        assert_eq!(key, base_key(&manifest, &DiskExtras::default()));
        assert_ne!(key, base_key(&Sha256Digest::of(b"other"), &base));
        let bigger = DiskExtras {
            size_bytes: base.size_bytes * 2,
            ..DiskExtras::default()
        };
        assert_ne!(key, base_key(&manifest, &bigger));
        let with_file = DiskExtras {
            files: vec![(
                PathBuf::from("/boot/config-x"),
                b"CONFIG_A=y".to_vec(),
                0o644,
            )],
            ..DiskExtras::default()
        };
        let other_file = DiskExtras {
            files: vec![(
                PathBuf::from("/boot/config-x"),
                b"CONFIG_A=m".to_vec(),
                0o644,
            )],
            ..DiskExtras::default()
        };
        assert_ne!(
            base_key(&manifest, &with_file),
            base_key(&manifest, &other_file)
        );
        let modules = DiskExtras {
            kernel_modules: Some(("6.12".into(), PathBuf::from("/cache/k/modules"))),
            ..DiskExtras::default()
        };
        assert_ne!(key, base_key(&manifest, &modules));
    }

    #[test]
    fn node_files_land_in_an_ext4_image_with_their_mode_and_replace_what_was_there() {
        for tool in ["mke2fs", "debugfs"] {
            assert!(
                Command::new(tool).arg("-V").output().is_ok(),
                "{tool} is missing: install e2fsprogs (scripts/install-test-deps does)"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), b"base\n").unwrap();
        let disk = dir.path().join("disk.img");
        File::create(&disk).unwrap().set_len(32 << 20).unwrap();
        let made = Command::new("mke2fs")
            .args(["-q", "-t", "ext4", "-d"])
            .arg(&root)
            .arg(&disk)
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
        let scratch = tempfile::tempdir().unwrap();
        let files = vec![
            (
                PathBuf::from("/etc/kina/node.json"),
                b"{\"spec\":1}\n".to_vec(),
                0o600,
            ),
            (PathBuf::from("/etc/hostname"), b"node-a\n".to_vec(), 0o644),
            (PathBuf::from("/etc/kina/empty"), Vec::new(), 0o644),
        ];
        write_node_files(&disk, &files, scratch.path()).unwrap();
        let check = tempfile::tempdir().unwrap();
        assert_eq!(
            read_from_disk(&disk, "/etc/kina/node.json", check.path()).unwrap(),
            b"{\"spec\":1}\n"
        );
        assert_eq!(
            read_from_disk(&disk, "/etc/hostname", check.path()).unwrap(),
            b"node-a\n"
        );
        let stat = Command::new("debugfs")
            .args(["-R", "stat /etc/kina/node.json"])
            .arg(&disk)
            .output()
            .unwrap();
        let stat = String::from_utf8_lossy(&stat.stdout);
        assert!(
            stat.contains("Mode:  0600") && stat.contains("User:     0"),
            "{stat}"
        );
        let fsck = Command::new("e2fsck")
            .arg("-fn")
            .arg(&disk)
            .output()
            .unwrap();
        assert!(
            fsck.status.success(),
            "{}",
            String::from_utf8_lossy(&fsck.stdout)
        );
        let bad = vec![(PathBuf::from("relative/path"), b"x".to_vec(), 0o644)];
        let scratch = tempfile::tempdir().unwrap();
        assert!(write_node_files(&disk, &bad, scratch.path()).is_err());
    }
}
