//! Where kina keeps what it makes, resolved once per command and passed
//! down, so every provider, the image store and the cluster records agree
//! on one answer (nothing reads `KINA_DATA_DIR` a second time).
//!
//! The defaults follow each OS's conventions through the `dirs` crate: XDG
//! on Linux (`~/.local/share/kina`, `~/.cache/kina`), `~/Library` on macOS
//! (`Application Support/kina`, `Caches/kina`).

use std::path::{Path, PathBuf};

/// kina's data and cache directories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KinaDirs {
    data: PathBuf,
    cache: PathBuf,
}

impl KinaDirs {
    /// `$KINA_DATA_DIR` and `$KINA_CACHE_DIR`, else the platform's data and
    /// cache directories, else (no home directory at all) folders under the
    /// working directory.
    pub fn from_env() -> Self {
        let data = std::env::var_os("KINA_DATA_DIR")
            .map(PathBuf::from)
            .or_else(|| dirs::data_dir().map(|d| d.join("kina")))
            .unwrap_or_else(|| PathBuf::from(".kina-data"));
        let cache = std::env::var_os("KINA_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| dirs::cache_dir().map(|d| d.join("kina")))
            .unwrap_or_else(|| PathBuf::from(".kina-cache"));
        Self { data, cache }
    }

    /// Directories chosen by the caller (tests, embedders).
    pub fn at(data: impl Into<PathBuf>, cache: impl Into<PathBuf>) -> Self {
        Self {
            data: data.into(),
            cache: cache.into(),
        }
    }

    /// The root of everything kina keeps; QEMU nodes live under `nodes/`.
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// The verified download cache (content-addressed, safe to delete).
    pub fn cache(&self) -> &Path {
        &self.cache
    }

    /// The local OCI image store.
    pub fn images(&self) -> PathBuf {
        self.data.join("images")
    }

    /// One directory per cluster, holding its record.
    pub fn clusters(&self) -> PathBuf {
        self.data.join("clusters")
    }

    /// Scratch files (image exports) swept after an interrupted kina.
    pub fn scratch(&self) -> PathBuf {
        self.data.join("tmp")
    }
}
