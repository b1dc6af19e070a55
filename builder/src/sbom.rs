//! SPDX 2.3 software bill of materials for one platform of a node image.
//!
//! Written with serde rather than an SPDX crate: the document is small and
//! every field must be deterministic (creation time is the build epoch, the
//! namespace derives from the content, packages are sorted).

use serde::Serialize;

use crate::digest::Sha256Digest;
use crate::lock::{LockedArtifact, LockedImage, LockedPackage};
use crate::platform::Arch;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SbomComponent {
    pub name: String,
    pub version: String,
    pub kind: &'static str,
    pub download_location: String,
    pub sha256: Sha256Digest,
    pub purl: String,
    pub supplier: String,
}

impl SbomComponent {
    pub fn deb(p: &LockedPackage) -> Self {
        Self {
            name: p.name.clone(),
            version: p.version.clone(),
            kind: "deb",
            download_location: format!("{}:{}", p.archive.name(), p.filename),
            sha256: p.sha256,
            purl: format!(
                "pkg:deb/debian/{}@{}?arch={}&distro={}",
                p.name,
                encode(&p.version),
                p.architecture,
                p.suite
            ),
            supplier: "Organization: Debian".into(),
        }
    }

    pub fn artifact(a: &LockedArtifact) -> Self {
        Self {
            name: a.name.clone(),
            version: a.version.clone(),
            kind: "artifact",
            download_location: a.url.clone(),
            sha256: a.sha256,
            purl: format!(
                "pkg:generic/{}@{}?download_url={}",
                a.name,
                encode(&a.version),
                encode(&a.url)
            ),
            supplier: "NOASSERTION".into(),
        }
    }

    pub fn image(i: &LockedImage) -> Self {
        let (name, tag) = i.reference.rsplit_once(':').unwrap_or((&i.reference, ""));
        let short = name.rsplit('/').next().unwrap_or(name);
        Self {
            name: i.reference.clone(),
            version: tag.to_string(),
            kind: "image",
            download_location: format!("{name}@{}", i.manifest_digest.oci()),
            sha256: i.manifest_digest,
            purl: format!(
                "pkg:oci/{short}@{}?repository_url={}&tag={tag}",
                encode(&i.manifest_digest.oci()),
                encode(name)
            ),
            supplier: "NOASSERTION".into(),
        }
    }

    pub fn kina_init(version: &str, origin: &str, digest: Sha256Digest) -> Self {
        Self {
            name: "kina-init".into(),
            version: version.to_string(),
            kind: "kina-init",
            download_location: if origin.starts_with("http") {
                origin.to_string()
            } else {
                "NOASSERTION".into()
            },
            sha256: digest,
            purl: format!("pkg:generic/kina-init@{}", encode(version)),
            supplier: "Organization: kina".into(),
        }
    }
}

/// Percent-encodes what a purl qualifier or version may not contain.
fn encode(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' | '~' => c.to_string(),
            other => format!("%{:02X}", other as u32),
        })
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    spdx_version: &'static str,
    data_license: &'static str,
    #[serde(rename = "SPDXID")]
    spdx_id: &'static str,
    name: String,
    document_namespace: String,
    creation_info: CreationInfo,
    packages: Vec<Package>,
    relationships: Vec<Relationship>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreationInfo {
    created: String,
    creators: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Package {
    name: String,
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    version_info: String,
    supplier: String,
    download_location: String,
    files_analyzed: bool,
    checksums: Vec<Checksum>,
    external_refs: Vec<ExternalRef>,
    comment: String,
}

#[derive(Serialize)]
struct Checksum {
    algorithm: &'static str,
    #[serde(rename = "checksumValue")]
    checksum_value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExternalRef {
    reference_category: &'static str,
    reference_type: &'static str,
    reference_locator: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Relationship {
    spdx_element_id: String,
    relationship_type: &'static str,
    related_spdx_element: String,
}

/// The SPDX JSON document for `components` of the image `subject`
/// describes on `arch`. The subject names what the image is built from (the
/// recipe and its lock), never the tag it is stored under: the SBOM is part
/// of the image, so a tag in it would give the same lock built under two
/// tags two digests, and nobody could rebuild a published image to its
/// published digest.
pub fn spdx_document(
    subject: &str,
    arch: Arch,
    epoch: u64,
    components: &[SbomComponent],
) -> Result<Vec<u8>, serde_json::Error> {
    let mut sorted: Vec<&SbomComponent> = components.iter().collect();
    sorted.sort();
    let packages: Vec<Package> = sorted
        .iter()
        .enumerate()
        .map(|(i, c)| Package {
            name: c.name.clone(),
            spdx_id: format!("SPDXRef-Package-{}-{i}", c.kind),
            version_info: c.version.clone(),
            supplier: c.supplier.clone(),
            download_location: c.download_location.clone(),
            files_analyzed: false,
            checksums: vec![Checksum {
                algorithm: "SHA256",
                checksum_value: c.sha256.hex(),
            }],
            external_refs: vec![ExternalRef {
                reference_category: "PACKAGE-MANAGER",
                reference_type: "purl",
                reference_locator: c.purl.clone(),
            }],
            comment: format!("kina component kind: {}", c.kind),
        })
        .collect();
    let relationships = packages
        .iter()
        .map(|p| Relationship {
            spdx_element_id: "SPDXRef-DOCUMENT".into(),
            relationship_type: "DESCRIBES",
            related_spdx_element: p.spdx_id.clone(),
        })
        .collect();
    let content: String = sorted.iter().map(|c| format!("{}\n", c.sha256)).collect();
    let namespace_digest = Sha256Digest::of(format!("{subject}\n{arch}\n{content}").as_bytes());
    let doc = Document {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: "SPDXRef-DOCUMENT",
        name: format!("{subject} ({})", arch.platform()),
        document_namespace: format!("https://spdx.kina.invalid/{}", namespace_digest.hex()),
        creation_info: CreationInfo {
            created: crate::civil_time::rfc3339(epoch),
            creators: vec![format!("Tool: kina-{}", crate::KINA_VERSION)],
        },
        packages,
        relationships,
    };
    let mut bytes = crate::canonical_json::to_canonical_json(&doc)?;
    bytes.push(b'\n');
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_deterministic_and_lists_every_component_with_its_checksum() {
        let c = |n: &str| SbomComponent {
            name: n.into(),
            version: "1:2.3-4".into(),
            kind: "deb",
            download_location: "x".into(),
            sha256: Sha256Digest::of(n.as_bytes()),
            purl: format!("pkg:deb/debian/{n}@{}", encode("1:2.3-4")),
            supplier: "Organization: Debian".into(),
        };
        let a = spdx_document("base@sha256:0", Arch::Arm64, 0, &[c("b"), c("a")]).unwrap();
        let b = spdx_document("base@sha256:0", Arch::Arm64, 0, &[c("a"), c("b")]).unwrap();
        assert_eq!(a, b);
        let doc: serde_json::Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["packages"][0]["name"], "a");
        assert_eq!(
            doc["packages"][0]["checksums"][0]["checksumValue"],
            Sha256Digest::of(b"a").hex()
        );
        assert!(
            doc["packages"][0]["externalRefs"][0]["referenceLocator"]
                .as_str()
                .unwrap()
                .contains("1%3A2.3-4")
        );
    }
}
