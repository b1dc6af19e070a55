//! sha256 of local input files, remembered by what `stat` says of them, so
//! a no-op rebuild does not read and hash each platform's 11–12 MB kina-init
//! again to learn that nothing changed (the build key names its digest).
//!
//! An entry holds the file's device, inode, size, mtime and ctime in
//! nanoseconds. ctime cannot be set from user space and moves on every
//! write, so any change to the file misses the entry. As git does for its
//! index ("racily clean" entries), nothing is remembered for a file changed
//! in the last two seconds, whose next write could keep the same
//! timestamps on a coarse filesystem clock. A missing or damaged entry only
//! means hashing the file again.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::digest::Sha256Digest;

/// Entries live in `dir`, one small file per input path.
#[derive(Clone, Debug)]
pub struct DigestMemo {
    dir: PathBuf,
}

/// How recent a change must be for its digest not to be remembered.
const RACY: Duration = Duration::from_secs(2);

fn stat_line(meta: &std::fs::Metadata) -> String {
    format!(
        "{} {} {} {}.{:09} {}.{:09}",
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    )
}

impl DigestMemo {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn entry(&self, file: &Path) -> PathBuf {
        let key = Sha256Digest::of(file.as_os_str().as_encoded_bytes());
        self.dir.join(key.hex())
    }

    /// The sha256 of `file`, from the memo when `stat` still matches,
    /// else read, hashed and remembered. Errors are reading `file`'s.
    pub fn digest(&self, file: &Path) -> io::Result<Sha256Digest> {
        let meta = std::fs::metadata(file)?;
        let stat = stat_line(&meta);
        let entry = self.entry(file);
        if let Ok(text) = std::fs::read_to_string(&entry)
            && let Some((remembered, digest)) = text.trim_end().rsplit_once(' ')
            && remembered == stat
            && let Ok(digest) = digest.parse::<Sha256Digest>()
        {
            return Ok(digest);
        }
        let digest = Sha256Digest::of(&std::fs::read(file)?);
        let changed = SystemTime::UNIX_EPOCH
            + Duration::from_secs(u64::try_from(meta.ctime()).unwrap_or(0))
            + Duration::from_nanos(u64::try_from(meta.ctime_nsec()).unwrap_or(0));
        let settled = SystemTime::now()
            .duration_since(changed)
            .is_ok_and(|age| age >= RACY);
        // The file may have changed while it was read: remember only what
        // `stat` still says afterwards.
        let unchanged = std::fs::metadata(file).is_ok_and(|m| stat_line(&m) == stat);
        if settled && unchanged && std::fs::create_dir_all(&self.dir).is_ok() {
            // Best effort: a memo that cannot be written only costs a hash.
            let _ = crate::fsutil::write_atomic(&entry, format!("{stat} {digest}\n").as_bytes());
        }
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ctime cannot be set back: wait out the racy window instead.
    fn wait_until_settled() {
        std::thread::sleep(RACY + Duration::from_millis(100));
    }

    #[test]
    fn a_settled_file_is_hashed_once_and_any_write_is_seen() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("kina-init");
        std::fs::write(&file, b"one").unwrap();
        wait_until_settled();
        let memo = DigestMemo::new(tmp.path().join("memo"));
        assert_eq!(memo.digest(&file).unwrap(), Sha256Digest::of(b"one"));
        let entry = memo.entry(&file);
        assert!(entry.exists(), "a settled file is remembered");
        // The memo answers without reading the file: a forged entry with the
        // same stat proves it.
        let text = std::fs::read_to_string(&entry).unwrap();
        let (stat, _) = text.trim_end().rsplit_once(' ').unwrap();
        std::fs::write(&entry, format!("{stat} {}\n", Sha256Digest::of(b"memo"))).unwrap();
        assert_eq!(memo.digest(&file).unwrap(), Sha256Digest::of(b"memo"));
        // Same size, new content: ctime moved, so it is hashed again.
        std::fs::write(&file, b"two").unwrap();
        assert_eq!(memo.digest(&file).unwrap(), Sha256Digest::of(b"two"));
        assert!(
            !std::fs::read_to_string(&entry)
                .unwrap()
                .contains(&Sha256Digest::of(b"two").hex()),
            "a file changed just now is not remembered"
        );
        // A damaged entry costs only a hash.
        std::fs::write(&entry, b"garbage").unwrap();
        assert_eq!(memo.digest(&file).unwrap(), Sha256Digest::of(b"two"));
        assert!(memo.digest(&tmp.path().join("missing")).is_err());
    }
}
