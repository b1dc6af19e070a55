//! kind's `kubeadmConfigPatches` and `kubeadmConfigPatchesJSON6902` applied
//! to kina's documents with kind's semantics (kind's
//! `pkg/internal/patch/kubeyaml.go`, `resource.go` and `kubeadm_merge.go`,
//! commit df0d56c5 "implement custom merging logic for kubeadm v1beta4
//! extraArgs and certSANs"):
//!
//! - A patch applies to every document of its `kind`, and of its
//!   `apiVersion` when it names one; per document all merge patches in
//!   order, then all JSON 6902 patches.
//! - Before the RFC 7386 merge, `extraArgs`/`kubeletExtraArgs` (at any
//!   depth) of a v1beta4 document are merged by `name`: a named argument is
//!   updated, a new one appended, one whose value is null (or absent)
//!   removed, and every argument the patch does not name is kept. kina's
//!   own (`node-ip`, `allocate-node-cidrs`, `feature-gates`, ...) survive a
//!   patch unless it names them. A patch that names no `apiVersion` may
//!   write them in v1beta3's map form (`node-labels: "x=y"`, the form of
//!   kind's docs), which is converted to the list.
//! - `certSANs` are unioned with the document's (any API version), so
//!   kina's node IP, 127.0.0.1, localhost and host address stay.
//! - Then the rest of the patch is an RFC 7386 merge.
//!
//! Where kina differs, and why:
//! - kind writes v1beta3 for releases before 1.36; kina writes v1beta4 from
//!   1.31 (so it can set kubeadm's `timeouts`). A patch naming
//!   `kubeadm.k8s.io/v1beta3` is applied to kina's v1beta4 document on
//!   those releases (converted as an unversioned patch is), because kind
//!   applies it there; from 1.36 it matches nothing, as in kind, which
//!   [`apply_patch_sets`] notes.
//! - Where kind drops part of a patch without a word (a map-form argument
//!   list in a patch that names v1beta4, a list entry without a `name`,
//!   `certSANs` or an argument list that is not a list), kina refuses the
//!   patch by name: kubeadm would never see what the user wrote.
//!
//! After every patch each document it touched is checked against the field
//! shapes of its API version ([`super::shapes`]); a document that ends
//! undecodable is an error naming the patch that made it so.

use serde_json::{Map, Value};

use super::documents::PATCHABLE_KINDS;
use super::shapes::{self, Checked};
use super::version::{ApiVersion, KubeVersion};
use crate::kubernetes_spec::Json6902Patch;

/// One origin's patches: the cluster's, or one node's.
pub struct PatchSet<'a> {
    /// How errors name the origin: `cluster-level`, `node kina-worker's`.
    pub origin: &'a str,
    pub merge: &'a [Value],
    pub json6902: &'a [Json6902Patch],
}

/// How a patch meets a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Match {
    No,
    /// Kind and apiVersion match, or the patch names no apiVersion.
    Yes,
    /// A v1beta3 patch on kina's v1beta4 document, for a release where kind
    /// would have written v1beta3.
    AsKindsV1beta3,
}

fn matches(doc_kind: &str, doc_api: &str, kind: &str, api: &str, version: KubeVersion) -> Match {
    if doc_kind != kind {
        return Match::No;
    }
    if api.is_empty() || api == doc_api {
        return Match::Yes;
    }
    if api == ApiVersion::V1Beta3.as_str()
        && doc_api == ApiVersion::V1Beta4.as_str()
        && version.kind_writes_v1beta3()
    {
        return Match::AsKindsV1beta3;
    }
    Match::No
}

fn json6902_api(patch: &Json6902Patch) -> String {
    if patch.group.is_empty() {
        patch.version.clone()
    } else {
        format!("{}/{}", patch.group, patch.version)
    }
}

/// The document a patch broke, and which patch broke it.
struct DocState {
    kind: String,
    api_version: String,
    /// Set when a patch left the document undecodable; cleared when a later
    /// patch makes it decodable again.
    broken_by: Option<String>,
}

