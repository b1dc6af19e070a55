//! Merging into and removing from kubeconfigs people really have: comments,
//! odd indentation, other contexts, keys kina does not know.
//!
//! Every result is read back with serde_norway (libyaml, independent of the
//! saphyr parser kina edits with) into kubeconfig's v1 schema. kubectl is
//! not installable here, so `kubectl config view` is not run.

use super::*;

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use serde::Deserialize;

// ---------------------------------------------------------------- fixtures

/// base64 of a short PEM-ish text: valid base64, recognisable in output.
fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

const KEY_MARKER: &str = "TOP-SECRET-KEY";

fn entry(cluster: &str) -> Entry {
    Entry {
        context: format!("kina-{cluster}"),
        server: "https://127.0.0.1:41234".to_string(),
        ca_data: b64(&format!("CA of {cluster}")),
        client_cert_data: b64(&format!("cert of {cluster}")),
        client_key_data: b64(&format!("{KEY_MARKER} of {cluster}")),
    }
}

/// A kubeconfig edited by hand over the years.
const USER_CONFIG: &str = r#"# Managed partly by hand. Do not reorder!
apiVersion: v1
kind: Config
preferences: {}
clusters:
    # production, via the bastion
    -   cluster:
            certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
            server: "https://prod.example.com:6443"   # via VPN
        name: prod
    - name: 'staging'
      cluster:
          insecure-skip-tls-verify: true
          server: https://staging.example.com

contexts:
- context: {cluster: prod, user: prod-admin, namespace: default}
  name: prod
- name: staging
  context:
    cluster: staging
    user: staging-user

current-context: prod   # the one I use
users:
  - name: prod-admin
    user:
      exec:
        apiVersion: client.authentication.k8s.io/v1
        command: aws
        args: ["eks", "get-token", "--cluster-name", prod]
  - name: staging-user
    user:
      token: |
        abcdef
        ghijkl
x-company-settings:
  owner: me   # not a kubeconfig key
# trailing comment
"#;

/// kubeadm's admin.conf, shortened.
fn admin_conf() -> String {
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://10.89.0.2:6443\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: kubernetes-admin\n  name: kubernetes-admin@kubernetes\ncurrent-context: kubernetes-admin@kubernetes\nkind: Config\npreferences: {{}}\nusers:\n- name: kubernetes-admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64("the CA"),
        b64("the cert"),
        b64(KEY_MARKER)
    )
}

// ----------------------------------------------------- independent reading

/// kubeconfig's v1 schema (client-go `tools/clientcmd/api/v1/types.go`), as
/// far as these tests look.
#[derive(Debug, Deserialize)]
struct Config {
    #[serde(default)]
    clusters: Option<Vec<Named>>,
    #[serde(default)]
    contexts: Option<Vec<Named>>,
    #[serde(default)]
    users: Option<Vec<Named>>,
    #[serde(rename = "current-context", default)]
    current_context: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_norway::Value>,
}

#[derive(Debug, Deserialize)]
struct Named {
    name: String,
    #[serde(flatten)]
    body: BTreeMap<String, serde_norway::Value>,
}

fn read_back(text: &str) -> Config {
    // libyaml behind serde_norway cannot take a byte order mark in a &str.
    let text = text.trim_start_matches('\u{feff}');
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("not a kubeconfig: {e}\n{text}"))
}

/// The named item's body (`cluster`, `context` or `user`) as strings.
fn body(items: &Option<Vec<Named>>, name: &str, key: &str) -> BTreeMap<String, String> {
    let found: Vec<&Named> = items.iter().flatten().filter(|n| n.name == name).collect();
    assert_eq!(found.len(), 1, "{name} appears {} times", found.len());
    let value = found[0]
        .body
        .get(key)
        .unwrap_or_else(|| panic!("{name} has no {key}"));
    let map: BTreeMap<String, serde_norway::Value> =
        serde_norway::from_value(value.clone()).unwrap();
    map.into_iter()
        .map(|(k, v)| {
            (
                k,
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{v:?}")),
            )
        })
        .collect()
}

fn names(items: &Option<Vec<Named>>) -> Vec<String> {
    items.iter().flatten().map(|n| n.name.clone()).collect()
}

