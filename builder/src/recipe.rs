//! Recipes: what a node image is made of, as a person writes it.
//!
//! A recipe names versions and checksums; it never names a mirror host that
//! must be reachable, so the same recipe builds from any Debian mirror and from
//! loopback mirrors in tests. `kina image lock` turns it into a `Lock`, and a
//! build reads only the lock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::platform::Arch;

pub const RECIPE_SCHEMA: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Format version of this file; kina refuses versions it does not know.
    pub schema: u32,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Default image reference, e.g. `kina.local/node:base`.
    pub tag: String,
    pub architectures: Vec<Arch>,
    pub debian: DebianSpec,
    #[serde(default)]
    pub runtime: RuntimeSpec,
    pub kubernetes: Option<KubernetesSpec>,
    pub kina_init: KinaInitSpec,
    /// Paths left out of the image the way dpkg's `path-exclude` leaves them
    /// out (dpkg(1), `--path-exclude`): absent from the image, still listed in
    /// the dpkg database, and written to `/etc/dpkg/dpkg.cfg.d/` so packages
    /// installed later in a node leave them out too. Groups apply in order,
    /// and within a group excludes before includes, so the last matching
    /// pattern decides, as in dpkg.
    #[serde(default)]
    pub leave_out: Vec<LeaveOut>,
}

/// One reason to leave paths out, with the dpkg path filters that do it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaveOut {
    /// Short name shown by `kina image inspect`, e.g. `containerd-old-shims`.
    pub name: String,
    /// Why no node needs these paths; shown by `kina image inspect` and
    /// written beside the filters in the node's dpkg configuration.
    pub reason: String,
    /// fnmatch(3) patterns on absolute paths, as dpkg's `path-exclude` takes
    /// them: `*` and `?` also match `/`.
    pub path_exclude: Vec<String>,
    /// Patterns brought back after this group's excludes (`path-include`).
    #[serde(default)]
    pub path_include: Vec<String>,
    /// Set for a group that names single files (binaries a node never runs):
    /// each pattern must then leave out at least one path of the image, so a
    /// recipe cannot claim to leave out what the packages no longer ship.
    #[serde(default)]
    pub must_match: bool,
}

/// The Debian part: where packages come from, who signs them, which to install.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebianSpec {
    /// Base URL of the `debian` archive; overridden by `--mirror` or
    /// `KINA_DEBIAN_MIRROR`, defaulted from the host's apt configuration.
    pub mirror: Option<String>,
    /// Base URL of the `debian-security` archive; defaults like `mirror`.
    pub security_mirror: Option<String>,
    pub sources: Vec<DebianSource>,
    /// Names of archive keys shipped with kina (`builder/keys/<name>.pgp`).
    pub keyring: Vec<String>,
    /// Packages of the node on top of the Essential and `Priority: required` base.
    pub packages: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DebianArchive {
    Debian,
    DebianSecurity,
}

impl DebianArchive {
    pub fn name(self) -> &'static str {
        match self {
            DebianArchive::Debian => "debian",
            DebianArchive::DebianSecurity => "debian-security",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebianSource {
    pub archive: DebianArchive,
    pub suites: Vec<String>,
    pub components: Vec<String>,
}

/// containerd, runc, CNI plugins and crictl: from Debian or from upstream releases.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSpec {
    #[serde(default)]
    pub debian_packages: Vec<String>,
    #[serde(default)]
    pub artifacts: Vec<ArtifactSpec>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSpec {
    /// Release tag as upstream spells it, e.g. `v1.34.2`.
    pub version: String,
    pub artifacts: Vec<ArtifactSpec>,
    /// Control-plane images preloaded into the node, pulled by digest.
    #[serde(default)]
    pub images: Vec<ImageSpec>,
}

/// A file from outside Debian, pinned per architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSpec {
    pub name: String,
    pub version: String,
    /// URL template: `{version}` and `{arch}` (Debian/Go spelling) are replaced.
    pub url: String,
    pub sha256: BTreeMap<Arch, Sha256Digest>,
    pub install: Install,
}

/// How an artifact lands in the root filesystem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Install {
    /// A single executable file at `path` (absolute in the node).
    File {
        path: String,
        #[serde(default = "default_exec_mode")]
        mode: u32,
    },
    /// A `.tar.gz` archive unpacked under `dest`. `files`, when given, lists the
    /// archive members to keep (after stripping), so a plugin bundle installs
    /// only the plugins a node uses.
    TarGz {
        dest: String,
        #[serde(default)]
        strip_components: u32,
        #[serde(default)]
        files: Vec<String>,
    },
}

