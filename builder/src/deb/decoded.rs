//! Decompressed `.deb` members, cached beside the download cache and named
//! by the `.deb`'s sha256.
//!
//! Decompressing `data.tar.xz` was half the CPU time of a warm build (xz
//! decodes at tens of MB/s, single-threaded per stream), and every build
//! repeated it for the same locked packages. An entry holds the package's
//! `control.tar` and `data.tar` exactly as `deb::reader` decompressed them.
//!
//! An entry is used only when it is whole and unchanged: it is written to a
//! temporary file and renamed into place, so a reader never sees a torn one,
//! and its header records the sha256 of everything it holds (header fields
//! included), which every read checks before any byte is used. Entries are
//! made only from `.deb`s whose digest matched the lock and are named by that
//! digest, which the header repeats, so an entry cannot stand in for another
//! package. A corrupt, truncated or foreign entry is removed and the package
//! is decoded from its `.deb` again. No fsync: a crash can at worst leave an
//! entry that fails its digest, which is then rebuilt.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::reader::DebMembers;
use crate::digest::Sha256Digest;

/// First bytes of an entry; the version changes when the layout does.
const MAGIC: &[u8; 16] = b"kina-deb-dec v1\n";
/// Magic, the `.deb`'s digest, the two member lengths, the entry digest.
const HEADER_LEN: usize = 16 + 32 + 8 + 8 + 32;
/// Read and hashed a slice at a time, so each slice is hashed while it is
/// still in the CPU cache.
const CHUNK: usize = 1 << 20;

