//! OCI image layouts: a blob store while building, and the finished output
//! as a directory or a deterministic tar archive (`oci-archive`, what Apple's
//! `container image load` and `skopeo` read).
//!
//! Outputs are written under a temporary name next to the target and renamed
//! at the end, so a failed build leaves nothing behind.
//!
//! It sits beside `oci/`, not in it: the image store keeps its images in a
//! layout, and `oci::distribution` pushes from and pulls into that store.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::digest::{HashingWriter, Sha256Digest};

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("OCI layout {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("OCI layout {path}: blob {digest} is missing")]
    MissingBlob { path: PathBuf, digest: Sha256Digest },
    #[error("OCI layout {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "OCI layout {path}: blob {expected:?} was expected, but the bytes received hash to {actual:?}; nothing was stored"
    )]
    DigestMismatch {
        path: PathBuf,
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A directory of content-addressed blobs (`blobs/sha256/<hex>`): the staging
/// area of a build and the storage of kina's local image store.
#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, LayoutError> {
        let root = root.into();
        let dir = root.join("blobs/sha256");
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, digest: &Sha256Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn contains(&self, digest: &Sha256Digest) -> bool {
        self.path(digest).is_file()
    }

    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(Sha256Digest, u64), LayoutError> {
        let digest = Sha256Digest::of(bytes);
        let path = self.path(&digest);
        if !path.exists() {
            crate::fsutil::write_atomic(&path, bytes).map_err(io_err(&path))?;
        }
        Ok((digest, bytes.len() as u64))
    }

    /// A writer whose bytes become a blob named by their digest on `commit`.
    pub fn writer(&self) -> Result<BlobWriter, LayoutError> {
        let dir = self.root.join("blobs/sha256");
        let tmp = tempfile::Builder::new()
            .prefix(".kina-blob-")
            .tempfile_in(&dir)
            .map_err(io_err(&dir))?;
        let file = tmp.reopen().map_err(io_err(&dir))?;
        crate::fsutil::make_shareable(&file).map_err(io_err(&dir))?;
        Ok(BlobWriter {
            inner: HashingWriter::new(BufWriter::with_capacity(1 << 20, file)),
            tmp,
            store: self.clone(),
        })
    }

    pub fn read(&self, digest: &Sha256Digest) -> Result<Vec<u8>, LayoutError> {
        let path = self.path(digest);
        std::fs::read(&path).map_err(|_| LayoutError::MissingBlob {
            path: self.root.clone(),
            digest: *digest,
        })
    }
}

pub struct BlobWriter {
    inner: HashingWriter<BufWriter<File>>,
    tmp: tempfile::NamedTempFile,
    store: BlobStore,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl BlobWriter {
    /// Keeps the blob only if its bytes hash to `expected`: what a registry
    /// served is stored under the digest it was asked for or not at all, so a
    /// bad download leaves no file behind (the temporary file is dropped).
    pub fn commit_verified(self, expected: &Sha256Digest) -> Result<u64, LayoutError> {
        let (digest, size, mut buffered) = self.inner.finish();
        let dest = self.store.path(expected);
        buffered.flush().map_err(io_err(&dest))?;
        if digest != *expected {
            return Err(LayoutError::DigestMismatch {
                path: self.store.root.clone(),
                expected: *expected,
                actual: digest,
            });
        }
        buffered.get_ref().sync_all().map_err(io_err(&dest))?;
        if dest.exists() {
            return Ok(size);
        }
        self.tmp.persist(&dest).map_err(|e| LayoutError::Io {
            path: dest.clone(),
            source: e.error,
        })?;
        Ok(size)
    }

    pub fn commit(self) -> Result<(Sha256Digest, u64), LayoutError> {
        let (digest, size, mut buffered) = self.inner.finish();
        let dest = self.store.path(&digest);
        buffered.flush().map_err(io_err(&dest))?;
        if dest.exists() {
            return Ok((digest, size));
        }
        self.tmp.persist(&dest).map_err(|e| LayoutError::Io {
            path: dest.clone(),
            source: e.error,
        })?;
        Ok((digest, size))
    }
}

/// One entry of a layout's top-level `index.json`.
#[derive(Clone, Debug)]
pub struct LayoutEntry {
    pub media_type: String,
    pub digest: Sha256Digest,
    pub size: u64,
    pub reference: String,
}

/// The top-level `index.json` naming `entries`.
///
/// `io.containerd.image.name` holds the full reference: containerd's import
/// and Apple's `container image load` read it before
/// `org.opencontainers.image.ref.name` (containerization 0.40.1
/// `LocalOCILayoutClient.swift:208-235`). `ref.name` then holds the tag
/// alone, as the OCI image-layout spec's examples and buildx write it, so
/// tools that address a layout as `DIR:TAG` (umoci, skopeo's `oci:`) find
/// the image; a full reference there makes umoci refuse the layout ("tag is
/// ambiguous"). A reference without a tag (by digest) gets no `ref.name`.
pub fn layout_index_json(entries: &[LayoutEntry]) -> Result<Vec<u8>, serde_json::Error> {
    let manifests: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            let mut annotations = serde_json::Map::new();
            annotations.insert(
                "io.containerd.image.name".into(),
                e.reference.clone().into(),
            );
            if let Some(tag) = tag_of(&e.reference) {
                annotations.insert("org.opencontainers.image.ref.name".into(), tag.into());
            }
            serde_json::json!({
                "mediaType": e.media_type,
                "digest": e.digest.oci(),
                "size": e.size,
                "annotations": annotations,
            })
        })
        .collect();
    crate::canonical_json::to_canonical_json(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
}