/// Asserts that `text` holds `entry` exactly as kubectl would read it.
fn assert_holds(text: &str, entry: &Entry) {
    let config = read_back(text);
    let ctx = &entry.context;
    let cluster = body(&config.clusters, ctx, "cluster");
    assert_eq!(cluster.get("server"), Some(&entry.server));
    assert_eq!(
        cluster.get("certificate-authority-data"),
        Some(&entry.ca_data)
    );
    let context = body(&config.contexts, ctx, "context");
    assert_eq!(context.get("cluster"), Some(ctx));
    assert_eq!(context.get("user"), Some(ctx));
    let user = body(&config.users, ctx, "user");
    assert_eq!(
        user.get("client-certificate-data"),
        Some(&entry.client_cert_data)
    );
    assert_eq!(user.get("client-key-data"), Some(&entry.client_key_data));
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

fn text(path: &Path) -> String {
    fs::read_to_string(path).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().mode() & 0o7777
}

/// Nothing but the kubeconfig itself is left in its directory.
fn assert_no_leftovers(dir: &Path) {
    for f in fs::read_dir(dir).unwrap() {
        let name = f.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.ends_with(".lock") && !name.ends_with(".tmp"),
            "left behind: {name}"
        );
    }
}

// ------------------------------------------------------------------- merge

#[test]
fn merge_then_remove_gives_back_the_original_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "config", USER_CONFIG);
    fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();

    merge(&path, &entry("dev"), false).unwrap();
    let merged = text(&path);
    assert_holds(&merged, &entry("dev"));
    let config = read_back(&merged);
    assert_eq!(names(&config.clusters), ["prod", "staging", "kina-dev"]);
    assert_eq!(names(&config.contexts), ["prod", "staging", "kina-dev"]);
    assert_eq!(
        names(&config.users),
        ["prod-admin", "staging-user", "kina-dev"]
    );
    assert_eq!(config.current_context.as_deref(), Some("prod"));
    assert!(config.other.contains_key("x-company-settings"));
    assert_eq!(mode(&path), 0o640, "permissions kept");

    // Our items follow each list's own style: `-` column, indentation after
    // it, nested indentation; placed after the list's last item, before the
    // blank line and comments that follow it.
    let e = entry("dev");
    let ours = [
        format!(
            "    -   cluster:\n            certificate-authority-data: {}\n            server: https://127.0.0.1:41234\n        name: kina-dev\n",
            e.ca_data
        ),
        "- context:\n    cluster: kina-dev\n    user: kina-dev\n  name: kina-dev\n".to_string(),
        format!(
            "  - name: kina-dev\n    user:\n      client-certificate-data: {}\n      client-key-data: {}\n",
            e.client_cert_data, e.client_key_data
        ),
    ];
    assert!(
        merged.contains(&format!(
            "https://staging.example.com\n{}\ncontexts:",
            ours[0]
        )),
        "{merged}"
    );
    assert!(
        merged.contains(&format!(
            "user: staging-user\n{}\ncurrent-context: prod",
            ours[1]
        )),
        "{merged}"
    );
    assert!(
        merged.contains(&format!("        ghijkl\n{}x-company-settings:", ours[2])),
        "{merged}"
    );
    assert_eq!(
        merged.len(),
        USER_CONFIG.len() + ours.iter().map(String::len).sum::<usize>()
    );
    // Only lines were added: every original line is still there, in order.
    let mut added = merged.lines();
    for line in USER_CONFIG.lines() {
        assert!(added.any(|l| l == line), "lost line {line:?}\n{merged}");
    }

    assert!(remove(&path, "kina-dev").unwrap());
    assert_eq!(text(&path), USER_CONFIG);
    assert_eq!(mode(&path), 0o640);
    assert!(
        !remove(&path, "kina-dev").unwrap(),
        "nothing left to remove"
    );
    assert_eq!(text(&path), USER_CONFIG);
    assert_no_leftovers(dir.path());
}

#[test]
fn merging_the_same_entry_again_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "config", USER_CONFIG);
    merge(&path, &entry("dev"), true).unwrap();
    let once = text(&path);
    merge(&path, &entry("dev"), true).unwrap();
    assert_eq!(text(&path), once);
}

