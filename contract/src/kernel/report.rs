//! Check results, as a person reads them and as JSON for tools.

use serde::Serialize;

/// The kernel recipe built into kina that `kina kernel build` compiles
/// (`kernels/cilium-kpr.toml`), and the profiles its `[build]` passes.
pub const BUILD_RECIPE: &str = "cilium-kpr";
const BUILD_RECIPE_PROFILES: &[&str] = &["kubernetes-base", "cilium", "cilium-kpr"];

/// How to get a kernel that passes `profile`: the built-in build recipe
/// when it covers the profile, else a copy of it naming the profile.
pub fn build_way_out(profile: &str) -> String {
    if BUILD_RECIPE_PROFILES.contains(&profile) {
        format!(
            "build one with `kina kernel build --recipe {BUILD_RECIPE}` (on Linux; a Mac pulls a kernel built from it with `kina kernel pull`)"
        )
    } else {
        format!(
            "build one with `kina kernel build --recipe FILE`, FILE a copy of the built-in {BUILD_RECIPE} recipe whose [build] profiles name {profile}"
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Presence {
    /// A runtime probe succeeded.
    Present,
    /// The config says built in (`=y`).
    Builtin,
    /// The config says module (`=m`): present once the module is loaded.
    Module,
    /// Proven absent, by a probe or by the config.
    Absent,
    /// Neither a probe nor a config could tell.
    Unknown,
}

#[derive(Clone, Debug, Serialize)]
pub struct OptionResult {
    /// The profile that asks for the option (an included one, maybe).
    pub profile: String,
    pub symbols: Vec<String>,
    pub all: bool,
    pub required: bool,
    pub why: String,
    pub modules: Vec<String>,
    pub presence: Presence,
    /// `probe:<what answered>` or `config:<file>`, with any fallback reason.
    pub evidence: String,
}

impl OptionResult {
    pub fn config_names(&self) -> String {
        let names: Vec<String> = self.symbols.iter().map(|s| format!("CONFIG_{s}")).collect();
        names.join(if self.all { " and " } else { " or " })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    /// Nothing required is absent, but something required could not be verified.
    Unverified,
    Fail,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProfileReport {
    pub name: String,
    pub verdict: Verdict,
    pub options: Vec<OptionResult>,
}

impl ProfileReport {
    pub fn new(name: &str, options: Vec<OptionResult>) -> Self {
        let required = || options.iter().filter(|o| o.required);
        let verdict = if required().any(|o| o.presence == Presence::Absent) {
            Verdict::Fail
        } else if required().any(|o| o.presence == Presence::Unknown) {
            Verdict::Unverified
        } else {
            Verdict::Pass
        };
        Self {
            name: name.to_string(),
            verdict,
            options,
        }
    }

    pub fn missing(&self) -> impl Iterator<Item = &OptionResult> {
        self.options
            .iter()
            .filter(|o| o.required && o.presence == Presence::Absent)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub config_source: Option<String>,
    /// `CONFIG_MODULES`: false on Apple's kernels, where kina loads nothing.
    pub modules_supported: Option<bool>,
    pub profiles: Vec<ProfileReport>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.profiles.iter().all(|p| p.verdict != Verdict::Fail)
    }

    /// One line per profile, then each missing required option with why it
    /// is needed, then the way out: a kernel that has it, or a profile
    /// (CNI) that passes on this kernel.
    pub fn render(&self, passing_alternatives: &[String]) -> String {
        let mut out = String::new();
        if let Some(source) = &self.config_source {
            out.push_str(&format!("kernel config: {source}"));
            match self.modules_supported {
                Some(false) => out.push_str(" (no module support: nothing to load)\n"),
                _ => out.push('\n'),
            }
        }
        for p in &self.profiles {
            let word = match p.verdict {
                Verdict::Pass => "PASS",
                Verdict::Unverified => "UNVERIFIED",
                Verdict::Fail => "FAIL",
            };
            out.push_str(&format!("{word:<10} {}\n", p.name));
            for o in p.missing() {
                out.push_str(&format!(
                    "  missing {} [{}]: {} ({})\n",
                    o.config_names(),
                    o.profile,
                    o.why,
                    o.evidence
                ));
            }
            for o in p
                .options
                .iter()
                .filter(|o| o.required && o.presence == Presence::Unknown)
            {
                out.push_str(&format!(
                    "  unverified {}: {}\n",
                    o.config_names(),
                    o.evidence
                ));
            }
            for o in p
                .options
                .iter()
                .filter(|o| !o.required && o.presence == Presence::Absent)
            {
                out.push_str(&format!(
                    "  optional, absent {}: {}\n",
                    o.config_names(),
                    o.why
                ));
            }
            if p.verdict == Verdict::Fail {
                let names: Vec<String> = p.missing().map(OptionResult::config_names).collect();
                out.push_str(&format!(
                    "  way out: use a kernel built with {}: {}",
                    names.join(", "),
                    build_way_out(&p.name)
                ));
                let others: Vec<&String> = passing_alternatives
                    .iter()
                    .filter(|a| **a != p.name)
                    .collect();
                if !others.is_empty() {
                    out.push_str(&format!(
                        ", or a network whose profile passes on this kernel: {}",
                        others
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                out.push('\n');
            }
        }
        out
    }
}
