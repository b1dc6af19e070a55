//! Generated kubeconfigs in the layouts people and tools write (block lists
//! at several indentations, `-` flush or indented, comments between items,
//! CRLF, JSON flow style, no final line break), with other clusters,
//! contexts and users: merging kina's entry keeps every other entry as it
//! was, and removing it again gives back the very bytes.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::Deserialize;

use super::Entry;
use super::edit;

/// How a generated file is laid out.
#[derive(Clone, Debug)]
struct Layout {
    /// Column of a list item's `-`.
    dash: usize,
    /// Spaces after the `-`.
    after_dash: usize,
    /// Indentation of a nested mapping below its key.
    nested: usize,
    comments: bool,
    crlf: bool,
    final_newline: bool,
    json: bool,
}

/// Somebody else's cluster, context and user, all called `name`.
#[derive(Clone, Debug)]
struct Other {
    name: String,
    server: String,
    token: String,
}

fn layouts() -> impl Strategy<Value = Layout> {
    (
        prop_oneof![Just(0usize), Just(2), Just(4)],
        prop_oneof![Just(1usize), Just(3)],
        prop_oneof![Just(2usize), Just(4)],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(dash, after_dash, nested, comments, crlf, final_newline, json)| Layout {
                dash,
                after_dash,
                nested,
                comments,
                crlf,
                final_newline,
                json,
            },
        )
}

fn others() -> impl Strategy<Value = Vec<Other>> {
    prop::collection::btree_map(
        "[a-z][a-z0-9-]{0,10}",
        ("[a-z]{1,8}\\.example\\.invalid", "[A-Za-z0-9]{4,20}"),
        0..4,
    )
    .prop_map(|m| {
        m.into_iter()
            .filter(|(name, _)| !name.starts_with("kina-"))
            .map(|(name, (host, token))| Other {
                name,
                server: format!("https://{host}:6443"),
                token,
            })
            .collect()
    })
}

fn render(layout: &Layout, others: &[Other], current: Option<&str>) -> String {
    let text = if layout.json {
        render_json(others, current)
    } else {
        render_block(layout, others, current)
    };
    let mut text = if layout.crlf {
        text.replace('\n', "\r\n")
    } else {
        text
    };
    if !layout.final_newline {
        while text.ends_with('\n') || text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

fn render_block(layout: &Layout, others: &[Other], current: Option<&str>) -> String {
    let dash = " ".repeat(layout.dash);
    let item = " ".repeat(layout.dash + 1 + layout.after_dash);
    let nested = " ".repeat(layout.dash + 1 + layout.after_dash + layout.nested);
    let gap = " ".repeat(layout.after_dash);
    let mut out = String::from("apiVersion: v1\nkind: Config\n");
    let mut list = |key: &str, body: &dyn Fn(&Other) -> Vec<(String, String)>| {
        if others.is_empty() {
            out.push_str(&format!("{key}: []\n"));
            return;
        }
        out.push_str(&format!("{key}:\n"));
        for o in others {
            if layout.comments {
                out.push_str(&format!("{dash}# {key} entry {}\n", o.name));
            }
            out.push_str(&format!("{dash}-{gap}name: {}\n", o.name));
            let inner = key.trim_end_matches('s');
            out.push_str(&format!("{item}{inner}:\n"));
            for (k, v) in body(o) {
                out.push_str(&format!("{nested}{k}: {v}\n"));
            }
        }
    };
    list("clusters", &|o| vec![("server".into(), o.server.clone())]);
    list("contexts", &|o| {
        vec![
            ("cluster".into(), o.name.clone()),
            ("user".into(), o.name.clone()),
        ]
    });
    list("users", &|o| vec![("token".into(), o.token.clone())]);
    if let Some(c) = current {
        out.push_str(&format!("current-context: {c}"));
        if layout.comments {
            out.push_str("   # in use");
        }
        out.push('\n');
    }
    if layout.comments {
        out.push_str("# end\n");
    }
    out
}

fn render_json(others: &[Other], current: Option<&str>) -> String {
    let items = |f: &dyn Fn(&Other) -> serde_json::Value| -> Vec<serde_json::Value> {
        others.iter().map(f).collect()
    };
    let mut doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": items(&|o| serde_json::json!({"name": o.name, "cluster": {"server": o.server}})),
        "contexts": items(&|o| serde_json::json!({"name": o.name, "context": {"cluster": o.name, "user": o.name}})),
        "users": items(&|o| serde_json::json!({"name": o.name, "user": {"token": o.token}})),
    });
    if let Some(c) = current {
        doc["current-context"] = serde_json::json!(c);
    }
    format!("{doc}\n")
}

