//! Which Apple `container` is installed, and whether kina can drive it.
//!
//! `container system version --format json` (apple/container
//! `Sources/ContainerCommands/System/SystemVersion.swift`, since 0.10.0)
//! prints a JSON array of `VersionInfo { version, buildType, commit,
//! appName }`: first the CLI, then the API server if it answers a health
//! check within 2 s. The two entries do not spell `version` alike:
//!
//! - CLI (`appName: "container"`): the bare release, `ReleaseVersion.version()`,
//!   e.g. `"1.2.1"`. Release builds take it from `RELEASE_VERSION`, which
//!   the Makefile sets from `git describe --tags --always`, so a build a few
//!   commits past a tag reads `"1.2.2-1-gaf405ff"`; a plain `swift build`
//!   without it reads `"0.0.0"`.
//! - API server (`appName: "container-apiserver"`): the health check's
//!   `apiServerVersion`, which is `ReleaseVersion.singleLine(...)`, e.g.
//!   `"container-apiserver version 1.2.1 (build: release, commit: 1a2b3c4)"`.
//!
//! Before 0.10.0 there is no `system version`; `container --version` prints
//! `container CLI version 0.9.0 (build: release, commit: …)` in every
//! release, which [`parse_cli_version_line`] reads.
//!
//! kina requires a CLI of [`MINIMUM`] = 1.2.1: since 1.2.0 the runtime
//! applies OCI's default masked and read-only paths, `/proc/sys` among them
//! (apple/container#2041), which kubelet, kube-proxy and CNI plugins need to
//! write, and the CLI flags that clear them, `--masked-path NONE` and
//! `--read-only-path NONE`, first appear in 1.2.1 (#2069). The 1.2.0 API
//! server already decodes and applies the `maskedPaths`/`readonlyPaths` a
//! CLI sends (#1996: at tag 1.2.0, `ContainerConfiguration.swift:68-72,
//! 137-138` and `RuntimeService.swift:1008-1013`), so a running API server
//! may be [`MINIMUM_API_SERVER`] = 1.2.0; only an older one drops those
//! fields as unknown.

use std::fmt;

use crate::kind_of;
use serde_json::Value;

/// The oldest Apple `container` CLI kina drives.
pub const MINIMUM: Version = Version::new(1, 2, 1);
/// The oldest API server that applies the path lists kina's CLI flags send.
pub const MINIMUM_API_SERVER: Version = Version::new(1, 2, 0);

/// The first release with `system version` and `/usr/local/bin/update-container.sh`.
const FIRST_WITH_UPDATE_SCRIPT: Version = Version::new(0, 10, 0);

/// Arguments that print the version JSON this module parses (0.10.0+).
pub const SYSTEM_VERSION_ARGS: [&str; 4] = ["system", "version", "--format", "json"];
/// Arguments for the one-line version every release prints.
pub const CLI_VERSION_ARGS: [&str; 1] = ["--version"];

/// A release number, as Apple tags them (`1.2.1`: no `v`, no pre-releases).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// One entry of `system version --format json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    /// `container` or `container-apiserver`.
    pub app_name: String,
    /// The `version` string exactly as printed.
    pub raw_version: String,
    /// `release` or `debug`.
    pub build_type: String,
    pub commit: String,
}

impl Component {
    /// The release this component reports.
    pub fn release(&self) -> Result<Version, VersionError> {
        parse_release(&self.app_name, &self.raw_version)
    }
}

/// What `container system version --format json` reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemVersion {
    pub cli: Component,
    /// Absent when the API server is not running (`container system start`
    /// has not been run, or it did not answer within 2 s).
    pub api_server: Option<Component>,
}

/// The versions found once [`check`] has accepted them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Supported {
    pub cli: Version,
    pub api_server: Option<Version>,
}

#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error("`container system version --format json` did not print JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("`container system version --format json`: {0}")]
    Shape(String),
    #[error("`container --version` printed `{0}`, expected `container CLI version X.Y.Z (…)`")]
    CliLine(String),
    #[error(
        "{component} reports version `{raw}`, which kina cannot read as a release number (like 1.2.1)"
    )]
    Unparsable { component: String, raw: String },
    #[error(
        "{component} reports version 0.0.0, the version of a build from source without \
         RELEASE_VERSION, so kina cannot tell whether it has the flags it needs \
         ({MINIMUM} or newer); install a release from https://github.com/apple/container/releases"
    )]
    Unversioned { component: String },
    #[error(
        "Apple container {found} is installed, but kina needs {MINIMUM} or newer: {why}. \
         To upgrade: {how}"
    )]
    TooOld {
        found: Version,
        why: &'static str,
        how: String,
    },
    #[error(
        "the container CLI is {cli} but the running API server is still {found}, which drops \
         the masked and read-only path lists the CLI sends; kina needs an API server of \
         {MINIMUM_API_SERVER} or newer. Restart the services on the new version: \
         `container system stop`, then `container system start`"
    )]
    ServerTooOld { found: Version, cli: Version },
}

