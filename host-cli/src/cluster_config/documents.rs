//! From text to typed values: the file split into its Cluster and Kina
//! documents, every field checked against the schema before decoding, and
//! decoding errors named by field path.
//!
//! serde's own `deny_unknown_fields` stops at the first unknown field and
//! says neither where it belongs nor what was meant; this walk over the YAML
//! reports every one with kind's field path and a did-you-mean, which is
//! what makes a mistyped kind config quick to fix.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer};
use serde_norway::Value as Yaml;

use super::{
    Cluster, Document, FieldError, KINA_API_VERSION, KINA_KIND, KIND_API_VERSION, KIND_KIND,
    KinaNode, KinaSettings, Mount, Networking, Node, PatchJson6902, PortMapping,
};

/// The file's Cluster document and its Kina document, if any.
pub(super) fn split_documents(text: &str) -> Result<(Yaml, Option<Yaml>), Vec<FieldError>> {
    let mut cluster: Option<(usize, Yaml)> = None;
    let mut kina: Option<(usize, Yaml)> = None;
    let mut errors = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        let n = i + 1;
        let mut doc = match Yaml::deserialize(de) {
            Ok(doc) => doc,
            Err(e) => return Err(vec![FieldError::cluster("", format!("not YAML: {e}"))]),
        };
        if let Err(e) = doc.apply_merge() {
            return Err(vec![FieldError::cluster("", format!("document {n}: {e}"))]);
        }
        if doc.is_null() {
            continue;
        }
        if !doc.is_mapping() {
            errors.push(FieldError::cluster(
                "",
                format!("document {n} is not a mapping of fields"),
            ));
            continue;
        }
        let api_version = doc.get("apiVersion").and_then(Yaml::as_str).unwrap_or("");
        let kind = doc.get("kind").and_then(Yaml::as_str).unwrap_or("");
        match (api_version, kind) {
            (KIND_API_VERSION, KIND_KIND) => match &cluster {
                Some((first, _)) => errors.push(FieldError::cluster(
                    "",
                    format!("documents {first} and {n} are both `kind: Cluster`; a config has one"),
                )),
                None => cluster = Some((n, doc)),
            },
            (KINA_API_VERSION, KINA_KIND) => match &kina {
                Some((first, _)) => errors.push(FieldError::kina(
                    "",
                    format!("documents {first} and {n} are both `kind: Kina`; a config has one"),
                )),
                None => kina = Some((n, doc)),
            },
            (v, k) => errors.push(unknown_document(n, v, k)),
        }
    }
    if let (Some((c, _)), Some((k, _))) = (&cluster, &kina)
        && k < c
    {
        errors.push(FieldError::kina(
            "",
            format!(
                "document {k} comes before the Cluster document ({c}): kind reads only the \
                 first document of a file, so put the Cluster first and the file still works \
                 with kind"
            ),
        ));
    }
    match cluster {
        Some((_, doc)) if errors.is_empty() => Ok((doc, kina.map(|(_, d)| d))),
        None if errors.is_empty() => Err(vec![FieldError::cluster(
            "",
            format!("no `apiVersion: {KIND_API_VERSION}`, `kind: {KIND_KIND}` document"),
        )]),
        _ => Err(errors),
    }
}

/// What is wrong with document `n`, which is neither kind's Cluster nor
/// kina's Kina document.
fn unknown_document(n: usize, api_version: &str, kind: &str) -> FieldError {
    match (api_version, kind) {
        ("", _) => FieldError::cluster(
            "",
            format!(
                "document {n} has no apiVersion: a cluster config is `apiVersion: \
                 {KIND_API_VERSION}`, `kind: {KIND_KIND}`"
            ),
        ),
        (KIND_API_VERSION, other) => FieldError::cluster(
            "kind",
            format!("unknown kind `{other}` for apiVersion {KIND_API_VERSION} (it is {KIND_KIND})"),
        ),
        (v, _) if v.starts_with("kind.x-k8s.io/") => FieldError::cluster(
            "apiVersion",
            format!("{v}: kina reads kind's current config version, {KIND_API_VERSION}"),
        ),
        (KINA_API_VERSION, other) => FieldError::kina(
            "kind",
            format!("unknown kind `{other}` for apiVersion {KINA_API_VERSION} (it is {KINA_KIND})"),
        ),
        (v, _) if v.starts_with("kina.dev/") => FieldError::kina(
            "apiVersion",
            format!("{v}: this kina reads {KINA_API_VERSION}"),
        ),
        (v, k) => FieldError::cluster(
            "",
            format!(
                "document {n} is `apiVersion: {v}`, `kind: {k}`: a cluster config holds one \
                 `{KIND_API_VERSION}` {KIND_KIND} document, then optionally one \
                 `{KINA_API_VERSION}` {KINA_KIND} document"
            ),
        ),
    }
}