#[derive(Debug, Deserialize, PartialEq)]
struct Config {
    #[serde(rename = "current-context")]
    current_context: Option<String>,
    #[serde(flatten)]
    rest: BTreeMap<String, serde_norway::Value>,
}

/// The file as kubectl would read it (libyaml, not kina's parser), without
/// kina's three items.
fn meaning_without(text: &str, ctx: &str) -> Config {
    let mut config: Config = serde_norway::from_str(text).unwrap();
    for key in ["clusters", "contexts", "users"] {
        if let Some(serde_norway::Value::Sequence(items)) = config.rest.get_mut(key) {
            items.retain(|i| i.get("name").and_then(|n| n.as_str()) != Some(ctx));
        }
    }
    config
}

fn entry() -> Entry {
    Entry {
        context: "kina-dev".to_string(),
        server: "https://127.0.0.1:41234".to_string(),
        ca_data: "Q0E=".to_string(),
        client_cert_data: "Y2VydA==".to_string(),
        client_key_data: "a2V5".to_string(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn merge_keeps_everything_else_and_remove_restores_the_bytes(
        layout in layouts(),
        others in others(),
        current in any::<prop::sample::Index>(),
        has_current in any::<bool>(),
        set_current in any::<bool>(),
    ) {
        let current = (has_current && !others.is_empty())
            .then(|| others[current.index(others.len())].name.clone());
        let original = render(&layout, &others, current.as_deref());
        let entry = entry();

        let merged = edit::merge(&original, &entry, set_current)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{original}")))?
            .ok_or_else(|| TestCaseError::fail("merge changed nothing"))?;
        let before = meaning_without(&original, &entry.context);
        let after = meaning_without(&merged, &entry.context);
        prop_assert_eq!(&after.rest, &before.rest, "{}", merged);
        let expected_current = if set_current {
            Some(entry.context.clone())
        } else {
            before.current_context.clone()
        };
        prop_assert_eq!(&after.current_context, &expected_current);
        prop_assert!(edit::holds(&merged, &entry.context).unwrap());
        // The file keeps its kind of line break.
        let bare_lf = |t: &str| t.replace("\r\n", "").contains('\n');
        if original.contains("\r\n") {
            prop_assert!(!bare_lf(&merged), "{:?}", merged);
        } else {
            prop_assert!(!merged.contains("\r\n"), "{:?}", merged);
        }

        // Merging again changes nothing.
        prop_assert!(edit::merge(&merged, &entry, set_current).unwrap().is_none());

        let removed = edit::remove(&merged, &entry.context)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{merged}")))?
            .ok_or_else(|| TestCaseError::fail("remove found nothing"))?;
        if set_current {
            // Our current-context is cleared (to "", as kind leaves it),
            // not the one it replaced put back: that is gone.
            let gone = meaning_without(&removed, "");
            prop_assert_eq!(gone.rest, before.rest);
            prop_assert!(gone.current_context.as_deref().is_none_or(str::is_empty));
        } else {
            prop_assert_eq!(removed, original);
        }
    }

    /// Whatever is in the file, merging either refuses it with a sentence
    /// or gives a file that still parses; it never panics.
    #[test]
    fn any_text_is_merged_or_refused(text in "([a-z:\\-\\[\\]{}#'\" \\n]|name|clusters|users|contexts|kina-dev){0,120}") {
        if let Ok(Some(out)) = edit::merge(&text, &entry(), false) {
            prop_assert!(edit::holds(&out, "kina-dev").unwrap());
        }
    }
}
