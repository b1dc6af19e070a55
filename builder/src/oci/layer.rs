//! Deterministic layer tarballs from the in-memory tree.
//!
//! Headers are built by hand: the tar crate's `HeaderMode::Deterministic`
//! would force modes to 0644/0755 and drop setuid bits, sticky /tmp and the
//! 0640 on /etc/shadow. Entries come in tree order (parents first), with
//! numeric owners and empty user/group names (no host ids leak), mtimes
//! clamped to the build epoch, no atime/ctime, and xattrs as PAX records.
//! The tar stream is hashed (diff_id), compressed and hashed again (digest)
//! in one pass straight into the blob store; gzip runs on every core (see
//! `parallel_gzip`) with bytes that depend on the tree alone.

use std::io::{self, Write};

use super::parallel_gzip::ParallelGzWriter;
use crate::digest::{HashingWriter, Sha256Digest};
use crate::oci_layout::{BlobStore, LayoutError};
use crate::rootfs::tree::{Node, NodeKind, Tree};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// What every runtime reads, including older Apple `container` releases.
    Gzip,
    /// Smaller and faster; needs containerd or Apple `container` from 2026.
    Zstd,
}

impl Compression {
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// Pinned so that the same tree always gives the same compressed bytes with
/// the same (locked) compressor version.
const GZIP_LEVEL: u32 = 6;
const ZSTD_LEVEL: i32 = 3;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerBlob {
    pub digest: Sha256Digest,
    pub size: u64,
    pub diff_id: Sha256Digest,
    pub uncompressed_size: u64,
    pub media_type: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("writing layer entry /{path}: {source}")]
    Entry { path: String, source: io::Error },
    #[error("writing layer: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

pub fn write_layer(
    tree: &Tree,
    epoch: u64,
    compression: Compression,
    blobs: &BlobStore,
) -> Result<LayerBlob, LayerError> {
    let blob = blobs.writer()?;
    let (diff_id, uncompressed_size, blob) = match compression {
        Compression::Gzip => {
            let gz = ParallelGzWriter::new(blob, GZIP_LEVEL);
            let (d, n, gz) = write_tar(tree, epoch, gz)?;
            (d, n, gz.finish()?)
        }
        Compression::Zstd => {
            let zs = zstd::stream::write::Encoder::new(blob, ZSTD_LEVEL)?;
            let (d, n, zs) = write_tar(tree, epoch, zs)?;
            (d, n, zs.finish()?)
        }
    };
    let (digest, size) = blob.commit()?;
    Ok(LayerBlob {
        digest,
        size,
        diff_id,
        uncompressed_size,
        media_type: compression.media_type(),
    })
}

/// Writes the tree as a tar stream into `out`; returns the stream's digest and size.
pub fn write_tar<W: Write>(
    tree: &Tree,
    epoch: u64,
    out: W,
) -> Result<(Sha256Digest, u64, W), LayerError> {
    let mut builder = tar::Builder::new(HashingWriter::new(out));
    builder.mode(tar::HeaderMode::Complete);
    for (path, node) in tree.iter() {
        append(&mut builder, path, node, epoch).map_err(|source| LayerError::Entry {
            path: path.to_string(),
            source,
        })?;
    }
    let hashing = builder.into_inner()?;
    let (digest, size, out) = hashing.finish();
    Ok((digest, size, out))
}

fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &str,
    node: &Node,
    epoch: u64,
) -> io::Result<()> {
    if !node.xattrs.is_empty() {
        let records: Vec<(String, &[u8])> = node
            .xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
            .collect();
        builder.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))?;
    }
    let mut header = tar::Header::new_gnu();
    header.set_mode(node.mode & 0o7777);
    header.set_uid(u64::from(node.uid));
    header.set_gid(u64::from(node.gid));
    header.set_mtime(node.mtime.min(epoch));
    // new_gnu leaves user and group names empty: numeric owners only.
    match &node.kind {
        NodeKind::Dir => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder.append_data(&mut header, format!("{path}/"), io::empty())
        }
        NodeKind::File(data) => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, path, data.as_ref())
        }
        NodeKind::Symlink(target) => {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder.append_link(&mut header, path, target)
        }
        NodeKind::Hardlink(target) => {
            header.set_entry_type(tar::EntryType::Link);
            header.set_size(0);
            builder.append_link(&mut header, path, target)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Tree {
        let mut t = Tree::new();
        t.insert("tmp", Node::dir(0o1777).with_mtime(5));
        t.insert("usr", Node::dir(0o755));
        t.insert("usr/bin", Node::dir(0o755));
        t.insert(
            "usr/bin/su",
            Node::file(b"su".to_vec(), 0o4755).with_mtime(u64::MAX / 2),
        );
        t.insert("etc", Node::dir(0o755));
        t.insert(
            "etc/shadow",
            Node::file(b"root:*:1:0:99999:7:::\n".to_vec(), 0o640).with_owner(0, 42),
        );
        t.insert("bin", Node::symlink("usr/bin"));
        t.insert(
            "usr/bin/su2",
            Node {
                kind: NodeKind::Hardlink("usr/bin/su".into()),
                ..Node::file(Vec::new(), 0o4755)
            },
        );
        let mut ping = Node::file(b"ping".to_vec(), 0o755);
        ping.xattrs
            .insert("security.capability".into(), vec![1, 2, 3]);
        t.insert("usr/bin/ping", ping);
        let long = format!("usr/{}", "x".repeat(150));
        t.insert(long, Node::file(b"long".to_vec(), 0o644));
        t
    }

    #[test]
    fn tar_keeps_modes_owners_links_and_clamps_mtimes() {
        let (_, _, bytes) = write_tar(&tree(), 1000, Vec::new()).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = std::collections::BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let h = entry.header().clone();
            let caps = entry
                .pax_extensions()
                .unwrap()
                .map(|e| {
                    e.flatten()
                        .any(|x| x.key() == Ok("SCHILY.xattr.security.capability"))
                })
                .unwrap_or(false);
            seen.insert(
                path,
                (
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap(),
                    h.username().unwrap().map(str::to_string),
                    caps,
                ),
            );
        }
        assert_eq!(seen["tmp/"].0, 0o1777);
        assert_eq!(seen["tmp/"].3, 5);
        assert_eq!(seen["usr/bin/su"].0, 0o4755);
        assert_eq!(seen["usr/bin/su"].3, 1000, "mtime is clamped to the epoch");
        assert_eq!((seen["etc/shadow"].0, seen["etc/shadow"].2), (0o640, 42));
        assert_eq!(seen["etc/shadow"].4.as_deref(), Some(""));
        assert!(seen["usr/bin/ping"].5);
        assert!(seen.keys().any(|k| k.len() > 150));
    }

    #[test]
    fn the_same_tree_gives_the_same_layer_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let a = write_layer(&tree(), 1000, Compression::Gzip, &store).unwrap();
        let b = write_layer(&tree(), 1000, Compression::Gzip, &store).unwrap();
        assert_eq!(a, b);
        assert!(store.contains(&a.digest));
        let z = write_layer(&tree(), 1000, Compression::Zstd, &store).unwrap();
        assert_eq!(
            z.diff_id, a.diff_id,
            "compression does not change the diff_id"
        );
        assert_ne!(z.digest, a.digest);
    }
}
