//! Fetching a suite's signed Release and its package indexes, as apt does.
//!
//! The chain is: `dists/<suite>/InRelease` verified against the keyring, then
//! each `binary-<arch>/Packages` index checked against the size and sha256 the
//! signed Release lists for the *compressed* file before it is decompressed
//! (apt's acquire-item.cc does the same), so no unverified byte is parsed.
//! Indexes come from `by-hash/SHA256/<hex>` when the Release says
//! `Acquire-By-Hash: yes`, which is immune to a mirror updating mid-fetch.
//!
//! Debian trixie's Release says `No-Support-for-Architecture-all: Packages`:
//! `Architecture: all` packages are listed in each `binary-<arch>/Packages`,
//! so `binary-all` is not fetched.

use std::io::Read;

use crate::debian::keyring::Keyring;
use crate::debian::release::{
    ReleaseEntry, ReleaseError, ValidUntilPolicy, VerifiedRelease, verify_inrelease,
};
use crate::digest::Sha256Digest;
use crate::platform::Arch;

/// A suite's verified Release and the decompressed `Packages` indexes.
#[derive(Clone, Debug)]
pub struct SuiteIndex {
    /// Base URL of the archive, without a trailing slash.
    pub archive_url: String,
    pub suite: String,
    /// sha256 of the InRelease bytes exactly as fetched (also in `release`).
    pub inrelease_sha256: Sha256Digest,
    pub release: VerifiedRelease,
    pub packages: Vec<PackagesIndex>,
}

/// One `Packages` index, verified against the signed Release.
#[derive(Clone, Debug)]
pub struct PackagesIndex {
    pub component: String,
    pub arch: Arch,
    /// Path relative to `dists/<suite>/` as the Release lists it,
    /// e.g. `main/binary-arm64/Packages.xz`.
    pub path: String,
    /// sha256 and size of the file fetched (compressed), from the Release.
    pub sha256: Sha256Digest,
    pub size: u64,
    /// The decompressed deb822 text.
    pub text: String,
}

impl SuiteIndex {
    /// The `Packages` text of `component` for `arch`, if it was fetched.
    pub fn packages_for(&self, component: &str, arch: Arch) -> Option<&PackagesIndex> {
        self.packages
            .iter()
            .find(|p| p.component == component && p.arch == arch)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("GET {url} failed: {source}; check the mirror URL and the network")]
    Http { url: String, source: reqwest::Error },
    #[error("GET {url}: HTTP {status}{hint}")]
    Status {
        url: String,
        status: u16,
        hint: &'static str,
    },
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(
        "{inrelease_url}: the signed Release lists no Packages index for {component}/binary-{arch} (looked for Packages.xz, Packages.gz, Packages); check the recipe's suites and components"
    )]
    NoIndex {
        inrelease_url: String,
        component: String,
        arch: Arch,
    },
    #[error(
        "{inrelease_url}: the signed Release lists no Sources index for {component}/source (looked for Sources.xz, Sources.gz, Sources); check the recipe's suites and components"
    )]
    NoSourcesIndex {
        inrelease_url: String,
        component: String,
    },
    #[error(
        "index {path} size mismatch: Release says {expected} bytes, got {actual} from {url}; the mirror may be mid-update or tampered, retry later"
    )]
    SizeMismatch {
        path: String,
        url: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "index {path} sha256 mismatch: Release says {expected}, got {actual} from {url}; the mirror may be mid-update or tampered, retry later"
    )]
    DigestMismatch {
        path: String,
        url: String,
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
    #[error("index {path} from {url}: cannot decompress: {problem}")]
    Decompress {
        path: String,
        url: String,
        problem: String,
    },
}

/// Index file names in order of preference, as apt's default
/// `Acquire::CompressionTypes::Order` tries them.
const INDEX_NAMES: [&str; 3] = ["Packages.xz", "Packages.gz", "Packages"];

/// Fetches and verifies `<archive_url>/dists/<suite>/InRelease` and the
/// `Packages` index of every component and architecture. Nothing is cached.
pub async fn fetch_suite(
    client: &reqwest::Client,
    archive_url: &str,
    suite: &str,
    components: &[String],
    arches: &[Arch],
    keyring: &Keyring,
    policy: ValidUntilPolicy,
) -> Result<SuiteIndex, ArchiveError> {
    let archive_url = archive_url.trim_end_matches('/').to_string();
    let dists = format!("{archive_url}/dists/{suite}");
    let inrelease_url = format!("{dists}/InRelease");
    let inrelease = get_index(client, &inrelease_url).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let release = verify_inrelease(&inrelease_url, &inrelease, keyring, now, policy)?;

    let mut packages = Vec::new();
    for component in components {
        for &arch in arches {
            let dir = format!("{component}/binary-{}", arch.debian());
            let Some(ListedIndex { path, entry, text }) =
                fetch_listed_index(client, &release, &dists, &dir, &INDEX_NAMES).await?
            else {
                return Err(ArchiveError::NoIndex {
                    inrelease_url,
                    component: component.clone(),
                    arch,
                });
            };
            packages.push(PackagesIndex {
                component: component.clone(),
                arch,
                path,
                sha256: entry.sha256,
                size: entry.size,
                text,
            });
        }
    }
    Ok(SuiteIndex {
        archive_url,
        suite: suite.to_string(),
        inrelease_sha256: release.inrelease_sha256,
        release,
        packages,
    })
}

