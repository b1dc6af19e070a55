//! kina's local image store: one OCI image layout holding every built node
//! image, so images share layers on disk and `kina image list`, `inspect`,
//! `rm` and cluster creation find them by reference.
//!
//! `index.json` is rewritten atomically under a lock file, so two builds
//! finishing at once both land. A build record maps the digest of a build's
//! inputs to the index it produced: rebuilding unchanged inputs is a lookup.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::digest::Sha256Digest;
use crate::oci_layout::{
    BlobStore, LayoutEntry, LayoutError, OCI_LAYOUT, layout_index_json, write_output,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("image store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(
        "image store {path}: index.json is corrupt ({message}); move it aside and rebuild the images"
    )]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "no image `{reference}` in the local store ({path}); `kina image list` shows what is there"
    )]
    NotFound { reference: String, path: PathBuf },
}

pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

pub struct ImageStore {
    root: PathBuf,
    blobs: BlobStore,
}

impl ImageStore {
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        let blobs = BlobStore::open(&root)?;
        let layout = root.join("oci-layout");
        if !layout.exists() {
            crate::fsutil::write_atomic(&layout, OCI_LAYOUT).map_err(|source| StoreError::Io {
                path: layout.clone(),
                source,
            })?;
        }
        std::fs::create_dir_all(root.join("builds")).map_err(|source| StoreError::Io {
            path: root.join("builds"),
            source,
        })?;
        Ok(Self { root, blobs })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    fn lock(&self) -> Result<File, StoreError> {
        let path = self.root.join(".lock");
        crate::fsutil::lock_file(&path).map_err(|source| StoreError::Io { path, source })
    }

    pub fn list(&self) -> Result<Vec<LayoutEntry>, StoreError> {
        let path = self.root.join("index.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        let corrupt = |message: String| StoreError::Corrupt {
            path: path.clone(),
            message,
        };
        let doc: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let mut entries = Vec::new();
        for m in doc["manifests"].as_array().into_iter().flatten() {
            let reference = crate::oci_layout::entry_reference(m)
                .ok_or_else(|| corrupt("an entry has no reference".into()))?;
            entries.push(LayoutEntry {
                media_type: m["mediaType"]
                    .as_str()
                    .unwrap_or(INDEX_MEDIA_TYPE)
                    .to_string(),
                digest: m["digest"]
                    .as_str()
                    .unwrap_or_default()
                    .parse()
                    .map_err(|e: crate::digest::DigestParseError| corrupt(e.to_string()))?,
                size: m["size"].as_u64().unwrap_or(0),
                reference: reference.to_string(),
            });
        }
        Ok(entries)
    }

    fn write_index(&self, entries: &mut [LayoutEntry]) -> Result<(), StoreError> {
        entries.sort_by(|a, b| a.reference.cmp(&b.reference));
        let path = self.root.join("index.json");
        let bytes = layout_index_json(entries).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        crate::fsutil::write_atomic(&path, &bytes).map_err(|source| StoreError::Io { path, source })
    }

    pub fn find(&self, reference: &str) -> Result<LayoutEntry, StoreError> {
        self.list()?
            .into_iter()
            .find(|e| e.reference == reference)
            .ok_or_else(|| StoreError::NotFound {
                reference: reference.to_string(),
                path: self.root.clone(),
            })
    }

