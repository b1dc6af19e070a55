//! Property tests of the Debian parsers: deb822 paragraphs, versions,
//! relationship fields, `Packages` indexes and Release dates. Arbitrary input
//! never panics and is refused with an error that says what and where;
//! generated well-formed input parses back to what generated it; version
//! order agrees with `dpkg --compare-versions`.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cmp::Ordering;
use std::path::Path;
use std::process::Command;

use kina_builder::debian::control::{Paragraph, parse_paragraphs};
use kina_builder::debian::keyring::Keyring;
use kina_builder::debian::packages::parse_packages;
use kina_builder::debian::relation::{Op, Relation, parse_relations};
use kina_builder::debian::release::{
    ReleaseError, ValidUntilPolicy, parse_debian_date, verify_inrelease,
};
use kina_builder::debian::version::Version;
use kina_builder::digest::Sha256Digest;
use kina_builder::platform::Arch;
use kina_builder::recipe::DebianArchive;
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Text built from lines that are each plausible or hostile deb822: fields,
/// continuations, comments, blank and whitespace-only lines, NUL, CR, huge
/// lines and non-ASCII, joined by LF or CRLF.
fn deb822ish() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        "[A-Za-z][A-Za-z0-9-]{0,12}: ?[ -~]{0,20}",
        " [ -~]{0,20}",
        " [ -~]{0,10}\r{1,2}",
        "\t[ -~]{0,10}",
        "#[ -~]{0,10}",
        Just(String::new()),
        "[ \t\r]{1,3}",
        "[ -~]{0,20}",
        "\\PC{0,20}",
        "[a-z:\0\r\u{feff}\u{e9}\u{4e2d} ]{0,10}",
        (0usize..3).prop_map(|n| format!("Long: {}", "x".repeat(70_000 * n))),
    ];
    (
        proptest::collection::vec(line, 0..12),
        prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
        any::<bool>(),
    )
        .prop_map(|(lines, eol, trailing)| {
            let mut text = lines.join(eol);
            if trailing {
                text.push_str(eol);
            }
            text
        })
}

/// One generated field: name, first line of the value, continuation lines
/// (each starting with a space or tab, never blank).
type Field = (String, String, Vec<String>);

fn field() -> impl Strategy<Value = Field> {
    (
        "[A-Z][A-Za-z0-9-]{0,15}",
        // The first line is stored trimmed, so it neither starts nor ends with space.
        prop_oneof![
            Just(String::new()),
            "[!-~\u{e9}\u{4e2d}]([ -~\u{e9}\u{4e2d}]{0,30}[!-~\u{e9}\u{4e2d}])?",
        ],
        proptest::collection::vec(
            ("[ \t]", "[!-~\u{e9}]([ -~\u{e9}]{0,20})?").prop_map(|(lead, rest)| lead + &rest),
            0..4,
        ),
    )
}

fn expected_value(first: &str, continuations: &[String]) -> String {
    let mut value = first.to_string();
    for c in continuations {
        value.push('\n');
        value.push_str(c);
    }
    value
}

fn render_paragraphs(paragraphs: &[Vec<Field>], eol: &str, blank_lines: usize) -> String {
    let mut text = String::new();
    for (i, p) in paragraphs.iter().enumerate() {
        if i > 0 {
            text.push_str(&eol.repeat(blank_lines));
        }
        for (name, first, continuations) in p {
            text.push_str(name);
            text.push(':');
            if !first.is_empty() {
                text.push(' ');
            }
            text.push_str(first);
            text.push_str(eol);
            for c in continuations {
                text.push_str(c);
                text.push_str(eol);
            }
        }
    }
    text
}

