//! Where downloads come from: the Debian mirror, and URL rewrites for
//! everything else.
//!
//! A recipe pins content, not hosts. The mirror is chosen per machine (flag,
//! environment, recipe, then the host's own apt sources), and any other URL
//! may be redirected by prefix, which is how an air-gapped site, or a test on
//! loopback, serves upstream artifacts through the same code path.

use std::path::{Path, PathBuf};

use crate::debian::control::parse_paragraphs;
use crate::recipe::{DebianArchive, DebianSpec};

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(
        "no Debian mirror configured: pass --mirror URL or set KINA_DEBIAN_MIRROR to a Debian mirror's http(s) URL ending in /debian (or set `debian.mirror` in the recipe)"
    )]
    NoMirror,
    #[error("`{value}` is not an http(s) URL (from {source_name})")]
    NotAUrl {
        value: String,
        source_name: &'static str,
    },
    #[error("URL rewrite `{0}` is not of the form PREFIX=REPLACEMENT")]
    BadRewrite(String),
}

/// Base URLs of the two Debian archives a recipe may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebianMirrors {
    pub debian: String,
    pub security: String,
}

impl DebianMirrors {
    pub fn url_for(&self, archive: DebianArchive) -> &str {
        match archive {
            DebianArchive::Debian => &self.debian,
            DebianArchive::DebianSecurity => &self.security,
        }
    }

    /// Flag, then environment (read by clap into the flag), then recipe, then
    /// the host's apt sources.
    pub fn resolve(
        flag: Option<&str>,
        security_flag: Option<&str>,
        recipe: &DebianSpec,
    ) -> Result<Self, MirrorError> {
        Self::resolve_with_host(flag, security_flag, recipe, HostApt::default_dir())
    }

    pub fn resolve_with_host(
        flag: Option<&str>,
        security_flag: Option<&str>,
        recipe: &DebianSpec,
        apt_dir: &Path,
    ) -> Result<Self, MirrorError> {
        let host = HostApt::read(apt_dir);
        let debian = match (flag, &recipe.mirror) {
            (Some(url), _) => checked(url, "--mirror")?,
            (None, Some(url)) => checked(url, "the recipe's debian.mirror")?,
            (None, None) => host.debian.clone().ok_or(MirrorError::NoMirror)?,
        };
        let security = match (security_flag, &recipe.security_mirror) {
            (Some(url), _) => checked(url, "--security-mirror")?,
            (None, Some(url)) => checked(url, "the recipe's debian.security_mirror")?,
            // A mirror chosen explicitly implies its sibling security archive;
            // the host's security source only goes with the host's mirror.
            (None, None) if flag.is_none() && recipe.mirror.is_none() => host
                .security
                .clone()
                .unwrap_or_else(|| derive_security(&debian)),
            (None, None) => derive_security(&debian),
        };
        Ok(Self { debian, security })
    }
}

fn checked(url: &str, source_name: &'static str) -> Result<String, MirrorError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url.trim_end_matches('/').to_string())
    } else {
        Err(MirrorError::NotAUrl {
            value: url.to_string(),
            source_name,
        })
    }
}

/// `…/debian` → `…/debian-security`, the layout of Debian's own mirrors.
fn derive_security(debian: &str) -> String {
    match debian.strip_suffix("/debian") {
        Some(base) => format!("{base}/debian-security"),
        None => format!("{debian}-security"),
    }
}

/// The Debian mirrors the host's apt uses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HostApt {
    pub debian: Option<String>,
    pub security: Option<String>,
}

/// Debian's release code names; a source whose suites are none of these (or
/// their -updates/-security/-backports) is a third-party repository.
const DEBIAN_SUITES: &[&str] = &[
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "unstable",
    "testing",
    "stable",
    "oldstable",
    "experimental",
];

