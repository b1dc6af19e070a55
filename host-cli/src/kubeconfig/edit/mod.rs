//! Text surgery on a kubeconfig: add, replace or remove kina's three list
//! items and set or clear `current-context`, leaving every other byte as it
//! was.
//!
//! The file is parsed only to learn where things are. Our items are written
//! in the file's own style: a block list gets a block item with the same
//! `-` column, the same indentation after the `-` and the same indentation
//! of nested mappings as the list's first item; a flow list (`[...]`, as in
//! JSON) gets a flow item. An empty or null list, or a missing one, becomes
//! a block list as kubectl writes it unless the whole file is flow style.
//!
//! Every edit is checked before it is returned: the new text must parse, and
//! apart from our entries and `current-context` it must mean exactly what
//! the old text meant. Errors are sentences that never quote values, which
//! may be secrets.
//!
//! This module plans what to change ([`merge`], [`remove`]); the parts it
//! plans with each have a file: [`top`] finds our lists in the parsed file,
//! [`layout`] reads columns and line ends from the text, [`render`] writes
//! our items, [`splice`] turns byte-range edits into the new text and
//! [`check`] reads the result back. [`admin_conf`] reads kubeadm's
//! credentials with the same view of a kubeconfig.

mod admin_conf;
mod check;
mod layout;
mod render;
mod splice;
mod top;

pub(super) use admin_conf::admin_conf;

use super::Entry;
use super::yaml::{self, Document, Kind, Node};
use check::{Summary, check_merge, check_remove, summarize};
use layout::{
    Style, block_item, block_range, block_sample, colon_after, column, file_style, line_end,
    newline, top_key_col,
};
use render::{json, render_block, render_flow, scalar, skeleton};
use splice::{
    Edit, apply, flow_merge, flow_remove, lines_after, remove_block_item, replace_scalar,
    trim_newline,
};
use top::{Slot, Top, inspect};

/// The three lists a kubeconfig entry is spread over, in kubectl's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum List {
    Clusters,
    Contexts,
    Users,
}

pub(super) const LISTS: [List; 3] = [List::Clusters, List::Contexts, List::Users];

const CURRENT_CONTEXT: &str = "current-context";

impl List {
    pub(super) fn key(self) -> &'static str {
        match self {
            List::Clusters => "clusters",
            List::Contexts => "contexts",
            List::Users => "users",
        }
    }

    fn index(self) -> usize {
        match self {
            List::Clusters => 0,
            List::Contexts => 1,
            List::Users => 2,
        }
    }
}

/// Whether `text` has a cluster, context or user named `ctx`.
pub(super) fn holds(text: &str, ctx: &str) -> Result<bool, String> {
    let summary = summarize(text)?;
    Ok(LISTS
        .iter()
        .any(|list| !summary.named(*list, ctx).is_empty()))
}

/// `text` with our entries added or replaced, and `current-context` set to
/// them if asked. `Ok(None)` when nothing would change.
pub(super) fn merge(
    text: &str,
    entry: &Entry,
    set_current: bool,
) -> Result<Option<String>, String> {
    let before = summarize(text)?;
    let nl = newline(text);
    let root = match yaml::parse(text)? {
        Document::Empty => return merge_into_empty(text, &before, entry, set_current, nl),
        Document::Root(root) => root,
    };
    let top = inspect(&root)?;
    let merging = Merging {
        text,
        entry,
        nl,
        top: &top,
        style: file_style(text, &top),
    };
    let mut plan = Plan::default();
    for slot in &top.slots {
        merging.plan_list(slot, &mut plan)?;
    }
    if set_current {
        merging.plan_current(&mut plan)?;
    }
    let mut edits = plan.edits;
    edits.extend(merging.add_keys(plan.new_keys));
    if edits.is_empty() {
        return Ok(None);
    }
    let out = apply(text, edits)?;
    // An item re-rendered identically (the file's last, without a final line
    // break, is always re-rendered) is no change: the file is not rewritten.
    if out == text {
        return Ok(None);
    }
    check_merge(&before, &out, entry, set_current, false)?;
    Ok(Some(out))
}

/// A file with no YAML in it (empty, or comments only) gets a whole
/// kubeconfig appended after what it has.
fn merge_into_empty(
    text: &str,
    before: &Summary,
    entry: &Entry,
    set_current: bool,
    nl: &str,
) -> Result<Option<String>, String> {
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push_str(nl);
    }
    out.push_str(&skeleton(entry, set_current, nl));
    check_merge(before, &out, entry, set_current, true)?;
    Ok(Some(out))
}

/// What every step of a merge into an existing file reads.
struct Merging<'a, 'n> {
    text: &'a str,
    entry: &'a Entry,
    /// The file's line break.
    nl: &'static str,
    top: &'a Top<'n>,
    /// The file's block list style, for lists that have none of their own.
    style: Style,
}

