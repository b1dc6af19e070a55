//! Kernel configs and profile checks, fuzzed: any bytes are read or refused
//! by name without a panic; generated configs (all the value forms, `is not
//! set` lines, comments, junk, CRLF, gzip, repeated symbols) read back as
//! exactly the generated options; real configs (pinned reference inputs,
//! see `kina_tests::reference_inputs`) keep every kept line's meaning when lines are shuffled and dropped; and a
//! profile check names exactly the options the generated config lacks or
//! has only as modules.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::OnceLock;

use kina_contract::kernel::report::Verdict;
use kina_contract::kernel::{KernelConfig, Presence, ProfileSet, Tristate, check};
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One assignment as a config file can write it.
#[derive(Clone, Debug)]
enum Value {
    Builtin,
    Module,
    /// `CONFIG_X=n`
    No,
    /// `# CONFIG_X is not set`
    NotSet,
    /// `CONFIG_X="…"`: a string, even when it reads `y`.
    Quoted(String),
    Number(i64),
    Hex(u32),
}

impl Value {
    fn line(&self, name: &str) -> String {
        match self {
            Value::Builtin => format!("CONFIG_{name}=y"),
            Value::Module => format!("CONFIG_{name}=m"),
            Value::No => format!("CONFIG_{name}=n"),
            Value::NotSet => format!("# CONFIG_{name} is not set"),
            Value::Quoted(s) => format!("CONFIG_{name}=\"{s}\""),
            Value::Number(n) => format!("CONFIG_{name}={n}"),
            Value::Hex(n) => format!("CONFIG_{name}=0x{n:x}"),
        }
    }

    fn tristate(&self) -> Tristate {
        match self {
            Value::Builtin => Tristate::Builtin,
            Value::Module => Tristate::Module,
            _ => Tristate::Unset,
        }
    }
}

fn values() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => Just(Value::Builtin),
        3 => Just(Value::Module),
        1 => Just(Value::No),
        2 => Just(Value::NotSet),
        1 => prop_oneof![
            Just("y".to_string()),
            Just("m".to_string()),
            "[a-z0-9 =#._-]{0,12}",
        ]
        .prop_map(Value::Quoted),
        1 => any::<i64>().prop_map(Value::Number),
        1 => any::<u32>().prop_map(Value::Hex),
    ]
}

fn symbol_names() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("MODULES".to_string()),
        4 => "[A-Z][A-Z0-9_]{0,15}",
    ]
}

/// Lines that are not assignments: comments, blanks, section markers,
/// near misses, and any text that does not start an assignment.
fn junk_lines() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("#".to_string()),
        Just("# Automatically generated file; DO NOT EDIT.".to_string()),
        Just("# Linux/x86 6.1.0 Kernel Configuration".to_string()),
        "# end of [A-Za-z ]{0,20}",
        "# CONFIG_[A-Z_]{1,10} is set",
        "#CONFIG_[A-Z_]{1,10} is not set",
        "CONFIG_[A-Z_]{1,10}",
        "config_[a-z_]{1,10}=y",
        "[^\n\r]{0,30}".prop_filter("not an assignment", |s| {
            let t = s.trim();
            !t.starts_with("CONFIG_") && !t.starts_with("# CONFIG_")
        }),
    ]
}

#[derive(Clone, Debug)]
struct Generated {
    /// Assignments and junk in file order (`None` name: a junk line).
    lines: Vec<(Option<String>, Value, String)>,
    crlf: bool,
    final_newline: bool,
    gzip: bool,
}

impl Generated {
    fn text(&self) -> String {
        let eol = if self.crlf { "\r\n" } else { "\n" };
        let lines: Vec<String> = self
            .lines
            .iter()
            .map(|(name, value, junk)| match name {
                Some(n) => value.line(n),
                None => junk.clone(),
            })
            .collect();
        let mut text = lines.join(eol);
        if self.final_newline && !lines.is_empty() {
            text.push_str(eol);
        }
        text
    }

    fn bytes(&self) -> Vec<u8> {
        let text = self.text();
        if self.gzip {
            gzip(text.as_bytes())
        } else {
            text.into_bytes()
        }
    }

