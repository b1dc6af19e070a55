//! Edits as byte ranges of the old text and their replacements, the edits
//! that add or delete list items, and applying them all in one pass.
//!
//! Every change kina makes is planned as an [`Edit`] against the original
//! text and applied at once by [`apply`]: the bytes no edit covers are
//! copied unchanged, which is what keeps the user's comments, order and
//! quoting.

use super::List;
use super::layout::{block_item, block_range, colon_after};
use super::render::render_flow;
use crate::kubeconfig::Entry;
use crate::kubeconfig::yaml::Node;

/// Replaces the bytes `start..end` of the old text with `text`; an
/// insertion when the range is empty, a deletion when `text` is.
#[derive(Debug)]
pub(super) struct Edit {
    start: usize,
    end: usize,
    text: String,
}

impl Edit {
    pub(super) fn new(start: usize, end: usize, text: String) -> Self {
        Edit { start, end, text }
    }
}

/// Applies non-overlapping edits. At one offset, insertions come first, in
/// the order given, then a deletion or replacement starting there.
/// Overlapping deletions are merged.
pub(super) fn apply(text: &str, mut edits: Vec<Edit>) -> Result<String, String> {
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

/// Drops one final line break, `\r\n` or `\n`.
pub(super) fn trim_newline(item: &mut String) {
    if item.ends_with('\n') {
        item.pop();
        if item.ends_with('\r') {
            item.pop();
        }
    }
}

/// Inserts whole lines at a line end; at the end of a file without a final
/// line break, the break goes before the lines instead of after them.
pub(super) fn lines_after(text: &str, at: usize, mut lines: String, nl: &str) -> Edit {
    if at == text.len() && !text.is_empty() && !text.ends_with('\n') {
        trim_newline(&mut lines);
        lines.insert_str(0, nl);
    }
    Edit::new(at, at, lines)
}

/// An edit deleting a block item. An item on the last line of a file with no
/// final line break takes the line break before it along.
pub(super) fn remove_block_item(text: &str, item: &Node) -> Result<Edit, String> {
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
pub(super) fn flow_merge(
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
pub(super) fn flow_remove(items: &[Node], ours: &[bool]) -> Vec<Edit> {
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
pub(super) fn replace_scalar(
    text: &str,
    key: &Node,
    value: &Node,
    with: String,
) -> Result<Edit, String> {
    if value.start == value.end {
        let colon = colon_after(text, key)?;
        Ok(Edit::new(colon + 1, colon + 1, format!(" {with}")))
    } else {
        Ok(Edit::new(value.start, value.end, with))
    }
}
