//! Kernel feature profiles, as data in `kernels/profiles/*.toml`, compiled
//! into the binary so host and node agree on them.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The shipped profiles, by name.
const SHIPPED: &[(&str, &str)] = &[
    (
        "kubernetes-base",
        include_str!("../../../kernels/profiles/kubernetes-base.toml"),
    ),
    ("ptp", include_str!("../../../kernels/profiles/ptp.toml")),
    (
        "bridge",
        include_str!("../../../kernels/profiles/bridge.toml"),
    ),
    (
        "flannel-vxlan",
        include_str!("../../../kernels/profiles/flannel-vxlan.toml"),
    ),
    (
        "cilium",
        include_str!("../../../kernels/profiles/cilium.toml"),
    ),
    (
        "cilium-kpr",
        include_str!("../../../kernels/profiles/cilium-kpr.toml"),
    ),
];

/// Where a node keeps site profiles (see [`ProfileSet::add_dir`]).
pub const LOCAL_PROFILES_DIR: &str = "/etc/kina/kernel-profiles";

/// How a node confirms an option at run time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Probe {
    /// No harmless runtime probe exists; only the config can tell.
    ConfigOnly,
    /// A file under /proc or /sys that exists only with the feature.
    ProcFile { path: String },
    /// A name in /proc/filesystems (built in, or its module loaded).
    Filesystem { name: String },
    /// A cgroup v2 controller available to this cgroup.
    CgroupController { name: String },
    /// socket(2) with this family (inet, netlink, alg, …).
    Socket {
        family: String,
        #[serde(default, rename = "type")]
        socket_type: Option<String>,
        #[serde(default)]
        protocol: Option<String>,
    },
    /// Creating (and deleting) a link of this type in a scratch network namespace.
    NetlinkLink {
        #[serde(rename = "type")]
        link_type: String,
    },
    /// A system call that answers ENOSYS when compiled out.
    Syscall { name: String },
    /// Loading a trivial BPF program and reading back a non-zero JIT size, as
    /// Cilium's HaveBPFJIT does.
    BpfJit,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionSpec {
    /// Kernel symbols without `CONFIG_`. Alternatives (aliases, or any one of a
    /// group) unless `all` is set.
    pub symbols: Vec<String>,
    #[serde(default)]
    pub all: bool,
    #[serde(default = "yes")]
    pub required: bool,
    pub why: String,
    /// Modules that provide the option when it is `=m`, for the modules phase.
    #[serde(default)]
    pub modules: Vec<String>,
    pub probe: Probe,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(rename = "option")]
    pub options: Vec<OptionSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("kernel profile {file}: {message}")]
    Parse { file: String, message: String },
    #[error("unknown kernel profile `{name}`; kina knows {}", known().join(", "))]
    Unknown { name: String },
}

pub fn known() -> Vec<&'static str> {
    SHIPPED.iter().map(|(n, _)| *n).collect()
}

/// All shipped profiles, parsed.
#[derive(Clone, Debug)]
pub struct ProfileSet {
    profiles: Vec<Profile>,
}

impl ProfileSet {
    pub fn shipped() -> Result<Self, ProfileError> {
        let mut profiles = Vec::new();
        for (name, text) in SHIPPED {
            let profile: Profile = toml::from_str(text).map_err(|e| ProfileError::Parse {
                file: format!("kernels/profiles/{name}.toml"),
                message: e.to_string(),
            })?;
            if profile.name != *name {
                return Err(ProfileError::Parse {
                    file: format!("kernels/profiles/{name}.toml"),
                    message: format!("declares name `{}`", profile.name),
                });
            }
            profiles.push(profile);
        }
        let set = Self { profiles };
        for p in &set.profiles {
            for inc in &p.include {
                set.get(inc).map_err(|_| ProfileError::Parse {
                    file: format!("kernels/profiles/{}.toml", p.name),
                    message: format!("includes unknown profile `{inc}`"),
                })?;
            }
        }
        Ok(set)
    }

