//! What Apple's `container` prints is parsed by kina, and a newer or older
//! release may print something else: whatever the text, the parsers either
//! read it or say what they expected; they never panic. Version numbers
//! read back as printed, in the forms Apple's releases print them.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kina_apple::inspect::{parse_containers, parse_inspect};
use kina_apple::version::{parse_cli_version_line, parse_system_version, require};
use proptest::prelude::*;

/// JSON-ish text: the pieces `container`'s documents are made of.
fn jsonish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("[".to_string()),
            Just("]".to_string()),
            Just("{".to_string()),
            Just("}".to_string()),
            Just(",".to_string()),
            Just(":".to_string()),
            Just("null".to_string()),
            Just("\"configuration\"".to_string()),
            Just("\"networks\"".to_string()),
            Just("\"status\"".to_string()),
            Just("\"address\"".to_string()),
            Just("\"10.0.0.2/24\"".to_string()),
            Just("\"running\"".to_string()),
            Just("\"labels\"".to_string()),
            Just("\"id\"".to_string()),
            Just("\"version\"".to_string()),
            Just("\"appName\"".to_string()),
            "\"[ -~]{0,12}\"",
            "-?[0-9]{1,6}",
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_output_is_read_or_refused(text in jsonish()) {
        let _ = parse_containers(&text);
        let _ = parse_inspect(&text, "kina-control-plane");
        if let Err(e) = parse_system_version(&text) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn any_line_is_a_version_or_refused(line in "\\PC{0,80}") {
        let _ = parse_cli_version_line(&line);
    }

    /// `container CLI version X.Y.Z (build: …, commit: …)` reads as X.Y.Z
    /// (0.0.0 is a development build and refused), and the version gate
    /// agrees with comparing the numbers.
    #[test]
    fn printed_versions_read_back(
        major in 0u32..3,
        minor in 0u32..20,
        patch in 0u32..20,
        commit in "[0-9a-f]{7}",
    ) {
        let line = format!("container CLI version {major}.{minor}.{patch} (build: release, commit: {commit})");
        if (major, minor, patch) == (0, 0, 0) {
            // What a development build prints: no release to judge.
            let e = parse_cli_version_line(&line).unwrap_err();
            prop_assert!(e.to_string().contains("container CLI"), "{}", e);
            return Ok(());
        }
        let v = parse_cli_version_line(&line).unwrap();
        prop_assert_eq!((v.major, v.minor, v.patch), (major, minor, patch));
        let minimum = (1, 2, 1);
        prop_assert_eq!(require(v).is_ok(), (major, minor, patch) >= minimum, "{:?}", v);
    }
}