/// A merge's changes so far: edits of the text, and top-level keys the file
/// lacks, each with its place in kubectl's key order ([`key_order`]).
#[derive(Default)]
struct Plan {
    edits: Vec<Edit>,
    new_keys: Vec<(usize, String)>,
}

impl Merging<'_, '_> {
    fn ctx(&self) -> &str {
        self.entry.context.as_str()
    }

    fn flow(&self) -> bool {
        self.top.flow_open.is_some()
    }

    /// Our item in `slot`'s list: replaces the first item of our name
    /// (removing any others), or is added after the last item; a missing
    /// list becomes a new top-level key.
    fn plan_list(&self, slot: &Slot<'_>, plan: &mut Plan) -> Result<(), String> {
        let list = slot.list;
        let ctx = self.ctx();
        let ours: Vec<&Node> = slot
            .items
            .iter()
            .filter(|(_, name)| *name == Some(ctx))
            .map(|(node, _)| *node)
            .collect();
        for node in &ours {
            refuse_decorated(node, list, ctx)?;
        }
        let (Some(key), Some(value)) = (slot.key, slot.value) else {
            plan.new_keys.push(self.missing_list(list));
            return Ok(());
        };
        if value.decorated {
            return Err(decorated_list(list));
        }
        match &value.kind {
            Kind::Seq { items, open: None } => {
                self.block_list(slot, items, &ours, &mut plan.edits)?;
            }
            Kind::Seq {
                items,
                open: Some(open),
            } if !items.is_empty() || self.flow() => {
                let entry = self.entry;
                plan.edits
                    .extend(flow_merge(list, entry, items, *open, &ours));
            }
            _ if self.flow() => {
                // A null list in a flow mapping.
                let item = format!("[{}]", render_flow(list, self.entry));
                plan.edits
                    .push(replace_scalar(self.text, key, value, item)?);
            }
            // `[]`, `null` or nothing: becomes a block list.
            _ => self.empty_list(list, key, value, &mut plan.edits)?,
        }
        Ok(())
    }

    /// A block list with items, laid out as its first item is.
    fn block_list(
        &self,
        slot: &Slot<'_>,
        items: &[Node],
        ours: &[&Node],
        edits: &mut Vec<Edit>,
    ) -> Result<(), String> {
        let (text, list) = (self.text, slot.list);
        let sample = block_sample(text, slot)?;
        let nested = sample.nested.unwrap_or(self.style.nested);
        if let Some((first, rest)) = ours.split_first() {
            edits.push(self.replace_block_item(list, first, nested)?);
            for node in rest {
                edits.push(remove_block_item(text, node)?);
            }
        } else {
            let last = items
                .last()
                .ok_or_else(|| format!("`{}` is a block list without items", list.key()))?;
            let item = render_block(
                list,
                self.entry,
                sample.dash_col,
                sample.content,
                nested,
                self.nl,
            );
            edits.push(lines_after(text, line_end(text, last.end), item, self.nl));
        }
        Ok(())
    }

    /// Our item written over `old`, at its `-` column and indentation.
    fn replace_block_item(&self, list: List, old: &Node, nested: usize) -> Result<Edit, String> {
        let text = self.text;
        let at = block_item(text, old)?;
        let content = at
            .content_col
            .map_or(2, |c| c.saturating_sub(at.dash_col).max(2));
        let (start, end) = block_range(text, old, at.line_start);
        let mut item = render_block(list, self.entry, at.dash_col, content, nested, self.nl);
        if end == text.len() && !text.ends_with('\n') {
            trim_newline(&mut item);
        }
        Ok(Edit::new(start, end, item))
    }

    /// `key: []`, `key: null` or `key:` in a block mapping: the value goes
    /// and our item follows on the next line, in the file's style.
    fn empty_list(
        &self,
        list: List,
        key: &Node,
        value: &Node,
        edits: &mut Vec<Edit>,
    ) -> Result<(), String> {
        let (text, style) = (self.text, self.style);
        let colon = colon_after(text, key)?;
        let key_col = column(text, key.start).unwrap_or(0);
        let item = render_block(
            list,
            self.entry,
            key_col + style.dash,
            style.content,
            style.nested,
            self.nl,
        );
        let after = if value.start == value.end {
            line_end(text, colon)
        } else {
            edits.push(Edit::new(colon + 1, value.end, String::new()));
            line_end(text, value.end)
        };
        edits.push(lines_after(text, after, item, self.nl));
        Ok(())
    }

    /// A whole `key:` holding our item, for a file without the list.
    fn missing_list(&self, list: List) -> (usize, String) {
        let order = key_order(list.key());
        if self.flow() {
            let item = render_flow(list, self.entry);
            return (order, format!("{}: [{item}]", json(list.key())));
        }
        let key_col = top_key_col(self.text, self.top);
        let item = render_block(
            list,
            self.entry,
            key_col + self.style.dash,
            self.style.content,
            self.style.nested,
            self.nl,
        );
        let nl = self.nl;
        let text = format!("{}{}:{nl}{item}", " ".repeat(key_col), list.key());
        (order, text)
    }