#[test]
fn replacing_an_entry_changes_only_its_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "config", USER_CONFIG);
    merge(&path, &entry("a"), false).unwrap();
    merge(&path, &entry("b"), false).unwrap();
    let before = text(&path);

    let mut moved = entry("a");
    moved.server = "https://127.0.0.1:50000".to_string();
    moved.client_key_data = b64("another key");
    merge(&path, &moved, false).unwrap();
    let after = text(&path);
    assert_holds(&after, &moved);
    assert_holds(&after, &entry("b"));

    let before_lines: Vec<&str> = before.lines().collect();
    let after_lines: Vec<&str> = after.lines().collect();
    assert_eq!(before_lines.len(), after_lines.len());
    let changed: Vec<(&str, &str)> = before_lines
        .iter()
        .zip(&after_lines)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| (*a, *b))
        .collect();
    assert_eq!(changed.len(), 2, "{changed:?}");
    assert!(
        changed[0].1.ends_with("server: https://127.0.0.1:50000"),
        "{changed:?}"
    );
    assert!(changed[1].1.contains(&b64("another key")), "{changed:?}");

    // Removing both gives the original back.
    remove(&path, "kina-a").unwrap();
    remove(&path, "kina-b").unwrap();
    assert_eq!(text(&path), USER_CONFIG);
}

#[test]
fn an_entry_split_over_odd_places_is_replaced_in_each() {
    // A kina entry edited by hand: a namespace added, a duplicate user.
    let original = "clusters:\n- name: kina-dev\n  cluster:\n    server: https://old\n    certificate-authority-data: b2xk\n- name: other\n  cluster: {server: https://other}\ncontexts:\n- name: kina-dev\n  context: {cluster: kina-dev, user: kina-dev, namespace: x}\nusers:\n- name: kina-dev\n  user: {token: abc}\n- name: kina-dev\n  user: {token: def}\ncurrent-context: other\n";
    let out = edit::merge(original, &entry("dev"), false)
        .unwrap()
        .unwrap();
    assert_holds(&out, &entry("dev"));
    let config = read_back(&out);
    assert_eq!(
        names(&config.clusters),
        ["kina-dev", "other"],
        "replaced in place"
    );
    assert_eq!(names(&config.users), ["kina-dev"], "duplicate dropped");
    assert!(out.contains("- name: other\n  cluster: {server: https://other}\n"));
    assert!(out.ends_with("current-context: other\n"));
}

#[test]
fn current_context_is_set_and_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "config", USER_CONFIG);
    merge(&path, &entry("dev"), true).unwrap();
    let merged = text(&path);
    assert!(
        merged.contains("\ncurrent-context: kina-dev   # the one I use\n"),
        "{merged}"
    );
    assert_eq!(
        read_back(&merged).current_context.as_deref(),
        Some("kina-dev")
    );

    // Another cluster made current, then removed: the current context is
    // cleared, as kind does.
    merge(&path, &entry("two"), true).unwrap();
    assert_eq!(
        read_back(&text(&path)).current_context.as_deref(),
        Some("kina-two")
    );
    assert!(remove(&path, "kina-two").unwrap());
    let cleared = text(&path);
    assert!(
        cleared.contains("\ncurrent-context: \"\"   # the one I use\n"),
        "{cleared}"
    );
    assert_eq!(read_back(&cleared).current_context.as_deref(), Some(""));
    assert_holds(&cleared, &entry("dev"));

    // Removing a cluster that is not current leaves current-context alone.
    merge(&path, &entry("dev"), true).unwrap();
    merge(&path, &entry("three"), false).unwrap();
    remove(&path, "kina-three").unwrap();
    assert_eq!(
        read_back(&text(&path)).current_context.as_deref(),
        Some("kina-dev")
    );
}

#[test]
fn current_context_written_as_nothing_or_missing_is_set() {
    let out = edit::merge(
        "apiVersion: v1\ncurrent-context:\nkind: Config\n",
        &entry("dev"),
        true,
    )
    .unwrap()
    .unwrap();
    assert!(
        out.starts_with("apiVersion: v1\ncurrent-context: kina-dev\nkind: Config\n"),
        "{out}"
    );
    assert_holds(&out, &entry("dev"));

    let out = edit::merge("apiVersion: v1\nkind: Config\n", &entry("dev"), true)
        .unwrap()
        .unwrap();
    let config = read_back(&out);
    assert_eq!(config.current_context.as_deref(), Some("kina-dev"));
    assert!(
        out.starts_with("apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n"),
        "{out}"
    );
    assert!(
        out.contains("\ncurrent-context: kina-dev\nusers:\n- name: kina-dev\n"),
        "kubectl's key order: {out}"
    );
}