    /// Names `entry.digest` `entry.reference`, replacing an older image of that name.
    pub fn tag(&self, entry: LayoutEntry) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        let mut entries = self.list()?;
        entries.retain(|e| e.reference != entry.reference);
        entries.push(entry);
        self.write_index(&mut entries)
    }

    /// Removes the reference and every blob no other image uses.
    pub fn remove(&self, reference: &str) -> Result<u64, StoreError> {
        let _lock = self.lock()?;
        let mut entries = self.list()?;
        let before = entries.len();
        entries.retain(|e| e.reference != reference);
        if entries.len() == before {
            return Err(StoreError::NotFound {
                reference: reference.to_string(),
                path: self.root.clone(),
            });
        }
        self.write_index(&mut entries)?;
        let mut keep = BTreeSet::new();
        for e in &entries {
            keep.extend(self.blobs_of(&e.digest)?);
        }
        let dir = self.root.join("blobs/sha256");
        let mut freed = 0;
        for entry in std::fs::read_dir(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(digest) = name.parse::<Sha256Digest>() else {
                continue;
            };
            if !keep.contains(&digest) {
                freed += entry.metadata().map_or(0, |m| m.len());
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(freed)
    }

    /// Every blob an index (or manifest) reaches.
    pub fn blobs_of(&self, digest: &Sha256Digest) -> Result<BTreeSet<Sha256Digest>, StoreError> {
        let mut seen = BTreeSet::new();
        let mut pending = vec![*digest];
        while let Some(d) = pending.pop() {
            if !seen.insert(d) {
                continue;
            }
            let bytes = self.blobs.read(&d)?;
            let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue; // a layer
            };
            let mut children = Vec::new();
            for key in ["manifests", "layers"] {
                children.extend(doc[key].as_array().into_iter().flatten().cloned());
            }
            if doc.get("config").is_some() {
                children.push(doc["config"].clone());
            }
            for child in children {
                if let Some(Ok(cd)) = child["digest"].as_str().map(str::parse::<Sha256Digest>) {
                    if child["mediaType"]
                        .as_str()
                        .is_some_and(|m| m.contains("layer"))
                    {
                        seen.insert(cd);
                    } else {
                        pending.push(cd);
                    }
                }
            }
        }
        Ok(seen)
    }

    /// Writes `reference` as a standalone layout or archive at `output`.
    pub fn export(&self, reference: &str, output: &Path, mtime: u64) -> Result<(), StoreError> {
        let entry = self.find(reference)?;
        let blobs = self.blobs_of(&entry.digest)?;
        let index =
            layout_index_json(std::slice::from_ref(&entry)).map_err(|e| StoreError::Corrupt {
                path: self.root.clone(),
                message: e.to_string(),
            })?;
        write_output(&self.blobs, &blobs, &index, output, mtime)?;
        Ok(())
    }

    /// The index a build with inputs `key` produced, if all its blobs are still here.
    pub fn lookup_build(&self, key: &Sha256Digest) -> Option<(Sha256Digest, u64)> {
        let text = std::fs::read_to_string(self.root.join("builds").join(key.hex())).ok()?;
        let (digest, size) = text.trim().split_once(' ')?;
        let digest: Sha256Digest = digest.parse().ok()?;
        let size: u64 = size.parse().ok()?;
        let blobs = self.blobs_of(&digest).ok()?;
        blobs
            .iter()
            .all(|b| self.blobs.contains(b))
            .then_some((digest, size))
    }

    pub fn record_build(
        &self,
        key: &Sha256Digest,
        index: &Sha256Digest,
        size: u64,
    ) -> Result<(), StoreError> {
        let path = self.root.join("builds").join(key.hex());
        crate::fsutil::write_atomic(&path, format!("{index} {size}\n").as_bytes())
            .map_err(|source| StoreError::Io { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store written before `ref.name` held the tag alone keeps its
    /// images, named by their full reference.
    #[test]
    fn an_index_with_the_full_reference_only_in_ref_name_still_lists() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let digest = crate::digest::Sha256Digest::of(b"old");
        std::fs::write(
            dir.path().join("index.json"),
            serde_json::json!({
                "schemaVersion": 2,
                "manifests": [{
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "digest": digest.oci(),
                    "size": 3,
                    "annotations": {"org.opencontainers.image.ref.name": "kina.local/node:old"},
                }],
            })
            .to_string(),
        )
        .unwrap();
        let found = store.find("kina.local/node:old").unwrap();
        assert_eq!(found.digest, digest);
    }
}