    /// What each symbol should read as: the last assignment wins, as in
    /// kconfig.
    fn expected(&self) -> BTreeMap<String, Tristate> {
        let mut out = BTreeMap::new();
        for (name, value, _) in &self.lines {
            if let Some(n) = name {
                out.insert(n.clone(), value.tristate());
            }
        }
        out
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn generated_configs() -> impl Strategy<Value = Generated> {
    (
        prop::collection::vec(symbol_names(), 1..8),
        prop::collection::vec(
            prop_oneof![
                3 => (any::<prop::sample::Index>(), values()).prop_map(|(i, v)| (Some(i), v, String::new())),
                1 => junk_lines().prop_map(|j| (None, Value::NotSet, j)),
            ],
            0..24,
        ),
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(names, lines, crlf, final_newline, gzip)| Generated {
            lines: lines
                .into_iter()
                .map(|(i, v, j)| (i.map(|i| i.get(&names).clone()), v, j))
                .collect(),
            crlf,
            final_newline,
            gzip,
        })
}

/// The reference configs, fetched once.
fn real_configs() -> &'static [(String, String)] {
    static CONFIGS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        [
            "apple-containerization-arm64.config",
            "apple-containerization-x86_64.config",
            "debian-6.1.0-56-cloud-amd64.config",
            "debian-6.1.0-56-cloud-arm64.config",
        ]
        .iter()
        .map(|name| {
            let bytes = kina_tests::fetch_reference_input(name).unwrap_or_else(|e| panic!("{e:#}"));
            let text = String::from_utf8(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name.to_string(), text)
        })
        .collect()
    })
}

/// The symbol a line of a real config is about, if any: the name after
/// `CONFIG_` in an assignment or an `is not set` comment.
fn symbol_of(line: &str) -> Option<&str> {
    let rest = line
        .strip_prefix("CONFIG_")
        .filter(|r| r.contains('='))
        .or_else(|| {
            line.strip_prefix("# CONFIG_")
                .filter(|_| line.ends_with(" is not set"))
        })?;
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

proptest! {
    #![proptest_config(config(512))]

    /// Any bytes (plain, or behind a gzip magic number) are read or refused
    /// without a panic, and a refusal names the file.
    #[test]
    fn any_bytes_are_read_or_refused_by_name(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| [vec![0x1f, 0x8b], b].concat()),
            "[^\n]{0,40}(\n[^\n]{0,40}){0,8}".prop_map(String::into_bytes),
        ],
    ) {
        match KernelConfig::from_bytes(&bytes, "fuzz.config") {
            Ok(c) => {
                prop_assert_eq!(c.source, "fuzz.config");
            }
            Err(e) => {
                let text = e.to_string();
                prop_assert!(text.starts_with("fuzz.config is not a kernel config: "), "{}", text);
            }
        }
    }

    /// Generated configs read back as exactly the generated options: `=y`
    /// built in, `=m` a module, everything else (`=n`, `is not set`,
    /// strings even when they read "y", numbers) and every symbol never
    /// written unset; the last assignment of a symbol wins; comments, junk,
    /// CRLF and gzip change nothing. A file without assignments is refused.
    #[test]
    fn generated_configs_read_as_generated(
        g in generated_configs(),
        never in "never_[a-z]{1,6}",
    ) {
        let expected = g.expected();
        let result = KernelConfig::from_bytes(&g.bytes(), "gen.config");
        if expected.is_empty() {
            let err = result.unwrap_err().to_string();
            prop_assert!(err.contains("gen.config") && err.contains("no CONFIG_ lines"), "{}", err);
            return Ok(());
        }
        let c = result.unwrap();
        for (name, want) in &expected {
            prop_assert_eq!(c.get(name), *want, "CONFIG_{} in\n{}", name, g.text());
        }
        prop_assert_eq!(c.get(&never), Tristate::Unset);
        prop_assert_eq!(
            c.modules_supported(),
            expected.get("MODULES") == Some(&Tristate::Builtin)
        );
    }
}