#[test]
fn a_missing_file_is_created_private_with_a_private_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("home/.kube/config");
    merge(&path, &entry("dev"), true).unwrap();
    let created = text(&path);
    assert_holds(&created, &entry("dev"));
    let config = read_back(&created);
    assert_eq!(config.current_context.as_deref(), Some("kina-dev"));
    assert_eq!(
        config.other.get("kind").and_then(|v| v.as_str()),
        Some("Config")
    );
    assert_eq!(
        config.other.get("apiVersion").and_then(|v| v.as_str()),
        Some("v1")
    );
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("home/.kube")), 0o700);
    assert_eq!(mode(&dir.path().join("home")), 0o700);
    assert_no_leftovers(&dir.path().join("home/.kube"));

    // Removing it again leaves a valid, empty kubeconfig.
    assert!(remove(&path, "kina-dev").unwrap());
    let emptied = read_back(&text(&path));
    assert!(names(&emptied.clusters).is_empty());
    assert_eq!(emptied.current_context.as_deref(), Some(""));
    // A missing file holds nothing to remove and is not created.
    assert!(!remove(&dir.path().join("nothing/config"), "kina-dev").unwrap());
    assert!(!dir.path().join("nothing").exists());
}

#[test]
fn empty_and_comment_only_files_get_a_whole_kubeconfig() {
    for original in [
        "",
        "\n",
        "# just a comment",
        "# kubeconfig\n\n",
        "---\n",
        "---\n# empty\n",
    ] {
        let out = edit::merge(original, &entry("dev"), false)
            .unwrap()
            .unwrap();
        assert!(out.starts_with(original), "{original:?} kept: {out}");
        assert_holds(&out, &entry("dev"));
        assert_eq!(read_back(&out).current_context.as_deref(), Some(""));
    }
}

#[test]
fn files_without_the_lists_or_with_empty_ones_get_them() {
    // Each file, and what it is after a merge and a remove: the lists kina
    // added stay as empty lists, a null list comes back as `[]`.
    let cases = [
        (
            "apiVersion: v1\nkind: Config\n",
            "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\ncurrent-context: \"\"\nusers: []\n",
        ),
        (
            "apiVersion: v1\nkind: Config",
            "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\ncurrent-context: \"\"\nusers: []",
        ),
        (
            "apiVersion: v1\nclusters: []\ncontexts: []\ncurrent-context: \"\"\nkind: Config\npreferences: {}\nusers: []\n",
            "apiVersion: v1\nclusters: []\ncontexts: []\ncurrent-context: \"\"\nkind: Config\npreferences: {}\nusers: []\n",
        ),
        (
            "apiVersion: v1\nclusters: null\ncontexts: ~\nusers:\nkind: Config\n",
            "apiVersion: v1\nclusters: []\ncontexts: []\nusers: []\nkind: Config\ncurrent-context: \"\"\n",
        ),
        (
            "apiVersion: v1\nclusters: []  # none yet\ncontexts:\nusers: []",
            "apiVersion: v1\nclusters: []  # none yet\ncontexts: []\nusers: []\ncurrent-context: \"\"",
        ),
        (
            "apiVersion: v1\r\nkind: Config\r\nclusters: []\r\n",
            "apiVersion: v1\r\nkind: Config\r\nclusters: []\r\ncontexts: []\r\ncurrent-context: \"\"\r\nusers: []\r\n",
        ),
        (
            "  apiVersion: v1\n  kind: Config\n",
            "  apiVersion: v1\n  kind: Config\n  clusters: []\n  contexts: []\n  current-context: \"\"\n  users: []\n",
        ),
    ];
    for (original, round_trip) in cases {
        let out = edit::merge(original, &entry("dev"), true)
            .unwrap_or_else(|e| panic!("{original:?}: {e}"))
            .unwrap();
        assert_holds(&out, &entry("dev"));
        assert_eq!(read_back(&out).current_context.as_deref(), Some("kina-dev"));
        if original.contains("\r\n") {
            assert!(
                !out.replace("\r\n", "").contains('\n'),
                "CRLF file keeps CRLF: {out:?}"
            );
        }
        let back = edit::remove(&out, "kina-dev").unwrap().unwrap();
        assert_eq!(back, round_trip, "{out}");
        read_back(&back);
    }
}

