//! Reading `container image inspect <ref>`: which build of an image Apple's
//! store holds under a name.
//!
//! Apple's store is keyed by name: `image load` replaces the entry of a
//! name it already has (containerization 0.40.1
//! `Sources/Containerization/Image/ImageStore/ImageStore.swift:113-116`,
//! `referenceManager.create`), and `image inspect` finds an image by name
//! only (`Sources/Services/ContainerAPIService/Client/ClientImage.swift`
//! `_search`). So "the name is there" says nothing about which build it
//! is; the digest does. For an archive whose `index.json` entry is itself
//! an image index, as kina's are, the stored descriptor is that entry
//! (`ImageStore+Import.swift:66-67` returns the root when it is an index),
//! so its digest is the digest of the index in kina's own store.
//!
//! The shape, at apple/container 1.2.1 and 1.2.2: `ImageInspect.swift:67`
//! prints `[ImageResource]` pretty-printed with sorted keys;
//! `ImageResource.encode` (`Sources/ContainerResource/Image/ImageResource.swift:113-124`)
//! writes `id` (the digest's hex alone, `:75-79`), `configuration` and
//! `variants`, and `configuration` is `ImageConfiguration { creationDate,
//! name, descriptor }` (`:46-56`) with the OCI descriptor (`digest`,
//! `mediaType`, `size`, `annotations`). An unknown name fails with
//! `image not found: <names>` (`ImageInspect.swift:45-50`).

use serde_json::Value;

use crate::kind_of;

/// `image inspect <reference>`.
pub fn image_inspect_args(reference: &str) -> Vec<String> {
    vec!["image".into(), "inspect".into(), reference.into()]
}

#[derive(Debug, thiserror::Error)]
pub enum ImageInspectError {
    #[error("container image inspect did not print JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error(
        "container image inspect output: {0}; kina reads the shape of Apple container 1.2 \
         (`[{{\"configuration\":{{\"name\",\"descriptor\":{{\"digest\"}}}}}}]`)"
    )]
    Shape(String),
}

/// The digest (`sha256:<hex>`) of the image `reference` names in `image
/// inspect` output: `configuration.descriptor.digest` of the entry whose
/// `configuration.name` is `reference`, or of the only entry (Apple may
/// print the name normalised).
pub fn parse_image_digest(json: &str, reference: &str) -> Result<String, ImageInspectError> {
    let value: Value = serde_json::from_str(json).map_err(ImageInspectError::NotJson)?;
    let Value::Array(entries) = &value else {
        return Err(ImageInspectError::Shape(format!(
            "expected an array of images, got {}",
            kind_of(&value)
        )));
    };
    let named =
        |e: &&Value| e.pointer("/configuration/name").and_then(Value::as_str) == Some(reference);
    let (index, entry) = match entries.iter().enumerate().find(|(_, e)| named(e)) {
        Some(found) => found,
        None if entries.len() == 1 => (0, &entries[0]),
        None => {
            return Err(ImageInspectError::Shape(format!(
                "{} images and none named `{reference}`",
                entries.len()
            )));
        }
    };
    let path = "configuration.descriptor.digest";
    let digest = entry
        .pointer("/configuration/descriptor/digest")
        .ok_or_else(|| ImageInspectError::Shape(format!("`[{index}].{path}` is missing")))?;
    match digest.as_str() {
        Some(d) if d.contains(':') => Ok(d.to_string()),
        Some(d) => Err(ImageInspectError::Shape(format!(
            "`[{index}].{path}` is `{d}`, not an algorithm:hex digest"
        ))),
        None => Err(ImageInspectError::Shape(format!(
            "`[{index}].{path}` is {}, expected a string",
            kind_of(digest)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:3b1f9c1f6c0d4e8a9b2e7f0a1c3d5e7f9a0b2c4d6e8f0a1b3c5d7e9f0a2b4c6d";

    /// `image inspect kina.local/node:base` at 1.2.x as `ImageResource`
    /// encodes it (written from the source above, not captured; a variant
    /// trimmed to a few fields).
    fn inspect_1_2(name: &str, digest: &str) -> String {
        let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
        format!(
            r#"[
  {{
    "configuration" : {{
      "creationDate" : "2026-08-10T09:30:03Z",
      "descriptor" : {{
        "annotations" : {{
          "io.containerd.image.name" : "{name}",
          "org.opencontainers.image.ref.name" : "{name}"
        }},
        "digest" : "{digest}",
        "mediaType" : "application\/vnd.oci.image.index.v1+json",
        "size" : 489
      }},
      "name" : "{name}"
    }},
    "id" : "{hex}",
    "variants" : [
      {{
        "digest" : "sha256:9f0a",
        "platform" : {{
          "architecture" : "arm64",
          "os" : "linux",
          "variant" : "v8"
        }},
        "size" : 734003200
      }}
    ]
  }}
]"#
        )
    }

    #[test]
    fn digest_is_read_from_the_documented_shape() {
        let json = inspect_1_2("kina.local/node:base", DIGEST);
        assert_eq!(
            parse_image_digest(&json, "kina.local/node:base").unwrap(),
            DIGEST
        );
        // The only entry is the one asked for, whatever spelling of the
        // name Apple printed.
        assert_eq!(
            parse_image_digest(&json, "kina.local/node:base@latest-spelling").unwrap(),
            DIGEST
        );
    }

    #[test]
    fn the_entry_of_the_name_is_picked_among_several() {
        let other = "sha256:00aa";
        let a = inspect_1_2("kina.local/node:old", other);
        let b = inspect_1_2("kina.local/node:base", DIGEST);
        let both = format!(
            "[{},{}]",
            &a.trim()[1..a.trim().len() - 1],
            &b.trim()[1..b.trim().len() - 1]
        );
        assert_eq!(
            parse_image_digest(&both, "kina.local/node:base").unwrap(),
            DIGEST
        );
        assert_eq!(
            parse_image_digest(&both, "kina.local/node:old").unwrap(),
            other
        );
        let err = parse_image_digest(&both, "kina.local/node:nope").unwrap_err();
        assert!(err.to_string().contains("2 images and none named"), "{err}");
    }

    #[test]
    fn other_shapes_say_what_is_wrong() {
        let err = parse_image_digest(r#"{"name":"x"}"#, "x").unwrap_err();
        assert!(err.to_string().contains("got an object"), "{err}");
        let err = parse_image_digest(r#"[{"configuration":{"name":"x"}}]"#, "x").unwrap_err();
        assert!(
            err.to_string()
                .contains("`[0].configuration.descriptor.digest` is missing"),
            "{err}"
        );
        let err = parse_image_digest(
            r#"[{"configuration":{"name":"x","descriptor":{"digest":5}}}]"#,
            "x",
        )
        .unwrap_err();
        assert!(err.to_string().contains("is a number"), "{err}");
        assert!(matches!(
            parse_image_digest("Error: x", "x"),
            Err(ImageInspectError::NotJson(_))
        ));
    }
}