proptest! {
    #![proptest_config(config(48))]

    /// A real config with lines dropped and shuffled (and maybe CRLF or
    /// gzip): each symbol whose line was kept reads as in the original, each
    /// whose line was dropped reads unset, and module support goes with the
    /// `CONFIG_MODULES` line.
    #[test]
    fn real_configs_keep_the_meaning_of_every_kept_line(
        (file, kept) in (0..real_configs().len()).prop_flat_map(|i| {
            let n = real_configs()[i].1.lines().count();
            (Just(i), prop::sample::subsequence((0..n).collect::<Vec<_>>(), 0..=n).prop_shuffle())
        }),
        crlf in any::<bool>(),
        gz in prop::bool::weighted(0.2),
    ) {
        let (name, text) = &real_configs()[file];
        let lines: Vec<&str> = text.lines().collect();
        let original = KernelConfig::from_bytes(text.as_bytes(), name).unwrap();
        let kept_set: BTreeSet<usize> = kept.iter().copied().collect();
        let edited: Vec<&str> = kept.iter().map(|i| lines[*i]).collect();
        let mut edited = edited.join(if crlf { "\r\n" } else { "\n" }).into_bytes();
        if gz {
            edited = gzip(&edited);
        }
        let any_symbol_kept = kept.iter().any(|i| symbol_of(lines[*i]).is_some());
        let parsed = match KernelConfig::from_bytes(&edited, "edited") {
            Ok(c) => c,
            Err(e) => {
                prop_assert!(!any_symbol_kept, "refused with symbol lines kept: {}", e);
                return Ok(());
            }
        };
        prop_assert!(any_symbol_kept);
        let mut symbols = 0;
        for (i, line) in lines.iter().enumerate() {
            if let Some(symbol) = symbol_of(line) {
                symbols += 1;
                let want = if kept_set.contains(&i) { original.get(symbol) } else { Tristate::Unset };
                prop_assert_eq!(parsed.get(symbol), want, "{} line {}: {}", name, i + 1, line);
            }
        }
        prop_assert!(symbols > 2000, "{name} has only {symbols} symbol lines");
        let modules_line = lines.iter().position(|l| *l == "CONFIG_MODULES=y");
        prop_assert_eq!(
            parsed.modules_supported(),
            modules_line.is_some_and(|i| kept_set.contains(&i))
        );
    }
}

/// How a symbol is written in a generated config for a profile check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Y,
    M,
    NotSet,
    Missing,
    Quoted,
}

impl State {
    fn line(self, name: &str) -> Option<String> {
        match self {
            State::Y => Some(format!("CONFIG_{name}=y")),
            State::M => Some(format!("CONFIG_{name}=m")),
            State::NotSet => Some(format!("# CONFIG_{name} is not set")),
            State::Quoted => Some(format!("CONFIG_{name}=\"y\"")),
            State::Missing => None,
        }
    }
}

/// States with a per-case bias, so whole profiles pass, fail, or are
/// modules-only often enough.
fn states(n: usize) -> impl Strategy<Value = Vec<State>> {
    (0u32..6).prop_flat_map(move |bias| {
        let present = 1 + bias * 3;
        prop::collection::vec(
            prop_oneof![
                present => Just(State::Y),
                present => Just(State::M),
                2 => Just(State::NotSet),
                2 => Just(State::Missing),
                1 => Just(State::Quoted),
            ],
            n,
        )
    })
}

/// What an option's check should say, worked out from the states: an
/// any-of option is built in if one symbol is, else a module if one is;
/// an all-of option needs every symbol and is built in only if every one
/// is.
fn model(symbols: &[String], all: bool, states: &BTreeMap<String, State>) -> Presence {
    let s: Vec<State> = symbols.iter().map(|n| states[n]).collect();
    let has = |x: &State| matches!(x, State::Y | State::M);
    if all {
        if !s.iter().all(has) {
            Presence::Absent
        } else if s.iter().all(|x| *x == State::Y) {
            Presence::Builtin
        } else {
            Presence::Module
        }
    } else if s.contains(&State::Y) {
        Presence::Builtin
    } else if s.contains(&State::M) {
        Presence::Module
    } else {
        Presence::Absent
    }
}

fn config_for(states: &BTreeMap<String, State>) -> KernelConfig {
    let mut text = String::from("# generated\nCONFIG_KINA_TEST_SENTINEL=y\n");
    for (name, state) in states {
        if let Some(line) = state.line(name) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    KernelConfig::from_bytes(text.as_bytes(), "gen.config").unwrap()
}

/// Checks `profiles` against `states` and compares every option, the
/// missing list, the verdict and the rendered text with the model.
fn check_against_model(
    set: &ProfileSet,
    profiles: &[String],
    states: &BTreeMap<String, State>,
) -> Result<(), TestCaseError> {
    let config = config_for(states);
    let report = check(set, profiles, Some(&config), None).unwrap();
    let text = report.render(&[]);
    prop_assert_eq!(report.profiles.len(), profiles.len());
    for (p, name) in report.profiles.iter().zip(profiles) {
        prop_assert_eq!(&p.name, name);
        let expanded = set.expanded(name).unwrap();
        prop_assert_eq!(p.options.len(), expanded.len());
        let mut want_missing = Vec::new();
        for (o, (owner, spec)) in p.options.iter().zip(&expanded) {
            prop_assert_eq!(&o.profile, owner);
            prop_assert_eq!(&o.symbols, &spec.symbols);
            let want = model(&spec.symbols, spec.all, states);
            prop_assert_eq!(o.presence, want, "{} in {}", o.config_names(), name);
            if spec.required && want == Presence::Absent {
                want_missing.push(o.config_names());
            }
        }
        let missing: Vec<String> = p.missing().map(|o| o.config_names()).collect();
        prop_assert_eq!(&missing, &want_missing);
        prop_assert_eq!(
            p.verdict,
            if want_missing.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Fail
            }
        );
        for m in &want_missing {
            prop_assert!(text.contains(&format!("  missing {m} [")), "{}", text);
        }
    }
    let missing_lines = text.lines().filter(|l| l.starts_with("  missing ")).count();
    let want_lines: usize = report.profiles.iter().map(|p| p.missing().count()).sum();
    prop_assert_eq!(missing_lines, want_lines, "{}", text);
    Ok(())
}