#[test]
fn flow_style_and_json_kubeconfigs_stay_flow_style() {
    let json = r#"{"apiVersion": "v1", "kind": "Config",
  "clusters": [{"name": "a", "cluster": {"server": "https://a"}}],
  "contexts": [],
  "users": null}"#;
    let out = edit::merge(json, &entry("dev"), true).unwrap().unwrap();
    assert_holds(&out, &entry("dev"));
    assert!(
        out.contains(
            r#""cluster": {"server": "https://a"}}, {"cluster": {"certificate-authority-data": "#
        ),
        "{out}"
    );
    let value: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("JSON stays JSON: {e}\n{out}"));
    assert_eq!(value["current-context"], "kina-dev");
    let back = edit::remove(&out, "kina-dev").unwrap().unwrap();
    serde_json::from_str::<serde_json::Value>(&back).unwrap();
    assert!(
        back.starts_with(
            r#"{"apiVersion": "v1", "kind": "Config",
  "clusters": [{"name": "a", "cluster": {"server": "https://a"}}],
  "contexts": [],
  "users": ["#
        ),
        "{back}"
    );

    // A flow list in a block file gets a flow item, and loses it again.
    let mixed = "clusters: [{name: a, cluster: {server: https://a}}]\ncontexts: []\nusers: []\n";
    let out = edit::merge(mixed, &entry("dev"), false).unwrap().unwrap();
    assert_holds(&out, &entry("dev"));
    assert!(
        out.starts_with("clusters: [{name: a, cluster: {server: https://a}}, {"),
        "{out}"
    );
    assert_eq!(edit::remove(&out, "kina-dev").unwrap().unwrap(), mixed);
}

#[test]
fn a_file_ending_without_a_line_break_comes_back_exactly() {
    let original = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://a\n  name: a\ncontexts: []\nusers:\n- name: a\n  user: {}";
    let out = edit::merge(original, &entry("dev"), false)
        .unwrap()
        .unwrap();
    assert_holds(&out, &entry("dev"));
    assert!(!out.ends_with('\n'));
    assert_eq!(edit::remove(&out, "kina-dev").unwrap().unwrap(), original);
}

#[test]
fn unusual_but_valid_layouts() {
    let cases = [
        // `-` alone on its line, deeper nesting, a literal block last.
        "clusters:\n  -\n    name: a\n    cluster:\n      server: https://a\nusers:\n  - name: u\n    user:\n      token: |\n        xyz\n\n  - name: v\n    user: {}\n",
        // Quoted keys, a comment between items, `- ` followed by three spaces.
        "\"clusters\":\n-   name: a\n    # about a\n    cluster:\n        server: https://a\n# between\n-   name: b\n    cluster: {server: https://b}\n",
        // Non-ASCII text before the lists (byte and character offsets differ).
        "# Größe: ☸ kubernetes\napiVersion: v1\nclusters:\n- name: ☸\n  cluster: {server: https://☸}\n",
        // A byte order mark.
        "\u{feff}apiVersion: v1\nclusters:\n- name: a\n  cluster: {server: https://a}\n",
        // Anchors and aliases elsewhere are fine.
        "x-defaults: &d {server: https://a}\nclusters:\n- name: a\n  cluster: *d\n",
        // A document end marker.
        "apiVersion: v1\nclusters: []\n...\n",
    ];
    for original in cases {
        for set_current in [false, true] {
            let out = edit::merge(original, &entry("dev"), set_current)
                .unwrap_or_else(|e| panic!("{original:?}: {e}"))
                .unwrap();
            assert_holds(&out, &entry("dev"));
            let mut lines = out.lines();
            for line in original.lines().filter(|l| !l.ends_with(": []")) {
                assert!(lines.any(|l| l == line), "lost line {line:?}\n{out}");
            }
            let back = edit::remove(&out, "kina-dev").unwrap().unwrap();
            assert!(!edit::holds(&back, "kina-dev").unwrap(), "{back}");
        }
    }
}

