//! Reading the file's layout: where a block item's `-` is, how far its keys
//! and nested mappings are indented, where a key's `:` is, where lines start
//! and end.
//!
//! The YAML parser gives only byte offsets of nodes; a new item written in
//! the file's own style needs the columns around them, which only the text
//! has.

use super::top::{Slot, Top};
use crate::kubeconfig::yaml::{Kind, Node};

/// How a block list lays out its items.
#[derive(Clone, Copy, Debug)]
pub(super) struct Style {
    /// Column of `-`, relative to the column of the list's key.
    pub(super) dash: usize,
    /// Column of an item's first key, relative to the column of `-` (≥ 2).
    pub(super) content: usize,
    /// Indentation of a nested mapping relative to its key.
    pub(super) nested: usize,
}

/// What kubectl writes: `clusters:` / `- cluster:` / `    server: …`.
const KUBECTL_STYLE: Style = Style {
    dash: 0,
    content: 2,
    nested: 2,
};

/// Where a block item sits: its `-` line and columns.
pub(super) struct BlockItem {
    /// Start of the line holding the item's `-`.
    pub(super) line_start: usize,
    /// Column of `-`.
    pub(super) dash_col: usize,
    /// Column of the item's first key when it is on the `-` line.
    pub(super) content_col: Option<usize>,
}

/// A block list's first item's `-` column, the offset of its first key
/// after `-`, and the list's nested mapping indentation if any item shows
/// one.
pub(super) struct BlockSample {
    pub(super) dash_col: usize,
    pub(super) content: usize,
    pub(super) nested: Option<usize>,
}

/// The file's block list style, from its first block list with an item on
/// the `-` line, and the first nested mapping found; kubectl's otherwise.
pub(super) fn file_style(text: &str, top: &Top<'_>) -> Style {
    let mut style = None;
    let mut nested = None;
    for slot in &top.slots {
        let Some(Kind::Seq { open: None, .. }) = slot.value.map(|v| &v.kind) else {
            continue;
        };
        let Ok(sample) = block_sample(text, slot) else {
            continue;
        };
        let key_col = slot.key.and_then(|k| column(text, k.start)).unwrap_or(0);
        if style.is_none() {
            style = Some((sample.dash_col.saturating_sub(key_col), sample.content));
        }
        if nested.is_none() {
            nested = sample.nested;
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
pub(super) fn block_sample(text: &str, slot: &Slot<'_>) -> Result<BlockSample, String> {
    let (first, _) = slot
        .items
        .first()
        .ok_or_else(|| format!("`{}` is a block list without items", slot.list.key()))?;
    let at = block_item(text, first)?;
    let content = at
        .content_col
        .map_or(2, |c| c.saturating_sub(at.dash_col).max(2));
    let nested = slot
        .items
        .iter()
        .find_map(|(item, _)| nested_indent(text, item));
    Ok(BlockSample {
        dash_col: at.dash_col,
        content,
        nested,
    })
}

/// How far the item's first nested block mapping is indented past its key.
fn nested_indent(text: &str, item: &Node) -> Option<usize> {
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
}

/// Finds the `-` of a block list item: on the item's first line, or alone
/// (perhaps with a comment) on the line before.
pub(super) fn block_item(text: &str, item: &Node) -> Result<BlockItem, String> {
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
pub(super) fn block_range(text: &str, item: &Node, line_start: usize) -> (usize, usize) {
    (line_start, line_end(text, item.end))
}

/// The byte offset of the `:` after a mapping key.
pub(super) fn colon_after(text: &str, key: &Node) -> Result<usize, String> {
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
pub(super) fn top_key_col(text: &str, top: &Top<'_>) -> usize {
    top.entries
        .first()
        .and_then(|(k, _)| column(text, k.start))
        .unwrap_or(0)
}

/// The column of `pos` if only spaces stand before it on its line.
pub(super) fn column(text: &str, pos: usize) -> Option<usize> {
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
pub(super) fn line_end(text: &str, end: usize) -> usize {
    let from = end.saturating_sub(1);
    text.get(from..)
        .and_then(|tail| tail.find('\n'))
        .map_or(text.len(), |i| from + i + 1)
}

/// The file's line break, so that added lines match the lines around them.
pub(super) fn newline(text: &str) -> &'static str {
    if text.contains("\r\n") { "\r\n" } else { "\n" }
}
