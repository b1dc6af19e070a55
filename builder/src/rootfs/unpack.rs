//! Unpacking a package's `data.tar` into the in-memory tree, as dpkg's unpack
//! phase would, minus the maintainer scripts.
//!
//! Entries are checked before anything is written: names are validated and
//! canonicalised (see `path`), hard links must name a file of the same
//! package, and device nodes and FIFOs are refused (Debian packages never
//! ship them; one in a `.deb` means the input is not what it claims to be).
//! A file that another package already installed is an error unless the new
//! package `Replaces` that package, as dpkg requires.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::path::{PathError, canonicalize, normalize_entry};
use super::tree::{Node, NodeKind, Tree};
use crate::deb::reader::DebPackage;
use crate::debian::relation::parse_relations;
use crate::platform::Arch;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("{origin}: entry `{entry}`: {source}")]
    Path {
        origin: String,
        entry: String,
        source: PathError,
    },
    #[error("{origin}: entry `{entry}`: {problem}")]
    Entry {
        origin: String,
        entry: String,
        problem: String,
    },
    #[error("{origin}: data.tar is corrupt: {message}")]
    Corrupt { origin: String, message: String },
    #[error(
        "{origin} ships /{path}, which {owner} already installed, and does not declare `Replaces: {owner}`"
    )]
    Overwrite {
        origin: String,
        path: String,
        owner: String,
    },
}

/// Tracks which package installed each path, across all packages of a build.
pub struct Unpacker {
    arch: Arch,
    owners: BTreeMap<String, String>,
}

impl Unpacker {
    pub fn new(arch: Arch) -> Self {
        Self {
            arch,
            owners: BTreeMap::new(),
        }
    }

    /// Unpacks `deb` into `tree` and returns the paths it installed, in the
    /// form of dpkg's `info/<package>.list` (`/.` first, then `/usr`, …).
    pub fn unpack(
        &mut self,
        tree: &mut Tree,
        deb: &DebPackage,
        origin: &str,
    ) -> Result<Vec<String>, UnpackError> {
        self.unpack_shared(tree, deb, Bytes::copy_from_slice(&deb.data_tar), origin)
    }

    /// `unpack` with the package's `data.tar` given separately (moved out of
    /// `deb`): each file's contents are a slice of it, not a copy.
    pub fn unpack_shared(
        &mut self,
        tree: &mut Tree,
        deb: &DebPackage,
        data_tar: Bytes,
        origin: &str,
    ) -> Result<Vec<String>, UnpackError> {
        let package = deb.name().to_string();
        let replaces: BTreeSet<String> = deb
            .control
            .get("Replaces")
            .and_then(|t| parse_relations(t, self.arch).ok())
            .into_iter()
            .flatten()
            .flatten()
            .map(|r| r.name)
            .collect();
        let corrupt = |e: std::io::Error| UnpackError::Corrupt {
            origin: origin.to_string(),
            message: e.to_string(),
        };
        // Seeking past each file's data instead of reading it: the data is
        // taken as a slice of `data_tar` below.
        let mut archive = tar::Archive::new(std::io::Cursor::new(&data_tar[..]));
        let mut installed = vec!["/.".to_string()];
        let mut mine: BTreeSet<String> = BTreeSet::new();
        for entry in archive.entries_with_seek().map_err(corrupt)? {
            let mut entry = entry.map_err(corrupt)?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let entry_err = |problem: String| UnpackError::Entry {
                origin: origin.to_string(),
                entry: raw.clone(),
                problem,
            };
            let path_err = |source: PathError| UnpackError::Path {
                origin: origin.to_string(),
                entry: raw.clone(),
                source,
            };
            let header = entry.header();
            let kind = header.entry_type();
            if raw
                .trim_start_matches("./")
                .trim_end_matches('/')
                .is_empty()
                && kind.is_dir()
            {
                continue; // the `./` root entry
            }
            let normalized = normalize_entry(&raw).map_err(path_err)?;
            let path = canonicalize(tree, &normalized, kind.is_dir()).map_err(path_err)?;
            let mode = header.mode().map_err(|e| entry_err(e.to_string()))? & 0o7777;
            let uid = header.uid().map_err(|e| entry_err(e.to_string()))? as u32;
            let gid = header.gid().map_err(|e| entry_err(e.to_string()))? as u32;
            let mtime = header.mtime().map_err(|e| entry_err(e.to_string()))?;
            let link = header
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            let mut xattrs = BTreeMap::new();
            if let Some(exts) = entry.pax_extensions().map_err(corrupt)? {
                for ext in exts {
                    let ext = ext.map_err(corrupt)?;
                    if let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr."))
                    {
                        xattrs.insert(name.to_string(), ext.value_bytes().to_vec());
                    }
                }
            }
            let node_kind = if kind.is_dir() {
                NodeKind::Dir
            } else if kind.is_file() || kind == tar::EntryType::Continuous {
                // The header's size is untrusted: the data must lie within
                // the archive.
                let start = usize::try_from(entry.raw_file_position()).ok();
                let end = start.and_then(|s| {
                    usize::try_from(entry.size())
                        .ok()
                        .and_then(|n| s.checked_add(n))
                });
                match (start, end) {
                    (Some(start), Some(end)) if end <= data_tar.len() => {
                        NodeKind::File(data_tar.slice(start..end))
                    }
                    _ => {
                        return Err(UnpackError::Corrupt {
                            origin: origin.to_string(),
                            message: format!(
                                "entry `{raw}` claims {} bytes, past the end of the archive",
                                entry.size()
                            ),
                        });
                    }
                }
            } else if kind.is_symlink() {
                let target = link.ok_or_else(|| entry_err("symlink without a target".into()))?;
                if target.is_empty() || target.contains('\0') {
                    return Err(entry_err("symlink with an empty or invalid target".into()));
                }
                NodeKind::Symlink(target)
            } else if kind.is_hard_link() {
                let target = link.ok_or_else(|| entry_err("hard link without a target".into()))?;
                let target = normalize_entry(&target).map_err(path_err)?;
                let target = canonicalize(tree, &target, false).map_err(path_err)?;
                if !mine.contains(&target)
                    || !matches!(tree.get(&target).map(|n| &n.kind), Some(NodeKind::File(_)))
                {
                    return Err(entry_err(format!(
                        "hard link to /{target}, which is not a file of this package"
                    )));
                }
                NodeKind::Hardlink(target)
            } else {
                return Err(entry_err(format!(
                    "is a {kind:?}; Debian packages contain only files, directories and links"
                )));
            };
            let node = Node {
                kind: node_kind,
                mode,
                uid,
                gid,
                mtime,
                xattrs,
            };
            self.place(tree, &path, node, &package, &replaces, origin)?;
            installed.push(format!("/{path}"));
            mine.insert(path);
        }
        Ok(installed)
    }

