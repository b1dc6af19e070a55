//! Canonical JSON for every document kina hashes.
//!
//! oci-spec keeps labels and annotations in `HashMap`s, whose order changes
//! from run to run; hashing `serde_json::to_vec` output would give a new
//! digest each build. Keys are sorted explicitly here (independent of
//! serde_json's `preserve_order` feature), with no insignificant whitespace.

use serde::Serialize;
use serde_json::Value;

pub fn to_canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let value = serde_json::to_value(value)?;
    let mut out = Vec::new();
    write_value(&value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                if let Some(v) = map.get(key) {
                    write_value(v, out)?;
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn keys_are_sorted_at_every_depth_whatever_the_map_order() {
        let mut inner = HashMap::new();
        for k in ["zeta", "alpha", "mid", "beta", "omega"] {
            inner.insert(k.to_string(), 1);
        }
        let doc = serde_json::json!({"b": [{"y": 1, "x": 2}], "a": inner});
        let bytes = to_canonical_json(&doc).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"a":{"alpha":1,"beta":1,"mid":1,"omega":1,"zeta":1},"b":[{"x":2,"y":1}]}"#
        );
    }
}
