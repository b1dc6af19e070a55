//! The content-addressed download cache.
//!
//! Entries are named by their sha256 and re-verified whenever they are used:
//! a flipped bit on disk is noticed, the entry is dropped and fetched again.
//! Nothing enters `blobs/` before its digest matched, so the cache can never
//! be poisoned by a bad download. Partial downloads wait in `partial/` and
//! are resumed by the next build. A per-digest lock file (`File::lock`) keeps
//! concurrent builds from downloading the same file twice or clobbering each
//! other's partial file; readers need no lock because entries appear by rename.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::digest::Sha256Digest;

#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("download cache {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Cache {
    /// `$KINA_CACHE_DIR`, else the platform cache directory (`~/.cache/kina`,
    /// `~/Library/Caches/kina`).
    pub fn default_root() -> PathBuf {
        std::env::var_os("KINA_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| dirs::cache_dir().map(|d| d.join("kina")))
            .unwrap_or_else(|| PathBuf::from(".kina-cache"))
    }

    pub fn open(root: impl Into<PathBuf>) -> Result<Self, CacheError> {
        let root = root.into();
        for sub in ["blobs/sha256", "partial", "locks"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn partial_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.root.join("partial").join(digest.hex())
    }

    /// The verified entry for `digest`, or `None` when absent or corrupt (a
    /// corrupt entry is removed so the caller fetches it again).
    pub fn get(&self, digest: &Sha256Digest) -> Result<Option<PathBuf>, CacheError> {
        let path = self.blob_path(digest);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let (actual, _) =
            Sha256Digest::of_reader(io::BufReader::new(file)).map_err(io_err(&path))?;
        if actual == *digest {
            return Ok(Some(path));
        }
        tracing::warn!(
            "cache entry {} is corrupt (its content hashes to {actual}); removing it and fetching again",
            path.display()
        );
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Moves a finished partial download into the cache if, and only if, its
    /// content has `digest`. Returns the actual digest and size on mismatch
    /// (the partial file is then deleted).
    pub fn commit_partial(
        &self,
        digest: &Sha256Digest,
    ) -> Result<Result<PathBuf, (Sha256Digest, u64)>, CacheError> {
        let partial = self.partial_path(digest);
        let file = File::open(&partial).map_err(io_err(&partial))?;
        let (actual, size) =
            Sha256Digest::of_reader(io::BufReader::new(file)).map_err(io_err(&partial))?;
        if actual != *digest {
            std::fs::remove_file(&partial).map_err(io_err(&partial))?;
            return Ok(Err((actual, size)));
        }
        let dest = self.blob_path(digest);
        std::fs::rename(&partial, &dest).map_err(io_err(&dest))?;
        Ok(Ok(dest))
    }

    /// Blocks until this process holds the download lock for `digest`. The
    /// lock is released when the returned file is dropped (or the process dies).
    pub fn lock(&self, digest: &Sha256Digest) -> Result<File, CacheError> {
        let path = self.root.join("locks").join(digest.hex());
        crate::fsutil::lock_file(&path).map_err(io_err(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_content_with_the_right_digest_enters_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let digest = Sha256Digest::of(b"good");
        std::fs::write(cache.partial_path(&digest), b"evil").unwrap();
        let (actual, size) = cache.commit_partial(&digest).unwrap().unwrap_err();
        assert_eq!((actual, size), (Sha256Digest::of(b"evil"), 4));
        assert!(cache.get(&digest).unwrap().is_none());
        assert!(!cache.partial_path(&digest).exists());
        std::fs::write(cache.partial_path(&digest), b"good").unwrap();
        let path = cache.commit_partial(&digest).unwrap().unwrap();
        assert_eq!(cache.get(&digest).unwrap(), Some(path));
    }

    #[test]
    fn a_flipped_byte_on_disk_is_detected_and_the_entry_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let digest = Sha256Digest::of(b"content");
        std::fs::write(cache.partial_path(&digest), b"content").unwrap();
        let path = cache.commit_partial(&digest).unwrap().unwrap();
        std::fs::write(&path, b"cOntent").unwrap();
        assert!(cache.get(&digest).unwrap().is_none());
        assert!(!path.exists());
    }
}
