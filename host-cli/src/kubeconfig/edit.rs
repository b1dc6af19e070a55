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

use super::Entry;
use super::yaml::{self, Document, Kind, Node};

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

/// A value inside one of our items: a string or a mapping of strings.
enum Field<'a> {
    Str(&'a str),
    Map(Vec<(&'static str, &'a str)>),
}

/// Our item in `list`, keys in the order kubectl writes them.
fn fields(list: List, entry: &Entry) -> Vec<(&'static str, Field<'_>)> {
    let name = entry.context.as_str();
    match list {
        List::Clusters => vec![
            (
                "cluster",
                Field::Map(vec![
                    ("certificate-authority-data", entry.ca_data.as_str()),
                    ("server", entry.server.as_str()),
                ]),
            ),
            ("name", Field::Str(name)),
        ],
        List::Contexts => vec![
            (
                "context",
                Field::Map(vec![("cluster", name), ("user", name)]),
            ),
            ("name", Field::Str(name)),
        ],
        List::Users => vec![
            ("name", Field::Str(name)),
            (
                "user",
                Field::Map(vec![
                    ("client-certificate-data", entry.client_cert_data.as_str()),
                    ("client-key-data", entry.client_key_data.as_str()),
                ]),
            ),
        ],
    }
}

/// How a block list lays out its items.
#[derive(Clone, Copy, Debug)]
struct Style {
    /// Column of `-`, relative to the column of the list's key.
    dash: usize,
    /// Column of an item's first key, relative to the column of `-` (≥ 2).
    content: usize,
    /// Indentation of a nested mapping relative to its key.
    nested: usize,
}

/// What kubectl writes: `clusters:` / `- cluster:` / `    server: …`.
const KUBECTL_STYLE: Style = Style {
    dash: 0,
    content: 2,
    nested: 2,
};

/// Where a block item sits: its `-` line and columns.
struct BlockItem {
    /// Start of the line holding the item's `-`.
    line_start: usize,
    /// Column of `-`.
    dash_col: usize,
    /// Column of the item's first key when it is on the `-` line.
    content_col: Option<usize>,
}

/// One of the three lists as found in the file.
struct Slot<'n> {
    list: List,
    key: Option<&'n Node>,
    value: Option<&'n Node>,
    /// The list's items and their `name`s.
    items: Vec<(&'n Node, Option<&'n str>)>,
}

/// The top-level mapping with our keys looked up and checked.
struct Top<'n> {
    root: &'n Node,
    /// Byte offset of `{` when the top level is a flow mapping (JSON).
    flow_open: Option<usize>,
    entries: &'n [(Node, Node)],
    slots: [Slot<'n>; 3],
    current: Option<(&'n Node, &'n Node)>,
}

