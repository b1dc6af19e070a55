//! `Sources` indexes: the source packages one suite offers, and fetching
//! them verified the way [`super::archive`] fetches `Packages`.
//!
//! The chain of trust is the one apt-get source follows: the suite's
//! `InRelease` verified against the keyring, then `<component>/source/Sources.xz`
//! checked against the size and sha256 the signed Release lists before it
//! is decompressed, then each file of a source package against the
//! `Checksums-Sha256` of its paragraph. A kernel recipe pins the `linux`
//! source package this way, so its orig tarball is as trusted as any `.deb`.

use super::archive::{ArchiveError, ListedIndex, fetch_listed_index};
use super::control::{Paragraph, parse_paragraphs};
use super::release::VerifiedRelease;
use super::version::Version;
use crate::digest::Sha256Digest;
use crate::recipe::DebianArchive;

/// One file of a source package (`Checksums-Sha256:` line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    pub name: String,
    pub size: u64,
    pub sha256: Sha256Digest,
}

/// One source package as a `Sources` index describes it.
#[derive(Clone, Debug)]
pub struct SourceRecord {
    pub name: String,
    pub version: Version,
    /// Where its files are, below the archive root (`pool/main/l/linux`).
    pub directory: String,
    pub files: Vec<SourceFile>,
    pub archive: DebianArchive,
    pub suite: String,
}

impl SourceRecord {
    /// The upstream tarball (`<name>_<upstream>.orig.tar.<ext>`), not a
    /// component tarball (`.orig-<component>.tar.*`) nor its signature.
    pub fn orig_tarball(&self) -> Option<&SourceFile> {
        self.files.iter().find(|f| {
            f.name
                .split_once(".orig.tar.")
                .is_some_and(|(_, ext)| !ext.is_empty() && !ext.ends_with(".asc"))
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    #[error("Sources index of {suite}: {source}")]
    Syntax {
        suite: String,
        source: super::control::ControlParseError,
    },
    #[error("Sources index of {suite}, source package {package}: field {field}: {problem}")]
    Field {
        suite: String,
        package: String,
        field: &'static str,
        problem: String,
    },
}

/// Parses a `Sources` index, keeping the paragraphs `keep` accepts by
/// package name (a suite lists tens of thousands; a kernel needs one).
pub fn parse_sources(
    text: &str,
    archive: DebianArchive,
    suite: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<SourceRecord>, SourcesError> {
    let paragraphs = parse_paragraphs(text).map_err(|source| SourcesError::Syntax {
        suite: suite.to_string(),
        source,
    })?;
    paragraphs
        .iter()
        .filter(|p| keep(p.get("Package").unwrap_or_default()))
        .map(|p| parse_record(p, archive, suite))
        .collect()
}

fn parse_record(
    p: &Paragraph,
    archive: DebianArchive,
    suite: &str,
) -> Result<SourceRecord, SourcesError> {
    let name = p.get("Package").unwrap_or_default().to_string();
    let fail = |field: &'static str, problem: String| SourcesError::Field {
        suite: suite.to_string(),
        package: name.clone(),
        field,
        problem,
    };
    let required = |field: &'static str| p.get(field).ok_or_else(|| fail(field, "missing".into()));
    let version: Version = required("Version")?
        .parse()
        .map_err(|e: super::version::VersionParseError| fail("Version", e.to_string()))?;
    let mut files = Vec::new();
    for line in required("Checksums-Sha256")?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [sha256, size, file] = words.as_slice() else {
            return Err(fail(
                "Checksums-Sha256",
                format!("`{line}` is not `SHA256 SIZE NAME`"),
            ));
        };
        files.push(SourceFile {
            name: (*file).to_string(),
            size: size
                .parse()
                .map_err(|_| fail("Checksums-Sha256", format!("size `{size}` is not a number")))?,
            sha256: sha256
                .parse()
                .map_err(|e: crate::digest::DigestParseError| {
                    fail("Checksums-Sha256", e.to_string())
                })?,
        });
    }
    Ok(SourceRecord {
        version,
        directory: required("Directory")?.trim_end_matches('/').to_string(),
        files,
        archive,
        suite: suite.to_string(),
        name,
    })
}

/// Index file names in apt's order of preference, as for `Packages`.
const INDEX_NAMES: [&str; 3] = ["Sources.xz", "Sources.gz", "Sources"];

/// Fetches `<component>/source/Sources*` of a suite whose Release already
/// verified, checking it against that Release, and returns its text.
pub async fn fetch_sources_index(
    client: &reqwest::Client,
    archive_url: &str,
    release: &VerifiedRelease,
    suite: &str,
    component: &str,
) -> Result<String, ArchiveError> {
    let dists = format!("{}/dists/{suite}", archive_url.trim_end_matches('/'));
    let dir = format!("{component}/source");
    let listed = fetch_listed_index(client, release, &dists, &dir, &INDEX_NAMES).await?;
    let Some(ListedIndex { text, .. }) = listed else {
        return Err(ArchiveError::NoSourcesIndex {
            inrelease_url: format!("{dists}/InRelease"),
            component: component.to_string(),
        });
    };
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> String {
        format!(
            "Package: linux\nVersion: 6.18.5-1~bpo13+1\nDirectory: pool/main/l/linux\nChecksums-Sha256:\n {a} 300 linux_6.18.5-1~bpo13+1.dsc\n {b} 157376312 linux_6.18.5.orig.tar.xz\n {c} 1000 linux_6.18.5-1~bpo13+1.debian.tar.xz\n\nPackage: other\nVersion: 1\nDirectory: pool/main/o/other\nChecksums-Sha256:\n {a} 1 other_1.dsc\n",
            a = Sha256Digest::of(b"a").hex(),
            b = Sha256Digest::of(b"b").hex(),
            c = Sha256Digest::of(b"c").hex(),
        )
    }

    #[test]
    fn the_orig_tarball_and_its_checksum_are_found() {
        let records = parse_sources(&index(), DebianArchive::Debian, "trixie-backports", |n| {
            n == "linux"
        })
        .unwrap();
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r.version.to_string(), "6.18.5-1~bpo13+1");
        assert_eq!(r.directory, "pool/main/l/linux");
        let orig = r.orig_tarball().unwrap();
        assert_eq!(orig.name, "linux_6.18.5.orig.tar.xz");
        assert_eq!(orig.size, 157_376_312);
        assert_eq!(orig.sha256, Sha256Digest::of(b"b"));
    }

    #[test]
    fn component_tarballs_and_signatures_are_not_the_orig_tarball() {
        let record = SourceRecord {
            name: "x".into(),
            version: "1-1".parse().unwrap(),
            directory: "pool/main/x/x".into(),
            files: ["x_1.orig-extra.tar.xz", "x_1.orig.tar.xz.asc"]
                .iter()
                .map(|n| SourceFile {
                    name: (*n).into(),
                    size: 1,
                    sha256: Sha256Digest::of(b"x"),
                })
                .collect(),
            archive: DebianArchive::Debian,
            suite: "s".into(),
        };
        assert!(record.orig_tarball().is_none());
    }

    #[test]
    fn a_malformed_checksum_line_names_the_package_and_field() {
        let text = index().replace(" 157376312 ", " lots ");
        let err = parse_sources(&text, DebianArchive::Debian, "trixie-backports", |_| true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("linux") && err.contains("Checksums-Sha256") && err.contains("lots"),
            "{err}"
        );
    }
}
