//! Property tests of digest and image-reference parsing: `Sha256Digest`,
//! the push target parser (`oci::distribution::Target`) and the
//! `--registry-mirror` rules (`oci::registry::RegistryMirrors`).

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;

use kina_builder::digest::{HashingWriter, Sha256Digest};
use kina_builder::oci::distribution::Target;
use kina_builder::oci::registry::{RegistryError, RegistryMirrors};
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn hostname() -> impl Strategy<Value = String> {
    (
        "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?",
        proptest::collection::vec("[a-z0-9]{1,8}", 1..3),
        proptest::option::of(1u16..),
    )
        .prop_map(|(first, rest, port)| {
            let mut host = format!("{first}.{}", rest.join("."));
            if let Some(p) = port {
                host.push_str(&format!(":{p}"));
            }
            host
        })
}

fn repository() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-z0-9]{1,6}([._-][a-z0-9]{1,6})?", 1..4).prop_map(|p| p.join("/"))
}

/// A host a plain-http mirror may use, with whether it is loopback.
fn mirror_host() -> impl Strategy<Value = (String, bool)> {
    let port =
        proptest::option::of(1u16..).prop_map(|p| p.map_or(String::new(), |p| format!(":{p}")));
    prop_oneof![
        port.clone().prop_map(|p| (format!("localhost{p}"), true)),
        (any::<[u8; 3]>(), port.clone())
            .prop_map(|(o, p)| (format!("127.{}.{}.{}{p}", o[0], o[1], o[2]), true)),
        port.clone().prop_map(|p| (format!("[::1]{p}"), true)),
        // Names that only look like loopback, and other addresses.
        ("[a-z]{1,8}", port.clone())
            .prop_map(|(l, p)| (format!("127.{l}.example.invalid{p}"), false)),
        port.clone()
            .prop_map(|p| (format!("127.0.0.1.example.invalid{p}"), false)),
        port.clone()
            .prop_map(|p| (format!("localhost.example.invalid{p}"), false)),
        (any::<[u8; 4]>(), port.clone()).prop_filter_map("not 127/8", |(o, p)| {
            (o[0] != 127).then(|| (format!("{}.{}.{}.{}{p}", o[0], o[1], o[2], o[3]), false))
        }),
        port.clone().prop_map(|p| (format!("[::2]{p}"), false)),
        (hostname(), Just(())).prop_map(|(h, ())| (h, false)),
    ]
}