/// Checks that the top level is a kubeconfig as far as we touch it: a
/// mapping with string keys, no key twice, the three lists lists of mappings
/// with string names, `current-context` a string.
fn inspect(root: &Node) -> Result<Top<'_>, String> {
    let (entries, flow_open) = match &root.kind {
        Kind::Map { entries, open } => (entries.as_slice(), *open),
        _ => {
            return Err(format!(
                "the top level is {}, not a mapping",
                root.describe()
            ));
        }
    };
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
    let find = |name: &str| {
        entries
            .iter()
            .find(|(k, _)| k.scalar() == Some(name))
            .map(|(k, v)| (k, v))
    };
    let slot = |list: List| -> Result<Slot<'_>, String> {
        let key = list.key();
        let Some((k, v)) = find(key) else {
            return Ok(Slot {
                list,
                key: None,
                value: None,
                items: Vec::new(),
            });
        };
        let mut items = Vec::new();
        match &v.kind {
            Kind::Scalar { .. } if v.is_null() => {}
            Kind::Seq { items: nodes, .. } => {
                for (i, item) in nodes.iter().enumerate() {
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
                    items.push((item, name));
                }
            }
            _ => return Err(format!("`{key}` is {}, not a list", v.describe())),
        }
        Ok(Slot {
            list,
            key: Some(k),
            value: Some(v),
            items,
        })
    };
    let slots = [
        slot(List::Clusters)?,
        slot(List::Contexts)?,
        slot(List::Users)?,
    ];
    let current = find(CURRENT_CONTEXT);
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
        Document::Empty => {
            let mut out = text.to_string();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push_str(nl);
            }
            out.push_str(&skeleton(entry, set_current, nl));
            check_merge(&before, &out, entry, set_current, true)?;
            return Ok(Some(out));
        }
        Document::Root(root) => root,
    };
    let top = inspect(&root)?;
    let file_style = file_style(text, &top);
    let ctx = entry.context.as_str();
    let mut edits = Vec::new();
    // Text for keys the file lacks, added at the end of the top level.
    let mut new_keys: Vec<(usize, String)> = Vec::new();

    for slot in &top.slots {
        let list = slot.list;
        let matches: Vec<&Node> = slot
            .items
            .iter()
            .filter(|(_, name)| *name == Some(ctx))
            .map(|(node, _)| *node)
            .collect();
        for node in &matches {
            refuse_decorated(node, list, ctx)?;
        }
        match (slot.key, slot.value) {
            (Some(key), Some(value)) => {
                if value.decorated {
                    return Err(decorated_list(list));
                }
                match &value.kind {
                    Kind::Seq { items, open: None } => {
                        let sample = block_sample(text, slot)?;
                        let style = Style {
                            nested: sample.2.unwrap_or(file_style.nested),
                            ..file_style
                        };
                        if let Some((first, rest)) = matches.split_first() {
                            let at = block_item(text, first)?;
                            let content = at
                                .content_col
                                .map_or(2, |c| c.saturating_sub(at.dash_col).max(2));
                            let (start, end) = block_range(text, first, at.line_start);
                            let mut item =
                                render_block(list, entry, at.dash_col, content, style.nested, nl);
                            if end == text.len() && !text.ends_with('\n') {
                                trim_newline(&mut item);
                            }
                            edits.push(Edit::new(start, end, item));
                            for node in rest {
                                edits.push(remove_block_item(text, node)?);
                            }
                        } else {
                            let last = items.last().ok_or_else(|| {
                                format!("`{}` is a block list without items", list.key())
                            })?;
                            let item =
                                render_block(list, entry, sample.0, sample.1, style.nested, nl);
                            edits.push(lines_after(text, line_end(text, last.end), item, nl));
                        }
                    }
                    Kind::Seq {
                        items,
                        open: Some(open),
                    } if !items.is_empty() || top.flow_open.is_some() => {
                        edits.extend(flow_merge(list, entry, items, *open, &matches));
                    }
                    _ if top.flow_open.is_some() => {
                        // A null list in a flow mapping.
                        edits.push(replace_scalar(
                            text,
                            key,
                            value,
                            format!("[{}]", render_flow(list, entry)),
                        )?);
                    }
                    _ => {
                        // `[]`, `null` or nothing: becomes a block list.
                        let colon = colon_after(text, key)?;
                        let key_col = column(text, key.start).unwrap_or(0);
                        let item = render_block(
                            list,
                            entry,
                            key_col + file_style.dash,
                            file_style.content,
                            file_style.nested,
                            nl,
                        );
                        let after = if value.start == value.end {
                            line_end(text, colon)
                        } else {
                            edits.push(Edit::new(colon + 1, value.end, String::new()));
                            line_end(text, value.end)
                        };
                        edits.push(lines_after(text, after, item, nl));
                    }
                }
            }
            _ => {
                if top.flow_open.is_some() {
                    new_keys.push((
                        key_order(list.key()),
                        format!("{}: [{}]", json(list.key()), render_flow(list, entry)),
                    ));
                } else {
                    let indent = " ".repeat(top_key_col(text, &top) + file_style.dash);
                    let item = render_block(
                        list,
                        entry,
                        indent.len(),
                        file_style.content,
                        file_style.nested,
                        nl,
                    );
                    new_keys.push((
                        key_order(list.key()),
                        format!(
                            "{}{}:{nl}{item}",
                            " ".repeat(top_key_col(text, &top)),
                            list.key()
                        ),
                    ));
                }
            }
        }
    }

    if set_current {
        match top.current {
            Some((_, value)) if value.scalar() == Some(ctx) && !value.decorated => {}
            Some((key, value)) => {
                if value.decorated {
                    return Err(format!(
                        "`{CURRENT_CONTEXT}` has a YAML anchor or tag; kina does not edit it"
                    ));
                }
                let text_value = if top.flow_open.is_some() {
                    json(ctx)
                } else {
                    scalar(ctx)
                };
                edits.push(replace_scalar(text, key, value, text_value)?);
            }
            None => {
                if top.flow_open.is_some() {
                    new_keys.push((
                        key_order(CURRENT_CONTEXT),
                        format!("{}: {}", json(CURRENT_CONTEXT), json(ctx)),
                    ));
                } else {
                    new_keys.push((
                        key_order(CURRENT_CONTEXT),
                        format!(
                            "{}{CURRENT_CONTEXT}: {}{nl}",
                            " ".repeat(top_key_col(text, &top)),
                            scalar(ctx)
                        ),
                    ));
                }
            }
        }
    }
    // kubectl's order: clusters, contexts, current-context, users.
    new_keys.sort_by_key(|(order, _)| *order);
    let new_keys: Vec<String> = new_keys.into_iter().map(|(_, text)| text).collect();
    if !new_keys.is_empty() {
        match top.flow_open {
            Some(open) => {
                let (at, sep) = match top.entries.last() {
                    Some((k, v)) => (if v.start == v.end { k.end } else { v.end }, ", "),
                    None => (open + 1, ""),
                };
                edits.push(Edit::new(at, at, format!("{sep}{}", new_keys.join(", "))));
            }
            None => {
                let at = line_end(text, top.root.end);
                edits.push(lines_after(text, at, new_keys.concat(), nl));
            }
        }
    }
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

