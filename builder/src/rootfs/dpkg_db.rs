//! dpkg's database, as dpkg would have left it after installing the packages:
//! `/var/lib/dpkg/status` and `info/`, so `dpkg -l`, `dpkg -S`, apt and SBOM
//! scanners work inside a node.

use std::collections::BTreeMap;

use md5::{Digest, Md5};

use super::tree::{Node, NodeKind, Tree};
use crate::deb::reader::DebPackage;
use crate::debian::control::Paragraph;
use crate::platform::Arch;

/// What dpkg remembers of an installed package.
#[derive(Clone, Debug)]
pub struct InstalledPackage {
    pub name: String,
    pub control: Paragraph,
    pub control_files: BTreeMap<String, Vec<u8>>,
    /// Paths in `.list` form (`/.`, `/usr`, `/usr/bin/ls`).
    pub files: Vec<String>,
}

impl InstalledPackage {
    pub fn new(deb: &DebPackage, files: Vec<String>) -> Self {
        Self {
            name: deb.name().to_string(),
            control: deb.control.clone(),
            control_files: deb.control_files.clone(),
            files,
        }
    }

    /// `name` or `name:arch` for `Multi-Arch: same` packages, as dpkg names
    /// their info files.
    fn info_name(&self, arch: Arch) -> String {
        if self.control.get("Multi-Arch") == Some("same") {
            let pkg_arch = self.control.get("Architecture").unwrap_or(arch.debian());
            format!("{}:{pkg_arch}", self.name)
        } else {
            self.name.clone()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DpkgDbError {
    #[error("package {package} lists conffile {path}, but does not ship it")]
    MissingConffile { package: String, path: String },
}

/// Maintainer-script and metadata members dpkg keeps in `info/`.
const INFO_MEMBERS: &[&str] = &[
    "conffiles",
    "config",
    "md5sums",
    "postinst",
    "postrm",
    "preinst",
    "prerm",
    "shlibs",
    "symbols",
    "templates",
    "triggers",
];

/// Writes the whole database for `installed` (sorted by name, as dpkg does).
pub fn write_dpkg_database(
    tree: &mut Tree,
    installed: &[InstalledPackage],
    arch: Arch,
    epoch: u64,
) -> Result<(), DpkgDbError> {
    let mut sorted: Vec<&InstalledPackage> = installed.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut status = String::new();
    for package in &sorted {
        let mut paragraph = package.control.clone();
        paragraph.insert_after("Package", "Status", "install ok installed");
        if let Some(conffiles) = package.control_files.get("conffiles") {
            let mut lines = String::new();
            for line in String::from_utf8_lossy(conffiles)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
            {
                // `remove-on-upgrade /etc/x` names a conffile the package no
                // longer ships (deb-conffiles(5)); dpkg does not track it.
                if line.starts_with("remove-on-upgrade") {
                    continue;
                }
                let path = line.split_whitespace().last().unwrap_or(line);
                let content =
                    file_content(tree, path).ok_or_else(|| DpkgDbError::MissingConffile {
                        package: package.name.clone(),
                        path: path.to_string(),
                    })?;
                lines.push_str(&format!("\n {path} {}", hex::encode(Md5::digest(content))));
            }
            if !lines.is_empty() {
                // dpkg places Conffiles right before Description.
                let description = paragraph.remove("Description");
                paragraph.set("Conffiles", lines);
                if let Some(d) = description {
                    paragraph.set("Description", d);
                }
            }
        }
        paragraph.write_to(&mut status);
        status.push('\n');
    }
    let dir = Node::dir(0o755).with_mtime(epoch);
    for d in [
        "var",
        "var/lib",
        "var/lib/dpkg",
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
        "var/lib/dpkg/alternatives",
    ] {
        if !tree.contains(d) {
            tree.insert(d, dir.clone());
        }
    }
    let file = |data: Vec<u8>, mode: u32| Node::file(data, mode).with_mtime(epoch);
    tree.insert("var/lib/dpkg/status", file(status.into_bytes(), 0o644));
    for empty in ["available", "diversions", "statoverride"] {
        tree.insert(format!("var/lib/dpkg/{empty}"), file(Vec::new(), 0o644));
    }
    tree.insert("var/lib/dpkg/info/format", file(b"1\n".to_vec(), 0o644));
    for package in &sorted {
        let base = package.info_name(arch);
        let mut list = package.files.join("\n");
        list.push('\n');
        tree.insert(
            format!("var/lib/dpkg/info/{base}.list"),
            file(list.into_bytes(), 0o644),
        );
        for member in INFO_MEMBERS {
            if let Some(data) = package.control_files.get(*member) {
                let mode = if matches!(
                    *member,
                    "config" | "postinst" | "postrm" | "preinst" | "prerm"
                ) {
                    0o755
                } else {
                    0o644
                };
                tree.insert(
                    format!("var/lib/dpkg/info/{base}.{member}"),
                    file(data.clone(), mode),
                );
            }
        }
    }
    Ok(())
}

fn file_content<'a>(tree: &'a Tree, path: &str) -> Option<&'a [u8]> {
    let normalized = super::path::normalize_node_path(path).ok()?;
    let canonical = super::path::canonicalize(tree, &normalized, false).ok()?;
    match &tree.get(&canonical)?.kind {
        NodeKind::File(data) => Some(data),
        _ => None,
    }
}
