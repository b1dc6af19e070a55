//! `update-alternatives --install`, as the packages' postinst scripts call it.
//!
//! The postinst of iptables is the only thing that creates /usr/sbin/iptables
//! (legacy at priority 10, nft at 20); mawk's provides /usr/bin/awk. kina
//! reads those calls from the scripts, picks the highest priority as auto
//! mode does, creates the links, and writes dpkg's administrative file in the
//! exact format update-alternatives(1) itself writes, so `update-alternatives
//! --set` works inside a node.

use std::collections::BTreeMap;

use super::dpkg_db::InstalledPackage;
use super::path::normalize_node_path;
use super::tree::{Node, Tree};

#[derive(Debug, thiserror::Error)]
pub enum AlternativesError {
    #[error(
        "postinst of {package}: alternative `{name}` is installed with link {link}, but an earlier package used {other}"
    )]
    LinkMismatch {
        package: String,
        name: String,
        link: String,
        other: String,
    },
    #[error("postinst of {package}: bad update-alternatives call `{call}`")]
    Malformed { package: String, call: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Choice {
    path: String,
    priority: i64,
    /// Slave name → path.
    slaves: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct Group {
    link: String,
    /// Slave name → link.
    slave_links: BTreeMap<String, String>,
    choices: Vec<Choice>,
}

/// Extracts every `update-alternatives --install` call from a shell script,
/// joining backslash continuations. Calls with shell variables are skipped:
/// they cannot be evaluated without running the script.
fn install_calls(script: &str) -> Vec<Vec<String>> {
    let joined = script.replace("\\\n", " ");
    let mut calls = Vec::new();
    for line in joined.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(start) = words.iter().position(|w| *w == "update-alternatives") else {
            continue;
        };
        let args: Vec<String> = words[start + 1..]
            .iter()
            .take_while(|w| !matches!(**w, ";" | "||" | "&&" | "|"))
            .map(|w| w.trim_end_matches(';').to_string())
            .collect();
        if args.first().map(String::as_str) == Some("--install")
            && !args.iter().any(|a| a.contains('$'))
        {
            calls.push(args);
        }
    }
    calls
}

/// Recomputes every alternative from the installed packages' postinst scripts.
pub fn apply_alternatives(
    tree: &mut Tree,
    installed: &[InstalledPackage],
    epoch: u64,
) -> Result<usize, AlternativesError> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for package in installed {
        let Some(script) = package.control_files.get("postinst") else {
            continue;
        };
        let script = String::from_utf8_lossy(script);
        for call in install_calls(&script) {
            let malformed = || AlternativesError::Malformed {
                package: package.name.clone(),
                call: call.join(" "),
            };
            let [_, link, name, path, priority, rest @ ..] = call.as_slice() else {
                return Err(malformed());
            };
            let priority: i64 = priority.parse().map_err(|_| malformed())?;
            let group = groups.entry(name.clone()).or_default();
            if group.link.is_empty() {
                group.link = link.clone();
            } else if group.link != *link {
                return Err(AlternativesError::LinkMismatch {
                    package: package.name.clone(),
                    name: name.clone(),
                    link: link.clone(),
                    other: group.link.clone(),
                });
            }
            let mut slaves = BTreeMap::new();
            for chunk in rest.chunks(4) {
                let [flag, slave_link, slave_name, slave_path] = chunk else {
                    return Err(malformed());
                };
                if flag != "--slave" {
                    return Err(malformed());
                }
                group
                    .slave_links
                    .insert(slave_name.clone(), slave_link.clone());
                slaves.insert(slave_name.clone(), slave_path.clone());
            }
            group.choices.retain(|c| c.path != *path);
            group.choices.push(Choice {
                path: path.clone(),
                priority,
                slaves,
            });
        }
    }
    for (name, group) in &groups {
        write_group(tree, name, group, epoch);
    }
    Ok(groups.len())
}

fn exists(tree: &Tree, path: &str) -> bool {
    normalize_node_path(path)
        .is_ok_and(|p| super::path::canonicalize(tree, &p, false).is_ok_and(|c| tree.contains(&c)))
}

fn write_group(tree: &mut Tree, name: &str, group: &Group, epoch: u64) {
    let mut choices = group.choices.clone();
    choices.sort_by(|a, b| a.path.cmp(&b.path));
    // Auto mode: the highest priority wins; among equals the first in path order.
    let best = choices
        .iter()
        .filter(|c| exists(tree, &c.path))
        .max_by(|a, b| {
            a.priority
                .cmp(&b.priority)
                .then_with(|| b.path.cmp(&a.path))
        })
        .cloned();

    let mut admin = format!("auto\n{}\n", group.link);
    for (slave_name, slave_link) in &group.slave_links {
        admin.push_str(&format!("{slave_name}\n{slave_link}\n"));
    }
    admin.push('\n');
    for choice in &choices {
        admin.push_str(&format!("{}\n{}\n", choice.path, choice.priority));
        for slave_name in group.slave_links.keys() {
            admin.push_str(choice.slaves.get(slave_name).map_or("", String::as_str));
            admin.push('\n');
        }
    }
    admin.push('\n');
    tree.insert(
        format!("var/lib/dpkg/alternatives/{name}"),
        Node::file(admin.into_bytes(), 0o644).with_mtime(epoch),
    );

    let Some(best) = best else {
        return;
    };
    let link = |tree: &mut Tree, link_path: &str, alt_name: &str, target: &str| {
        tree.insert(
            format!("etc/alternatives/{alt_name}"),
            Node::symlink(target.to_string()).with_mtime(epoch),
        );
        if let Ok(p) = normalize_node_path(link_path)
            && let Ok(p) = super::path::canonicalize(tree, &p, false)
        {
            tree.insert(
                p,
                Node::symlink(format!("/etc/alternatives/{alt_name}")).with_mtime(epoch),
            );
        }
    };
    link(tree, &group.link, name, &best.path);
    for (slave_name, slave_link) in &group.slave_links {
        // update-alternatives skips a slave whose file does not exist.
        if let Some(path) = best.slaves.get(slave_name).filter(|p| exists(tree, p)) {
            link(tree, slave_link, slave_name, path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_calls_are_read_across_line_continuations() {
        let script = "if true; then\n\tupdate-alternatives \\\n\t  --install /usr/sbin/iptables iptables /usr/sbin/iptables-nft 20 \\\n\t  --slave /usr/sbin/iptables-save iptables-save /usr/sbin/iptables-nft-save\nfi\nupdate-alternatives --remove x /y\nupdate-alternatives --install /a b $C 1\n";
        let calls = install_calls(script);
        assert_eq!(calls.len(), 1);
        assert_eq!(
            calls[0][1..5],
            [
                "/usr/sbin/iptables",
                "iptables",
                "/usr/sbin/iptables-nft",
                "20"
            ]
        );
        assert_eq!(calls[0].len(), 9);
    }
}