// ---------------------------------------------------------------- rendering

/// A block item at `dash_col`, first key at `dash_col + content`, nested
/// mappings indented by `nested`. Ends with `nl`.
fn render_block(
    list: List,
    entry: &Entry,
    dash_col: usize,
    content: usize,
    nested: usize,
    nl: &str,
) -> String {
    let content = content.max(2);
    let mut out = String::new();
    for (i, (key, field)) in fields(list, entry).into_iter().enumerate() {
        if i == 0 {
            out.push_str(&" ".repeat(dash_col));
            out.push('-');
            out.push_str(&" ".repeat(content - 1));
        } else {
            out.push_str(&" ".repeat(dash_col + content));
        }
        match field {
            Field::Str(value) => {
                out.push_str(&format!("{key}: {}{nl}", scalar(value)));
            }
            Field::Map(pairs) => {
                out.push_str(&format!("{key}:{nl}"));
                for (k, v) in pairs {
                    out.push_str(&" ".repeat(dash_col + content + nested));
                    out.push_str(&format!("{k}: {}{nl}", scalar(v)));
                }
            }
        }
    }
    out
}

/// A flow item, JSON-compatible: `{"cluster": {…}, "name": "…"}`.
fn render_flow(list: List, entry: &Entry) -> String {
    let parts: Vec<String> = fields(list, entry)
        .into_iter()
        .map(|(key, field)| match field {
            Field::Str(value) => format!("{}: {}", json(key), json(value)),
            Field::Map(pairs) => {
                let inner: Vec<String> = pairs
                    .into_iter()
                    .map(|(k, v)| format!("{}: {}", json(k), json(v)))
                    .collect();
                format!("{}: {{{}}}", json(key), inner.join(", "))
            }
        })
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// A whole kubeconfig holding only our entry, as kubectl would write it.
fn skeleton(entry: &Entry, set_current: bool, nl: &str) -> String {
    let item = |list| render_block(list, entry, 0, 2, 2, nl);
    let current = if set_current {
        scalar(&entry.context)
    } else {
        "\"\"".to_string()
    };
    format!(
        "apiVersion: v1{nl}clusters:{nl}{}contexts:{nl}{}current-context: {current}{nl}kind: Config{nl}preferences: {{}}{nl}users:{nl}{}",
        item(List::Clusters),
        item(List::Contexts),
        item(List::Users),
    )
}

/// `value` as a block scalar: plain when that is unambiguously a string in
/// YAML 1.1 and 1.2 (kubectl reads YAML 1.1), double-quoted otherwise.
pub(super) fn scalar(value: &str) -> String {
    let mut chars = value.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "._/:=+@-".contains(c))
        && !matches!(
            value.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null"
        );
    if plain {
        value.to_string()
    } else {
        json(value)
    }
}

