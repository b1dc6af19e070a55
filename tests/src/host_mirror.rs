//! The Debian mirror this machine's apt uses: the only archive the test
//! environment reaches. Read at run time so no host name is written down.

use anyhow::{Context, bail};
use kina_builder::debian::control::parse_paragraphs;

const SOURCES: &str = "/etc/apt/sources.list.d/debian.sources";

/// Base URLs of the `debian` and `debian-security` archives, no trailing slash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostMirrors {
    pub debian: String,
    pub debian_security: String,
}

/// Reads the archive URLs from the host's deb822 apt sources.
pub fn host_mirrors() -> anyhow::Result<HostMirrors> {
    let text = std::fs::read_to_string(SOURCES)
        .with_context(|| format!("reading {SOURCES} (the tests need the host's Debian mirror)"))?;
    let paragraphs = parse_paragraphs(&text).with_context(|| format!("parsing {SOURCES}"))?;
    let uris: Vec<String> = paragraphs
        .iter()
        .filter_map(|p| p.get("URIs"))
        .flat_map(|v| {
            v.split_whitespace()
                .map(|u| u.trim_end_matches('/').to_string())
        })
        .collect();
    let find = |suffix: &str| uris.iter().find(|u| u.ends_with(suffix)).cloned();
    match (find("/debian"), find("/debian-security")) {
        (Some(debian), Some(debian_security)) => Ok(HostMirrors {
            debian,
            debian_security,
        }),
        _ => bail!("{SOURCES} lists no `.../debian` and `.../debian-security` URIs: {uris:?}"),
    }
}
