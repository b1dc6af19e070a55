//! The in-memory root filesystem a node image is assembled in.
//!
//! Nothing is ever unpacked onto the host: a case-insensitive APFS volume would
//! merge `libxt_DSCP.so` with `libxt_dscp.so`, and an unprivileged host would
//! lose owners and device nodes. Paths are kept as exact byte strings, relative
//! to `/` without a leading slash (`usr/bin/ls`), and ordered, so the layer
//! writer emits parents before children in a stable order.

use std::collections::BTreeMap;

use bytes::Bytes;

/// What a path is. Hard links name another path of the same tree.
///
/// A file's contents are a shared slice (of its package's `data.tar`, for a
/// packaged file): copying a tree to diff a stage against, and the layer
/// made from that diff, copy no file data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Dir,
    File(Bytes),
    Symlink(String),
    Hardlink(String),
}

/// One filesystem entry with its metadata exactly as packaged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: NodeKind,
    /// Permission bits including setuid, setgid and sticky (e.g. 0o4755, 0o1777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch; the layer writer clamps it to the build's epoch.
    pub mtime: u64,
    /// Extended attributes such as `security.capability`, sorted by name.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Node {
    pub fn dir(mode: u32) -> Self {
        Self::new(NodeKind::Dir, mode)
    }

    pub fn file(contents: impl Into<Bytes>, mode: u32) -> Self {
        Self::new(NodeKind::File(contents.into()), mode)
    }

    pub fn symlink(target: impl Into<String>) -> Self {
        Self::new(NodeKind::Symlink(target.into()), 0o777)
    }

    fn new(kind: NodeKind, mode: u32) -> Self {
        Self {
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: BTreeMap::new(),
        }
    }

    pub fn with_owner(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn with_mtime(mut self, mtime: u64) -> Self {
        self.mtime = mtime;
        self
    }
}

/// A set of paths and their nodes. A whole root filesystem and a single layer
/// are both trees; `diff` turns two successive root filesystems into a layer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    entries: BTreeMap<String, Node>,
}

impl Tree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.entries.get(path)
    }

    pub fn get_mut(&mut self, path: &str) -> Option<&mut Node> {
        self.entries.get_mut(path)
    }

    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(path)
    }

    /// Inserts or replaces `path`. The caller has already validated and
    /// canonicalised it (see `rootfs::path`); this type only stores.
    pub fn insert(&mut self, path: impl Into<String>, node: Node) -> Option<Node> {
        self.entries.insert(path.into(), node)
    }

    pub fn remove(&mut self, path: &str) -> Option<Node> {
        self.entries.remove(path)
    }

    /// Entries in path order: a parent always comes before its children.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.entries.iter().map(|(p, n)| (p.as_str(), n))
    }

    /// Entries under `dir` (not including `dir` itself), in path order.
    pub fn children_of<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = (&'a str, &'a Node)> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.entries
            .range(prefix.clone()..)
            .take_while(move |(p, _)| p.starts_with(&prefix))
            .map(|(p, n)| (p.as_str(), n))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The layer that turns `lower` into `self`: every path that is new or
    /// changed, plus the ancestors of those paths, so tools that expect parents
    /// in each layer (and a case-insensitive unpacker) see complete paths.
    /// Deletions are not expressed: kina's stages only ever add or replace.
    pub fn diff(&self, lower: &Tree) -> Tree {
        let mut layer = Tree::new();
        for (path, node) in &self.entries {
            if lower.entries.get(path) == Some(node) {
                continue;
            }
            layer.entries.insert(path.clone(), node.clone());
            let mut parent = path.as_str();
            while let Some((p, _)) = parent.rsplit_once('/') {
                parent = p;
                if layer.entries.contains_key(parent) {
                    break;
                }
                if let Some(ancestor) = self.entries.get(parent) {
                    layer.entries.insert(parent.to_string(), ancestor.clone());
                }
            }
        }
        layer
    }

    /// Paths of `lower` that `self` no longer has; a stage that produced any is
    /// a builder bug, since layers carry no whiteouts.
    pub fn removed_since<'a>(&'a self, lower: &'a Tree) -> impl Iterator<Item = &'a str> {
        lower
            .entries
            .keys()
            .filter(|p| !self.entries.contains_key(*p))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Tree {
        let mut t = Tree::new();
        t.insert("usr", Node::dir(0o755));
        t.insert("usr/bin", Node::dir(0o755));
        t.insert("usr/bin/ls", Node::file(b"ls".to_vec(), 0o755));
        t.insert("bin", Node::symlink("usr/bin"));
        t.insert("tmp", Node::dir(0o1777));
        t
    }

    #[test]
    fn iteration_puts_parents_before_children_even_with_sibling_prefixes() {
        let mut t = sample();
        t.insert("usr-local", Node::dir(0o755));
        let paths: Vec<_> = t.iter().map(|(p, _)| p).collect();
        let pos = |p: &str| paths.iter().position(|x| *x == p).unwrap();
        assert!(pos("usr") < pos("usr/bin"));
        assert!(pos("usr/bin") < pos("usr/bin/ls"));
    }

    #[test]
    fn diff_holds_changed_paths_with_their_ancestors_only() {
        let lower = sample();
        let mut upper = lower.clone();
        upper.insert("usr/bin/ip", Node::file(b"ip".to_vec(), 0o755));
        upper.insert("tmp", Node::dir(0o1777));
        let layer = upper.diff(&lower);
        let paths: Vec<_> = layer.iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["usr", "usr/bin", "usr/bin/ip"]);
    }

    #[test]
    fn diff_includes_a_file_whose_metadata_changed() {
        let lower = sample();
        let mut upper = lower.clone();
        upper.get_mut("usr/bin/ls").unwrap().mode = 0o4755;
        let layer = upper.diff(&lower);
        assert_eq!(layer.get("usr/bin/ls").unwrap().mode, 0o4755);
    }

    #[test]
    fn children_of_lists_only_descendants() {
        let t = sample();
        let kids: Vec<_> = t.children_of("usr").map(|(p, _)| p).collect();
        assert_eq!(kids, ["usr/bin", "usr/bin/ls"]);
    }
}