// ----------------------------------------------------------------- refusal

#[test]
fn a_corrupt_kubeconfig_is_refused_and_left_alone() {
    let cases = [
        ("clusters: [\nusers: {\n", "invalid YAML at line"),
        ("apiVersion: v1\n\tclusters: []\n", "invalid YAML"),
        ("- a\n- b\n", "the top level is a list, not a mapping"),
        (
            "just a string\n",
            "the top level is a string, not a mapping",
        ),
        ("clusters: yes\n", "`clusters` is a string, not a list"),
        ("clusters: {a: b}\n", "`clusters` is a mapping, not a list"),
        (
            "users:\n- just-a-name\n",
            "`users` item 1 is a string, not a mapping",
        ),
        (
            "contexts:\n- name: [a]\n",
            "the name of `contexts` item 1 is a list, not a string",
        ),
        (
            "current-context: [a]\n",
            "`current-context` is a list, not a string",
        ),
        (
            "clusters: []\nclusters: []\n",
            "the top-level key `clusters` appears twice",
        ),
        ("a: 1\n---\nb: 2\n", "more than one YAML document"),
        (
            "x: &c []\nclusters: *c\n",
            "`clusters` is a YAML alias, not a list",
        ),
        (
            "clusters:\n- &k\n  name: kina-dev\n  cluster: {}\n",
            "uses a YAML anchor or tag",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (original, why) in cases {
        let path = write(dir.path(), "config", original);
        let before = fs::read(&path).unwrap();
        let err = merge(&path, &entry("dev"), true).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, Error::Invalid { .. }),
            "{original:?}: {err:?}"
        );
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(why), "{original:?}: {message}");
        assert!(message.contains("left unchanged"), "{message}");
        assert_eq!(fs::read(&path).unwrap(), before, "{original:?} was touched");
        // remove refuses as well, unless there is nothing to do.
        if let Err(e) = remove(&path, "kina-dev") {
            assert!(e.to_string().contains(why), "{e}");
        }
        assert_eq!(fs::read(&path).unwrap(), before, "{original:?} was touched");
        assert_no_leftovers(dir.path());
    }

    let path = dir.path().join("binary");
    fs::write(&path, b"clusters: [\xff]\n").unwrap();
    let err = merge(&path, &entry("dev"), false).unwrap_err();
    assert!(err.to_string().contains("not UTF-8"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"clusters: [\xff]\n");
}

#[test]
fn a_bad_entry_is_refused_before_the_file_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    for bad in [
        Entry {
            context: String::new(),
            ..entry("x")
        },
        Entry {
            context: "kina-a\nb".to_string(),
            ..entry("x")
        },
        Entry {
            server: "https://a b".to_string(),
            ..entry("x")
        },
        Entry {
            ca_data: "not base64!".to_string(),
            ..entry("x")
        },
        Entry {
            client_key_data: format!("{KEY_MARKER}!"),
            ..entry("x")
        },
    ] {
        let err = merge(&path, &bad, false).unwrap_err();
        assert!(matches!(err, Error::Entry(_)), "{err:?}");
        assert!(!err.to_string().contains(KEY_MARKER), "{err}");
        assert!(!path.exists());
    }
}

// ------------------------------------------------------------------ secrets

#[test]
fn the_client_key_never_shows_in_debug_or_errors() {
    let e = entry("dev");
    let shown = format!("{e:?}");
    assert!(!shown.contains(&e.client_key_data), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    assert!(shown.contains("kina-dev"), "{shown}");

    let conf = admin_conf();
    let broken = [
        conf.replace("kubernetes-admin@kubernetes\nkind", "nobody\nkind"),
        conf.replace("client-certificate-data", "client-certificate"),
        conf.replace("clusters:", "clusters: [\n"),
        conf.replace(&b64(KEY_MARKER), &format!("{KEY_MARKER}!")),
    ];
    for text in broken {
        let err = from_admin_conf(&text, "dev", "https://127.0.0.1:1").unwrap_err();
        let all = format!("{err} {err:?}");
        assert!(
            !all.contains(KEY_MARKER) && !all.contains(&b64(KEY_MARKER)),
            "{all}"
        );
    }

    // An invalid kubeconfig holding a key: the error names the problem only.
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "config",
        &format!(
            "users:\n- name: u\n  user:\n    client-key-data: {}\n  - broken\n",
            b64(KEY_MARKER)
        ),
    );
    let err = merge(&path, &entry("dev"), false).unwrap_err();
    let all = format!("{err} {err:?}");
    assert!(!all.contains(&b64(KEY_MARKER)), "{all}");
}

