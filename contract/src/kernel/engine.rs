//! Evaluating profiles: runtime probes first where they exist and are
//! permitted, the kernel config otherwise, each result labelled with its
//! evidence.

use super::config::{KernelConfig, Tristate};
use super::profile::{OptionSpec, Probe, ProfileError, ProfileSet};
use super::report::{OptionResult, Presence, ProfileReport, Report};

/// What a runtime probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The feature answered: proven present.
    Present(String),
    /// A definite absence error (ENOENT, EOPNOTSUPP, EAFNOSUPPORT, ENOSYS,
    /// EPROTONOSUPPORT): proven absent. The string names the error.
    Absent(String),
    /// EPERM, EACCES, EROFS, or no way to probe here: nothing is proven.
    CannotVerify(String),
    /// Not loaded, and the running kernel's module for it is on the disk:
    /// a module, which the node's modules phase loads. The string names
    /// the file. Probing it would load it (through the kernel's modprobe
    /// helper), which a check must not do.
    Loadable(String),
}

/// Runs probes inside a node. The host has none: it checks config files.
pub trait ProbeRunner {
    fn run(&self, probe: &Probe) -> ProbeOutcome;
}

/// Answers each distinct probe once per check. A node's profiles overlap
/// (`ptp` includes `kubernetes-base`, which a node also names itself, and
/// two options can share a probe), and a probe's answer cannot change
/// within one check, so asking the kernel again only costs time: about half
/// the probes of a default node's boot were repeats.
struct OncePerProbe<'a> {
    runner: &'a dyn ProbeRunner,
    answered: std::cell::RefCell<Vec<(Probe, ProbeOutcome)>>,
}

impl ProbeRunner for OncePerProbe<'_> {
    fn run(&self, probe: &Probe) -> ProbeOutcome {
        if let Some((_, outcome)) = self.answered.borrow().iter().find(|(p, _)| p == probe) {
            return outcome.clone();
        }
        let outcome = self.runner.run(probe);
        self.answered
            .borrow_mut()
            .push((probe.clone(), outcome.clone()));
        outcome
    }
}

/// Checks `profiles` with `probes` (inside a node) and/or `config`.
pub fn check(
    set: &ProfileSet,
    profiles: &[String],
    config: Option<&KernelConfig>,
    probes: Option<&dyn ProbeRunner>,
) -> Result<Report, ProfileError> {
    let once = probes.map(|runner| OncePerProbe {
        runner,
        answered: std::cell::RefCell::default(),
    });
    let probes = once.as_ref().map(|o| o as &dyn ProbeRunner);
    let mut reports = Vec::new();
    for name in profiles {
        let options = set.expanded(name)?;
        let results: Vec<OptionResult> = options
            .iter()
            .map(|(owner, option)| evaluate(owner, option, config, probes))
            .collect();
        reports.push(ProfileReport::new(name, results));
    }
    Ok(Report {
        config_source: config.map(|c| c.source.clone()),
        modules_supported: config.map(KernelConfig::modules_supported),
        profiles: reports,
    })
}

fn from_config(
    option: &OptionSpec,
    config: &KernelConfig,
    note: Option<&str>,
) -> (Presence, String) {
    let states: Vec<(String, Tristate)> = option
        .symbols
        .iter()
        .map(|s| (s.clone(), config.get(s)))
        .collect();
    let evidence = match note {
        Some(n) => format!("config:{} ({n})", config.source),
        None => format!("config:{}", config.source),
    };
    let present = |t: &Tristate| *t != Tristate::Unset;
    let ok = if option.all {
        states.iter().all(|(_, t)| present(t))
    } else {
        states.iter().any(|(_, t)| present(t))
    };
    if !ok {
        return (Presence::Absent, evidence);
    }
    // Built in if every needed symbol is; a module otherwise.
    let module = if option.all {
        states.iter().any(|(_, t)| *t == Tristate::Module)
    } else {
        !states.iter().any(|(_, t)| *t == Tristate::Builtin)
    };
    (
        if module {
            Presence::Module
        } else {
            Presence::Builtin
        },
        evidence,
    )
}