/// Applies every set in order to `docs`; returns notes (kubeadm warnings,
/// patches that matched nothing) or the first error, naming its patch.
pub fn apply_patch_sets(
    docs: &mut [Value],
    version: KubeVersion,
    sets: &[PatchSet],
) -> Result<Vec<String>, String> {
    let mut state: Vec<DocState> = docs
        .iter()
        .map(|d| DocState {
            kind: d["kind"].as_str().unwrap_or_default().to_string(),
            api_version: d["apiVersion"].as_str().unwrap_or_default().to_string(),
            broken_by: None,
        })
        .collect();
    let mut notes = Vec::new();
    for set in sets {
        check_kinds(set)?;
        for (i, patch) in set.merge.iter().enumerate() {
            let label = format!("{} kubeadm config patch {}", set.origin, i + 1);
            let kind = patch["kind"].as_str().unwrap_or_default();
            let api = patch["apiVersion"].as_str().unwrap_or_default();
            let mut applied = false;
            for (doc, st) in docs.iter_mut().zip(state.iter_mut()) {
                let how = matches(&st.kind, &st.api_version, kind, api, version);
                if how == Match::No {
                    continue;
                }
                applied = true;
                merge_patch(doc, patch, how).map_err(|e| format!("{label}: {e}"))?;
                after_patch(doc, st, &label);
            }
            if let Some(note) = unmatched(&state, &label, kind, api, applied, version) {
                notes.push(note);
            }
        }
        for (i, patch) in set.json6902.iter().enumerate() {
            let label = format!("{} kubeadm JSON 6902 patch {}", set.origin, i + 1);
            let api = json6902_api(patch);
            let mut applied = false;
            for (doc, st) in docs.iter_mut().zip(state.iter_mut()) {
                let how = if patch.version.is_empty() {
                    // kind's group/version match: no version, any version.
                    matches(&st.kind, &st.api_version, &patch.kind, "", version)
                } else {
                    matches(&st.kind, &st.api_version, &patch.kind, &api, version)
                };
                if how == Match::No {
                    continue;
                }
                applied = true;
                let ops: json_patch::Patch = serde_json::from_value(patch.patch.clone())
                    .map_err(|e| format!("{label} for {}: not a JSON patch: {e}", patch.kind))?;
                json_patch::patch(doc, &ops).map_err(|e| {
                    let written_for = if how == Match::AsKindsV1beta3 {
                        format!(
                            " (it is written for {}, where argument lists are maps; kina writes {} for Kubernetes {version}, where they are lists of {{name, value}})",
                            ApiVersion::V1Beta3,
                            ApiVersion::V1Beta4
                        )
                    } else {
                        String::new()
                    };
                    format!("{label} does not apply to {}: {e}{written_for}", st.kind)
                })?;
                after_patch(doc, st, &label);
            }
            if let Some(note) = unmatched(&state, &label, &patch.kind, &api, applied, version) {
                notes.push(note);
            }
        }
    }
    for (doc, st) in docs.iter().zip(&state) {
        let Checked { errors, unknown } = shapes::check(doc);
        if !errors.is_empty() {
            let who = st
                .broken_by
                .clone()
                .unwrap_or_else(|| "kina's own document (a kina bug: please report it)".into());
            return Err(format!(
                "{who} leaves {} ({}) in a shape kubeadm cannot decode: {}",
                st.kind,
                st.api_version,
                errors.join("; ")
            ));
        }
        for field in unknown {
            notes.push(format!(
                "{}: `{field}` is not a field of {} {}; kubeadm warns and ignores it",
                st.kind, st.api_version, st.kind
            ));
        }
    }
    Ok(notes)
}

/// A patch for a kind kina never writes, or with no kind, is an error: it
/// could never apply.
fn check_kinds(set: &PatchSet) -> Result<(), String> {
    for (i, patch) in set.merge.iter().enumerate() {
        match patch.get("kind").and_then(Value::as_str) {
            Some(kind) if PATCHABLE_KINDS.contains(&kind) => {}
            Some(kind) => {
                return Err(format!(
                    "{} kubeadm config patch {} is for kind {kind}, which kina does not write (it writes {})",
                    set.origin,
                    i + 1,
                    PATCHABLE_KINDS.join(", ")
                ));
            }
            None => {
                return Err(format!(
                    "{} kubeadm config patch {} has no `kind`: kina cannot tell which document it patches",
                    set.origin,
                    i + 1
                ));
            }
        }
    }
    if let Some((i, p)) = set
        .json6902
        .iter()
        .enumerate()
        .find(|(_, p)| !PATCHABLE_KINDS.contains(&p.kind.as_str()))
    {
        return Err(format!(
            "{} kubeadm JSON 6902 patch {} is for kind {}, which kina does not write (it writes {})",
            set.origin,
            i + 1,
            p.kind,
            PATCHABLE_KINDS.join(", ")
        ));
    }
    Ok(())
}

/// Records whether the patch just applied left `doc` undecodable.
fn after_patch(doc: &Value, st: &mut DocState, label: &str) {
    let identity_kept = doc["kind"].as_str() == Some(st.kind.as_str())
        && doc["apiVersion"].as_str() == Some(st.api_version.as_str());
    let broken = !identity_kept || !shapes::check(doc).errors.is_empty();
    match (broken, &st.broken_by) {
        (true, None) => st.broken_by = Some(label.to_string()),
        (false, Some(_)) => st.broken_by = None,
        _ => {}
    }
}