impl HostApt {
    pub fn default_dir() -> &'static Path {
        Path::new("/etc/apt")
    }

    /// Reads `sources.list` and `sources.list.d/*.{list,sources}` under `dir`.
    pub fn read(dir: &Path) -> Self {
        let mut entries: Vec<(String, Vec<String>)> = Vec::new();
        let mut files: Vec<PathBuf> = vec![dir.join("sources.list")];
        if let Ok(read) = std::fs::read_dir(dir.join("sources.list.d")) {
            let mut more: Vec<PathBuf> = read.filter_map(Result::ok).map(|e| e.path()).collect();
            more.sort();
            files.extend(more);
        }
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            if file.extension().is_some_and(|e| e == "sources") {
                for p in parse_paragraphs(&text).unwrap_or_default() {
                    let deb = p
                        .get("Types")
                        .is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
                    if !deb || p.get("Enabled") == Some("no") {
                        continue;
                    }
                    let suites: Vec<String> = p
                        .get("Suites")
                        .unwrap_or_default()
                        .split_whitespace()
                        .map(str::to_string)
                        .collect();
                    for uri in p.get("URIs").unwrap_or_default().split_whitespace() {
                        entries.push((uri.to_string(), suites.clone()));
                    }
                }
            } else if file.extension().is_some_and(|e| e == "list")
                || file.ends_with("sources.list")
            {
                for line in text.lines() {
                    let line = line.split('#').next().unwrap_or_default();
                    let mut words = line.split_whitespace().peekable();
                    if words.next() != Some("deb") {
                        continue;
                    }
                    if words.peek().is_some_and(|w| w.starts_with('[')) {
                        for w in words.by_ref() {
                            if w.ends_with(']') {
                                break;
                            }
                        }
                    }
                    if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
                        entries.push((uri.to_string(), vec![suite.to_string()]));
                    }
                }
            }
        }
        let mut host = HostApt::default();
        for (uri, suites) in entries {
            for suite in &suites {
                let (base, kind) = match suite.split_once('-') {
                    Some((b, k)) => (b, Some(k)),
                    None => (suite.as_str(), None),
                };
                if !DEBIAN_SUITES.contains(&base) {
                    continue;
                }
                let uri = uri.trim_end_matches('/').to_string();
                match kind {
                    Some("security") => {
                        host.security.get_or_insert(uri);
                    }
                    Some("updates" | "backports" | "proposed-updates") | None => {
                        host.debian.get_or_insert(uri);
                    }
                    Some(_) => {}
                }
            }
        }
        host
    }
}

/// `PREFIX=REPLACEMENT` rules applied to every non-Debian download; the
/// longest matching prefix wins.
#[derive(Clone, Debug, Default)]
pub struct UrlRewrites {
    rules: Vec<(String, String)>,
}

impl UrlRewrites {
    /// Rules from `--url-rewrite` flags and the comma-separated `KINA_URL_REWRITE`.
    pub fn from_flags_and_env(flags: &[String]) -> Result<Self, MirrorError> {
        let env = std::env::var("KINA_URL_REWRITE").unwrap_or_default();
        let all = flags
            .iter()
            .map(String::as_str)
            .chain(env.split(',').map(str::trim).filter(|s| !s.is_empty()));
        Self::parse(all)
    }

