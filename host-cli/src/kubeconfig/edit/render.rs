//! kina's three list items as text, in block or flow style, and a whole new
//! kubeconfig as kubectl writes one.
//!
//! The items' keys and values are defined once, in [`fields`], so that what
//! is written and what the read-back check expects (`check::expected`)
//! cannot drift apart. Values are quoted only when YAML 1.1 (which kubectl
//! reads) could take them for something other than a string.

use super::List;
use crate::kubeconfig::Entry;

/// A value inside one of our items: a string or a mapping of strings.
pub(super) enum Field<'a> {
    Str(&'a str),
    Map(Vec<(&'static str, &'a str)>),
}

/// Our item in `list`, keys in the order kubectl writes them.
pub(super) fn fields(list: List, entry: &Entry) -> Vec<(&'static str, Field<'_>)> {
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

/// A block item at `dash_col`, first key at `dash_col + content`, nested
/// mappings indented by `nested`. Ends with `nl`.
pub(super) fn render_block(
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
pub(super) fn render_flow(list: List, entry: &Entry) -> String {
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
pub(super) fn skeleton(entry: &Entry, set_current: bool, nl: &str) -> String {
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
pub(super) fn json(value: &str) -> String {
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