/// Parses the output of `container system version --format json`.
pub fn parse_system_version(json: &str) -> Result<SystemVersion, VersionError> {
    let value: Value = serde_json::from_str(json).map_err(VersionError::NotJson)?;
    let Value::Array(entries) = value else {
        return Err(VersionError::Shape(format!(
            "expected a JSON array of components, got {}",
            kind_of(&value)
        )));
    };
    let mut components = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        components.push(component(entry, index)?);
    }
    if components.is_empty() {
        return Err(VersionError::Shape(
            "the array is empty; expected at least the CLI's entry".to_string(),
        ));
    }
    // The CLI entry is first and named `container`; go by the name when it
    // is there, by position otherwise.
    let cli_index = components
        .iter()
        .position(|c| c.app_name == "container")
        .unwrap_or(0);
    let cli = components.remove(cli_index);
    let api_server = components.into_iter().next();
    Ok(SystemVersion { cli, api_server })
}

fn component(entry: &Value, index: usize) -> Result<Component, VersionError> {
    let field = |name: &str| -> Result<String, VersionError> {
        match entry.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(VersionError::Shape(format!(
                "`[{index}].{name}` is {}, expected a string",
                kind_of(other)
            ))),
            None => Err(VersionError::Shape(format!(
                "`[{index}]` has no field `{name}`"
            ))),
        }
    };
    if !entry.is_object() {
        return Err(VersionError::Shape(format!(
            "`[{index}]` is {}, expected an object",
            kind_of(entry)
        )));
    }
    Ok(Component {
        app_name: field("appName")?,
        raw_version: field("version")?,
        build_type: field("buildType")?,
        commit: field("commit")?,
    })
}

/// Parses the line `container --version` prints in every release:
/// `container CLI version 1.2.1 (build: release, commit: 1a2b3c4)`.
/// Use it when `system version` is missing (before 0.10.0).
pub fn parse_cli_version_line(line: &str) -> Result<Version, VersionError> {
    let line = line.trim();
    if !line.contains(" version ") {
        return Err(VersionError::CliLine(line.to_string()));
    }
    parse_release("container CLI", line)
}

/// Reads a release number from a `version` string: a bare `1.2.1`, a
/// `git describe` form `1.2.2-1-gaf405ff` (read as 1.2.2, which it
/// contains), or a `… version 1.2.1 (…)` line.
fn parse_release(component: &str, raw: &str) -> Result<Version, VersionError> {
    let unparsable = || VersionError::Unparsable {
        component: component.to_string(),
        raw: raw.to_string(),
    };
    let token = match raw.split_once(" version ") {
        Some((_, rest)) => rest.split_whitespace().next().unwrap_or(""),
        None => raw.trim(),
    };
    let token = token.strip_prefix('v').unwrap_or(token);
    let core = token.split(['-', '+']).next().unwrap_or("");
    let mut numbers = core.split('.').map(|part| {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            part.parse::<u32>().ok()
        }
    });
    let major = numbers.next().flatten().ok_or_else(unparsable)?;
    let minor = numbers.next().flatten().ok_or_else(unparsable)?;
    let patch = match numbers.next() {
        None => 0,
        Some(n) => n.ok_or_else(unparsable)?,
    };
    if numbers.next().is_some() {
        return Err(unparsable());
    }
    let version = Version::new(major, minor, patch);
    if version == Version::new(0, 0, 0) {
        return Err(VersionError::Unversioned {
            component: component.to_string(),
        });
    }
    Ok(version)
}

/// Accepts the installed versions if kina can drive them.
///
/// The CLI parses the flags, so it must be [`MINIMUM`] or newer. The API
/// server applies the `maskedPaths`/`readonlyPaths` of the configuration
/// the CLI sends; 1.2.0's already does, one before drops them as unknown
/// fields, so when it is running it must be [`MINIMUM_API_SERVER`] or
/// newer: after an upgrade without `container system stop`, the old server
/// keeps running.
pub fn check(system: &SystemVersion) -> Result<Supported, VersionError> {
    let cli = system.cli.release()?;
    require(cli)?;
    let api_server = match &system.api_server {
        Some(server) => {
            let found = server.release()?;
            if found < MINIMUM_API_SERVER {
                return Err(VersionError::ServerTooOld { found, cli });
            }
            Some(found)
        }
        None => None,
    };
    Ok(Supported { cli, api_server })
}

