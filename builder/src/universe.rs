//! The package universe of a recipe's Debian sources: every suite's InRelease
//! verified against the recipe's keyring, every Packages index checked
//! against it and parsed. Both locks start here (the node image's and the
//! node kernel's), so the two read the signed archive the same way and
//! record the same `[[release]]` entries.

use std::collections::BTreeMap;

use crate::debian::archive::{ArchiveError, fetch_suite};
use crate::debian::keyring::Keyring;
use crate::debian::packages::{PackageRecord, PackagesError, parse_packages};
use crate::debian::release::ValidUntilPolicy;
use crate::fetch::mirror::DebianMirrors;
use crate::lock::LockedRelease;
use crate::platform::Arch;
use crate::recipe::DebianSource;

#[derive(Debug, thiserror::Error)]
pub enum UniverseError {
    #[error("reading the {archive} archive, suite {suite}: {source}")]
    Archive {
        archive: &'static str,
        suite: String,
        source: Box<ArchiveError>,
    },
    #[error("parsing the Packages index of {suite} {component}/{arch}: {source}")]
    Packages {
        suite: String,
        component: String,
        arch: Arch,
        source: PackagesError,
    },
}

/// What the signed suites hold, in the recipe's order.
pub struct Universe {
    /// One per suite, in the order the recipe lists them.
    pub releases: Vec<LockedRelease>,
    /// The newest `Date` of the suites' InRelease files, as a Unix time.
    pub newest_date: u64,
    /// The kept records per architecture, earlier suites first.
    pub packages: BTreeMap<Arch, Vec<PackageRecord>>,
}

/// Reads every suite of `sources` for `architectures` from `mirrors` and
/// keeps the records `keep` accepts (the kernel lock needs only a handful of
/// the tens of thousands a suite lists).
pub async fn fetch_universe(
    client: &reqwest::Client,
    sources: &[DebianSource],
    architectures: &[Arch],
    keyring: &Keyring,
    mirrors: &DebianMirrors,
    valid_until: ValidUntilPolicy,
    keep: impl Fn(&PackageRecord) -> bool,
) -> Result<Universe, UniverseError> {
    let mut universe = Universe {
        releases: Vec::new(),
        newest_date: 0,
        packages: BTreeMap::new(),
    };
    for source in sources {
        let base_url = mirrors.url_for(source.archive);
        for suite in &source.suites {
            let index = fetch_suite(
                client,
                base_url,
                suite,
                &source.components,
                architectures,
                keyring,
                valid_until,
            )
            .await
            .map_err(|e| UniverseError::Archive {
                archive: source.archive.name(),
                suite: suite.clone(),
                source: Box::new(e),
            })?;
            universe.newest_date = universe.newest_date.max(index.release.date_epoch);
            universe.releases.push(LockedRelease {
                archive: source.archive,
                suite: suite.clone(),
                date: index.release.date.clone(),
                inrelease_sha256: index.inrelease_sha256,
                signed_by: index.release.signed_by.clone(),
            });
            for packages in &index.packages {
                let records = parse_packages(&packages.text, source.archive, suite, packages.arch)
                    .map_err(|e| UniverseError::Packages {
                        suite: suite.clone(),
                        component: packages.component.clone(),
                        arch: packages.arch,
                        source: e,
                    })?;
                universe
                    .packages
                    .entry(packages.arch)
                    .or_default()
                    .extend(records.into_iter().filter(|r| keep(r)));
            }
        }
    }
    Ok(universe)
}