/// `value` as a double-quoted scalar, which is also a JSON string.
fn json(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ------------------------------------------------------------------- layout

/// The file's block list style, from its first block list with an item on
/// the `-` line, and the first nested mapping found; kubectl's otherwise.
fn file_style(text: &str, top: &Top<'_>) -> Style {
    let mut style = None;
    let mut nested = None;
    for slot in &top.slots {
        let Some(Kind::Seq { open: None, .. }) = slot.value.map(|v| &v.kind) else {
            continue;
        };
        let Ok((dash_col, content, slot_nested)) = block_sample(text, slot) else {
            continue;
        };
        let key_col = slot.key.and_then(|k| column(text, k.start)).unwrap_or(0);
        if style.is_none() {
            style = Some((dash_col.saturating_sub(key_col), content));
        }
        if nested.is_none() {
            nested = slot_nested;
        }
    }
    let (dash, content) = style.unwrap_or((KUBECTL_STYLE.dash, KUBECTL_STYLE.content));
    Style {
        dash,
        content,
        nested: nested.unwrap_or(KUBECTL_STYLE.nested),
    }
}

/// A block list's `-` column, offset of the first key after `-`, and nested
/// mapping indentation, from its first item (and the first item with a
/// nested block mapping).
fn block_sample(text: &str, slot: &Slot<'_>) -> Result<(usize, usize, Option<usize>), String> {
    let (first, _) = slot
        .items
        .first()
        .ok_or_else(|| format!("`{}` is a block list without items", slot.list.key()))?;
    let at = block_item(text, first)?;
    let content = at
        .content_col
        .map_or(2, |c| c.saturating_sub(at.dash_col).max(2));
    let nested = slot.items.iter().find_map(|(item, _)| {
        let Kind::Map {
            entries,
            open: None,
        } = &item.kind
        else {
            return None;
        };
        entries.iter().find_map(|(k, v)| match &v.kind {
            Kind::Map {
                entries: inner,
                open: None,
            } => {
                let inner_col = column(text, inner.first()?.0.start)?;
                inner_col
                    .checked_sub(column(text, k.start)?)
                    .filter(|n| *n > 0)
            }
            _ => None,
        })
    });
    Ok((at.dash_col, content, nested))
}

/// Finds the `-` of a block list item: on the item's first line, or alone
/// (perhaps with a comment) on the line before.
fn block_item(text: &str, item: &Node) -> Result<BlockItem, String> {
    let start = line_start(text, item.start);
    let prefix = text.get(start..item.start).unwrap_or_default();
    if let Some(dash) = prefix.find('-')
        && prefix[..dash].bytes().all(|b| b == b' ')
        && prefix[dash + 1..].bytes().all(|b| b == b' ' || b == b'\t')
        && dash + 1 < prefix.len()
    {
        return Ok(BlockItem {
            line_start: start,
            dash_col: dash,
            content_col: Some(prefix.len()),
        });
    }
    if prefix.bytes().all(|b| b == b' ') && start > 0 {
        let prev_start = line_start(text, start - 1);
        let prev = text.get(prev_start..start).unwrap_or_default();
        let code = prev.split(" #").next().unwrap_or_default().trim_end();
        if let Some(dash) = code.find('-')
            && code[..dash].bytes().all(|b| b == b' ')
            && code.len() == dash + 1
        {
            return Ok(BlockItem {
                line_start: prev_start,
                dash_col: dash,
                content_col: None,
            });
        }
    }
    Err("cannot find the `-` of a list item".to_string())
}

/// The text range of a block item: from the start of its `-` line to the end
/// of its last line, line break included.
fn block_range(text: &str, item: &Node, line_start: usize) -> (usize, usize) {
    (line_start, line_end(text, item.end))
}

/// An edit deleting a block item. An item on the last line of a file with no
/// final line break takes the line break before it along.
fn remove_block_item(text: &str, item: &Node) -> Result<Edit, String> {
    let at = block_item(text, item)?;
    let (mut start, end) = block_range(text, item, at.line_start);
    if end == text.len() && !text.ends_with('\n') && start > 0 {
        start -= 1;
        if text[..start].ends_with('\r') {
            start -= 1;
        }
    }
    Ok(Edit::new(start, end, String::new()))
}

/// Edits for a non-empty flow list (or an empty one in a flow mapping).
fn flow_merge(
    list: List,
    entry: &Entry,
    items: &[Node],
    open: usize,
    matches: &[&Node],
) -> Vec<Edit> {
    let item = render_flow(list, entry);
    match matches.split_first() {
        Some((first, rest)) => {
            let mut edits = vec![Edit::new(first.start, first.end, item)];
            let ours: Vec<bool> = items
                .iter()
                .map(|n| rest.iter().any(|r| std::ptr::eq(*r, n)))
                .collect();
            edits.extend(flow_remove(items, &ours));
            edits
        }
        None => match items.last() {
            Some(last) => vec![Edit::new(last.end, last.end, format!(", {item}"))],
            None => vec![Edit::new(open + 1, open + 1, item)],
        },
    }
}

/// Deletions of the flow list items marked in `ours`, with their commas.
fn flow_remove(items: &[Node], ours: &[bool]) -> Vec<Edit> {
    let mut edits = Vec::new();
    let mut i = 0;
    while i < items.len() {
        if !ours.get(i).copied().unwrap_or(false) {
            i += 1;
            continue;
        }
        let mut j = i;
        while ours.get(j + 1).copied().unwrap_or(false) {
            j += 1;
        }
        let (first, last) = (&items[i], &items[j]);
        if let Some(next) = items.get(j + 1) {
            edits.push(Edit::new(first.start, next.start, String::new()));
        } else if let Some(prev) = i.checked_sub(1).and_then(|p| items.get(p)) {
            edits.push(Edit::new(prev.end, last.end, String::new()));
        } else {
            edits.push(Edit::new(first.start, last.end, String::new()));
        }
        i = j + 1;
    }
    edits
}

/// Replaces a scalar value; a value written as nothing gets one after the
/// `:`.
fn replace_scalar(text: &str, key: &Node, value: &Node, with: String) -> Result<Edit, String> {
    if value.start == value.end {
        let colon = colon_after(text, key)?;
        Ok(Edit::new(colon + 1, colon + 1, format!(" {with}")))
    } else {
        Ok(Edit::new(value.start, value.end, with))
    }
}

/// The byte offset of the `:` after a mapping key.
fn colon_after(text: &str, key: &Node) -> Result<usize, String> {
    let rest = text.get(key.end..).unwrap_or_default();
    let skipped = rest.len() - rest.trim_start_matches([' ', '\t']).len();
    if rest[skipped..].starts_with(':') {
        Ok(key.end + skipped)
    } else {
        Err(format!(
            "cannot find the `:` after `{}`",
            key.scalar().unwrap_or("a key")
        ))
    }
}

/// Column of the top level's keys.
fn top_key_col(text: &str, top: &Top<'_>) -> usize {
    top.entries
        .first()
        .and_then(|(k, _)| column(text, k.start))
        .unwrap_or(0)
}

/// The column of `pos` if only spaces stand before it on its line.
fn column(text: &str, pos: usize) -> Option<usize> {
    let start = line_start(text, pos);
    let prefix = text.get(start..pos)?;
    prefix.bytes().all(|b| b == b' ').then_some(prefix.len())
}

fn line_start(text: &str, pos: usize) -> usize {
    text.get(..pos)
        .and_then(|head| head.rfind('\n'))
        .map_or(0, |i| i + 1)
}

/// The end of the line holding the character before `end` (an exclusive
/// end offset), line break included.
fn line_end(text: &str, end: usize) -> usize {
    let from = end.saturating_sub(1);
    text.get(from..)
        .and_then(|tail| tail.find('\n'))
        .map_or(text.len(), |i| from + i + 1)
}

fn newline(text: &str) -> &'static str {
    if text.contains("\r\n") { "\r\n" } else { "\n" }
}

