//! `Packages` indexes: the binary packages one suite offers for one architecture.

use super::control::{Paragraph, parse_paragraphs};
use super::relation::{Alternatives, RelationParseError, parse_relations};
use super::version::Version;
use crate::digest::Sha256Digest;
use crate::platform::Arch;
use crate::recipe::DebianArchive;

/// One binary package as an index describes it, tagged with where it came from.
#[derive(Clone, Debug)]
pub struct PackageRecord {
    pub name: String,
    pub version: Version,
    /// `amd64`, `arm64` or `all`.
    pub architecture: String,
    pub essential: bool,
    pub priority: String,
    pub multi_arch: String,
    pub depends: Vec<Alternatives>,
    pub pre_depends: Vec<Alternatives>,
    pub conflicts: Vec<Alternatives>,
    pub breaks: Vec<Alternatives>,
    pub provides: Vec<Alternatives>,
    pub filename: String,
    pub size: u64,
    pub sha256: Sha256Digest,
    pub source: String,
    pub source_version: Version,
    pub archive: DebianArchive,
    pub suite: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PackagesError {
    #[error("Packages index of {suite}: {source}")]
    Syntax {
        suite: String,
        source: super::control::ControlParseError,
    },
    #[error("Packages index of {suite}, package {package}: field {field}: {problem}")]
    Field {
        suite: String,
        package: String,
        field: &'static str,
        problem: String,
    },
}

/// Parses an index for `arch` (architecture restrictions in relationship
/// fields are evaluated for it). Packages of other architectures are skipped.
pub fn parse_packages(
    text: &str,
    archive: DebianArchive,
    suite: &str,
    arch: Arch,
) -> Result<Vec<PackageRecord>, PackagesError> {
    let paragraphs = parse_paragraphs(text).map_err(|source| PackagesError::Syntax {
        suite: suite.to_string(),
        source,
    })?;
    let mut records = Vec::with_capacity(paragraphs.len());
    for p in &paragraphs {
        let architecture = p.get("Architecture").unwrap_or_default();
        if architecture != arch.debian() && architecture != "all" {
            continue;
        }
        records.push(parse_record(p, archive, suite, arch)?);
    }
    Ok(records)
}

fn parse_record(
    p: &Paragraph,
    archive: DebianArchive,
    suite: &str,
    arch: Arch,
) -> Result<PackageRecord, PackagesError> {
    let name = p.get("Package").unwrap_or_default().to_string();
    let fail = |field: &'static str, problem: String| PackagesError::Field {
        suite: suite.to_string(),
        package: if name.is_empty() {
            "(unnamed)".into()
        } else {
            name.clone()
        },
        field,
        problem,
    };
    let required = |field: &'static str| p.get(field).ok_or_else(|| fail(field, "missing".into()));
    if name.is_empty() {
        return Err(fail("Package", "missing".into()));
    }
    let version: Version = required("Version")?
        .parse()
        .map_err(|e: super::version::VersionParseError| fail("Version", e.to_string()))?;
    let relations = |field: &'static str| -> Result<Vec<Alternatives>, PackagesError> {
        p.get(field).map_or(Ok(Vec::new()), |t| {
            parse_relations(t, arch).map_err(|e: RelationParseError| fail(field, e.to_string()))
        })
    };
    let (source, source_version) = match p.get("Source") {
        Some(s) => match s.split_once('(') {
            Some((n, v)) => (
                n.trim().to_string(),
                v.trim_end_matches(')').trim().parse().map_err(
                    |e: super::version::VersionParseError| fail("Source", e.to_string()),
                )?,
            ),
            None => (s.trim().to_string(), version.clone()),
        },
        None => (name.clone(), version.clone()),
    };
    Ok(PackageRecord {
        version,
        architecture: required("Architecture")?.to_string(),
        essential: p.get("Essential") == Some("yes"),
        priority: p.get("Priority").unwrap_or("optional").to_string(),
        multi_arch: p.get("Multi-Arch").unwrap_or("no").to_string(),
        depends: relations("Depends")?,
        pre_depends: relations("Pre-Depends")?,
        conflicts: relations("Conflicts")?,
        breaks: relations("Breaks")?,
        provides: relations("Provides")?,
        filename: required("Filename")?.to_string(),
        size: required("Size")?
            .parse()
            .map_err(|_| fail("Size", "not a number".into()))?,
        sha256: required("SHA256")?
            .parse()
            .map_err(|e: crate::digest::DigestParseError| fail("SHA256", e.to_string()))?,
        source,
        source_version,
        archive,
        suite: suite.to_string(),
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(extra: &str) -> String {
        format!(
            "Package: iptables\nVersion: 1.8.11-2\nArchitecture: amd64\nPriority: optional\nDepends: libc6 (>= 2.34), libxtables12 (= 1.8.11-2)\nFilename: pool/main/i/iptables/iptables_1.8.11-2_amd64.deb\nSize: 380000\nSHA256: {}\n{extra}\nPackage: other\nVersion: 1\nArchitecture: arm64\nFilename: x\nSize: 1\nSHA256: {}\n",
            Sha256Digest::of(b"a").hex(),
            Sha256Digest::of(b"b").hex()
        )
    }

    #[test]
    fn records_carry_relations_checksums_and_origin() {
        let text = index("Source: iptables-src (1.8.11-1)\n");
        let recs = parse_packages(&text, DebianArchive::Debian, "trixie", Arch::Amd64).unwrap();
        assert_eq!(
            recs.len(),
            1,
            "the arm64 package is not part of the amd64 universe"
        );
        let r = &recs[0];
        assert_eq!(r.depends.len(), 2);
        assert_eq!(r.source, "iptables-src");
        assert_eq!(r.source_version.to_string(), "1.8.11-1");
        assert_eq!(r.suite, "trixie");
        assert_eq!(r.sha256, Sha256Digest::of(b"a"));
    }

    #[test]
    fn a_bad_checksum_names_package_and_field() {
        let text = index("").replace(&Sha256Digest::of(b"a").hex(), "nothex");
        let err = parse_packages(&text, DebianArchive::Debian, "trixie", Arch::Amd64)
            .unwrap_err()
            .to_string();
        assert!(err.contains("iptables") && err.contains("SHA256"), "{err}");
    }
}