    pub fn parse<'a>(rules: impl IntoIterator<Item = &'a str>) -> Result<Self, MirrorError> {
        let mut parsed = Vec::new();
        for rule in rules {
            let (from, to) = rule
                .split_once('=')
                .filter(|(f, t)| !f.is_empty() && !t.is_empty())
                .ok_or_else(|| MirrorError::BadRewrite(rule.to_string()))?;
            parsed.push((from.to_string(), to.to_string()));
        }
        parsed.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        Ok(Self { rules: parsed })
    }

    pub fn apply(&self, url: &str) -> String {
        for (from, to) in &self.rules {
            if let Some(rest) = url.strip_prefix(from.as_str()) {
                return format!("{to}{rest}");
            }
        }
        url.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DebianSpec {
        DebianSpec {
            mirror: None,
            security_mirror: None,
            sources: vec![],
            keyring: vec![],
            packages: vec![],
        }
    }

    fn apt_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sources.list.d")).unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn deb822_sources_give_the_debian_and_security_mirrors_and_skip_third_party() {
        let dir = apt_dir(&[(
            "sources.list.d/debian.sources",
            "Types: deb\nURIs: http://mirror.example.invalid/debian\nSuites: trixie trixie-updates\nComponents: main\n\nTypes: deb\nURIs: http://mirror.example.invalid/debian-security/\nSuites: trixie-security\nComponents: main\n\nTypes: deb\nURIs: https://vendor.example.invalid/apt\nSuites: nodistro\nComponents: main\n",
        )]);
        let m = DebianMirrors::resolve_with_host(None, None, &spec(), dir.path()).unwrap();
        assert_eq!(m.debian, "http://mirror.example.invalid/debian");
        assert_eq!(m.security, "http://mirror.example.invalid/debian-security");
    }

    #[test]
    fn one_line_sources_work_and_security_is_derived_when_absent() {
        let dir = apt_dir(&[(
            "sources.list",
            "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example.invalid/debian bookworm main\ndeb https://vendor.example.invalid/apt cloud-sdk main\n",
        )]);
        let m = DebianMirrors::resolve_with_host(None, None, &spec(), dir.path()).unwrap();
        assert_eq!(m.debian, "http://m.example.invalid/debian");
        assert_eq!(m.security, "http://m.example.invalid/debian-security");
    }

    #[test]
    fn flag_beats_recipe_beats_host() {
        let dir = apt_dir(&[(
            "sources.list",
            "deb http://host.example.invalid/debian trixie main\n",
        )]);
        let mut recipe = spec();
        recipe.mirror = Some("http://recipe.example.invalid/debian".into());
        let m = DebianMirrors::resolve_with_host(None, None, &recipe, dir.path()).unwrap();
        assert_eq!(m.debian, "http://recipe.example.invalid/debian");
        assert_eq!(m.security, "http://recipe.example.invalid/debian-security");
        let m = DebianMirrors::resolve_with_host(
            Some("http://flag.example.invalid/debian/"),
            None,
            &recipe,
            dir.path(),
        )
        .unwrap();
        assert_eq!(m.debian, "http://flag.example.invalid/debian");
    }

    #[test]
    fn no_mirror_anywhere_says_how_to_set_one() {
        let dir = apt_dir(&[]);
        let err = DebianMirrors::resolve_with_host(None, None, &spec(), dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("--mirror") && err.to_string().contains("KINA_DEBIAN_MIRROR")
        );
        let err =
            DebianMirrors::resolve_with_host(Some("ftp.invalid/debian"), None, &spec(), dir.path())
                .unwrap_err();
        assert!(err.to_string().contains("ftp.invalid/debian"));
    }

    #[test]
    fn the_real_host_configuration_is_found() {
        let host = HostApt::read(HostApt::default_dir());
        let text = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap();
        let first_uri = text
            .lines()
            .find_map(|l| l.strip_prefix("URIs:"))
            .unwrap()
            .trim()
            .trim_end_matches('/');
        assert_eq!(host.debian.as_deref(), Some(first_uri));
        assert!(host.security.is_some());
    }

    #[test]
    fn the_longest_rewrite_prefix_wins() {
        let r = UrlRewrites::parse([
            "https://dl.k8s.io=http://127.0.0.1:1",
            "https://dl.k8s.io/release=http://127.0.0.1:2/r",
        ])
        .unwrap();
        assert_eq!(
            r.apply("https://dl.k8s.io/release/v1/kubeadm"),
            "http://127.0.0.1:2/r/v1/kubeadm"
        );
        assert_eq!(r.apply("https://dl.k8s.io/x"), "http://127.0.0.1:1/x");
        assert_eq!(r.apply("https://other/x"), "https://other/x");
        assert!(UrlRewrites::parse(["nonsense"]).is_err());
    }
}
