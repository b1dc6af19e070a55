//! System accounts, as base-passwd's `preinst` and passwd's `shadowconfig on`
//! would create them.
//!
//! base-passwd ships the Debian-allocated accounts (root, daemon, …, `_apt`
//! as uid 42, nobody) as `passwd.master`/`group.master`; its preinst copies
//! them to /etc. passwd's postinst then runs `shadowconfig on`, i.e. pwconv
//! and grpconv, which move the password fields to shadow files readable by
//! group `shadow` (gid 42). The shadow "last change" day is the build epoch,
//! the way pwconv honours SOURCE_DATE_EPOCH, so builds stay reproducible.

use super::tree::{Node, NodeKind, Tree};

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("/{0} is missing: base-passwd must be part of the image")]
    MissingMaster(&'static str),
    #[error("/{path} line {line}: expected {fields} colon-separated fields")]
    Malformed {
        path: &'static str,
        line: usize,
        fields: usize,
    },
    #[error("group `shadow` is not in group.master; /etc/shadow could not get its owner")]
    NoShadowGroup,
}

pub const PASSWD_MASTER: &str = "usr/share/base-passwd/passwd.master";
const GROUP_MASTER: &str = "usr/share/base-passwd/group.master";

fn read_lines(
    tree: &Tree,
    path: &'static str,
    fields: usize,
) -> Result<Vec<Vec<String>>, AccountsError> {
    let Some(Node {
        kind: NodeKind::File(data),
        ..
    }) = tree.get(path)
    else {
        return Err(AccountsError::MissingMaster(path));
    };
    let text = String::from_utf8_lossy(data);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parts: Vec<String> = line.split(':').map(str::to_string).collect();
        if parts.len() != fields {
            return Err(AccountsError::Malformed {
                path,
                line: i + 1,
                fields,
            });
        }
        out.push(parts);
    }
    Ok(out)
}

/// Writes /etc/passwd, group, shadow and gshadow. `epoch` is the build time.
pub fn write_accounts(tree: &mut Tree, epoch: u64) -> Result<(), AccountsError> {
    let users = read_lines(tree, PASSWD_MASTER, 7)?;
    let groups = read_lines(tree, GROUP_MASTER, 4)?;
    let shadow_gid: u32 = groups
        .iter()
        .find(|g| g[0] == "shadow")
        .and_then(|g| g[2].parse().ok())
        .ok_or(AccountsError::NoShadowGroup)?;
    let last_change = epoch / 86_400;

    let mut passwd = String::new();
    let mut shadow = String::new();
    for u in &users {
        passwd.push_str(&format!("{}:x:{}\n", u[0], u[2..].join(":")));
        shadow.push_str(&format!("{}:{}:{last_change}:0:99999:7:::\n", u[0], u[1]));
    }
    let mut group = String::new();
    let mut gshadow = String::new();
    for g in &groups {
        group.push_str(&format!("{}:x:{}:{}\n", g[0], g[2], g[3]));
        gshadow.push_str(&format!("{}:{}::{}\n", g[0], g[1], g[3]));
    }
    let file = |text: String, mode: u32, gid: u32| {
        Node::file(text.into_bytes(), mode)
            .with_owner(0, gid)
            .with_mtime(epoch)
    };
    tree.insert("etc/passwd", file(passwd, 0o644, 0));
    tree.insert("etc/group", file(group, 0o644, 0));
    tree.insert("etc/shadow", file(shadow, 0o640, shadow_gid));
    tree.insert("etc/gshadow", file(gshadow, 0o640, shadow_gid));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masters() -> Tree {
        let mut t = Tree::new();
        t.insert(
            PASSWD_MASTER,
            Node::file(b"root:*:0:0:root:/root:/bin/bash\n_apt:*:42:65534::/nonexistent:/usr/sbin/nologin\n".to_vec(), 0o644),
        );
        t.insert(
            GROUP_MASTER,
            Node::file(b"root:*:0:\nshadow:*:42:\nusers:*:100:\n".to_vec(), 0o644),
        );
        t
    }

    fn text(t: &Tree, p: &str) -> String {
        match &t.get(p).unwrap().kind {
            NodeKind::File(d) => String::from_utf8(d.to_vec()).unwrap(),
            _ => panic!("{p} is not a file"),
        }
    }

    #[test]
    fn passwords_move_to_shadow_files_readable_by_group_shadow() {
        let mut t = masters();
        write_accounts(&mut t, 86_400 * 20_000 + 5).unwrap();
        assert_eq!(
            text(&t, "etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\n_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\n"
        );
        assert!(text(&t, "etc/shadow").starts_with("root:*:20000:0:99999:7:::\n"));
        assert_eq!(text(&t, "etc/gshadow"), "root:*::\nshadow:*::\nusers:*::\n");
        let shadow = t.get("etc/shadow").unwrap();
        assert_eq!((shadow.mode, shadow.uid, shadow.gid), (0o640, 0, 42));
    }

    #[test]
    fn without_base_passwd_the_error_says_so() {
        let err = write_accounts(&mut Tree::new(), 0).unwrap_err();
        assert!(err.to_string().contains("base-passwd"));
    }
}