fn evaluate(
    owner: &str,
    option: &OptionSpec,
    config: Option<&KernelConfig>,
    probes: Option<&dyn ProbeRunner>,
) -> OptionResult {
    let (presence, evidence) = match (probes, &option.probe) {
        (Some(runner), probe) if *probe != Probe::ConfigOnly => match runner.run(probe) {
            ProbeOutcome::Present(how) => (Presence::Present, format!("probe:{how}")),
            ProbeOutcome::Loadable(how) => (Presence::Module, format!("probe:{how}")),
            // Before the modules phase a `=m` feature is not loaded yet: the
            // probe cannot see it, and the config says it will be there.
            ProbeOutcome::Absent(how) => match config.map(|c| (c, from_config(option, c, None))) {
                Some((c, (Presence::Module, _))) if c.modules_supported() => (
                    Presence::Module,
                    format!("config:{} (module not loaded yet; probe: {how})", c.source),
                ),
                _ => (Presence::Absent, format!("probe:{how}")),
            },
            ProbeOutcome::CannotVerify(why) => match config {
                Some(c) => from_config(option, c, Some(&format!("probe could not verify: {why}"))),
                None => (
                    Presence::Unknown,
                    format!("probe could not verify: {why}; no kernel config"),
                ),
            },
        },
        _ => match config {
            Some(c) => from_config(option, c, None),
            None => (
                Presence::Unknown,
                "no probe and no kernel config".to_string(),
            ),
        },
    };
    OptionResult {
        profile: owner.to_string(),
        symbols: option.symbols.clone(),
        all: option.all,
        required: option.required,
        why: option.why.clone(),
        modules: option.modules.clone(),
        presence,
        evidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> KernelConfig {
        KernelConfig::from_bytes(text.as_bytes(), "test.config").unwrap()
    }

    /// A stand-in for a node's probes with fixed answers (test double: real
    /// probes run in kina-init against the running kernel).
    struct FixedProbes(ProbeOutcome);
    impl ProbeRunner for FixedProbes {
        fn run(&self, _: &Probe) -> ProbeOutcome {
            self.0.clone()
        }
    }

    fn option(symbols: &[&str], all: bool, probe: Probe) -> OptionSpec {
        OptionSpec {
            symbols: symbols.iter().map(|s| s.to_string()).collect(),
            all,
            required: true,
            why: "test".into(),
            modules: vec![],
            probe,
        }
    }

    #[test]
    fn aliases_need_any_one_symbol_and_all_groups_need_every_one() {
        let c = config("CONFIG_A=m\n# CONFIG_B is not set\nCONFIG_C=y\n");
        assert_eq!(
            evaluate(
                "p",
                &option(&["A", "B"], false, Probe::ConfigOnly),
                Some(&c),
                None
            )
            .presence,
            Presence::Module
        );
        assert_eq!(
            evaluate(
                "p",
                &option(&["A", "C"], false, Probe::ConfigOnly),
                Some(&c),
                None
            )
            .presence,
            Presence::Builtin
        );
        assert_eq!(
            evaluate(
                "p",
                &option(&["A", "B"], true, Probe::ConfigOnly),
                Some(&c),
                None
            )
            .presence,
            Presence::Absent
        );
        assert_eq!(
            evaluate(
                "p",
                &option(&["A", "C"], true, Probe::ConfigOnly),
                Some(&c),
                None
            )
            .presence,
            Presence::Module
        );
    }

    #[test]
    fn a_probe_result_beats_the_config_and_a_permission_error_falls_back_labelled() {
        let c = config("CONFIG_VETH=y\n");
        let spec = option(
            &["VETH"],
            false,
            Probe::NetlinkLink {
                link_type: "veth".into(),
            },
        );
        let absent = FixedProbes(ProbeOutcome::Absent("RTM_NEWLINK: EOPNOTSUPP".into()));
        let r = evaluate("p", &spec, Some(&c), Some(&absent));
        assert_eq!(r.presence, Presence::Absent);
        assert!(r.evidence.starts_with("probe:"));
        let denied = FixedProbes(ProbeOutcome::CannotVerify("EPERM".into()));
        let r = evaluate("p", &spec, Some(&c), Some(&denied));
        assert_eq!(r.presence, Presence::Builtin);
        assert_eq!(
            r.evidence,
            "config:test.config (probe could not verify: EPERM)"
        );
        let r = evaluate("p", &spec, None, Some(&denied));
        assert_eq!(r.presence, Presence::Unknown);
    }

    #[test]
    fn a_loadable_module_is_a_module_on_the_probes_word_with_or_without_a_config() {
        let spec = option(
            &["VETH"],
            false,
            Probe::NetlinkLink {
                link_type: "veth".into(),
            },
        );
        let loadable = FixedProbes(ProbeOutcome::Loadable(
            "veth not loaded yet, its module is /lib/modules/6.12/veth.ko.xz".into(),
        ));
        for c in [None, Some(config("CONFIG_VETH=y\n"))] {
            let r = evaluate("p", &spec, c.as_ref(), Some(&loadable));
            assert_eq!(r.presence, Presence::Module);
            assert!(
                r.evidence.starts_with("probe:veth not loaded yet"),
                "{}",
                r.evidence
            );
        }
    }

    #[test]
    fn a_module_not_loaded_yet_counts_as_a_module_where_modules_work() {
        let spec = option(
            &["VETH"],
            false,
            Probe::NetlinkLink {
                link_type: "veth".into(),
            },
        );
        let absent = FixedProbes(ProbeOutcome::Absent("Unknown device type".into()));
        let with_modules = config("CONFIG_MODULES=y\nCONFIG_VETH=m\n");
        assert_eq!(
            evaluate("p", &spec, Some(&with_modules), Some(&absent)).presence,
            Presence::Module
        );
        let without = config("CONFIG_VETH=m\n");
        assert_eq!(
            evaluate("p", &spec, Some(&without), Some(&absent)).presence,
            Presence::Absent
        );
    }

    /// A stand-in for a node's probes that answers by the probe's kind and
    /// counts every question (test double: real probes need a node).
    #[derive(Default)]
    struct CountingProbes(std::cell::RefCell<Vec<Probe>>);
    impl ProbeRunner for CountingProbes {
        fn run(&self, probe: &Probe) -> ProbeOutcome {
            self.0.borrow_mut().push(probe.clone());
            match probe {
                Probe::CgroupController { name } if name == "cpuset" => {
                    ProbeOutcome::CannotVerify("not delegated".into())
                }
                Probe::Filesystem { name } if name == "mqueue" => {
                    ProbeOutcome::Absent("not in /proc/filesystems".into())
                }
                other => ProbeOutcome::Present(format!("{other:?}")),
            }
        }
    }

    #[test]
    fn overlapping_profiles_ask_each_probe_once_and_report_every_option() {
        let set = ProfileSet::shipped().unwrap();
        let c = config("CONFIG_MODULES=y\nCONFIG_CPUSETS=y\nCONFIG_POSIX_MQUEUE=m\n");
        let profiles = ["kubernetes-base".to_string(), "ptp".to_string()];
        let probes = CountingProbes::default();
        let report = check(&set, &profiles, Some(&c), Some(&probes)).unwrap();
        let asked = probes.0.borrow();
        for (i, probe) in asked.iter().enumerate() {
            assert!(!asked[..i].contains(probe), "{probe:?} asked twice");
        }
        // Every option of both profiles is reported, with what a runner
        // asked afresh for each option answers.
        let mut expected = Vec::new();
        for name in &profiles {
            for (owner, option) in set.expanded(name).unwrap() {
                expected.push(evaluate(
                    owner,
                    option,
                    Some(&c),
                    Some(&CountingProbes::default()),
                ));
            }
        }
        let reported: Vec<&OptionResult> =
            report.profiles.iter().flat_map(|p| &p.options).collect();
        assert_eq!(reported.len(), expected.len());
        assert!(
            asked.len() < expected.len() / 2,
            "{} probes for {} options",
            asked.len(),
            expected.len()
        );
        for (got, want) in reported.iter().zip(&expected) {
            assert_eq!(
                (&got.symbols, got.presence, &got.evidence),
                (&want.symbols, want.presence, &want.evidence)
            );
        }
    }
}