/// GET a file of the archive (shared with `Sources` fetching).
pub(crate) async fn get_index(
    client: &reqwest::Client,
    url: &str,
) -> Result<Vec<u8>, ArchiveError> {
    let http = |source| ArchiveError::Http {
        url: url.to_string(),
        source,
    };
    let response = client.get(url).send().await.map_err(http)?;
    let status = response.status();
    if !status.is_success() {
        let hint = if status.as_u16() == 404 {
            " (not found: check the suite, component and mirror URL)"
        } else {
            ""
        };
        return Err(ArchiveError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            hint,
        });
    }
    Ok(response.bytes().await.map_err(http)?.to_vec())
}

/// An index a verified Release lists, fetched, checked and decompressed.
pub(crate) struct ListedIndex {
    pub path: String,
    pub entry: ReleaseEntry,
    pub text: String,
}

/// The first of `names` (apt's order of preference) that `release` lists
/// under `dir`: fetched by hash when the archive offers it, checked against
/// its Release entry and decompressed. `None` when the Release lists none.
pub(crate) async fn fetch_listed_index(
    client: &reqwest::Client,
    release: &VerifiedRelease,
    dists: &str,
    dir: &str,
    names: &[&str],
) -> Result<Option<ListedIndex>, ArchiveError> {
    let Some((path, entry)) = names.iter().find_map(|name| {
        let path = format!("{dir}/{name}");
        release.sha256.get(&path).map(|e| (path, e.clone()))
    }) else {
        return Ok(None);
    };
    let url = if release.acquire_by_hash {
        format!("{dists}/{dir}/by-hash/SHA256/{}", entry.sha256.hex())
    } else {
        format!("{dists}/{path}")
    };
    let bytes = get_index(client, &url).await?;
    check_index(&path, &url, &entry, &bytes)?;
    let text = decompress_index(&path, &bytes).map_err(|problem| ArchiveError::Decompress {
        path: path.clone(),
        url,
        problem,
    })?;
    Ok(Some(ListedIndex { path, entry, text }))
}

/// Checks a fetched index against its signed Release entry.
pub(crate) fn check_index(
    path: &str,
    url: &str,
    entry: &ReleaseEntry,
    bytes: &[u8],
) -> Result<(), ArchiveError> {
    let actual_size = bytes.len() as u64;
    if actual_size != entry.size {
        return Err(ArchiveError::SizeMismatch {
            path: path.to_string(),
            url: url.to_string(),
            expected: entry.size,
            actual: actual_size,
        });
    }
    let actual = Sha256Digest::of(bytes);
    if actual != entry.sha256 {
        return Err(ArchiveError::DigestMismatch {
            path: path.to_string(),
            url: url.to_string(),
            expected: entry.sha256,
            actual,
        });
    }
    Ok(())
}

/// Decompresses an index by its file name's extension.
pub(crate) fn decompress_index(path: &str, bytes: &[u8]) -> Result<String, String> {
    let mut out = Vec::new();
    let result = if path.ends_with(".xz") {
        liblzma::read::XzDecoder::new(bytes).read_to_end(&mut out)
    } else if path.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out)
    } else {
        out.extend_from_slice(bytes);
        Ok(out.len())
    };
    result.map_err(|e| e.to_string())?;
    String::from_utf8(out).map_err(|e| format!("not UTF-8 text: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn xz_gz_and_plain_indexes_decompress_to_the_same_text() {
        let text = "Package: a\nVersion: 1\n";
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(text.as_bytes()).unwrap();
        let xz = xz.finish().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(
            decompress_index("main/binary-amd64/Packages.xz", &xz).unwrap(),
            text
        );
        assert_eq!(
            decompress_index("main/binary-amd64/Packages.gz", &gz).unwrap(),
            text
        );
        assert_eq!(
            decompress_index("main/binary-amd64/Packages", text.as_bytes()).unwrap(),
            text
        );
    }

    #[test]
    fn a_corrupt_compressed_index_is_an_error_not_garbage() {
        assert!(decompress_index("main/binary-amd64/Packages.xz", b"not xz").is_err());
    }

    #[test]
    fn size_and_digest_are_checked_against_the_release_entry() {
        let entry = ReleaseEntry {
            sha256: Sha256Digest::of(b"abc"),
            size: 3,
        };
        assert!(check_index("p", "u", &entry, b"abc").is_ok());
        let err = check_index("main/binary-arm64/Packages.xz", "u", &entry, b"abd")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("main/binary-arm64/Packages.xz sha256 mismatch: Release says"),
            "{err}"
        );
        assert!(matches!(
            check_index("p", "u", &entry, b"ab"),
            Err(ArchiveError::SizeMismatch {
                expected: 3,
                actual: 2,
                ..
            })
        ));
    }
}