fn fields_of(p: &Paragraph) -> Vec<(String, String)> {
    p.fields()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ---------------------------------------------------------------- versions --

/// Version text dpkg accepts: `[epoch:]upstream[-revision]`, upstream starting
/// with a digit. Built from a few tokens so that pairs often share prefixes and
/// the interesting rules (`~`, leading zeros, letters vs. symbols) decide.
fn version_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("0"),
        Just("00"),
        Just("1"),
        Just("01"),
        Just("2"),
        Just("9"),
        Just("10"),
        Just("123"),
        Just("a"),
        Just("b"),
        Just("Z"),
        Just("rc"),
        Just("~"),
        Just("~~"),
        Just("."),
        Just("+"),
    ];
    let part = |max| proptest::collection::vec(token.clone(), 0..max);
    (
        prop_oneof![Just(None), (0u64..3).prop_map(Some)],
        prop_oneof![Just("0"), Just("1"), Just("2"), Just("10")],
        part(6),
        prop_oneof![Just(None), part(4).prop_map(Some)],
    )
        .prop_map(|(epoch, lead, upstream, revision)| {
            let mut text = String::new();
            if let Some(e) = epoch {
                text.push_str(&format!("{e}:"));
            }
            text.push_str(lead);
            text.push_str(&upstream.concat());
            if let Some(r) = revision {
                // A revision must not be empty for dpkg.
                let r = r.concat();
                text.push('-');
                text.push_str(if r.is_empty() { "1" } else { &r });
            }
            text
        })
}

fn v(text: &str) -> Version {
    text.parse()
        .unwrap_or_else(|e| panic!("generated `{text}`: {e}"))
}

fn dpkg_says(a: &str, op: &str, b: &str) -> bool {
    let out = Command::new("dpkg")
        .args(["--compare-versions", a, op, b])
        .output()
        .expect("dpkg is installed on every Debian machine");
    assert!(
        out.stderr.is_empty(),
        "dpkg warned about `{a}` or `{b}`: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.success()
}

// --------------------------------------------------------------- relations --

fn package_name() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9+.-]{1,15}"
}

fn op() -> impl Strategy<Value = (Op, &'static str)> {
    prop_oneof![
        Just((Op::Lt, "<<")),
        Just((Op::Le, "<=")),
        Just((Op::Eq, "=")),
        Just((Op::Ge, ">=")),
        Just((Op::Gt, ">>")),
    ]
}

fn relation() -> impl Strategy<Value = (Relation, String)> {
    (
        package_name(),
        prop_oneof![Just(None), Just(Some("any")), Just(Some("native"))],
        prop_oneof![Just(None), (op(), version_text()).prop_map(Some)],
        " {0,2}",
        " {0,2}",
    )
        .prop_map(|(name, qualifier, constraint, sp1, sp2)| {
            let mut text = name.clone();
            if let Some(q) = qualifier {
                text.push(':');
                text.push_str(q);
            }
            if let Some(((_, op_text), version)) = &constraint {
                text.push_str(&format!(" ({sp1}{op_text}{sp2}{version}{sp1})"));
            }
            let relation = Relation {
                name,
                arch_qualifier: qualifier.map(str::to_string),
                constraint: constraint.map(|((op, _), version)| (op, v(&version))),
            };
            (relation, text)
        })
}

fn relation_groups() -> impl Strategy<Value = Vec<Vec<(Relation, String)>>> {
    proptest::collection::vec(proptest::collection::vec(relation(), 1..4), 0..5)
}

// ------------------------------------------------------------------- dates --