// --------------------------------------------------------------- admin.conf

#[test]
fn admin_conf_becomes_a_kina_entry_pointing_at_the_host() {
    let e = from_admin_conf(&admin_conf(), "dev", "https://127.0.0.1:41234").unwrap();
    assert_eq!(e.context, "kina-dev");
    assert_eq!(e.server, "https://127.0.0.1:41234");
    assert_eq!(e.ca_data, b64("the CA"));
    assert_eq!(e.client_cert_data, b64("the cert"));
    assert_eq!(e.client_key_data, b64(KEY_MARKER));

    // Without current-context, the only context is used.
    let e2 = from_admin_conf(
        &admin_conf().replace("current-context: kubernetes-admin@kubernetes\n", ""),
        "dev",
        "https://127.0.0.1:41234",
    )
    .unwrap();
    assert_eq!(e2, e);

    let missing = admin_conf().replace("certificate-authority-data", "certificate-authority");
    let err = from_admin_conf(&missing, "dev", "https://127.0.0.1:1").unwrap_err();
    assert!(matches!(err, Error::AdminConf(_)), "{err:?}");
    assert!(
        err.to_string().contains("certificate-authority-data"),
        "{err}"
    );
    assert!(matches!(
        from_admin_conf(&admin_conf(), "", "https://127.0.0.1:1"),
        Err(Error::Entry(_))
    ));
}

// --------------------------------------------------------------- KUBECONFIG

#[test]
fn target_file_follows_kubectl() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let c = dir.path().join("c");
    let join = |files: &[&Path]| std::env::join_paths(files).unwrap();
    let default = home.join(".kube/config");

    assert_eq!(target_file(None, &home), default);
    assert_eq!(target_file(Some(OsStr::new("")), &home), default);
    assert_eq!(
        target_file(Some(&join(&[Path::new(""), Path::new("")])), &home),
        default
    );
    // One file: that file, whether or not it exists.
    assert_eq!(target_file(Some(a.as_os_str()), &home), a);
    // Several, none exists: the last.
    assert_eq!(target_file(Some(&join(&[&a, &b, &c])), &home), c);
    // The first that exists; empty entries and repeats do not count.
    fs::write(&b, "").unwrap();
    fs::write(&c, "").unwrap();
    assert_eq!(
        target_file(Some(&join(&[&a, Path::new(""), &b, &c])), &home),
        b
    );
    assert_eq!(
        search_path(Some(&join(&[&a, &b, &a, Path::new("")])), &home),
        [a.clone(), b.clone()]
    );

    // An entry already in a later file is updated there.
    fs::write(&c, "users:\n- name: kina-dev\n  user: {}\n").unwrap();
    let env = join(&[&a, &b, &c]);
    assert_eq!(target_file_for(Some(&env), &home, "kina-dev").unwrap(), c);
    assert_eq!(target_file_for(Some(&env), &home, "kina-new").unwrap(), b);
    // A current-context alone is not an entry.
    fs::write(&b, "current-context: kina-dev\n").unwrap();
    assert_eq!(target_file_for(Some(&env), &home, "kina-dev").unwrap(), c);
    // Nothing exists: the target file.
    assert_eq!(target_file_for(None, &home, "kina-dev").unwrap(), default);
}

// ------------------------------------------------------------------ locking