proptest! {
    #![proptest_config(config(1024))]

    // ----------------------------------------------------------- digest --

    /// Any string parses only if it is 64 lowercase hex characters,
    /// optionally after `sha256:`, and then displays as those characters;
    /// anything else is refused with an error quoting it.
    #[test]
    fn digest_any_string_parses_only_as_sha256_hex(
        text in prop_oneof![
            "\\PC{0,80}",
            "(sha256:|sha512:|SHA256:)?[0-9a-fA-F]{62,66}",
            "(sha256:)?[0-9a-f\u{e9}]{60,64}",
        ],
    ) {
        let hex_part = text.strip_prefix("sha256:").unwrap_or(&text);
        let valid = hex_part.len() == 64
            && hex_part.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        match text.parse::<Sha256Digest>() {
            Ok(d) => {
                prop_assert!(valid, "`{text}` was accepted");
                prop_assert_eq!(d.to_string(), hex_part);
                prop_assert_eq!(d.oci(), format!("sha256:{hex_part}"));
            }
            Err(e) => {
                prop_assert!(!valid, "`{text}` was refused: {e}");
                prop_assert!(e.to_string().contains(&format!("`{text}`")), "{e}");
            }
        }
    }

    /// Every digest round-trips through its hex form, its `sha256:` form,
    /// its Debug form and JSON; its bytes are what it was made from.
    #[test]
    fn digest_forms_round_trip(bytes in any::<[u8; 32]>()) {
        let d = Sha256Digest::from_bytes(bytes);
        prop_assert_eq!(d.as_bytes(), &bytes);
        prop_assert_eq!(d.to_string().parse::<Sha256Digest>(), Ok(d));
        prop_assert_eq!(d.oci().parse::<Sha256Digest>(), Ok(d));
        prop_assert_eq!(format!("{d:?}").parse::<Sha256Digest>(), Ok(d));
        let json = serde_json::to_string(&d).unwrap();
        prop_assert_eq!(&json, &format!("\"{}\"", d.hex()));
        prop_assert_eq!(serde_json::from_str::<Sha256Digest>(&json).unwrap(), d);
        prop_assert!(serde_json::from_str::<Sha256Digest>(&json.to_uppercase()).is_err() || d.hex() == d.hex().to_uppercase());
    }

    /// Hashing while writing, in any chunking, gives the one-shot digest and
    /// the byte count, and passes every byte through.
    #[test]
    fn digest_hashing_writer_matches_one_shot(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
    ) {
        let all: Vec<u8> = chunks.concat();
        let mut w = HashingWriter::new(Vec::new());
        for c in &chunks {
            w.write_all(c).unwrap();
        }
        let (digest, size, inner) = w.finish();
        prop_assert_eq!(digest, Sha256Digest::of(&all));
        prop_assert_eq!(size, all.len() as u64);
        prop_assert_eq!(Sha256Digest::of_reader(all.as_slice()).unwrap(), (digest, size));
        prop_assert_eq!(inner, all);
    }

    // ------------------------------------------------------- references --

    /// Any string is parsed as an image reference or refused with an
    /// error quoting it.
    #[test]
    fn reference_any_string_parses_or_is_quoted_in_the_error(
        text in prop_oneof![
            "\\PC{0,60}",
            "[a-z0-9.:/@_-]{0,40}",
            "[a-z.]{1,10}(:[0-9]{1,6})?/[a-zA-Z0-9/._-]{0,20}(:[ -~]{0,12})?(@[a-z0-9]{1,8}:[0-9a-fA-F]{0,70})?",
        ],
    ) {
        match Target::parse(&text) {
            Ok(t) => {
                prop_assert_eq!(&t.original, &text);
                prop_assert!(!t.repository.is_empty() && !t.registry.is_empty(), "{t:?}");
            }
            Err(e) => prop_assert!(e.to_string().contains(&text), "{e}"),
        }
    }

    /// A generated `registry/repository[:tag][@sha256:…]` parses to exactly
    /// its parts.
    #[test]
    fn reference_generated_parses_to_its_parts(
        registry in hostname(),
        repository in repository(),
        tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        digest in proptest::option::of(any::<[u8; 32]>().prop_map(Sha256Digest::from_bytes)),
    ) {
        let mut text = format!("{registry}/{repository}");
        if let Some(t) = &tag {
            text.push_str(&format!(":{t}"));
        }
        if let Some(d) = &digest {
            text.push_str(&format!("@{}", d.oci()));
        }
        let t = Target::parse(&text).unwrap();
        prop_assert_eq!(t.registry, registry);
        prop_assert_eq!(t.repository, repository);
        // Without tag or digest a reference means `latest`.
        let expected_tag = tag.or_else(|| digest.is_none().then(|| "latest".to_string()));
        prop_assert_eq!(t.tag, expected_tag);
        prop_assert_eq!(t.digest, digest);
    }

    /// A digest of another algorithm is refused, saying only sha256 is supported.
    #[test]
    fn reference_with_another_digest_algorithm_is_refused(
        registry in hostname(),
        repository in repository(),
        hex in "[0-9a-f]{128}",
    ) {
        let text = format!("{registry}/{repository}@sha512:{hex}");
        let err = Target::parse(&text).unwrap_err().to_string();
        prop_assert!(err.contains("only sha256") && err.contains(&text), "{err}");
    }

    // ---------------------------------------------------------- mirrors --

    /// A plain-http mirror is accepted exactly when its host is a loopback
    /// address or `localhost`; an https one (or one without a scheme)
    /// always is.
    #[test]
    fn mirror_plain_http_only_on_loopback(
        (host, loopback) in mirror_host(),
        scheme in prop_oneof![Just("http://"), Just("https://"), Just("")],
        slash in any::<bool>(),
    ) {
        let rule = format!("registry.k8s.io={scheme}{host}{}", if slash { "/" } else { "" });
        let result = RegistryMirrors::parse(std::slice::from_ref(&rule));
        if scheme == "http://" && !loopback {
            let err = result.unwrap_err();
            prop_assert!(matches!(err, RegistryError::InsecureMirror(_)), "{err}");
            prop_assert!(err.to_string().contains(&rule), "{err}");
        } else {
            prop_assert!(result.is_ok(), "`{rule}` refused: {:?}", result.err());
        }
    }

    /// A rule that is not `REGISTRY=URL` with both sides non-empty is
    /// refused, quoting the rule, wherever it stands among good ones.
    #[test]
    fn mirror_malformed_rules_are_refused_quoting_them(
        bad in prop_oneof!["[a-z.]{0,12}", "=[a-z:/.]{0,12}", "[a-z.]{1,12}="],
        good in proptest::collection::vec(hostname().prop_map(|h| format!("{h}=https://{h}")), 0..3),
        at in any::<proptest::sample::Index>(),
    ) {
        let mut rules = good;
        let i = at.index(rules.len() + 1);
        rules.insert(i, bad.clone());
        let err = RegistryMirrors::parse(&rules).unwrap_err();
        prop_assert!(matches!(&err, RegistryError::BadMirror(r) if *r == bad), "{err}");
        prop_assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
    }
}