fn default_exec_mode() -> u32 {
    0o755
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Reference with tag, e.g. `registry.k8s.io/kube-apiserver:v1.34.2`.
    pub reference: String,
    /// Digest of the multi-arch index (or single manifest) the tag points to.
    pub digest: Sha256Digest,
}

/// Where each architecture's kina-init binary comes from. An image is never
/// assembled for a platform without one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "kebab-case", deny_unknown_fields)]
pub enum KinaInitSpec {
    /// Built from this workspace. `path` is a template relative to the recipe
    /// file, `{rust_target}` replaced; the binary is hashed at build time and
    /// its digest recorded in the image labels and SBOM.
    Local { path: String },
    /// A released binary, pinned per architecture.
    Url {
        url: String,
        version: String,
        sha256: BTreeMap<Arch, Sha256Digest>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("cannot read recipe {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("recipe {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("recipe {path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

/// A recipe with the bytes it was read from: the lock records their digest so
/// an edited recipe is noticed.
#[derive(Clone, Debug)]
pub struct LoadedRecipe {
    pub recipe: Recipe,
    /// The recipe's file, or for a recipe built into kina, the name it is
    /// shown under in messages.
    pub path: PathBuf,
    pub sha256: Sha256Digest,
    /// Where relative paths in the recipe resolve (see [`LoadedRecipe::dir`]).
    dir: PathBuf,
}

impl LoadedRecipe {
    pub fn load(path: &Path) -> Result<Self, RecipeError> {
        let bytes = std::fs::read(path).map_err(|source| RecipeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(path, &bytes)
    }

    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, RecipeError> {
        let text = std::str::from_utf8(bytes).map_err(|e| RecipeError::Invalid {
            path: path.to_path_buf(),
            problem: format!("not UTF-8: {e}"),
        })?;
        let recipe: Recipe = toml::from_str(text).map_err(|source| RecipeError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        recipe.validate().map_err(|problem| RecipeError::Invalid {
            path: path.to_path_buf(),
            problem,
        })?;
        Ok(Self {
            recipe,
            path: path.to_path_buf(),
            sha256: Sha256Digest::of(bytes),
            dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        })
    }

    /// A recipe that has no file of its own (one built into kina): `label`
    /// names it in messages, and its relative paths (a local kina-init, a
    /// keyring file) resolve against `dir`, the folder its file came from.
    pub fn from_text_in(label: &Path, text: &str, dir: &Path) -> Result<Self, RecipeError> {
        let mut loaded = Self::from_bytes(label, text.as_bytes())?;
        loaded.dir = dir.to_path_buf();
        Ok(loaded)
    }

    /// The directory relative paths in the recipe are resolved against: the
    /// recipe file's own.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Recipe {
    /// Checks what serde cannot: consistency between sections. Each problem
    /// names the field and what to write instead.
    pub fn validate(&self) -> Result<(), String> {
        if self.schema != RECIPE_SCHEMA {
            return Err(format!(
                "schema = {} is not supported by this kina (it reads schema {RECIPE_SCHEMA}); upgrade kina or rewrite the recipe",
                self.schema
            ));
        }
        if self.architectures.is_empty() {
            return Err("`architectures` is empty: list at least one of amd64, arm64".into());
        }
        if self.debian.sources.is_empty() {
            return Err("`debian.sources` is empty: name at least one suite".into());
        }
        for source in &self.debian.sources {
            if source.suites.is_empty() || source.components.is_empty() {
                return Err(format!(
                    "a `debian.sources` entry for archive `{}` needs at least one suite and one component",
                    source.archive.name()
                ));
            }
        }
        if self.debian.keyring.is_empty() {
            return Err(
                "`debian.keyring` is empty: name the archive keys that sign these suites".into(),
            );
        }
        let mut artifacts: Vec<&ArtifactSpec> = self.runtime.artifacts.iter().collect();
        if let Some(k8s) = &self.kubernetes {
            if !k8s.version.starts_with('v') {
                return Err(format!(
                    "kubernetes.version `{}` must be an upstream release tag such as v1.34.2",
                    k8s.version
                ));
            }
            artifacts.extend(&k8s.artifacts);
        }
        let mut names = std::collections::BTreeSet::new();
        for artifact in artifacts {
            if !names.insert(artifact.name.as_str()) {
                return Err(format!("artifact `{}` is listed twice", artifact.name));
            }
            for arch in &self.architectures {
                if !artifact.sha256.contains_key(arch) {
                    return Err(format!(
                        "artifact `{}` has no sha256 for {arch}; add `sha256.{arch}` or drop {arch} from `architectures`",
                        artifact.name
                    ));
                }
            }
        }
        let mut groups = std::collections::BTreeSet::new();
        for group in &self.leave_out {
            if group.name.is_empty()
                || !group
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(format!(
                    "leave_out name `{}` must be non-empty lowercase letters, digits and `-`",
                    group.name
                ));
            }
            if !groups.insert(group.name.as_str()) {
                return Err(format!("leave_out `{}` is listed twice", group.name));
            }
            if group.reason.trim().is_empty() {
                return Err(format!(
                    "leave_out `{}` has no reason: say why no node needs these paths",
                    group.name
                ));
            }
            if group.path_exclude.is_empty() {
                return Err(format!(
                    "leave_out `{}` has no path_exclude patterns",
                    group.name
                ));
            }
            for pattern in group.path_exclude.iter().chain(&group.path_include) {
                if !pattern.starts_with('/') || pattern.contains('\n') {
                    return Err(format!(
                        "leave_out `{}`: pattern `{pattern}` must be one absolute path pattern starting with `/`, as dpkg matches them",
                        group.name
                    ));
                }
            }
        }
        if let KinaInitSpec::Url { sha256, .. } = &self.kina_init {
            for arch in &self.architectures {
                if !sha256.contains_key(arch) {
                    return Err(format!(
                        "kina_init has no sha256 for {arch}: an image is never assembled without its init"
                    ));
                }
            }
        }
        Ok(())
    }
}

impl ArtifactSpec {
    pub fn url_for(&self, arch: Arch) -> String {
        expand_template(&self.url, &self.version, arch)
    }
}

/// Replaces `{version}` and `{arch}` the way upstream release URLs spell them.
pub fn expand_template(template: &str, version: &str, arch: Arch) -> String {
    template
        .replace("{version}", version)
        .replace("{arch}", arch.debian())
        .replace("{rust_target}", arch.rust_target())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
schema = 1
name = "t"
tag = "kina.local/node:t"
architectures = ["amd64", "arm64"]
[debian]
sources = [{ archive = "debian", suites = ["trixie"], components = ["main"] }]
keyring = ["debian-archive-trixie-automatic"]
packages = ["iproute2"]
[kina_init]
source = "local"
path = "../target/{rust_target}/release/kina-init"
"#;

    #[test]
    fn a_minimal_recipe_parses() {
        let r = LoadedRecipe::from_bytes(Path::new("t.toml"), MINIMAL.as_bytes()).unwrap();
        assert_eq!(r.recipe.architectures, [Arch::Amd64, Arch::Arm64]);
        assert!(r.recipe.kubernetes.is_none());
    }

    #[test]
    fn unknown_fields_are_refused_with_the_file_named() {
        let text = MINIMAL.replace("name = \"t\"", "name = \"t\"\nnmae = \"typo\"");
        let err = LoadedRecipe::from_bytes(Path::new("bad.toml"), text.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.toml") && err.contains("nmae"), "{err}");
    }

    #[test]
    fn an_artifact_without_a_checksum_for_a_target_arch_is_refused() {
        let text = format!(
            "{MINIMAL}\n[[runtime.artifacts]]\nname = \"runc\"\nversion = \"1.3.0\"\nurl = \"https://example.invalid/runc.{{arch}}\"\nsha256.amd64 = \"{}\"\ninstall = {{ kind = \"file\", path = \"/usr/sbin/runc\" }}\n",
            Sha256Digest::of(b"x").hex()
        );
        let err = LoadedRecipe::from_bytes(Path::new("r.toml"), text.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("runc") && err.contains("arm64"), "{err}");
    }

    #[test]
    fn templates_expand_version_and_arch() {
        assert_eq!(
            expand_template(
                "https://h/{version}/bin/linux/{arch}/kubeadm",
                "v1.34.2",
                Arch::Arm64
            ),
            "https://h/v1.34.2/bin/linux/arm64/kubeadm"
        );
    }
}
