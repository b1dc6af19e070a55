//! Paths inside the node's root filesystem: validation of untrusted archive
//! entries, and the merged-/usr aliases.
//!
//! Since Debian 12 the root has `bin -> usr/bin` (and `sbin`, `lib`, `lib64`
//! on amd64). dpkg writes through these aliases; an OCI layer that contained
//! a `bin/` directory entry would replace the link with a directory. So every
//! path is canonicalised through the aliases before it enters the tree, and
//! writing through any other symlink is refused: that is how a hostile
//! package would reach outside the directory it claims.

use super::tree::{Node, NodeKind, Tree};
use crate::platform::Arch;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("`{0}` is empty")]
    Empty(String),
    #[error("`{0}` is an absolute path; archive entries must be relative to the root")]
    Absolute(String),
    #[error("`{0}` contains `..`; it could write outside the root filesystem")]
    ParentDir(String),
    #[error("`{0}` contains a NUL byte")]
    Nul(String),
    #[error(
        "`{path}` would be written through the symlink `/{link}`, which is not a merged-/usr alias"
    )]
    ThroughSymlink { path: String, link: String },
    #[error("`{path}` would be written under `/{parent}`, which is a file")]
    UnderFile { path: String, parent: String },
}

/// The merged-/usr alias directories per architecture, as mmdebstrap's
/// merged-usr hook and trixie's base-files create them.
pub fn usrmerge_aliases(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::Amd64 => &["bin", "lib", "lib64", "sbin"],
        Arch::Arm64 => &["bin", "lib", "sbin"],
    }
}

/// Creates `usr/<dir>` and the `<dir> -> usr/<dir>` links before any
/// package is unpacked, so unpack order cannot turn an alias into a directory.
pub fn setup_merged_usr(tree: &mut Tree, arch: Arch, mtime: u64) {
    tree.insert("usr", Node::dir(0o755).with_mtime(mtime));
    for alias in usrmerge_aliases(arch) {
        tree.insert(format!("usr/{alias}"), Node::dir(0o755).with_mtime(mtime));
        tree.insert(
            *alias,
            Node::symlink(format!("usr/{alias}")).with_mtime(mtime),
        );
    }
}

/// Validates an archive entry name (`./usr/bin/ls`, `usr/bin/ls/`) and returns
/// it without `./`, duplicate or trailing slashes.
pub fn normalize_entry(raw: &str) -> Result<String, PathError> {
    if raw.contains('\0') {
        return Err(PathError::Nul(raw.to_string()));
    }
    if raw.starts_with('/') {
        return Err(PathError::Absolute(raw.to_string()));
    }
    normalize_components(raw)
}

/// Like `normalize_entry`, but for paths kina itself names as absolute node
/// paths (`/usr/bin/kubeadm` in a recipe).
pub fn normalize_node_path(raw: &str) -> Result<String, PathError> {
    if raw.contains('\0') {
        return Err(PathError::Nul(raw.to_string()));
    }
    normalize_components(raw.trim_start_matches('/'))
}

fn normalize_components(raw: &str) -> Result<String, PathError> {
    let mut out: Vec<&str> = Vec::new();
    for component in raw.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(PathError::ParentDir(raw.to_string())),
            c => out.push(c),
        }
    }
    if out.is_empty() {
        return Err(PathError::Empty(raw.to_string()));
    }
    Ok(out.join("/"))
}

fn is_alias(path: &str, node: &Node) -> bool {
    !path.contains('/')
        && matches!(&node.kind, NodeKind::Symlink(t) if *t == format!("usr/{path}") || *t == format!("/usr/{path}"))
}

/// Canonicalises a normalised path through the merged-/usr aliases and checks
/// that no parent is a symlink (other than an alias) or a file. When
/// `is_dir` is set, a path that is itself an alias resolves to its target.
pub fn canonicalize(tree: &Tree, path: &str, is_dir: bool) -> Result<String, PathError> {
    let mut resolved = String::new();
    let components: Vec<&str> = path.split('/').collect();
    for (i, component) in components.iter().enumerate() {
        let last = i + 1 == components.len();
        let candidate = if resolved.is_empty() {
            component.to_string()
        } else {
            format!("{resolved}/{component}")
        };
        match tree.get(&candidate) {
            Some(node) if is_alias(&candidate, node) && (!last || is_dir) => {
                resolved = format!("usr/{candidate}");
            }
            Some(node) if !last => match &node.kind {
                NodeKind::Dir => resolved = candidate,
                NodeKind::Symlink(_) => {
                    return Err(PathError::ThroughSymlink {
                        path: path.to_string(),
                        link: candidate,
                    });
                }
                NodeKind::File(_) | NodeKind::Hardlink(_) => {
                    return Err(PathError::UnderFile {
                        path: path.to_string(),
                        parent: candidate,
                    });
                }
            },
            _ => resolved = candidate,
        }
    }
    Ok(resolved)
}

/// Normalises and canonicalises a node path kina installs itself.
pub fn canonicalize_in_tree(tree: &Tree, raw: &str) -> Result<String, PathError> {
    canonicalize(tree, &normalize_node_path(raw)?, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged() -> Tree {
        let mut t = Tree::new();
        setup_merged_usr(&mut t, Arch::Amd64, 0);
        t
    }

    #[test]
    fn entries_are_normalised_and_hostile_names_refused() {
        assert_eq!(normalize_entry("./usr//bin/ls/").unwrap(), "usr/bin/ls");
        assert!(matches!(
            normalize_entry("../etc/passwd"),
            Err(PathError::ParentDir(_))
        ));
        assert!(matches!(
            normalize_entry("./usr/../../x"),
            Err(PathError::ParentDir(_))
        ));
        assert!(matches!(
            normalize_entry("/etc/passwd"),
            Err(PathError::Absolute(_))
        ));
        assert!(matches!(normalize_entry("./"), Err(PathError::Empty(_))));
    }

    #[test]
    fn paths_through_usrmerge_aliases_land_under_usr() {
        let t = merged();
        assert_eq!(canonicalize(&t, "bin/ls", false).unwrap(), "usr/bin/ls");
        assert_eq!(
            canonicalize(&t, "lib64/ld-linux-x86-64.so.2", false).unwrap(),
            "usr/lib64/ld-linux-x86-64.so.2"
        );
        assert_eq!(canonicalize(&t, "bin", true).unwrap(), "usr/bin");
        assert_eq!(canonicalize(&t, "bin", false).unwrap(), "bin");
        assert_eq!(canonicalize(&t, "etc/passwd", false).unwrap(), "etc/passwd");
    }

    #[test]
    fn writing_through_any_other_symlink_is_refused() {
        let mut t = merged();
        t.insert("etc", Node::dir(0o755));
        t.insert("etc/evil", Node::symlink("/root"));
        let err = canonicalize(&t, "etc/evil/.ssh/authorized_keys", false).unwrap_err();
        assert!(matches!(err, PathError::ThroughSymlink { .. }), "{err}");
        t.insert("etc/file", Node::file(b"x".to_vec(), 0o644));
        assert!(matches!(
            canonicalize(&t, "etc/file/x", false),
            Err(PathError::UnderFile { .. })
        ));
    }
}