    /// Adds the site's own profiles from `*.toml` files in `dir` (inside a
    /// node: [`LOCAL_PROFILES_DIR`]), for a network kina ships no profile
    /// for. They may include shipped profiles but not replace one: a shipped
    /// name means what kina says it means. A missing directory adds nothing.
    pub fn add_dir(&mut self, dir: &std::path::Path) -> Result<usize, ProfileError> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(0);
        };
        let mut files: Vec<std::path::PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut added = 0;
        for path in files {
            let file = path.display().to_string();
            let parse = |message: String| ProfileError::Parse {
                file: file.clone(),
                message,
            };
            let text = std::fs::read_to_string(&path).map_err(|e| parse(e.to_string()))?;
            let profile: Profile = toml::from_str(&text).map_err(|e| parse(e.to_string()))?;
            if self.get(&profile.name).is_ok() {
                return Err(parse(format!(
                    "profile `{}` is already defined; give a site profile its own name",
                    profile.name
                )));
            }
            for inc in &profile.include {
                self.get(inc)
                    .map_err(|_| parse(format!("includes unknown profile `{inc}`")))?;
            }
            self.profiles.push(profile);
            added += 1;
        }
        Ok(added)
    }

    pub fn get(&self, name: &str) -> Result<&Profile, ProfileError> {
        self.profiles
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| ProfileError::Unknown {
                name: name.to_string(),
            })
    }

    pub fn all(&self) -> &[Profile] {
        &self.profiles
    }

    /// The profile's own options, preceded by those of what it includes
    /// (depth first, each profile once), so `cilium-kpr` checks everything
    /// Cilium and Kubernetes need.
    pub fn expanded(&self, name: &str) -> Result<Vec<(&str, &OptionSpec)>, ProfileError> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        self.expand_into(name, &mut seen, &mut out)?;
        Ok(out)
    }

    fn expand_into<'a>(
        &'a self,
        name: &str,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<(&'a str, &'a OptionSpec)>,
    ) -> Result<(), ProfileError> {
        if !seen.insert(name.to_string()) {
            return Ok(());
        }
        let profile = self.get(name)?;
        for inc in &profile.include {
            self.expand_into(inc, seen, out)?;
        }
        for option in &profile.options {
            out.push((profile.name.as_str(), option));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_profile_parses_and_its_includes_exist() {
        let set = ProfileSet::shipped().unwrap();
        assert_eq!(set.all().len(), 6);
        for p in set.all() {
            assert!(!p.options.is_empty(), "{}", p.name);
        }
    }

    #[test]
    fn includes_expand_depth_first_without_repeats() {
        let set = ProfileSet::shipped().unwrap();
        let kpr = set.expanded("cilium-kpr").unwrap();
        let owners: Vec<&str> = kpr.iter().map(|(p, _)| *p).collect();
        assert_eq!(owners.first(), Some(&"kubernetes-base"));
        assert_eq!(owners.last(), Some(&"cilium-kpr"));
        let flannel = set.expanded("flannel-vxlan").unwrap();
        assert_eq!(
            flannel
                .iter()
                .filter(|(p, _)| *p == "kubernetes-base")
                .count(),
            set.get("kubernetes-base").unwrap().options.len()
        );
    }

    #[test]
    fn an_unknown_profile_lists_the_known_ones() {
        let err = ProfileSet::shipped()
            .unwrap()
            .expanded("calico")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("calico") && err.contains("flannel-vxlan"),
            "{err}"
        );
    }

    #[test]
    fn site_profiles_are_added_but_cannot_replace_a_shipped_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("dsa.toml"),
            "name = \"site-dsa\"\ndescription = \"switch ports\"\ninclude = [\"ptp\"]\n[[option]]\nsymbols = [\"NET_DSA\"]\nwhy = \"the site's switch\"\nprobe = { kind = \"config-only\" }\n",
        )
        .unwrap();
        let mut set = ProfileSet::shipped().unwrap();
        assert_eq!(set.add_dir(dir.path()).unwrap(), 1);
        let names: Vec<&str> = set
            .expanded("site-dsa")
            .unwrap()
            .iter()
            .map(|(p, _)| *p)
            .collect();
        assert!(
            names.contains(&"ptp") && names.contains(&"site-dsa"),
            "{names:?}"
        );
        std::fs::write(
            dir.path().join("ptp.toml"),
            "name = \"ptp\"\ndescription = \"mine\"\n[[option]]\nsymbols = [\"X\"]\nwhy = \"x\"\nprobe = { kind = \"config-only\" }\n",
        )
        .unwrap();
        let err = ProfileSet::shipped()
            .unwrap()
            .add_dir(dir.path())
            .unwrap_err();
        assert!(err.to_string().contains("already defined"), "{err}");
        assert_eq!(
            ProfileSet::shipped()
                .unwrap()
                .add_dir(&dir.path().join("none"))
                .unwrap(),
            0
        );
    }
}
