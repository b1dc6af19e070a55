//! kind's kubeadm patches turned into the JSON the node spec carries: merge
//! patches as one JSON value per YAML document, JSON 6902 patches checked to
//! be lists of operations.
//!
//! The config is read on the host, but the patches are applied by kina-init
//! inside the node; converting and checking them here means a bad patch is
//! reported with its field path before any node boots, not as a failed
//! kubeadm run inside one.

use kina_contract::node_spec::Json6902Patch;
use serde::Deserialize;
use serde_json::Value;
use serde_norway::Value as Yaml;

use super::{FieldError, PatchJson6902};

/// The kubeadm patches of a config, converted once at parse time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Patches {
    pub(super) cluster: PatchSet,
    /// One per node of `cluster.nodes`.
    pub(super) nodes: Vec<PatchSet>,
}

/// The cluster's, or one node's, patches in the node spec's form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct PatchSet {
    pub(super) merge: Vec<Value>,
    pub(super) json6902: Vec<Json6902Patch>,
}

/// kind's merge patches: each string is a YAML stream whose every document
/// is one patch, matched to the kubeadm document of its `kind` (and
/// `apiVersion`, when given).
pub(super) fn merge_patches(
    list: &[String],
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Vec<Value> {
    let mut out = Vec::new();
    for (i, text) in list.iter().enumerate() {
        let path = format!("{path}[{i}]");
        for (d, de) in serde_norway::Deserializer::from_str(text).enumerate() {
            let doc = match Yaml::deserialize(de).and_then(|mut v| v.apply_merge().map(|()| v)) {
                Ok(doc) => doc,
                Err(err) => {
                    errors.push(FieldError::cluster(&path, format!("not YAML: {err}")));
                    break;
                }
            };
            match merge_patch(&doc, d) {
                Ok(Some(json)) => out.push(json),
                Ok(None) => {}
                Err(message) => errors.push(FieldError::cluster(&path, message)),
            }
        }
    }
    out
}

/// Document `d` (from 0) of a merge patch string as JSON; `None` for an
/// empty document.
fn merge_patch(doc: &Yaml, d: usize) -> Result<Option<Value>, String> {
    let which = if d == 0 {
        String::new()
    } else {
        format!("document {} ", d + 1)
    };
    if doc.is_null() {
        return Ok(None);
    }
    if !doc.is_mapping() {
        return Err(format!("{which}is not a mapping of kubeadm fields"));
    }
    let json = serde_json::to_value(doc)
        .map_err(|err| format!("{which}cannot be turned into JSON: {err}"))?;
    if json
        .get("kind")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(format!(
            "{which}has no `kind`: a patch applies to the kubeadm document of its kind \
             (InitConfiguration, ClusterConfiguration, JoinConfiguration, \
             KubeletConfiguration, KubeProxyConfiguration)"
        ));
    }
    Ok(Some(json))
}

pub(super) fn json6902_patches(
    list: &[PatchJson6902],
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Vec<Json6902Patch> {
    let mut out = Vec::new();
    for (i, p) in list.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let mut ok = true;
        if p.kind.is_empty() {
            errors.push(FieldError::cluster(
                format!("{path}.kind"),
                "missing: the patch applies to the kubeadm document of this kind",
            ));
            ok = false;
        }
        if p.version.is_empty() && !p.group.is_empty() {
            errors.push(FieldError::cluster(
                format!("{path}.version"),
                format!(
                    "missing while group is `{}`: the patch would match no document",
                    p.group
                ),
            ));
            ok = false;
        }
        match json_patch_ops(&p.patch) {
            Ok(patch) if ok => out.push(Json6902Patch {
                group: p.group.clone(),
                version: p.version.clone(),
                kind: p.kind.clone(),
                patch,
            }),
            Ok(_) => {}
            Err(message) => errors.push(FieldError::cluster(format!("{path}.patch"), message)),
        }
    }
    out
}

/// A JSON 6902 patch written as YAML or JSON text, as JSON.
pub(super) fn json_patch_ops(text: &str) -> Result<Value, String> {
    let mut doc: Yaml = serde_norway::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    doc.apply_merge().map_err(|e| format!("not YAML: {e}"))?;
    if doc.is_null() {
        return Err(
            "empty: write the operations, e.g. `- op: add`, `path: ...`, `value: ...`".into(),
        );
    }
    let json =
        serde_json::to_value(&doc).map_err(|e| format!("cannot be turned into JSON: {e}"))?;
    serde_json::from_value::<json_patch::Patch>(json.clone()).map_err(|e| {
        format!("not a JSON 6902 patch (a list of operations with op, path and value): {e}")
    })?;
    Ok(json)
}
