//! A YAML document as a tree of nodes that know where they are in the text.
//!
//! saphyr-parser reports events with character positions; this turns them
//! into a small tree whose nodes carry byte offsets into the original text,
//! which is all the kubeconfig editor needs to splice text without
//! re-serialising anything.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Deeper nesting than this is refused instead of risking the stack.
const MAX_DEPTH: usize = 256;

/// One YAML node with its place in the text.
#[derive(Debug)]
pub(super) struct Node {
    /// Byte offset of the node's first character, anchor and tag included.
    pub start: usize,
    /// Byte offset just past the node's last character of content. Trailing
    /// blank lines and indentation of block scalars are not content; a block
    /// collection ends where its last child ends; a flow collection ends
    /// after its closing bracket. A null scalar written as nothing has
    /// `start == end`.
    pub end: usize,
    /// The node has an anchor (`&a`) or a tag (`!t`).
    pub decorated: bool,
    pub kind: Kind,
}

#[derive(Debug)]
pub(super) enum Kind {
    Scalar {
        value: String,
        plain: bool,
    },
    /// `open` is the byte offset of `[` for a flow sequence.
    Seq {
        items: Vec<Node>,
        open: Option<usize>,
    },
    /// `open` is the byte offset of `{` for a flow mapping.
    Map {
        entries: Vec<(Node, Node)>,
        open: Option<usize>,
    },
    Alias,
}

impl Node {
    /// The scalar's value, if this is a scalar.
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// A plain `null`, `~` or nothing at all.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { value, plain: true }
            if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The value of `key` in this mapping (the first one, if repeated).
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map { entries, .. } => entries
                .iter()
                .find(|(k, _)| k.scalar() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// This node or anything inside it has an anchor or a tag.
    pub fn any_decorated(&self) -> bool {
        self.decorated
            || match &self.kind {
                Kind::Seq { items, .. } => items.iter().any(Node::any_decorated),
                Kind::Map { entries, .. } => entries
                    .iter()
                    .any(|(k, v)| k.any_decorated() || v.any_decorated()),
                Kind::Scalar { .. } | Kind::Alias => false,
            }
    }

    /// What kind of node this is, for error messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar { .. } if self.is_null() => "null",
            Kind::Scalar { .. } => "a string",
            Kind::Seq { .. } => "a list",
            Kind::Map { .. } => "a mapping",
            Kind::Alias => "a YAML alias",
        }
    }
}

/// What parsing found: nothing (an empty file, only comments, or an empty
/// document), or the root node of the only document.
#[derive(Debug)]
pub(super) enum Document {
    Empty,
    Root(Node),
}

/// Parses `text`, which must hold at most one YAML document.
///
/// The error is a sentence about what is wrong, with a line and column for
/// syntax errors. It never quotes the text, which may hold secrets.
pub(super) fn parse(text: &str) -> Result<Document, String> {
    // saphyr counts characters; keep the byte offset of every character (and
    // of the end) to translate.
    let mut offsets: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    offsets.push(text.len());
    let mut events = Vec::new();
    for result in Parser::new_from_str(text) {
        match result {
            Ok(event) => events.push(event),
            Err(e) => {
                return Err(format!(
                    "invalid YAML at line {} column {}: {}",
                    e.marker().line(),
                    e.marker().col() + 1,
                    e.info()
                ));
            }
        }
    }
    let mut builder = Builder {
        text,
        offsets,
        events,
        next: 0,
    };
    builder.document()
}

struct Builder<'a> {
    text: &'a str,
    offsets: Vec<usize>,
    events: Vec<(Event<'a>, Span)>,
    next: usize,
}

impl<'a> Builder<'a> {
    fn byte(&self, char_index: usize) -> usize {
        self.offsets
            .get(char_index)
            .copied()
            .unwrap_or(self.text.len())
    }

    fn range(&self, span: &Span) -> (usize, usize) {
        (self.byte(span.start.index()), self.byte(span.end.index()))
    }

    fn take(&mut self) -> Result<(Event<'a>, Span), String> {
        let event = self
            .events
            .get_mut(self.next)
            .map(|(event, span)| (std::mem::replace(event, Event::Nothing), *span));
        self.next += 1;
        event.ok_or_else(|| "the YAML parser stopped early".to_string())
    }