/// Accepts one CLI version, e.g. from [`parse_cli_version_line`].
pub fn require(found: Version) -> Result<(), VersionError> {
    if found >= MINIMUM {
        return Ok(());
    }
    let why = if found == Version::new(1, 2, 0) {
        "1.2.0 makes /proc/sys read-only inside containers (apple/container#2041) and its \
         CLI has no flag to opt out, while nodes must write it; the 1.2.1 CLI added \
         --masked-path/--read-only-path NONE for that"
    } else {
        "nodes need --masked-path NONE and --read-only-path NONE (added in 1.2.1) \
         to write /proc/sys"
    };
    Err(VersionError::TooOld {
        found,
        why,
        how: upgrade_hint(found),
    })
}

fn upgrade_hint(found: Version) -> String {
    let package = "the signed installer package from https://github.com/apple/container/releases";
    let installer = if found >= FIRST_WITH_UPDATE_SCRIPT {
        format!("`/usr/local/bin/update-container.sh` (or {package})")
    } else {
        // update-container.sh first shipped with 0.10.0.
        package.to_string()
    };
    format!(
        "`container system stop`, then {installer}, or `brew upgrade container` if Homebrew \
         installed it; then `container system start`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shape: `[VersionInfo]` encoded by `Output.renderJSON` (compact, sorted
    // keys) from `SystemVersion.swift` at 1.2.2; the server's `version` is
    // `ReleaseVersion.singleLine(appName: "container-apiserver")` as set in
    // `HealthCheckHarness.swift`. Written from the source, not captured.
    const V1_2_1_RUNNING: &str = r#"[{"appName":"container","buildType":"release","commit":"0123456789abcdef0123456789abcdef01234567","version":"1.2.1"},{"appName":"container-apiserver","buildType":"release","commit":"0123456789abcdef0123456789abcdef01234567","version":"container-apiserver version 1.2.1 (build: release, commit: 0123456)"}]"#;

    // Shape at 0.10.0/0.11.0: `JSONEncoder().encode(versions)` with default
    // options (unsorted keys, in declaration order); API server not running.
    const V0_11_0_STOPPED: &str =
        r#"[{"version":"0.11.0","buildType":"release","commit":"abcdef0","appName":"container"}]"#;

    #[test]
    fn system_version_1_2_1_with_server_against_documented_json() {
        let parsed = parse_system_version(V1_2_1_RUNNING).unwrap();
        assert_eq!(parsed.cli.app_name, "container");
        assert_eq!(parsed.cli.raw_version, "1.2.1");
        assert_eq!(parsed.cli.build_type, "release");
        let server = parsed.api_server.clone().unwrap();
        assert_eq!(server.app_name, "container-apiserver");
        assert_eq!(
            check(&parsed).unwrap(),
            Supported {
                cli: Version::new(1, 2, 1),
                api_server: Some(Version::new(1, 2, 1)),
            }
        );
    }

    #[test]
    fn system_version_without_server_is_accepted_against_documented_json() {
        let json = r#"[{"appName":"container","buildType":"release","commit":"af405ff","version":"1.2.2"}]"#;
        let parsed = parse_system_version(json).unwrap();
        assert!(parsed.api_server.is_none());
        assert_eq!(
            check(&parsed).unwrap(),
            Supported {
                cli: Version::new(1, 2, 2),
                api_server: None,
            }
        );
    }

    #[test]
    fn git_describe_version_counts_as_its_tag_against_documented_json() {
        // `make` sets RELEASE_VERSION from `git describe --tags --always`.
        let json = r#"[{"appName":"container","buildType":"debug","commit":"af405ffd","version":"1.2.2-1-gaf405ff"}]"#;
        let parsed = parse_system_version(json).unwrap();
        assert_eq!(parsed.cli.release().unwrap(), Version::new(1, 2, 2));
        check(&parsed).unwrap();
    }

    #[test]
    fn too_old_cli_names_version_and_upgrade_path_against_documented_json() {
        let parsed = parse_system_version(V0_11_0_STOPPED).unwrap();
        let err = check(&parsed).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, VersionError::TooOld { found, .. } if found == Version::new(0, 11, 0))
        );
        assert!(
            message.contains("Apple container 0.11.0 is installed"),
            "{message}"
        );
        assert!(message.contains("1.2.1 or newer"), "{message}");
        assert!(
            message.contains("/usr/local/bin/update-container.sh"),
            "{message}"
        );
        assert!(
            message.contains("https://github.com/apple/container/releases"),
            "{message}"
        );
        assert!(message.contains("brew upgrade container"), "{message}");
        assert!(message.contains("container system stop"), "{message}");
    }

    #[test]
    fn version_1_2_0_is_refused_with_its_reason_against_documented_json() {
        let json = r#"[{"appName":"container","buildType":"release","commit":"c0ffee0","version":"1.2.0"},{"appName":"container-apiserver","buildType":"release","commit":"c0ffee0","version":"container-apiserver version 1.2.0 (build: release, commit: c0ffee0)"}]"#;
        let message = check(&parse_system_version(json).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("Apple container 1.2.0 is installed"),
            "{message}"
        );
        assert!(message.contains("#2041"), "{message}");
    }

    #[test]
    fn a_1_2_0_server_behind_a_new_cli_is_accepted_against_documented_json() {
        // It already applies the path lists the 1.2.1 CLI sends (#1996).
        let json = r#"[{"appName":"container","buildType":"release","commit":"aaaaaaa","version":"1.2.1"},{"appName":"container-apiserver","buildType":"release","commit":"c0ffee0","version":"container-apiserver version 1.2.0 (build: release, commit: c0ffee0)"}]"#;
        assert_eq!(
            check(&parse_system_version(json).unwrap()).unwrap(),
            Supported {
                cli: Version::new(1, 2, 1),
                api_server: Some(Version::new(1, 2, 0)),
            }
        );
    }

    #[test]
    fn old_server_behind_new_cli_is_refused_against_documented_json() {
        let json = r#"[{"appName":"container","buildType":"release","commit":"aaaaaaa","version":"1.2.1"},{"appName":"container-apiserver","buildType":"release","commit":"bbbbbbb","version":"container-apiserver version 1.1.0 (build: release, commit: bbbbbbb)"}]"#;
        let err = check(&parse_system_version(json).unwrap()).unwrap_err();
        assert!(matches!(
            err,
            VersionError::ServerTooOld { found, cli }
                if found == Version::new(1, 1, 0) && cli == Version::new(1, 2, 1)
        ));
        assert!(err.to_string().contains("container system start"));
    }

    #[test]
    fn unversioned_source_build_is_refused_against_documented_json() {
        let json = r#"[{"appName":"container","buildType":"debug","commit":"unspecified","version":"0.0.0"}]"#;
        let err = check(&parse_system_version(json).unwrap()).unwrap_err();
        assert!(matches!(err, VersionError::Unversioned { .. }), "{err}");
    }

    #[test]
    fn commit_only_version_is_unparsable() {
        // `git describe --always` with no reachable tag prints a commit.
        let json = r#"[{"appName":"container","buildType":"release","commit":"af405ff","version":"af405ff"}]"#;
        let err = check(&parse_system_version(json).unwrap()).unwrap_err();
        assert!(err.to_string().contains("`af405ff`"), "{err}");
    }

    #[test]
    fn missing_field_is_named() {
        let json = r#"[{"appName":"container","buildType":"release","commit":"x"}]"#;
        let err = parse_system_version(json).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`container system version --format json`: `[0]` has no field `version`"
        );
        let err = parse_system_version(r#"{"version":"1.2.1"}"#).unwrap_err();
        assert!(err.to_string().contains("expected a JSON array"), "{err}");
        assert!(matches!(
            parse_system_version("[]").unwrap_err(),
            VersionError::Shape(_)
        ));
        assert!(matches!(
            parse_system_version("Error: unknown subcommand").unwrap_err(),
            VersionError::NotJson(_)
        ));
    }

    #[test]
    fn cli_version_line_of_old_releases_against_documented_line() {
        // `ReleaseVersion.singleLine(appName: "container CLI")`, the
        // `--version` text of every release (extras sorted: build, commit).
        let v = parse_cli_version_line(
            "container CLI version 0.9.0 (build: release, commit: 1234abc)\n",
        )
        .unwrap();
        assert_eq!(v, Version::new(0, 9, 0));
        let message = require(v).unwrap_err().to_string();
        // 0.9.0 predates update-container.sh.
        assert!(!message.contains("update-container.sh"), "{message}");
        assert!(
            message.contains("github.com/apple/container/releases"),
            "{message}"
        );
        assert!(parse_cli_version_line("something else").is_err());
        require(
            parse_cli_version_line("container CLI version 1.2.2 (build: release, commit: af405ff)")
                .unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn versions_order_numerically() {
        assert!(Version::new(1, 10, 0) > Version::new(1, 2, 1));
        assert!(Version::new(0, 12, 3) < MINIMUM);
        assert!(Version::new(2, 0, 0) > MINIMUM);
        assert_eq!(
            parse_release("container", "v1.3").unwrap(),
            Version::new(1, 3, 0)
        );
        assert!(parse_release("container", "1.2.x").is_err());
        assert!(parse_release("container", "1.2.3.4").is_err());
    }
}