/// A note for a patch that names a document kina writes for this node but
/// another apiVersion, so it changed nothing (kind skips it silently).
fn unmatched(
    state: &[DocState],
    label: &str,
    kind: &str,
    api: &str,
    applied: bool,
    version: KubeVersion,
) -> Option<String> {
    if applied || api.is_empty() {
        return None;
    }
    let doc = state.iter().find(|s| s.kind == kind)?;
    Some(format!(
        "{label} names {kind} of {api}, but kina writes {} for Kubernetes {version}: it changes nothing (kind skips it too)",
        doc.api_version
    ))
}

/// One merge patch on one document: kind's argument and SAN merging, then
/// RFC 7386 for the rest.
fn merge_patch(doc: &mut Value, patch: &Value, how: Match) -> Result<(), String> {
    let mut patch = patch.clone();
    let doc_api = doc["apiVersion"].as_str().unwrap_or_default().to_string();
    let v1beta4 = doc_api == ApiVersion::V1Beta4.as_str();
    if let (Value::Object(target), Value::Object(p)) = (&mut *doc, &mut patch) {
        if how == Match::AsKindsV1beta3 {
            // Its apiVersion must not overwrite the document's.
            p.remove("apiVersion");
        }
        let versioned = p.contains_key("apiVersion");
        walk(target, p, v1beta4, versioned, "")?;
    }
    json_patch::merge(doc, &patch);
    Ok(())
}

/// kind's `walkAndMerge`: the special fields anywhere in the patch are
/// merged into the document and taken out of the patch.
fn walk(
    target: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    v1beta4: bool,
    versioned: bool,
    path: &str,
) -> Result<(), String> {
    let keys: Vec<String> = patch.keys().cloned().collect();
    for key in keys {
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if key == "extraArgs" || key == "kubeletExtraArgs" {
            if v1beta4 && let Some(value) = patch.remove(&key) {
                merge_args(target, &key, value, versioned, &here)?;
            }
            continue;
        }
        if key == "certSANs" {
            if let Some(value) = patch.remove(&key) {
                union_sans(target, &key, value, &here)?;
            }
            continue;
        }
        if let Some(Value::Object(sub)) = patch.get_mut(&key) {
            let into = target
                .entry(key.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(into) = into {
                walk(into, sub, v1beta4, versioned, &here)?;
            }
        }
    }
    Ok(())
}

/// An argument list (`[{name, value}]`) or v1beta3 map as `(name, value)`
/// pairs; a null value is kept, meaning "remove".
fn arg_pairs(value: &Value, what: &str) -> Result<Vec<(String, Value)>, String> {
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let name = item
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{what}[{i}] has no `name` (it is {item})"))?;
                Ok((
                    name.to_string(),
                    item.get("value").cloned().unwrap_or(Value::Null),
                ))
            })
            .collect(),
        Value::Object(map) => Ok(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        other => Err(format!(
            "{what} is {other}, not a list of {{name, value}} or a map of flags"
        )),
    }
}

fn merge_args(
    target: &mut Map<String, Value>,
    key: &str,
    value: Value,
    versioned: bool,
    what: &str,
) -> Result<(), String> {
    if value.is_object() && versioned {
        return Err(format!(
            "{what} is a map, but the patch names {}, where it is a list of {{name, value}}: write the list, or leave `apiVersion` out and kina converts the map as kind does",
            ApiVersion::V1Beta4
        ));
    }
    if value.is_null() {
        return Err(format!(
            "`{what}: null` would drop every argument, kina's own too; name each argument to remove with a null value"
        ));
    }
    let changes = arg_pairs(&value, what)?;
    // The document's list; a map (a v1beta3-shaped value that reached a
    // v1beta4 document) is converted first, as kind does.
    let mut list: Vec<(String, Value)> = match target.get(key) {
        Some(current @ (Value::Array(_) | Value::Object(_))) => arg_pairs(current, what)?,
        _ => Vec::new(),
    };
    for (name, value) in changes {
        let found = list.iter().position(|(n, _)| *n == name);
        match (found, value.is_null()) {
            (Some(i), true) => {
                list.remove(i);
            }
            (Some(i), false) => list[i].1 = value,
            (None, true) => {}
            (None, false) => list.push((name, value)),
        }
    }
    let list = list
        .into_iter()
        .map(|(name, value)| {
            let mut entry = Map::new();
            entry.insert("name".into(), Value::String(name));
            entry.insert("value".into(), value);
            Value::Object(entry)
        })
        .collect();
    target.insert(key.to_string(), Value::Array(list));
    Ok(())
}

fn union_sans(
    target: &mut Map<String, Value>,
    key: &str,
    value: Value,
    what: &str,
) -> Result<(), String> {
    let Value::Array(add) = value else {
        return Err(format!(
            "{what} is {value}, not a list of names and addresses (kina adds them to its own)"
        ));
    };
    let mut list = match target.remove(key) {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    };
    for san in add {
        if !list.contains(&san) {
            list.push(san);
        }
    }
    target.insert(key.to_string(), Value::Array(list));
    Ok(())
}