#[test]
fn a_stale_lock_is_reported_by_name_and_the_file_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "config", USER_CONFIG);
    let lock = dir.path().join("config.lock");
    fs::write(&lock, "").unwrap();
    let started = Instant::now();
    let err = merge_waiting(&path, &entry("dev"), true, Duration::from_millis(300)).unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(300));
    let message = err.to_string();
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    assert!(message.contains(&lock.display().to_string()), "{message}");
    assert!(
        message.contains("stale") && message.contains("remove it"),
        "{message}"
    );
    assert_eq!(text(&path), USER_CONFIG);
    assert!(lock.exists(), "someone else's lock is not ours to remove");
    assert!(matches!(
        remove_waiting(&path, "prod", Duration::from_millis(50)),
        Err(Error::Locked { .. })
    ));
    assert_eq!(lock_path(&path), lock);
}

#[test]
fn a_lock_released_while_waiting_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "config", USER_CONFIG);
    let lock = lock_path(&path);
    fs::write(&lock, "").unwrap();
    let releaser = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            fs::remove_file(lock).unwrap();
        })
    };
    merge(&path, &entry("dev"), false).unwrap();
    releaser.join().unwrap();
    assert_holds(&text(&path), &entry("dev"));
    assert!(!lock.exists());
}

#[test]
fn the_lock_is_removed_after_a_failed_edit() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "config", "clusters: {}\n");
    merge(&path, &entry("dev"), false).unwrap_err();
    assert!(!lock_path(&path).exists());
}

/// How many merges each concurrent writer makes.
const ROUNDS: usize = 15;

#[test]
fn two_threads_merging_at_once_both_land() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "config", USER_CONFIG);
    let barrier = Arc::new(Barrier::new(2));
    let writers: Vec<_> = ["left", "right"]
        .into_iter()
        .map(|side| {
            let (path, barrier) = (path.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..ROUNDS {
                    merge(&path, &entry(&format!("{side}-{i}")), i % 2 == 0).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let merged = text(&path);
    for side in ["left", "right"] {
        for i in 0..ROUNDS {
            assert_holds(&merged, &entry(&format!("{side}-{i}")));
        }
    }
    assert_no_leftovers(dir.path());
}

/// The environment variables that make [`child_process_merges`] work.
const CHILD_PATH: &str = "KINA_TEST_KUBECONFIG_CHILD_PATH";
const CHILD_SIDE: &str = "KINA_TEST_KUBECONFIG_CHILD_SIDE";

/// Not a test of its own: the body of the other process in
/// [`two_processes_merging_at_once_both_land`], which runs this test binary
/// again with only this test selected. Does nothing without its variables.
#[test]
fn child_process_merges() {
    let (Some(path), Some(side)) = (std::env::var_os(CHILD_PATH), std::env::var(CHILD_SIDE).ok())
    else {
        return;
    };
    for i in 0..ROUNDS {
        merge(Path::new(&path), &entry(&format!("{side}-{i}")), false).unwrap();
    }
}

#[test]
fn two_processes_merging_at_once_both_land() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "config", USER_CONFIG);
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = ["proc-a", "proc-b"]
        .into_iter()
        .map(|side| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "kubeconfig::tests::child_process_merges",
                    "--test-threads=1",
                ])
                .env(CHILD_PATH, &path)
                .env(CHILD_SIDE, side)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // This process merges too, while the children do.
    for i in 0..ROUNDS {
        merge(&path, &entry(&format!("parent-{i}")), false).unwrap();
    }
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "child failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "the child ran its test"
        );
    }
    let merged = text(&path);
    for side in ["proc-a", "proc-b", "parent"] {
        for i in 0..ROUNDS {
            assert_holds(&merged, &entry(&format!("{side}-{i}")));
        }
    }
    // The user's own entries are all still there, untouched.
    for side in ["proc-a", "proc-b", "parent"] {
        for i in 0..ROUNDS {
            remove(&path, &format!("kina-{side}-{i}")).unwrap();
        }
    }
    assert_eq!(text(&path), USER_CONFIG);
    assert_no_leftovers(dir.path());
}

#[test]
fn a_symlinked_kubeconfig_stays_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let real = write(dir.path(), "real-config", USER_CONFIG);
    let link = dir.path().join("config");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    merge(&link, &entry("dev"), false).unwrap();
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_holds(&text(&real), &entry("dev"));
    remove(&link, "kina-dev").unwrap();
    assert_eq!(text(&real), USER_CONFIG);
}