    fn place(
        &mut self,
        tree: &mut Tree,
        path: &str,
        node: Node,
        package: &str,
        replaces: &BTreeSet<String>,
        origin: &str,
    ) -> Result<(), UnpackError> {
        let entry_err = |problem: String| UnpackError::Entry {
            origin: origin.to_string(),
            entry: path.to_string(),
            problem,
        };
        // Entries already stored under `path` (an archive may list children
        // before their directory) make it a directory: anything else there
        // would have them stored through a symlink or under a file.
        if !matches!(node.kind, NodeKind::Dir) && tree.children_of(path).next().is_some() {
            return Err(entry_err(format!(
                "is a {}, but entries exist under it",
                describe(&node.kind)
            )));
        }
        match (tree.get(path), &node.kind) {
            // dpkg keeps an existing directory as it is.
            (Some(existing), NodeKind::Dir) if matches!(existing.kind, NodeKind::Dir) => {
                return Ok(());
            }
            (Some(existing), NodeKind::Dir) => {
                return Err(entry_err(format!(
                    "is a directory, but another package installed a {} there",
                    describe(&existing.kind)
                )));
            }
            (Some(existing), _) if matches!(existing.kind, NodeKind::Dir) => {
                return Err(entry_err(
                    "is not a directory, but a directory exists there".into(),
                ));
            }
            (Some(existing), _) => {
                if let Some(owner) = self.owners.get(path)
                    && owner != package
                    && !replaces.contains(owner)
                    && *existing != node
                {
                    return Err(UnpackError::Overwrite {
                        origin: origin.to_string(),
                        path: path.to_string(),
                        owner: owner.clone(),
                    });
                }
            }
            (None, _) => {}
        }
        if !matches!(node.kind, NodeKind::Dir) {
            self.owners.insert(path.to_string(), package.to_string());
        }
        tree.insert(path.to_string(), node);
        Ok(())
    }
}

fn describe(kind: &NodeKind) -> &'static str {
    match kind {
        NodeKind::Dir => "directory",
        NodeKind::File(_) => "file",
        NodeKind::Symlink(_) => "symlink",
        NodeKind::Hardlink(_) => "hard link",
    }
}
