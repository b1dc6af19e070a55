//! The top level of a parsed kubeconfig as far as kina touches it: where
//! its three lists and `current-context` are, checked to have shapes kina
//! can edit.
//!
//! Merging, removing, the read-back check and admin.conf reading all start
//! from this one view, so a file kina refuses is refused the same way by
//! each of them.

use super::{CURRENT_CONTEXT, List};
use crate::kubeconfig::yaml::{Kind, Node};

/// One of the three lists as found in the file.
pub(super) struct Slot<'n> {
    pub(super) list: List,
    pub(super) key: Option<&'n Node>,
    pub(super) value: Option<&'n Node>,
    /// The list's items and their `name`s.
    pub(super) items: Vec<(&'n Node, Option<&'n str>)>,
}

/// The top-level mapping with our keys looked up and checked.
pub(super) struct Top<'n> {
    pub(super) root: &'n Node,
    /// Byte offset of `{` when the top level is a flow mapping (JSON).
    pub(super) flow_open: Option<usize>,
    pub(super) entries: &'n [(Node, Node)],
    pub(super) slots: [Slot<'n>; 3],
    pub(super) current: Option<(&'n Node, &'n Node)>,
}

/// Checks that the top level is a kubeconfig as far as we touch it: a
/// mapping with string keys, no key twice, the three lists lists of mappings
/// with string names, `current-context` a string.
pub(super) fn inspect(root: &Node) -> Result<Top<'_>, String> {
    let (entries, flow_open) = match &root.kind {
        Kind::Map { entries, open } => (entries.as_slice(), *open),
        _ => {
            return Err(format!(
                "the top level is {}, not a mapping",
                root.describe()
            ));
        }
    };
    check_keys(entries)?;
    let slots = [
        locate(entries, List::Clusters)?,
        locate(entries, List::Contexts)?,
        locate(entries, List::Users)?,
    ];
    let current = find(entries, CURRENT_CONTEXT);
    if let Some((_, v)) = current
        && !matches!(v.kind, Kind::Scalar { .. })
    {
        return Err(format!(
            "`{CURRENT_CONTEXT}` is {}, not a string",
            v.describe()
        ));
    }
    Ok(Top {
        root,
        flow_open,
        entries,
        slots,
        current,
    })
}

/// Every top-level key is a string, and none appears twice: a key written
/// twice reads differently in different YAML libraries, so kina cannot know
/// which one kubectl uses.
fn check_keys(entries: &[(Node, Node)]) -> Result<(), String> {
    let mut seen: Vec<&str> = Vec::new();
    for (key, _) in entries {
        let Some(name) = key.scalar() else {
            return Err(format!(
                "a top-level key is {}, not a string",
                key.describe()
            ));
        };
        if seen.contains(&name) {
            return Err(format!("the top-level key `{name}` appears twice"));
        }
        seen.push(name);
    }
    Ok(())
}

/// The top-level key `name` and its value.
fn find<'n>(entries: &'n [(Node, Node)], name: &str) -> Option<(&'n Node, &'n Node)> {
    entries
        .iter()
        .find(|(k, _)| k.scalar() == Some(name))
        .map(|(k, v)| (k, v))
}

/// `list` as the file has it: missing, null, or a list of mappings.
fn locate(entries: &[(Node, Node)], list: List) -> Result<Slot<'_>, String> {
    let Some((key, value)) = find(entries, list.key()) else {
        return Ok(Slot {
            list,
            key: None,
            value: None,
            items: Vec::new(),
        });
    };
    let items = match &value.kind {
        Kind::Scalar { .. } if value.is_null() => Vec::new(),
        Kind::Seq { items, .. } => named_items(list, items)?,
        _ => {
            return Err(format!(
                "`{}` is {}, not a list",
                list.key(),
                value.describe()
            ));
        }
    };
    Ok(Slot {
        list,
        key: Some(key),
        value: Some(value),
        items,
    })
}

/// The items of `list`, each a mapping, with its `name` if it has one.
fn named_items(list: List, nodes: &[Node]) -> Result<Vec<(&Node, Option<&str>)>, String> {
    let key = list.key();
    nodes
        .iter()
        .enumerate()
        .map(|(i, item)| {
            if !matches!(item.kind, Kind::Map { .. }) {
                return Err(format!(
                    "`{key}` item {} is {}, not a mapping",
                    i + 1,
                    item.describe()
                ));
            }
            let name = match item.get("name") {
                None => None,
                Some(n) => match &n.kind {
                    Kind::Scalar { value, .. } => Some(value.as_str()),
                    _ => {
                        return Err(format!(
                            "the name of `{key}` item {} is {}, not a string",
                            i + 1,
                            n.describe()
                        ));
                    }
                },
            };
            Ok((item, name))
        })
        .collect()
}
