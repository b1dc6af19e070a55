//! Temporary files under the data directory's `tmp/`: image archives made
//! for `ctr import` or Apple's `container image load`, often hundreds of
//! megabytes. Each is named after the process that made it and removed
//! when dropped; files of processes that no longer exist (a kina killed or
//! interrupted mid-export) are swept by the next kina that makes one.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// A file that is removed when this is dropped.
#[derive(Debug)]
pub struct ScratchFile {
    path: PathBuf,
}

impl ScratchFile {
    /// `dir/<what>-<pid>-<n>.tar`, after sweeping `dir` of the files of
    /// dead processes. The file itself is not created.
    pub fn in_dir(dir: &Path, what: &str, n: usize) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        sweep(dir);
        Ok(Self {
            path: dir.join(format!("{what}-{}-{n}.tar", std::process::id())),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The pid in a scratch file's name, `<what>-<pid>-<n>.tar`.
fn owner(name: &str) -> Option<i32> {
    let stem = name.strip_suffix(".tar")?;
    let mut parts = stem.rsplitn(3, '-');
    let _n: usize = parts.next()?.parse().ok()?;
    let pid = parts.next()?.parse().ok()?;
    parts.next().filter(|what| !what.is_empty())?;
    Some(pid)
}

/// Removes the scratch files whose process is gone. A pid that was reused
/// by a live process keeps its file until that process ends: harmless.
fn sweep(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(owner) else {
            continue;
        };
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH);
        if gone {
            tracing::debug!("removing {} left by process {pid}", entry.path().display());
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_process() {
        assert_eq!(owner("load-123-0.tar"), Some(123));
        assert_eq!(owner("apple-load-77-0.tar"), Some(77));
        assert_eq!(owner("load-123-0.tar.part"), None);
        assert_eq!(owner("-123-0.tar"), None);
        assert_eq!(owner("notes.txt"), None);
    }

    #[test]
    fn files_of_dead_processes_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        // A process that has exited and been reaped: its pid is free.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = dir.path().join(format!("load-{dead}-0.tar"));
        std::fs::write(&stale, b"left by an interrupted kina").unwrap();
        let unrelated = dir.path().join("notes.txt");
        std::fs::write(&unrelated, b"not ours").unwrap();

        let mine = ScratchFile::in_dir(dir.path(), "load", 0).unwrap();
        std::fs::write(mine.path(), b"in use").unwrap();
        assert!(!stale.exists(), "a dead process's export was kept");
        assert!(unrelated.exists());

        // A second scratch file of this (live) process leaves the first be.
        let second = ScratchFile::in_dir(dir.path(), "load", 1).unwrap();
        assert!(mine.path().exists());
        let first = mine.path().to_path_buf();
        drop(mine);
        assert!(!first.exists(), "dropping removes the file");
        drop(second);
    }
}
