//! Reading one suite of a Debian archive: `InRelease`, then the `Packages`
//! indexes it vouches for.
//!
//! Index files are fetched by hash when the Release offers `Acquire-By-Hash`
//! (immune to a mirror updating between the two requests), checked against
//! the signed size and sha256 of the compressed file, then decompressed.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use super::keyring::Keyring;
use super::release::{
    IndexEntry, ReleaseError, ValidUntilPolicy, VerifiedRelease, verify_inrelease,
};
use crate::digest::Sha256Digest;
use crate::platform::Arch;

#[derive(Debug)]
pub struct SuiteIndex {
    pub inrelease_sha256: Sha256Digest,
    pub release: VerifiedRelease,
    /// Decompressed `Packages` text per (component, architecture).
    pub packages: BTreeMap<(String, Arch), String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("GET {url}: {message}")]
    Http { url: String, message: String },
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(
        "{url}: the signed Release lists no Packages index for {component}/binary-{arch}; check the suite, component and architecture names"
    )]
    NoIndex {
        url: String,
        component: String,
        arch: Arch,
    },
    #[error(
        "{url}: {path} sha256 mismatch: the signed Release says {expected} ({expected_size} bytes), got {actual} ({actual_size} bytes)"
    )]
    IndexHash {
        url: String,
        path: String,
        expected: Sha256Digest,
        expected_size: u64,
        actual: Sha256Digest,
        actual_size: u64,
    },
    #[error("{url}: cannot decompress {path}: {message}")]
    Decompress {
        url: String,
        path: String,
        message: String,
    },
}

/// The compressed forms apt tries, best first.
const INDEX_FORMS: [&str; 3] = ["Packages.xz", "Packages.gz", "Packages"];

pub async fn fetch_suite(
    client: &reqwest::Client,
    archive_url: &str,
    suite: &str,
    components: &[String],
    arches: &[Arch],
    keyring: &Keyring,
    policy: ValidUntilPolicy,
) -> Result<SuiteIndex, ArchiveError> {
    let dists = format!("{}/dists/{suite}", archive_url.trim_end_matches('/'));
    let inrelease_url = format!("{dists}/InRelease");
    let inrelease = get(client, &inrelease_url).await?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let release = verify_inrelease(&inrelease, &inrelease_url, keyring, now, policy)?;

    let mut packages = BTreeMap::new();
    for component in components {
        for &arch in arches {
            let dir = format!("{component}/binary-{}", arch.debian());
            let Some((name, entry)) = INDEX_FORMS.iter().find_map(|form| {
                let path = format!("{dir}/{form}");
                release.sha256.get(&path).map(|e| (path, e.clone()))
            }) else {
                return Err(ArchiveError::NoIndex {
                    url: inrelease_url.clone(),
                    component: component.clone(),
                    arch,
                });
            };
            let url = if release.acquire_by_hash {
                format!("{dists}/{dir}/by-hash/SHA256/{}", entry.sha256.hex())
            } else {
                format!("{dists}/{name}")
            };
            let bytes = get(client, &url).await?;
            check_index(&url, &name, &entry, &bytes)?;
            let text = decompress(&url, &name, &bytes)?;
            packages.insert((component.clone(), arch), text);
        }
    }
    Ok(SuiteIndex {
        inrelease_sha256: Sha256Digest::of(&inrelease),
        release,
        packages,
    })
}

fn check_index(
    url: &str,
    path: &str,
    entry: &IndexEntry,
    bytes: &[u8],
) -> Result<(), ArchiveError> {
    let actual = Sha256Digest::of(bytes);
    if actual != entry.sha256 || bytes.len() as u64 != entry.size {
        return Err(ArchiveError::IndexHash {
            url: url.to_string(),
            path: path.to_string(),
            expected: entry.sha256,
            expected_size: entry.size,
            actual,
            actual_size: bytes.len() as u64,
        });
    }
    Ok(())
}

fn decompress(url: &str, path: &str, bytes: &[u8]) -> Result<String, ArchiveError> {
    let mut text = String::new();
    let fail = |e: std::io::Error| ArchiveError::Decompress {
        url: url.to_string(),
        path: path.to_string(),
        message: e.to_string(),
    };
    if path.ends_with(".xz") {
        liblzma::read::XzDecoder::new(bytes)
            .read_to_string(&mut text)
            .map_err(fail)?;
    } else if path.ends_with(".gz") {
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .map_err(fail)?;
    } else {
        text = String::from_utf8(bytes.to_vec())
            .map_err(|e| fail(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    }
    Ok(text)
}

async fn get(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, ArchiveError> {
    let fail = |message: String| ArchiveError::Http {
        url: url.to_string(),
        message,
    };
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(fail(format!(
            "HTTP {status}{}",
            if status.as_u16() == 404 {
                "; check the mirror URL and suite name"
            } else {
                ""
            }
        )));
    }
    Ok(response
        .bytes()
        .await
        .map_err(|e| fail(e.to_string()))?
        .to_vec())
}