fn trim_newline(item: &mut String) {
    if item.ends_with('\n') {
        item.pop();
        if item.ends_with('\r') {
            item.pop();
        }
    }
}

/// Inserts whole lines at a line end; at the end of a file without a final
/// line break, the break goes before the lines instead of after them.
fn lines_after(text: &str, at: usize, mut lines: String, nl: &str) -> Edit {
    if at == text.len() && !text.is_empty() && !text.ends_with('\n') {
        trim_newline(&mut lines);
        lines.insert_str(0, nl);
    }
    Edit::new(at, at, lines)
}

// -------------------------------------------------------------------- edits

#[derive(Debug)]
struct Edit {
    start: usize,
    end: usize,
    text: String,
}

impl Edit {
    fn new(start: usize, end: usize, text: String) -> Self {
        Edit { start, end, text }
    }
}

/// Applies non-overlapping edits. At one offset, insertions come first, in
/// the order given, then a deletion or replacement starting there.
/// Overlapping deletions are merged.
fn apply(text: &str, mut edits: Vec<Edit>) -> Result<String, String> {
    edits.sort_by_key(|e| (e.start, e.end > e.start));
    let mut out = String::with_capacity(text.len() + 1024);
    let mut cursor = 0;
    for mut edit in edits {
        if edit.start < cursor {
            if edit.text.is_empty() {
                edit.start = cursor.min(edit.end);
            } else {
                return Err("internal error: overlapping edits".to_string());
            }
        }
        let kept = text
            .get(cursor..edit.start)
            .ok_or_else(|| "internal error: an edit is not on a character boundary".to_string())?;
        out.push_str(kept);
        out.push_str(&edit.text);
        cursor = cursor.max(edit.end);
    }
    out.push_str(text.get(cursor..).unwrap_or_default());
    Ok(out)
}