    /// `current-context` set to our context: its value replaced, or the key
    /// added.
    fn plan_current(&self, plan: &mut Plan) -> Result<(), String> {
        let ctx = self.ctx();
        match self.top.current {
            Some((_, value)) if value.scalar() == Some(ctx) && !value.decorated => {}
            Some((key, value)) => {
                if value.decorated {
                    return Err(format!(
                        "`{CURRENT_CONTEXT}` has a YAML anchor or tag; kina does not edit it"
                    ));
                }
                let text_value = if self.flow() { json(ctx) } else { scalar(ctx) };
                plan.edits
                    .push(replace_scalar(self.text, key, value, text_value)?);
            }
            None => {
                let line = if self.flow() {
                    format!("{}: {}", json(CURRENT_CONTEXT), json(ctx))
                } else {
                    let indent = " ".repeat(top_key_col(self.text, self.top));
                    format!("{indent}{CURRENT_CONTEXT}: {}{}", scalar(ctx), self.nl)
                };
                plan.new_keys.push((key_order(CURRENT_CONTEXT), line));
            }
        }
        Ok(())
    }

    /// The edit adding the keys the file lacks at the end of its top level,
    /// in kubectl's order: clusters, contexts, current-context, users.
    fn add_keys(&self, mut new_keys: Vec<(usize, String)>) -> Option<Edit> {
        if new_keys.is_empty() {
            return None;
        }
        new_keys.sort_by_key(|(order, _)| *order);
        let new_keys: Vec<String> = new_keys.into_iter().map(|(_, text)| text).collect();
        let edit = match self.top.flow_open {
            Some(open) => {
                let (at, sep) = match self.top.entries.last() {
                    Some((k, v)) => (if v.start == v.end { k.end } else { v.end }, ", "),
                    None => (open + 1, ""),
                };
                Edit::new(at, at, format!("{sep}{}", new_keys.join(", ")))
            }
            None => {
                let at = line_end(self.text, self.top.root.end);
                lines_after(self.text, at, new_keys.concat(), self.nl)
            }
        };
        Some(edit)
    }
}

/// `text` without our entries, and with `current-context` cleared if it named
/// them. `Ok(None)` when none were there.
pub(super) fn remove(text: &str, ctx: &str) -> Result<Option<String>, String> {
    let before = summarize(text)?;
    let root = match yaml::parse(text)? {
        Document::Empty => return Ok(None),
        Document::Root(root) => root,
    };
    let top = inspect(&root)?;
    let mut edits = Vec::new();
    for slot in &top.slots {
        let ours: Vec<bool> = slot.items.iter().map(|(_, n)| *n == Some(ctx)).collect();
        if !ours.contains(&true) {
            continue;
        }
        let (Some(key), Some(value)) = (slot.key, slot.value) else {
            continue;
        };
        if value.decorated {
            return Err(decorated_list(slot.list));
        }
        for (node, _) in slot.items.iter().filter(|(_, n)| *n == Some(ctx)) {
            refuse_decorated(node, slot.list, ctx)?;
        }
        match &value.kind {
            Kind::Seq {
                open: Some(_),
                items,
            } => edits.extend(flow_remove(items, &ours)),
            _ => {
                for (node, _) in slot.items.iter().filter(|(_, n)| *n == Some(ctx)) {
                    edits.push(remove_block_item(text, node)?);
                }
                if !ours.contains(&false) {
                    // An empty block list would read as null: write `[]`.
                    let colon = colon_after(text, key)?;
                    edits.push(Edit::new(colon + 1, colon + 1, " []".to_string()));
                }
            }
        }
    }
    if let Some((_, value)) = top.current
        && value.scalar() == Some(ctx)
    {
        edits.push(Edit::new(value.start, value.end, "\"\"".to_string()));
    }
    if edits.is_empty() {
        return Ok(None);
    }
    let out = apply(text, edits)?;
    check_remove(&before, &out, ctx)?;
    Ok(Some(out))
}

/// kubectl writes top-level keys in alphabetical order.
fn key_order(key: &str) -> usize {
    ["clusters", "contexts", CURRENT_CONTEXT, "users"]
        .iter()
        .position(|k| *k == key)
        .unwrap_or(usize::MAX)
}

fn refuse_decorated(node: &Node, list: List, ctx: &str) -> Result<(), String> {
    if node.any_decorated() {
        Err(format!(
            "the `{ctx}` item of `{}` uses a YAML anchor or tag; kina does not edit it",
            list.key()
        ))
    } else {
        Ok(())
    }
}

fn decorated_list(list: List) -> String {
    format!(
        "`{}` has a YAML anchor or tag; kina does not edit such a list",
        list.key()
    )
}