/// An independent, plain calendar walk from unix seconds to the RFC 2822 form
/// Release files use, with the zone offset applied to the displayed time.
fn rfc2822(secs: u64, offset_minutes: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let local = secs as i64 + offset_minutes * 60;
    let mut days = local.div_euclid(86_400);
    let rem = local.rem_euclid(86_400);
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut year = 1970;
    loop {
        let len = if leap(year) { 366 } else { 365 };
        if days < 0 {
            year -= 1;
            days += if leap(year) { 366 } else { 365 };
        } else if days >= len {
            days -= len;
            year += 1;
        } else {
            break;
        }
    }
    let lengths = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut month = 0;
    while days >= lengths[month] {
        days -= lengths[month];
        month += 1;
    }
    let zone = if offset_minutes == 0 {
        "UTC".to_string()
    } else {
        let sign = if offset_minutes < 0 { '-' } else { '+' };
        let m = offset_minutes.abs();
        format!("{sign}{:02}{:02}", m / 60, m % 60)
    };
    format!(
        "Mon, {:02} {} {year} {:02}:{:02}:{:02} {zone}",
        days + 1,
        MONTHS[month],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn trixie_keyring() -> Keyring {
    Keyring::load(
        &["debian-archive-trixie-automatic".to_string()],
        Path::new("/"),
    )
    .expect("the trixie archive key ships with kina")
}

proptest! {
    #![proptest_config(config(1024))]

    // ---------------------------------------------------------- control --

    /// Any text either parses or is refused with the number of a line that
    /// exists in it; paragraphs that parse hold no empty field name and write
    /// back to text that parses to the same paragraphs.
    #[test]
    fn control_any_text_parses_or_names_a_line_of_it(text in deb822ish()) {
        match parse_paragraphs(&text) {
            Ok(paragraphs) => {
                let mut written = String::new();
                for p in &paragraphs {
                    prop_assert!(!p.is_empty());
                    for (name, _) in p.fields() {
                        prop_assert!(!name.is_empty() && !name.contains(char::is_whitespace));
                    }
                    p.write_to(&mut written);
                    written.push('\n');
                }
                prop_assert_eq!(parse_paragraphs(&written).unwrap(), paragraphs);
            }
            Err(e) => {
                let lines = text.lines().count();
                prop_assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}: {e}", e.line);
                prop_assert!(e.to_string().starts_with(&format!("line {}: ", e.line)), "{e}");
            }
        }
    }

    /// Well-formed paragraphs with LF or CRLF line ends, multi-line values
    /// and any number of blank lines between them parse to exactly the
    /// fields, in file order, that generated them; writing one back gives its
    /// LF text.
    #[test]
    fn control_generated_paragraphs_parse_back(
        paragraphs in proptest::collection::vec(proptest::collection::vec(field(), 1..6), 0..4),
        eol in prop_oneof![Just("\n"), Just("\r\n")],
        blank_lines in 1usize..4,
        leading_comment in any::<bool>(),
    ) {
        let mut text = render_paragraphs(&paragraphs, eol, blank_lines);
        if leading_comment {
            text = format!("# a comment{eol}{text}");
        }
        let parsed = parse_paragraphs(&text).unwrap();
        prop_assert_eq!(parsed.len(), paragraphs.len());
        for (p, fields) in parsed.iter().zip(&paragraphs) {
            let expected: Vec<(String, String)> = fields
                .iter()
                .map(|(n, first, conts)| (n.clone(), expected_value(first, conts)))
                .collect();
            prop_assert_eq!(fields_of(p), expected);
            let mut written = String::new();
            p.write_to(&mut written);
            prop_assert_eq!(written, render_paragraphs(std::slice::from_ref(fields), "\n", 1));
        }
    }

    /// A line that is not `Field: value` (nor a continuation, comment or
    /// blank line) is refused with its own line number and text.
    #[test]
    fn control_a_malformed_line_is_reported_with_its_number(
        fields in proptest::collection::vec(field(), 1..6),
        bad in "[a-z]{1,8}( [a-z]{1,8})?",
        at in any::<proptest::sample::Index>(),
    ) {
        let good = render_paragraphs(std::slice::from_ref(&fields), "\n", 1);
        let mut lines: Vec<&str> = good.lines().collect();
        // Insert before a field line, so the bad line is never taken for a continuation.
        let field_lines: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.starts_with([' ', '\t']))
            .map(|(i, _)| i)
            .chain([lines.len()])
            .collect();
        let pos = field_lines[at.index(field_lines.len())];
        lines.insert(pos, &bad);
        let text = lines.join("\n");
        let err = parse_paragraphs(&text).unwrap_err();
        prop_assert_eq!(err.line, pos + 1, "{}", err);
        prop_assert!(err.problem.contains(&bad), "{}", err);
    }

    // --------------------------------------------------------- versions --

    /// Any string parses or is refused with an error quoting it; what parses
    /// displays as its (trimmed) text, without whitespace inside.
    #[test]
    fn version_any_string_parses_or_is_quoted_in_the_error(
        text in prop_oneof!["\\PC{0,30}", "[0-9:~.+a-z -]{0,20}", "[0-9]{18,25}:1"],
    ) {
        match text.parse::<Version>() {
            Ok(version) => {
                prop_assert_eq!(version.to_string(), text.trim());
                prop_assert!(!version.upstream.is_empty());
                prop_assert!(!version.to_string().contains(char::is_whitespace));
            }
            Err(e) => prop_assert!(e.to_string().contains(&format!("`{text}`")), "{e}"),
        }
    }

    /// Generated versions keep their epoch, upstream and revision parts and
    /// display as the text they were parsed from.
    #[test]
    fn version_generated_text_round_trips(text in version_text()) {
        let version = v(&text);
        prop_assert_eq!(version.to_string(), text.clone());
        prop_assert_eq!(v(&version.to_string()), version.clone());
        let (epoch, rest) = text.split_once(':').map_or(("0", text.as_str()), |(e, r)| (e, r));
        prop_assert_eq!(version.epoch.to_string(), epoch);
        let (upstream, revision) = rest.rsplit_once('-').unwrap_or((rest, ""));
        prop_assert_eq!(&version.upstream, upstream);
        prop_assert_eq!(&version.revision, revision);
    }

    /// The order is total: reflexive, antisymmetric and transitive.
    #[test]
    fn version_order_is_total(a in version_text(), b in version_text(), c in version_text()) {
        let (a, b, c) = (v(&a), v(&b), v(&c));
        prop_assert_eq!(a.cmp(&a), Ordering::Equal);
        prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
        prop_assert_eq!(a.partial_cmp(&b), Some(a.cmp(&b)));
        prop_assert_eq!(a == b, a.cmp(&b) == Ordering::Equal, "{} and {}: == and the order disagree", a, b);
        let mut sorted = [&a, &b, &c];
        sorted.sort();
        prop_assert!(sorted[0] <= sorted[1] && sorted[1] <= sorted[2]);
        prop_assert!(sorted[0] <= sorted[2], "{} <= {} <= {} but not transitive", sorted[0], sorted[1], sorted[2]);
    }
}

