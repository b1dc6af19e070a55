//! kind's `containerdConfigPatches` and `containerdConfigPatchesJSON6902`,
//! with kind's semantics (kind `pkg/internal/patch/toml.go`,
//! `ContainerdTOML`): the configuration is turned into its JSON form; each
//! merge patch, itself TOML turned into JSON, is merged in as an RFC 7386
//! merge patch, in order, unless it names a `version` other than the
//! configuration's (kind skips it, so one config can carry a patch per
//! containerd config version); then each RFC 6902 patch is applied to the
//! JSON form, in order; the result is turned back into TOML. A version
//! that is not an integer, a patch that is not TOML, or an operation that
//! cannot apply (removing a key that is not there, a failed `test`) is an
//! error, as in kind; here it also names the patch.
//!
//! Only the TOML/JSON conversion is written here (a few lines over the
//! `toml` crate's values); the merge and the JSON patch are the
//! `json-patch` crate's.

use serde_json::{Map, Number, Value};

/// One patch could not be applied; `patch` is its field and index in the
/// cluster config, e.g. `containerdConfigPatchesJSON6902[1]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("containerd's configuration is not TOML ({0}); this is a bug in kina")]
    Base(String),
    #[error("{patch}: {reason}")]
    Patch { patch: String, reason: String },
}

/// The patched configuration, and which merge patches kind's version rule
/// left out (each with the reason), so a user sees why a patch had no
/// effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchReport {
    pub text: String,
    pub applied: usize,
    pub skipped: Vec<String>,
}

/// The field name of merge patches in kind's config.
pub const MERGE_FIELD: &str = "containerdConfigPatches";
/// The field name of RFC 6902 patches in kind's config.
pub const JSON6902_FIELD: &str = "containerdConfigPatchesJSON6902";

/// `base` with `merge` (TOML texts) and then `json6902` (arrays of
/// operations) applied. Without patches `base` is returned as written.
pub fn apply(base: &str, merge: &[String], json6902: &[Value]) -> Result<PatchReport, PatchError> {
    if merge.is_empty() && json6902.is_empty() {
        return Ok(PatchReport {
            text: base.to_string(),
            applied: 0,
            skipped: vec![],
        });
    }
    let base_table: toml::Table = base
        .parse()
        .map_err(|e: toml::de::Error| PatchError::Base(e.message().trim_end().to_string()))?;
    let version = config_version(&base_table)
        .map_err(PatchError::Base)?
        .filter(|v| *v != 0)
        .ok_or_else(|| PatchError::Base("it names no `version`".into()))?;
    let mut doc = table_to_json(&base_table);
    let mut applied = 0;
    let mut skipped = Vec::new();
    for (i, text) in merge.iter().enumerate() {
        let name = format!("{MERGE_FIELD}[{i}]");
        let fail = |reason: String| PatchError::Patch {
            patch: name.clone(),
            reason,
        };
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| fail(format!("not TOML: {}", e.message().trim_end())))?;
        match config_version(&table).map_err(fail)? {
            Some(v) if v != 0 && v != version => {
                skipped.push(format!(
                    "{name} is for config version {v}, kina's is version {version} (kind skips it too)"
                ));
                continue;
            }
            _ => {}
        }
        json_patch::merge(&mut doc, &table_to_json(&table));
        applied += 1;
    }
    for (i, ops) in json6902.iter().enumerate() {
        let name = format!("{JSON6902_FIELD}[{i}]");
        let fail = |reason: String| PatchError::Patch {
            patch: name.clone(),
            reason,
        };
        let patch: json_patch::Patch = serde_json::from_value(ops.clone()).map_err(|e| {
            fail(format!(
                "not a JSON 6902 patch (a list of operations with op, path and value): {e}"
            ))
        })?;
        json_patch::patch(&mut doc, &patch).map_err(|e| fail(format!("cannot apply: {e}")))?;
        applied += 1;
    }
    let Value::Object(map) = &doc else {
        return Err(PatchError::Patch {
            patch: JSON6902_FIELD.into(),
            reason: "the result is not a table: a patch replaced the whole configuration".into(),
        });
    };
    let table = json_to_table(map).map_err(|reason| PatchError::Patch {
        patch: last_patch_name(merge.len(), json6902.len()),
        reason,
    })?;
    // The patched configuration must still say which version it is in, or
    // containerd reads it as version 1.
    config_version(&table)
        .ok()
        .flatten()
        .filter(|v| *v != 0)
        .ok_or_else(|| PatchError::Patch {
            patch: last_patch_name(merge.len(), json6902.len()),
            reason: "the result has no integer `version`: keep the configuration's".into(),
        })?;
    let body = toml::to_string(&table).map_err(|e| PatchError::Patch {
        patch: last_patch_name(merge.len(), json6902.len()),
        reason: format!("the result cannot be written as TOML: {e}"),
    })?;
    Ok(PatchReport {
        text: format!(
            "# Written by kina-init at every boot: kina's configuration with the \
             cluster's containerd patches applied.\n{body}"
        ),
        applied,
        skipped,
    })
}

/// The patch a problem with the result is blamed on: the last one applied.
fn last_patch_name(merges: usize, json6902: usize) -> String {
    if json6902 > 0 {
        format!("{JSON6902_FIELD}[{}]", json6902 - 1)
    } else {
        format!("{MERGE_FIELD}[{}]", merges.saturating_sub(1))
    }
}

/// A configuration's `version`: `None` when absent; an error when it is
/// not an integer (kind decodes it into an int and fails).
fn config_version(table: &toml::Table) -> Result<Option<i64>, String> {
    match table.get("version") {
        None => Ok(None),
        Some(toml::Value::Integer(v)) => Ok(Some(*v)),
        Some(other) => Err(format!(
            "`version` is {other}, not an integer (containerd config versions are 1, 2, 3, ...)"
        )),
    }
}

/// The JSON form of a TOML table, as kind makes it (go-toml's `ToMap`
/// then `json.Marshal`): a datetime becomes its text.
fn table_to_json(table: &toml::Table) -> Value {
    Value::Object(
        table
            .iter()
            .map(|(k, v)| (k.clone(), toml_to_json(v)))
            .collect(),
    )
}

fn toml_to_json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::Number((*i).into()),
        toml::Value::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => table_to_json(t),
    }
}

/// The TOML table of a JSON object; integers stay integers (as kind keeps
/// them by decoding with a YAML library). TOML has no null, so a null left
/// by a JSON 6902 `add` is an error naming where it is.
fn json_to_table(map: &Map<String, Value>) -> Result<toml::Table, String> {
    map.iter()
        .map(|(k, v)| Ok((k.clone(), json_to_toml(v, &format!("/{k}"))?)))
        .collect()
}

fn json_to_toml(value: &Value, at: &str) -> Result<toml::Value, String> {
    Ok(match value {
        Value::Null => return Err(format!("{at} is null, which TOML cannot hold")),
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(f)) if n.is_f64() => toml::Value::Float(f),
            _ => return Err(format!("{at}: {n} is too large for a TOML integer")),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(items) => toml::Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| json_to_toml(v, &format!("{at}/{i}")))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => toml::Value::Table(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), json_to_toml(v, &format!("{at}/{k}"))?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}