/// The reference an `index.json` entry names, read as containerd and Apple
/// read it: `io.containerd.image.name`, else
/// `org.opencontainers.image.ref.name` (which layouts from before kina wrote
/// the tag alone there, and other tools' layouts, may hold in full).
pub fn entry_reference(entry: &serde_json::Value) -> Option<&str> {
    let annotations = &entry["annotations"];
    annotations["io.containerd.image.name"]
        .as_str()
        .or_else(|| annotations["org.opencontainers.image.ref.name"].as_str())
}

/// The tag of an image reference (`kina.local/node:1.36` → `1.36`), if it
/// has one: the part after `:` in its last path component, so a registry's
/// port (`localhost:5000/node`) is not mistaken for a tag.
pub fn tag_of(reference: &str) -> Option<&str> {
    let named = reference.split('@').next().unwrap_or(reference);
    let last = named.rsplit('/').next().unwrap_or(named);
    last.split_once(':')
        .map(|(_, tag)| tag)
        .filter(|t| !t.is_empty())
}

pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Writes a layout holding `blobs` (taken from `store`) and `index_json` to
/// `output`: a directory, or an archive when the path ends in `.tar`.
pub fn write_output(
    store: &BlobStore,
    blobs: &BTreeSet<Sha256Digest>,
    index_json: &[u8],
    output: &Path,
    mtime: u64,
) -> Result<(), LayoutError> {
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    for digest in blobs {
        if !store.contains(digest) {
            return Err(LayoutError::MissingBlob {
                path: store.root.clone(),
                digest: *digest,
            });
        }
    }
    if output.extension().is_some_and(|e| e == "tar") {
        let tmp = tempfile::Builder::new()
            .prefix(".kina-out-")
            .tempfile_in(&parent)
            .map_err(io_err(&parent))?;
        {
            let file = tmp.reopen().map_err(io_err(output))?;
            crate::fsutil::make_shareable(&file).map_err(io_err(output))?;
            let mut builder = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
            let add = |builder: &mut tar::Builder<BufWriter<File>>,
                       path: &str,
                       size: u64,
                       mode: u32,
                       data: &mut dyn io::Read| {
                let mut header = tar::Header::new_ustar();
                header.set_entry_type(if path.ends_with('/') {
                    tar::EntryType::Directory
                } else {
                    tar::EntryType::Regular
                });
                header.set_size(size);
                header.set_mode(mode);
                header.set_uid(0);
                header.set_gid(0);
                header.set_mtime(mtime);
                builder.append_data(&mut header, path, data)
            };
            let w = |e| io_err(output)(e);
            add(&mut builder, "blobs/", 0, 0o755, &mut io::empty()).map_err(w)?;
            add(&mut builder, "blobs/sha256/", 0, 0o755, &mut io::empty()).map_err(w)?;
            for digest in blobs {
                let path = store.path(digest);
                let file = File::open(&path).map_err(io_err(&path))?;
                let size = file.metadata().map_err(io_err(&path))?.len();
                let mut reader = io::BufReader::new(file);
                add(
                    &mut builder,
                    &format!("blobs/sha256/{}", digest.hex()),
                    size,
                    0o644,
                    &mut reader,
                )
                .map_err(io_err(output))?;
            }
            add(
                &mut builder,
                "index.json",
                index_json.len() as u64,
                0o644,
                &mut &index_json[..],
            )
            .map_err(io_err(output))?;
            add(
                &mut builder,
                "oci-layout",
                OCI_LAYOUT.len() as u64,
                0o644,
                &mut &OCI_LAYOUT[..],
            )
            .map_err(io_err(output))?;
            let mut inner = builder.into_inner().map_err(io_err(output))?;
            inner.flush().map_err(io_err(output))?;
            inner.get_ref().sync_all().map_err(io_err(output))?;
        }
        tmp.persist(output).map_err(|e| LayoutError::Io {
            path: output.to_path_buf(),
            source: e.error,
        })?;
        return Ok(());
    }

    let tmp = tempfile::Builder::new()
        .prefix(".kina-out-")
        .tempdir_in(&parent)
        .map_err(io_err(&parent))?;
    crate::fsutil::make_dir_shareable(tmp.path()).map_err(io_err(tmp.path()))?;
    let staged = BlobStore::open(tmp.path())?;
    for digest in blobs {
        let src = store.path(digest);
        let dst = staged.path(digest);
        // A hard link is free when both sit on one filesystem; copy otherwise.
        if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).map_err(io_err(&dst))?;
        }
    }
    std::fs::write(tmp.path().join("index.json"), index_json).map_err(io_err(output))?;
    std::fs::write(tmp.path().join("oci-layout"), OCI_LAYOUT).map_err(io_err(output))?;
    if output.exists() {
        let meta = std::fs::symlink_metadata(output).map_err(io_err(output))?;
        if !meta.is_dir() || !output.join("oci-layout").exists() {
            return Err(LayoutError::Invalid {
                path: output.to_path_buf(),
                message: "exists and is not an OCI layout; refusing to replace it".into(),
            });
        }
        std::fs::remove_dir_all(output).map_err(io_err(output))?;
    }
    let kept = tmp.keep();
    std::fs::rename(&kept, output).map_err(io_err(output))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_is_the_last_components_and_a_port_is_not_one() {
        assert_eq!(tag_of("kina.local/node:1.36"), Some("1.36"));
        assert_eq!(tag_of("localhost:5000/node:base"), Some("base"));
        assert_eq!(tag_of("localhost:5000/node"), None);
        assert_eq!(tag_of("node"), None);
        assert_eq!(tag_of("node:"), None);
        assert_eq!(
            tag_of(
                "kina.local/node:1@sha256:0000000000000000000000000000000000000000000000000000000000000000"
            ),
            Some("1")
        );
        assert_eq!(
            tag_of(
                "kina.local/node@sha256:0000000000000000000000000000000000000000000000000000000000000000"
            ),
            None
        );
    }

    #[test]
    fn the_index_names_the_full_reference_for_containerd_and_the_tag_for_layout_tools() {
        let entry = |reference: &str| LayoutEntry {
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            digest: Sha256Digest::of(reference.as_bytes()),
            size: 1,
            reference: reference.into(),
        };
        let bytes =
            layout_index_json(&[entry("kina.local/node:base"), entry("localhost:5000/node")])
                .unwrap();
        let index: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let tagged = &index["manifests"][0]["annotations"];
        assert_eq!(tagged["io.containerd.image.name"], "kina.local/node:base");
        assert_eq!(tagged["org.opencontainers.image.ref.name"], "base");
        let untagged = &index["manifests"][1]["annotations"];
        assert_eq!(untagged["io.containerd.image.name"], "localhost:5000/node");
        assert!(untagged.get("org.opencontainers.image.ref.name").is_none());
    }
}