/// Where a field that is unknown at one level does belong.
struct Elsewhere<'a> {
    fields: &'static [&'static str],
    hint: &'a str,
}

const KINA_DOC_HINT: &str = "is one of kina's own settings, which kind's schema has no place \
                             for: put it in a `kind: Kina`, `apiVersion: kina.dev/v1alpha1` \
                             document after the Cluster document in the same file";

pub(super) fn check_cluster_fields(doc: &mut Yaml, errors: &mut Vec<FieldError>) {
    let d = Document::Cluster;
    check_fields(
        doc,
        d,
        "",
        "the Cluster document",
        fields_of::<Cluster>(),
        &[
            Elsewhere {
                fields: fields_of::<Networking>(),
                hint: "belongs under `networking:`",
            },
            Elsewhere {
                fields: fields_of::<Node>(),
                hint: "is a node's field: put it in an entry of `nodes:`",
            },
            Elsewhere {
                fields: fields_of::<KinaSettings>(),
                hint: KINA_DOC_HINT,
            },
        ],
        errors,
    );
    if let Some(networking) = doc.get_mut("networking") {
        check_fields(
            networking,
            d,
            "networking",
            "networking",
            fields_of::<Networking>(),
            &[],
            errors,
        );
    }
    check_json6902_fields(doc, "", errors);
    for list in [
        "kubeadmConfigPatches",
        "containerdConfigPatches",
        "containerdConfigPatchesJSON6902",
    ] {
        check_patch_texts(doc, "", list, errors);
    }
    if let Some(Yaml::Sequence(nodes)) = doc.get_mut("nodes") {
        for (i, node) in nodes.iter_mut().enumerate() {
            check_node_fields(node, &format!("nodes[{i}]"), errors);
        }
    }
}

/// One entry of the Cluster document's `nodes`, with its mounts, port
/// mappings and patches.
fn check_node_fields(node: &mut Yaml, path: &str, errors: &mut Vec<FieldError>) {
    let d = Document::Cluster;
    check_fields(
        node,
        d,
        path,
        "a node",
        fields_of::<Node>(),
        &[
            Elsewhere {
                fields: fields_of::<KinaNode>(),
                hint: "is one of kina's own settings, which kind's schema has no place \
                               for: put it in the same entry of the `nodes:` of a `kind: Kina` \
                               document after the Cluster document",
            },
            Elsewhere {
                fields: fields_of::<Mount>(),
                hint: "belongs in an entry of `extraMounts:`",
            },
            Elsewhere {
                fields: fields_of::<PortMapping>(),
                hint: "belongs in an entry of `extraPortMappings:`",
            },
        ],
        errors,
    );
    let nested = [
        ("extraMounts", "an extra mount", fields_of::<Mount>()),
        (
            "extraPortMappings",
            "a port mapping",
            fields_of::<PortMapping>(),
        ),
    ];
    for (list, what, fields) in nested {
        if let Some(Yaml::Sequence(items)) = node.get_mut(list) {
            for (j, item) in items.iter_mut().enumerate() {
                check_fields(
                    item,
                    d,
                    &format!("{path}.{list}[{j}]"),
                    what,
                    fields,
                    &[Elsewhere {
                        fields: fields_of::<Node>(),
                        hint: "is a node's field: check the indentation",
                    }],
                    errors,
                );
            }
        }
    }
    check_json6902_fields(node, path, errors);
    check_patch_texts(node, path, "kubeadmConfigPatches", errors);
}

/// kind's patches are text holding YAML (or TOML); a patch written as
/// YAML structure instead (no `|`) is a common slip worth its own words.
fn check_patch_texts(parent: &Yaml, path: &str, list: &str, errors: &mut Vec<FieldError>) {
    if let Some(Yaml::Sequence(items)) = parent.get(list) {
        for (i, item) in items.iter().enumerate() {
            if item.is_mapping() || item.is_sequence() {
                errors.push(FieldError::cluster(
                    format!("{}[{i}]", join(path, list)),
                    "a patch is YAML text, not YAML structure: write `- |` and the patch \
                     indented below it",
                ));
            }
        }
    }
}