// ----------------------------------------------------------------- checking

/// A node's meaning without its layout.
#[derive(Debug, PartialEq)]
enum Value {
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
struct Summary {
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

    fn named(&self, list: List, ctx: &str) -> Vec<&Value> {
        self.lists[list.index()]
            .iter()
            .filter(|(name, _)| name.as_deref() == Some(ctx))
            .map(|(_, v)| v)
            .collect()
    }
}

fn summarize(text: &str) -> Result<Summary, String> {
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

fn check_merge(
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

fn check_remove(before: &Summary, out: &str, ctx: &str) -> Result<(), String> {
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

/// Reads kubeadm's admin.conf: the current context's (or only context's)
/// cluster CA, server, client certificate and key, all embedded as data.
pub(super) struct AdminConf {
    pub ca_data: String,
    pub client_cert_data: String,
    pub client_key_data: String,
}

pub(super) fn admin_conf(text: &str) -> Result<AdminConf, String> {
    let root = match yaml::parse(text)? {
        Document::Empty => return Err("it is empty".to_string()),
        Document::Root(root) => root,
    };
    let top = inspect(&root)?;
    let [clusters, contexts, users] = &top.slots;
    let current = top
        .current
        .and_then(|(_, v)| v.scalar())
        .filter(|c| !c.is_empty());
    let context = match current {
        Some(name) => contexts
            .items
            .iter()
            .find(|(_, n)| *n == Some(name))
            .map(|(node, _)| *node)
            .ok_or_else(|| "its current-context names no context in it".to_string())?,
        None => match contexts.items.as_slice() {
            [(node, _)] => *node,
            _ => return Err("it has no current-context and not exactly one context".to_string()),
        },
    };
    fn body<'n>(item: &'n Node, key: &str, list: &str) -> Result<&'n Node, String> {
        match item.get(key) {
            Some(node) if matches!(node.kind, Kind::Map { .. }) => Ok(node),
            _ => Err(format!("a `{list}` item has no `{key}` mapping")),
        }
    }
    let string = |map: &Node, key: &str, what: &str| -> Result<String, String> {
        map.get(key)
            .and_then(Node::scalar)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("it has no `{key}` ({what})"))
    };
    let context = body(context, "context", "contexts")?;
    let cluster_name = string(context, "cluster", "the context's cluster")?;
    let user_name = string(context, "user", "the context's user")?;
    fn find<'n>(slot: &Slot<'n>, name: &str) -> Result<&'n Node, String> {
        slot.items
            .iter()
            .find(|(_, n)| *n == Some(name))
            .map(|(node, _)| *node)
            .ok_or_else(|| format!("its context names a missing `{}` item", slot.list.key()))
    }
    let cluster = body(find(clusters, &cluster_name)?, "cluster", "clusters")?;
    let user = body(find(users, &user_name)?, "user", "users")?;
    Ok(AdminConf {
        ca_data: string(
            cluster,
            "certificate-authority-data",
            "the CA must be embedded",
        )?,
        client_cert_data: string(
            user,
            "client-certificate-data",
            "the client certificate must be embedded",
        )?,
        client_key_data: string(user, "client-key-data", "the client key must be embedded")?,
    })
}
