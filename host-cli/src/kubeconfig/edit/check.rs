//! The check every edit passes before it is written: the new text is parsed
//! again and compared, by meaning rather than by bytes, with the old.
//!
//! Text surgery can go wrong in ways a type system does not see (an
//! indentation off by one re-parents a key). Comparing what the file means
//! before and after turns any such slip into an error instead of a damaged
//! kubeconfig: apart from kina's entries and `current-context`, everything
//! must mean exactly what it meant.

use super::render::{Field, fields};
use super::top::inspect;
use super::{CURRENT_CONTEXT, LISTS, List};
use crate::kubeconfig::Entry;
use crate::kubeconfig::yaml::{self, Document, Kind, Node};

/// A node's meaning without its layout.
#[derive(Debug, PartialEq)]
pub(super) enum Value {
    Scalar(String),
    Seq(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Alias,
}

fn value(node: &Node) -> Value {
    match &node.kind {
        Kind::Scalar { value, .. } => Value::Scalar(value.clone()),
        Kind::Seq { items, .. } => Value::Seq(items.iter().map(value).collect()),
        Kind::Map { entries, .. } => {
            Value::Map(entries.iter().map(|(k, v)| (value(k), value(v))).collect())
        }
        Kind::Alias => Value::Alias,
    }
}

/// Our item as it must read back.
fn expected(list: List, entry: &Entry) -> Value {
    let s = |v: &str| Value::Scalar(v.to_string());
    Value::Map(
        fields(list, entry)
            .into_iter()
            .map(|(k, f)| {
                let v = match f {
                    Field::Str(v) => s(v),
                    Field::Map(pairs) => {
                        Value::Map(pairs.into_iter().map(|(k, v)| (s(k), s(v))).collect())
                    }
                };
                (s(k), v)
            })
            .collect(),
    )
}

/// What a kubeconfig means, as far as edits must keep it.
#[derive(Debug, Default)]
pub(super) struct Summary {
    /// Top-level entries other than our three lists and `current-context`.
    others: Vec<(String, Value)>,
    /// Items of each list with their names; null or missing lists are empty.
    lists: [Vec<(Option<String>, Value)>; 3],
    current: Option<String>,
}

impl Summary {
    fn without(&self, list: List, ctx: &str) -> Vec<&Value> {
        self.lists[list.index()]
            .iter()
            .filter(|(name, _)| name.as_deref() != Some(ctx))
            .map(|(_, v)| v)
            .collect()
    }

    /// The items of `list` named `ctx`.
    pub(super) fn named(&self, list: List, ctx: &str) -> Vec<&Value> {
        self.lists[list.index()]
            .iter()
            .filter(|(name, _)| name.as_deref() == Some(ctx))
            .map(|(_, v)| v)
            .collect()
    }
}

pub(super) fn summarize(text: &str) -> Result<Summary, String> {
    let root = match yaml::parse(text)? {
        Document::Empty => return Ok(Summary::default()),
        Document::Root(root) => root,
    };
    let top = inspect(&root)?;
    let ours = [
        List::Clusters.key(),
        List::Contexts.key(),
        List::Users.key(),
        CURRENT_CONTEXT,
    ];
    let others = top
        .entries
        .iter()
        .filter_map(|(k, v)| {
            let key = k.scalar()?;
            (!ours.contains(&key)).then(|| (key.to_string(), value(v)))
        })
        .collect();
    let lists = top.slots.each_ref().map(|slot| {
        slot.items
            .iter()
            .map(|(node, name)| (name.map(str::to_string), value(node)))
            .collect()
    });
    let current = top
        .current
        .and_then(|(_, v)| v.scalar())
        .map(str::to_string);
    Ok(Summary {
        others,
        lists,
        current,
    })
}

fn internal(what: &str) -> String {
    format!("internal error: the edited kubeconfig would {what}; please report this")
}

pub(super) fn check_merge(
    before: &Summary,
    out: &str,
    entry: &Entry,
    set_current: bool,
    was_empty: bool,
) -> Result<(), String> {
    let after = summarize(out).map_err(|e| internal(&format!("not read back ({e})")))?;
    let ctx = entry.context.as_str();
    if !was_empty && after.others != before.others {
        return Err(internal("change other top-level keys"));
    }
    for list in LISTS {
        if after.without(list, ctx) != before.without(list, ctx) {
            return Err(internal(&format!("change other `{}` items", list.key())));
        }
        if after.named(list, ctx) != [&expected(list, entry)] {
            return Err(internal(&format!("not hold kina's `{}` item", list.key())));
        }
    }
    let current_ok = if set_current {
        after.current.as_deref() == Some(ctx)
    } else {
        after.current == before.current || (was_empty && after.current.as_deref() == Some(""))
    };
    if !current_ok {
        return Err(internal("set the wrong current-context"));
    }
    Ok(())
}

pub(super) fn check_remove(before: &Summary, out: &str, ctx: &str) -> Result<(), String> {
    let after = summarize(out).map_err(|e| internal(&format!("not read back ({e})")))?;
    if after.others != before.others {
        return Err(internal("change other top-level keys"));
    }
    for list in LISTS {
        if after.without(list, ctx) != before.without(list, ctx)
            || !after.named(list, ctx).is_empty()
        {
            return Err(internal(&format!("change other `{}` items", list.key())));
        }
    }
    let expected = if before.current.as_deref() == Some(ctx) {
        Some(String::new())
    } else {
        before.current.clone()
    };
    if after.current != expected {
        return Err(internal("set the wrong current-context"));
    }
    Ok(())
}