fn check_json6902_fields(parent: &mut Yaml, path: &str, errors: &mut Vec<FieldError>) {
    let list = "kubeadmConfigPatchesJSON6902";
    if let Some(Yaml::Sequence(items)) = parent.get_mut(list) {
        for (j, item) in items.iter_mut().enumerate() {
            let item_path = format!("{}[{j}]", join(path, list));
            if let Some(patch) = item.get("patch")
                && (patch.is_mapping() || patch.is_sequence())
            {
                errors.push(FieldError::cluster(
                    format!("{item_path}.patch"),
                    "a patch is YAML text, not YAML structure: write `patch: |` and the \
                     operations indented below it",
                ));
            }
            check_fields(
                item,
                Document::Cluster,
                &item_path,
                "a JSON 6902 patch",
                fields_of::<PatchJson6902>(),
                &[],
                errors,
            );
        }
    }
}

pub(super) fn check_kina_fields(doc: &mut Yaml, errors: &mut Vec<FieldError>) {
    let d = Document::Kina;
    check_fields(
        doc,
        d,
        "",
        "the Kina document",
        fields_of::<KinaSettings>(),
        &[Elsewhere {
            fields: fields_of::<Cluster>(),
            hint: "is a field of kind's schema: it belongs in the Cluster document",
        }],
        errors,
    );
    if let Some(Yaml::Sequence(nodes)) = doc.get_mut("nodes") {
        for (i, node) in nodes.iter_mut().enumerate() {
            check_fields(
                node,
                d,
                &format!("nodes[{i}]"),
                "a Kina node",
                fields_of::<KinaNode>(),
                &[Elsewhere {
                    fields: fields_of::<Node>(),
                    hint: "is a field of kind's schema: it belongs in the Cluster document's node",
                }],
                errors,
            );
        }
    }
}

/// Drops fields written as null or `""` (kind's YAML decoding leaves
/// those at Go's zero value, i.e. unset) and reports fields `fields` does
/// not have. Values that are not mappings are left to typed decoding.
fn check_fields(
    value: &mut Yaml,
    document: Document,
    path: &str,
    what: &str,
    fields: &[&str],
    elsewhere: &[Elsewhere<'_>],
    errors: &mut Vec<FieldError>,
) {
    let Yaml::Mapping(map) = value else {
        return;
    };
    map.retain(|_, v| !(v.is_null() || v.as_str() == Some("")));
    for key in map.keys() {
        let Some(key) = key.as_str() else {
            errors.push(FieldError {
                document,
                path: path.to_string(),
                message: format!("{what} has a key that is not a string: {key:?}"),
            });
            continue;
        };
        if fields.contains(&key) {
            continue;
        }
        let message = if let Some(e) = elsewhere.iter().find(|e| e.fields.contains(&key)) {
            format!("unknown field: `{key}` {}", e.hint)
        } else if let Some(near) = nearest(key, fields) {
            format!("unknown field, did you mean {near}?")
        } else {
            format!("unknown field: {what} has {}", fields.join(", "))
        };
        errors.push(FieldError {
            document,
            path: join(path, key),
            message,
        });
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The field `key` most likely meant: the same but for case, or within a
/// small edit distance.
pub(super) fn nearest<'a>(key: &str, fields: &[&'a str]) -> Option<&'a str> {
    if let Some(f) = fields.iter().find(|f| f.eq_ignore_ascii_case(key)) {
        return Some(f);
    }
    let limit = match key.chars().count() {
        0..=4 => 1,
        5..=10 => 2,
        _ => 3,
    };
    fields
        .iter()
        .map(|f| (edit_distance(key, f), *f))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, f)| f)
}

pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The field names serde's derive gives a struct (renames applied): the
/// derive hands them to `deserialize_struct`, which this deserializer
/// records before failing on purpose.
pub(super) fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _refused = T::deserialize(FieldNames(&mut fields));
    fields
}

struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("only structs have field names"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(serde::de::Error::custom("field names recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// Typed decoding; a failure names the field's path.
pub(super) fn decode<T: DeserializeOwned>(doc: Yaml, document: Document) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let mut path = String::new();
        for segment in e.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => path.push_str(&format!("[{index}]")),
                serde_path_to_error::Segment::Map { key } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                serde_path_to_error::Segment::Enum { .. } => {}
                serde_path_to_error::Segment::Unknown => path.push_str(".?"),
            }
        }
        FieldError {
            document,
            path,
            message: e.inner().to_string(),
        }
    })
}

/// A map whose values (and keys) may be written as any YAML scalar: kind's
/// YAML library reads `ingress-ready: true` into a string field as "true".
pub(super) fn scalar_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let map = BTreeMap::<Scalar, Scalar>::deserialize(d)?;
    Ok(map.into_iter().map(|(k, v)| (k.0, v.0)).collect())
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar(String::new()))
            }
        }
        deserializer.deserialize_any(V)
    }
}