fn shipped() -> &'static ProfileSet {
    static SET: OnceLock<ProfileSet> = OnceLock::new();
    SET.get_or_init(|| ProfileSet::shipped().unwrap())
}

fn shipped_symbols() -> Vec<String> {
    let set: BTreeSet<String> = shipped()
        .all()
        .iter()
        .flat_map(|p| p.options.iter().flat_map(|o| o.symbols.iter().cloned()))
        .collect();
    set.into_iter().collect()
}

/// A generated site profile: options over a few symbols, any-of or all-of,
/// required or not.
#[derive(Clone, Debug)]
struct SiteOption {
    symbols: Vec<String>,
    all: bool,
    required: bool,
}

fn site_options() -> impl Strategy<Value = Vec<SiteOption>> {
    let pool = ["VETH", "BRIDGE", "VXLAN", "BPF_JIT", "NF_TABLES", "IP_SET"];
    prop::collection::vec(
        (
            prop::sample::subsequence(pool.to_vec(), 1..=3).prop_shuffle(),
            any::<bool>(),
            prop::bool::weighted(0.7),
        )
            .prop_map(|(symbols, all, required)| SiteOption {
                symbols: symbols.into_iter().map(String::from).collect(),
                all,
                required,
            }),
        1..6,
    )
}

fn site_profile_toml(options: &[SiteOption]) -> String {
    let mut text = String::from("name = \"site-gen\"\ndescription = \"generated\"\n");
    for o in options {
        let symbols: Vec<String> = o.symbols.iter().map(|s| format!("\"{s}\"")).collect();
        text.push_str(&format!(
            "[[option]]\nsymbols = [{}]\nall = {}\nrequired = {}\nwhy = \"generated\"\nprobe = {{ kind = \"config-only\" }}\n",
            symbols.join(", "),
            o.all,
            o.required
        ));
    }
    text
}

proptest! {
    #![proptest_config(config(256))]

    /// Every shipped profile against a generated config over its symbols:
    /// each option is built in, a module or absent exactly as the states
    /// say, the missing list is exactly the required absent options, the
    /// verdict follows, and the rendered report names each missing one.
    #[test]
    fn shipped_profiles_report_exactly_what_the_config_lacks(
        states in states(shipped_symbols().len()),
    ) {
        let states: BTreeMap<String, State> = shipped_symbols().into_iter().zip(states).collect();
        let names: Vec<String> = shipped().all().iter().map(|p| p.name.clone()).collect();
        check_against_model(shipped(), &names, &states)?;
    }

    /// A generated site profile (any-of and all-of options, required and
    /// optional), read from a profile directory as a node reads it, checked
    /// against a generated config: the same exact agreement with the model.
    #[test]
    fn generated_site_profiles_report_exactly_what_the_config_lacks(
        options in site_options(),
        states in states(6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gen.toml"), site_profile_toml(&options)).unwrap();
        let mut set = ProfileSet::shipped().unwrap();
        prop_assert_eq!(set.add_dir(dir.path()).unwrap(), 1);
        let profile = set.get("site-gen").unwrap();
        prop_assert_eq!(profile.options.len(), options.len());
        for (spec, generated) in profile.options.iter().zip(&options) {
            prop_assert_eq!(&spec.symbols, &generated.symbols);
            prop_assert_eq!((spec.all, spec.required), (generated.all, generated.required));
        }
        let pool = ["VETH", "BRIDGE", "VXLAN", "BPF_JIT", "NF_TABLES", "IP_SET"];
        let states: BTreeMap<String, State> =
            pool.iter().map(|s| s.to_string()).zip(states).collect();
        check_against_model(&set, &["site-gen".to_string()], &states)?;
    }
}