proptest! {
    // Each case runs dpkg twice (a few ms each): 200 cases stay within seconds.
    #![proptest_config(config(200))]

    /// Version order agrees with `dpkg --compare-versions`, an independent
    /// implementation, in both directions.
    #[test]
    fn version_order_matches_dpkg(a in version_text(), b in version_text()) {
        let ours = v(&a).cmp(&v(&b));
        let op = match ours {
            Ordering::Less => "lt",
            Ordering::Equal => "eq",
            Ordering::Greater => "gt",
        };
        prop_assert!(dpkg_says(&a, op, &b), "kina says {a} {op} {b}, dpkg disagrees");
        let reverse = match ours.reverse() {
            Ordering::Less => "lt",
            Ordering::Equal => "eq",
            Ordering::Greater => "gt",
        };
        prop_assert!(dpkg_says(&b, reverse, &a), "kina says {b} {reverse} {a}, dpkg disagrees");
    }
}

proptest! {
    #![proptest_config(config(1024))]

    // -------------------------------------------------------- relations --

    /// Any text parses or is refused with an error quoting the whole field;
    /// every relation that parses has a valid, non-empty package name.
    #[test]
    fn relation_any_text_parses_or_is_quoted_in_the_error(
        text in prop_oneof![
            "[a-z0-9 ()<>=!|,:\\[\\]~.+-]{0,30}",
            "\\PC{0,30}",
            "[a-z]{1,5}[ \\])(\\[<>]{1,6}[a-z0-9 ]{0,5}",
        ],
        arch in prop_oneof![Just(Arch::Amd64), Just(Arch::Arm64)],
    ) {
        match parse_relations(&text, arch) {
            Ok(groups) => {
                for group in &groups {
                    prop_assert!(!group.is_empty());
                    for r in group {
                        prop_assert!(!r.name.is_empty(), "`{text}` gave an empty package name: {r:?}");
                        prop_assert!(
                            r.name.chars().all(|c| c.is_ascii_lowercase()
                                || c.is_ascii_digit()
                                || "+-.".contains(c)),
                            "`{text}` gave name `{}`", r.name
                        );
                    }
                }
            }
            Err(e) => {
                prop_assert_eq!(&e.text, &text);
                prop_assert!(e.to_string().contains(&text), "{e}");
            }
        }
    }

    /// Generated fields (`a:any (>= 1.0) | b, c (<< 2~)`, with varying
    /// spacing) parse to exactly the groups and relations they were made of,
    /// and each relation displays as text that parses back to it.
    #[test]
    fn relation_generated_fields_parse_back(
        groups in relation_groups(),
        sep in prop_oneof![Just(","), Just(", "), Just(" ,  "), Just(",\n ")],
        bar in prop_oneof![Just("|"), Just(" | "), Just("  |")],
    ) {
        let text = groups
            .iter()
            .map(|g| g.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join(bar))
            .collect::<Vec<_>>()
            .join(sep);
        let parsed = parse_relations(&text, Arch::Amd64).unwrap();
        let expected: Vec<Vec<Relation>> = groups
            .iter()
            .map(|g| g.iter().map(|(r, _)| r.clone()).collect())
            .collect();
        prop_assert_eq!(&parsed, &expected, "{}", text);
        // Version `==` is dpkg's (1.0 == 1.00); the text is what lockfiles keep.
        prop_assert_eq!(texts(&parsed), texts(&expected), "{}", text);
        for r in parsed.iter().flatten() {
            let again = parse_relations(&r.to_string(), Arch::Amd64).unwrap();
            prop_assert_eq!(texts(&again), texts(&[vec![r.clone()]]));
        }
    }

    /// An architecture restriction keeps a relation exactly when it names
    /// the target (`[amd64 arm64]`) or, negated (`[!arm64]`), does not.
    #[test]
    fn relation_architecture_restrictions_select_the_target(
        (rel, text) in relation(),
        listed in proptest::sample::subsequence(vec!["amd64", "arm64", "riscv64"], 1..=3),
        negated in any::<bool>(),
        arch in prop_oneof![Just(Arch::Amd64), Just(Arch::Arm64)],
    ) {
        let list: Vec<String> = listed
            .iter()
            .map(|a| if negated { format!("!{a}") } else { (*a).to_string() })
            .collect();
        let field = format!("{text} [{}], other", list.join(" "));
        let parsed = parse_relations(&field, arch).unwrap();
        let names = listed.contains(&arch.debian());
        let applies = names != negated;
        let mut expected = Vec::new();
        if applies {
            expected.push(vec![rel]);
        }
        expected.push(parse_relations("other", arch).unwrap().remove(0));
        prop_assert_eq!(texts(&parsed), texts(&expected), "{}", field);
    }

    // --------------------------------------------------------- packages --

    /// Any index text parses or is refused with an error naming the suite.
    #[test]
    fn packages_any_text_parses_or_names_the_suite(text in deb822ish()) {
        if let Err(e) = parse_packages(&text, DebianArchive::Debian, "suite-x", Arch::Amd64) {
            prop_assert!(e.to_string().contains("suite-x"), "{e}");
        }
    }

    /// Generated records parse to their fields; records of another
    /// architecture are skipped; a record missing a required field or with
    /// a broken one is refused naming the package and the field.
    #[test]
    fn packages_generated_records_parse_back(
        records in proptest::collection::vec(
            (
                package_name(),
                version_text(),
                prop_oneof![Just("amd64"), Just("arm64"), Just("all")],
                relation_groups(),
                any::<u64>(),
                any::<[u8; 8]>(),
            ),
            1..5,
        ),
        breakage in proptest::option::of((
            any::<proptest::sample::Index>(),
            prop_oneof![
                Just(("Version", "")),
                Just(("Version", "not a version")),
                Just(("Size", "12x")),
                Just(("SHA256", "abc")),
                Just(("Filename", "")),
                Just(("Depends", "foo (>= 1")),
            ],
        )),
    ) {
        let mut text = String::new();
        let broken = breakage.map(|(i, b)| (i.index(records.len()), b));
        for (i, (name, version, arch, depends, size, seed)) in records.iter().enumerate() {
            let depends = depends
                .iter()
                .map(|g| g.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join(" | "))
                .collect::<Vec<_>>()
                .join(", ");
            let mut fields = vec![
                ("Package", name.clone()),
                ("Version", version.clone()),
                ("Architecture", (*arch).to_string()),
                ("Depends", depends),
                ("Filename", format!("pool/main/{name}_{version}_{arch}.deb")),
                ("Size", size.to_string()),
                ("SHA256", Sha256Digest::of(seed).hex()),
            ];
            if let Some((_, (field, value))) = broken.filter(|(b, _)| *b == i) {
                let slot = fields.iter_mut().find(|(f, _)| *f == field).unwrap();
                slot.1 = value.to_string();
            }
            for (field, value) in fields {
                // An empty value means the field is absent (an empty Depends is allowed).
                if !value.is_empty() {
                    text.push_str(&format!("{field}: {value}\n"));
                }
            }
            text.push('\n');
        }
        let result = parse_packages(&text, DebianArchive::Debian, "trixie", Arch::Amd64);
        // The first broken record of our architecture fails the parse.
        let fails = broken.filter(|(i, _)| records[*i].2 != "arm64");
        match (result, fails) {
            (Ok(parsed), None) => {
                let ours: Vec<_> = records.iter().filter(|r| r.2 != "arm64").collect();
                prop_assert_eq!(parsed.len(), ours.len());
                for (p, (name, version, arch, depends, size, seed)) in parsed.iter().zip(ours) {
                    prop_assert_eq!(&p.name, name);
                    prop_assert_eq!(p.version.to_string(), v(version).to_string());
                    prop_assert_eq!(&p.architecture, arch);
                    let expected: Vec<Vec<Relation>> = depends
                        .iter()
                        .map(|g| g.iter().map(|(r, _)| r.clone()).collect())
                        .collect();
                    prop_assert_eq!(&p.depends, &expected);
                    prop_assert_eq!(p.size, *size);
                    prop_assert_eq!(p.sha256, Sha256Digest::of(seed));
                    prop_assert_eq!(&p.source, name);
                    prop_assert_eq!(&p.suite, "trixie");
                }
            }
            (Err(e), Some((i, (field, _)))) => {
                let message = e.to_string();
                prop_assert!(message.contains(&records[i].0), "{message}");
                prop_assert!(message.contains(field), "{message}");
                prop_assert!(message.contains("trixie"), "{message}");
            }
            (Ok(_), Some(b)) => prop_assert!(false, "broken record {b:?} was accepted:\n{text}"),
            (Err(e), None) => prop_assert!(false, "well-formed index refused: {e}\n{text}"),
        }
    }

    // ----------------------------------------------------------- release --

    /// Dates in the form Release files carry, with UTC or a numeric zone,
    /// parse to the unix seconds an independent calendar walk formatted.
    #[test]
    fn release_dates_parse_to_the_seconds_they_were_made_from(
        secs in 0u64..8_000_000_000,
        offset in prop_oneof![Just(0i64), -720i64..=840],
    ) {
        // The local time must not fall before the epoch for the walk above.
        prop_assume!(secs as i64 + offset * 60 >= 0);
        let text = rfc2822(secs, offset);
        prop_assert_eq!(parse_debian_date(&text), Some(secs), "{}", text);
    }

    /// Any date-like text (huge years, odd zones, non-ASCII) either parses or
    /// gives None; it never panics or overflows.
    #[test]
    fn release_any_date_text_parses_or_is_none(
        text in prop_oneof![
            "\\PC{0,40}",
            (
                "(0|[1-9]|[12][0-9]|3[01]|32|999)",
                "(Jan|Feb|Dec|jan|Foo)",
                "(19[0-9]{2}|20[0-9]{2}|-?[0-9]{1,20})",
                "([01][0-9]|2[0-4]):[0-5][0-9](:[0-6][0-9])?",
                "(UTC|GMT|Z|[+-]([0-9]|\u{e9}|\u{4e2d}){1,4})",
            )
                .prop_map(|(d, m, y, t, z)| format!("Sun, {d} {m} {y} {t} {z}")),
        ],
    ) {
        if let Some(secs) = parse_debian_date(&text).filter(|s| *s < 8_000_000_000) {
            // What parses is a real date: it formats back to the same instant.
            prop_assert_eq!(parse_debian_date(&rfc2822(secs, 0)), Some(secs), "{}", text);
        }
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Arbitrary bytes, and text dressed as a cleartext-signed message, are
    /// refused as not signed or badly signed, naming where they came from.
    #[test]
    fn release_unsigned_or_garbage_inrelease_is_refused_naming_its_source(
        body in "\\PC{0,200}",
        framing in 0u8..3,
        raw in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let keyring = trixie_keyring();
        let source = "http://mirror.invalid/debian/dists/x/InRelease";
        let bytes = match framing {
            0 => raw,
            1 => format!("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{body}\n-----BEGIN PGP SIGNATURE-----\n\n{body}\n-----END PGP SIGNATURE-----\n").into_bytes(),
            _ => format!("-----BEGIN PGP SIGNED MESSAGE-----\n\n{body}").into_bytes(),
        };
        let err = verify_inrelease(source, &bytes, &keyring, 0, ValidUntilPolicy::Enforce).unwrap_err();
        prop_assert!(
            matches!(err, ReleaseError::NotSigned { .. } | ReleaseError::BadSignature { .. }),
            "{err}"
        );
        prop_assert!(err.to_string().contains(source), "{err}");
    }
}

/// Relations as their text: equal only if every version is spelled alike.
fn texts(groups: &[Vec<Relation>]) -> Vec<Vec<String>> {
    groups
        .iter()
        .map(|g| g.iter().map(ToString::to_string).collect())
        .collect()
}