#[derive(Clone, Debug)]
pub struct DecodedDebs {
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodedError {
    #[error("decoded-package cache {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl DecodedDebs {
    /// The cache under the download cache's `root` (`<root>/decoded/sha256`).
    pub fn open(root: &Path) -> Result<Self, DecodedError> {
        let dir = root.join("decoded/sha256");
        std::fs::create_dir_all(&dir).map_err(|source| DecodedError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    pub fn entry_path(&self, deb: &Sha256Digest) -> PathBuf {
        self.dir.join(deb.hex())
    }

    /// Whether an entry for `deb` looks usable from its header and size
    /// alone (no content read): what a build checks before deciding not to
    /// read the `.deb` itself. `get` still verifies the whole entry.
    pub fn has(&self, deb: &Sha256Digest) -> bool {
        let path = self.entry_path(deb);
        let Ok(mut file) = File::open(&path) else {
            return false;
        };
        matches!(read_header(&mut file, deb), Ok(Some(_)))
    }

    /// The members of the `.deb` with digest `deb`, or `None` when there is
    /// no entry or the entry is not whole (it is then removed, so `put`
    /// replaces it). Errors are I/O failures other than a missing file.
    pub fn get(&self, deb: &Sha256Digest) -> Result<Option<DebMembers>, DecodedError> {
        let path = self.entry_path(deb);
        let io_err = |source| DecodedError::Io {
            path: path.clone(),
            source,
        };
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(e)),
        };
        let problem = match read_entry(&mut file, deb) {
            Ok(Ok(members)) => return Ok(Some(members)),
            Ok(Err(problem)) => problem,
            // A short read is a truncated entry, not an I/O failure.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => "it is truncated".to_string(),
            Err(e) => return Err(io_err(e)),
        };
        tracing::warn!(
            "decoded-package cache entry {} is not usable ({problem}); removing it and decoding the package again",
            path.display()
        );
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Stores the members of the `.deb` with digest `deb`, which the caller
    /// verified against the lock. Concurrent writers of one entry write the
    /// same bytes; the last rename wins.
    pub fn put(&self, deb: &Sha256Digest, members: &DebMembers) -> Result<(), DecodedError> {
        let io_err = |source| DecodedError::Io {
            path: self.entry_path(deb),
            source,
        };
        let mut header = header_fields(deb, members);
        let mut hasher = Sha256::new();
        hasher.update(&header);
        hasher.update(&members.control_tar);
        hasher.update(&members.data_tar);
        header.extend_from_slice(&hasher.finalize());
        let mut tmp = tempfile::Builder::new()
            .prefix(".kina-tmp-")
            .tempfile_in(&self.dir)
            .map_err(io_err)?;
        {
            let file = tmp.as_file_mut();
            file.write_all(&header).map_err(io_err)?;
            file.write_all(&members.control_tar).map_err(io_err)?;
            file.write_all(&members.data_tar).map_err(io_err)?;
        }
        crate::fsutil::make_shareable(tmp.as_file()).map_err(io_err)?;
        tmp.persist(self.entry_path(deb))
            .map_err(|e| io_err(e.error))?;
        Ok(())
    }
}

/// Every header field but the entry digest.
fn header_fields(deb: &Sha256Digest, members: &DebMembers) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(deb.as_bytes());
    header.extend_from_slice(&(members.control_tar.len() as u64).to_le_bytes());
    header.extend_from_slice(&(members.data_tar.len() as u64).to_le_bytes());
    header
}

/// The header's member lengths when its magic, digest and lengths agree
/// with `deb` and the file's size; `Ok(None)` when they do not.
fn read_header(
    file: &mut File,
    deb: &Sha256Digest,
) -> io::Result<Option<([u8; HEADER_LEN], usize, usize)>> {
    let mut header = [0u8; HEADER_LEN];
    file.read_exact(&mut header)?;
    if &header[..16] != MAGIC || &header[16..48] != deb.as_bytes() {
        return Ok(None);
    }
    let length = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    let (control, data) = (length(48), length(56));
    let size = file.metadata()?.len();
    let expected = (HEADER_LEN as u64)
        .checked_add(control)
        .and_then(|n| n.checked_add(data));
    if expected != Some(size) {
        return Ok(None);
    }
    // Both fit in memory's address space: the file holds them.
    match (usize::try_from(control), usize::try_from(data)) {
        (Ok(control), Ok(data)) => Ok(Some((header, control, data))),
        _ => Ok(None),
    }
}

/// The entry's members, or why the entry is not usable.
fn read_entry(file: &mut File, deb: &Sha256Digest) -> io::Result<Result<DebMembers, String>> {
    let Some((header, control_len, data_len)) = read_header(file, deb)? else {
        return Ok(Err(
            "its header does not match its name or its size".to_string()
        ));
    };
    let mut hasher = Sha256::new();
    hasher.update(&header[..HEADER_LEN - 32]);
    let control_tar = read_hashing(file, control_len, &mut hasher)?;
    let data_tar = read_hashing(file, data_len, &mut hasher)?;
    if hasher.finalize().as_slice() != &header[HEADER_LEN - 32..] {
        return Ok(Err(
            "its content does not match the digest in its header".to_string()
        ));
    }
    Ok(Ok(DebMembers {
        control_tar,
        data_tar,
    }))
}

fn read_hashing(file: &mut File, len: usize, hasher: &mut Sha256) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; len];
    for chunk in out.chunks_mut(CHUNK) {
        file.read_exact(chunk)?;
        hasher.update(&*chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> DebMembers {
        DebMembers {
            control_tar: b"control tar bytes".to_vec(),
            data_tar: (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect(),
        }
    }

    /// A way an entry's bytes can be damaged on disk.
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;

    fn stored() -> (tempfile::TempDir, DecodedDebs, Sha256Digest) {
        let dir = tempfile::tempdir().unwrap();
        let cache = DecodedDebs::open(dir.path()).unwrap();
        let deb = Sha256Digest::of(b"the .deb");
        cache.put(&deb, &members()).unwrap();
        (dir, cache, deb)
    }

    #[test]
    fn an_entry_gives_back_what_was_put() {
        let (_dir, cache, deb) = stored();
        assert!(cache.has(&deb));
        assert_eq!(cache.get(&deb).unwrap(), Some(members()));
        let other = Sha256Digest::of(b"another .deb");
        assert!(!cache.has(&other));
        assert_eq!(cache.get(&other).unwrap(), None);
    }

    /// Every way an entry can go wrong on disk: each is noticed, the entry
    /// removed, and nothing of it returned.
    #[test]
    fn a_damaged_entry_is_never_used_and_is_removed() {
        let damages: Vec<(&str, Damage)> = vec![
            (
                "a flipped bit in data.tar",
                Box::new(|b| b[HEADER_LEN + 40] ^= 1),
            ),
            ("a flipped bit in the digest", Box::new(|b| b[90] ^= 0x80)),
            (
                "truncated (a partial write)",
                Box::new(|b| b.truncate(b.len() - 1)),
            ),
            ("cut inside the header", Box::new(|b| b.truncate(20))),
            ("empty", Box::new(|b| b.clear())),
            ("a byte appended", Box::new(|b| b.push(0))),
            (
                "lengths moved between the members",
                Box::new(|b| {
                    b[48] += 1;
                    b[56] -= 1;
                }),
            ),
            ("another layout version", Box::new(|b| b[14] = b'2')),
        ];
        for (what, damage) in damages {
            let (_dir, cache, deb) = stored();
            let path = cache.entry_path(&deb);
            let mut bytes = std::fs::read(&path).unwrap();
            damage(&mut bytes);
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(cache.get(&deb).unwrap(), None, "{what}");
            assert!(!path.exists(), "{what}: the entry is removed");
            cache.put(&deb, &members()).unwrap();
            assert_eq!(cache.get(&deb).unwrap(), Some(members()), "{what}");
        }
    }

    #[test]
    fn an_entry_under_another_packages_name_is_not_used() {
        let (_dir, cache, deb) = stored();
        let other = Sha256Digest::of(b"another .deb");
        std::fs::copy(cache.entry_path(&deb), cache.entry_path(&other)).unwrap();
        assert!(!cache.has(&other));
        assert_eq!(cache.get(&other).unwrap(), None);
        assert!(!cache.entry_path(&other).exists());
    }
}