    fn peek(&self) -> Option<&Event<'a>> {
        self.events.get(self.next).map(|(event, _)| event)
    }

    fn document(&mut self) -> Result<Document, String> {
        let mut root = None;
        loop {
            let (event, _) = self.take()?;
            match event {
                Event::StreamStart | Event::Nothing | Event::DocumentEnd => {}
                Event::StreamEnd => break,
                Event::DocumentStart(_) => {
                    if root.is_some() {
                        return Err("it holds more than one YAML document".to_string());
                    }
                    root = Some(self.node(0)?);
                }
                _ => return Err("unexpected YAML event outside a document".to_string()),
            }
        }
        Ok(match root {
            Some(node) if !(node.start == node.end && node.is_null()) => Document::Root(node),
            _ => Document::Empty,
        })
    }

    fn node(&mut self, depth: usize) -> Result<Node, String> {
        if depth > MAX_DEPTH {
            return Err(format!("it is nested deeper than {MAX_DEPTH} levels"));
        }
        let (event, span) = self.take()?;
        let (start, span_end) = self.range(&span);
        match event {
            Event::Scalar(value, style, anchor, tag) => {
                let end = if start == span_end {
                    span_end
                } else {
                    start.max(trim_end(self.text, span_end))
                };
                Ok(Node {
                    start,
                    end,
                    decorated: anchor != 0 || tag.is_some(),
                    kind: Kind::Scalar {
                        value: value.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                })
            }
            Event::Alias(_) => Ok(Node {
                start,
                end: span_end,
                decorated: false,
                kind: Kind::Alias,
            }),
            Event::SequenceStart(anchor, tag) => {
                let open = self.flow_open(start, span_end, '[');
                let mut items = Vec::new();
                while !matches!(self.peek(), Some(Event::SequenceEnd) | None) {
                    items.push(self.node(depth + 1)?);
                }
                let (_, end_span) = self.take()?;
                let end = match open {
                    Some(_) => self.flow_close(&end_span, ']'),
                    None => items.iter().map(|n| n.end).max().unwrap_or(span_end),
                };
                Ok(Node {
                    start,
                    end,
                    decorated: anchor != 0 || tag.is_some(),
                    kind: Kind::Seq { items, open },
                })
            }
            Event::MappingStart(anchor, tag) => {
                let open = self.flow_open(start, span_end, '{');
                let mut entries = Vec::new();
                while !matches!(self.peek(), Some(Event::MappingEnd) | None) {
                    let key = self.node(depth + 1)?;
                    let value = self.node(depth + 1)?;
                    entries.push((key, value));
                }
                let (_, end_span) = self.take()?;
                let end = match open {
                    Some(_) => self.flow_close(&end_span, '}'),
                    None => entries
                        .iter()
                        // A null written as nothing has no text of its own.
                        .map(|(k, v)| {
                            if v.start == v.end {
                                k.end
                            } else {
                                k.end.max(v.end)
                            }
                        })
                        .max()
                        .unwrap_or(span_end),
                };
                Ok(Node {
                    start,
                    end,
                    decorated: anchor != 0 || tag.is_some(),
                    kind: Kind::Map { entries, open },
                })
            }
            _ => Err("unexpected YAML event inside a document".to_string()),
        }
    }

    /// Just past a flow collection's closing bracket. (The end event's span
    /// can run on over a comment after the bracket.)
    fn flow_close(&self, span: &Span, bracket: char) -> usize {
        let (start, end) = self.range(span);
        if self
            .text
            .get(start..)
            .is_some_and(|rest| rest.starts_with(bracket))
        {
            start + bracket.len_utf8()
        } else {
            end
        }
    }

    /// A flow collection's start event ends just after its bracket; a block
    /// collection's is empty or covers only its anchor and tag.
    fn flow_open(&self, start: usize, span_end: usize, bracket: char) -> Option<usize> {
        let last = self.text.get(start..span_end)?.char_indices().next_back()?;
        (last.1 == bracket).then_some(start + last.0)
    }
}

/// Backs `end` up over trailing white space and line breaks.
fn trim_end(text: &str, end: usize) -> usize {
    text.get(..end)
        .map(|head| head.trim_end_matches([' ', '\t', '\r', '\n']).len())
        .unwrap_or(end)
}
