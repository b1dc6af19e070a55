//! Property tests of signed Release files: generated Release paragraphs,
//! cleartext-signed with a key generated here, verify and read back to what
//! generated them; broken SHA256 lists and dates are refused naming the line;
//! `Valid-Until` is enforced exactly as the policy says; a changed byte of
//! the signed text never verifies.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use kina_builder::civil_time::rfc2822;
use kina_builder::debian::keyring::Keyring;
use kina_builder::debian::release::{ReleaseError, ValidUntilPolicy, verify_inrelease};
use kina_builder::digest::Sha256Digest;
use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, EncryptionCaps, KeyType, SecretKeyParamsBuilder,
    SignedPublicKey, SignedSecretKey, SubkeyParamsBuilder,
};
use pgp::ser::Serialize;
use pgp::types::Password;
use proptest::prelude::*;

const SOURCE: &str = "http://mirror.invalid/debian/dists/prop/InRelease";

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One key for the whole file, shaped like Debian's: the primary key
/// certifies, a subkey signs.
fn archive_key() -> &'static (SignedSecretKey, Keyring) {
    static KEY: OnceLock<(SignedSecretKey, Keyring)> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut subkey = SubkeyParamsBuilder::default();
        subkey
            .key_type(KeyType::Ed25519Legacy)
            .can_sign(true)
            .can_encrypt(EncryptionCaps::None)
            .can_authenticate(false);
        let mut params = SecretKeyParamsBuilder::default();
        params
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(false)
            .can_encrypt(EncryptionCaps::None)
            .primary_user_id("prop <prop@kina.invalid>".into())
            .subkeys(vec![subkey.build().unwrap()]);
        let key = params
            .build()
            .unwrap()
            .generate(rand::thread_rng())
            .unwrap();
        let public = SignedPublicKey::from(key.clone()).to_bytes().unwrap();
        let keyring = Keyring::from_bytes("prop-key", &public).unwrap();
        (key, keyring)
    })
}

fn sign(text: &str) -> Vec<u8> {
    let (key, _) = archive_key();
    let subkey = &key.secret_subkeys[0].key;
    CleartextSignedMessage::sign(rand::thread_rng(), text, subkey, &Password::empty())
        .unwrap()
        .to_armored_string(ArmorOptions::default())
        .unwrap()
        .into_bytes()
}

#[derive(Clone, Debug)]
struct Release {
    origin: Option<String>,
    suite: Option<String>,
    codename: Option<String>,
    date: u64,
    valid_for: Option<u64>,
    by_hash: bool,
    sha256: BTreeMap<String, ([u8; 32], u64)>,
}

fn release() -> impl Strategy<Value = Release> {
    let word = || proptest::option::of("[A-Za-z0-9][A-Za-z0-9.+-]{0,12}");
    (
        (word(), word(), word()),
        0u64..4_000_000_000,
        proptest::option::of(0u64..30 * 86_400),
        any::<bool>(),
        proptest::collection::btree_map(
            "(main|contrib)/(binary-(amd64|arm64)|i18n)/[A-Za-z0-9._-]{1,20}",
            (any::<[u8; 32]>(), any::<u64>()),
            1..6,
        ),
    )
        .prop_map(
            |((origin, suite, codename), date, valid_for, by_hash, sha256)| Release {
                origin,
                suite,
                codename,
                date,
                valid_for,
                by_hash,
                sha256,
            },
        )
}

/// The Release text, with an MD5Sum list before SHA256 (which kina ignores)
/// and sizes right-aligned as dak writes them.
fn release_text(r: &Release) -> String {
    let mut text = String::new();
    for (field, value) in [
        ("Origin", &r.origin),
        ("Suite", &r.suite),
        ("Codename", &r.codename),
    ] {
        if let Some(v) = value {
            text.push_str(&format!("{field}: {v}\n"));
        }
    }
    text.push_str(&format!("Date: {}\n", rfc2822(r.date)));
    if let Some(d) = r.valid_for {
        text.push_str(&format!("Valid-Until: {}\n", rfc2822(r.date + d)));
    }
    if r.by_hash {
        text.push_str("Acquire-By-Hash: yes\n");
    }
    text.push_str("MD5Sum:\n");
    for (path, (_, size)) in &r.sha256 {
        text.push_str(&format!(" {} {size:>8} {path}\n", "0".repeat(32)));
    }
    text.push_str("SHA256:\n");
    for (path, (digest, size)) in &r.sha256 {
        text.push_str(&format!(
            " {} {size:>8} {path}\n",
            Sha256Digest::from_bytes(*digest).hex()
        ));
    }
    text
}

proptest! {
    // Signing and verifying take about a millisecond each (dependencies are
    // optimised in debug builds too).
    #![proptest_config(config(256))]

    /// A generated Release, signed by a trusted key, verifies and reads back
    /// to every field and SHA256 entry it was made from; when it has expired
    /// the Enforce policy refuses it naming Valid-Until, and Warn accepts it.
    #[test]
    fn signed_generated_release_reads_back(
        r in release(),
        later in 0u64..60 * 86_400,
        policy in prop_oneof![Just(ValidUntilPolicy::Warn), Just(ValidUntilPolicy::Enforce)],
    ) {
        let (_, keyring) = archive_key();
        let bytes = sign(&release_text(&r));
        let now = r.date + later;
        let expired = r.valid_for.is_some_and(|d| r.date + d < now);
        match verify_inrelease(SOURCE, &bytes, keyring, now, policy) {
            Ok(v) => {
                prop_assert!(!(expired && policy == ValidUntilPolicy::Enforce), "an expired Release was accepted");
                prop_assert_eq!(&v.origin, &r.origin);
                prop_assert_eq!(&v.suite, &r.suite);
                prop_assert_eq!(&v.codename, &r.codename);
                prop_assert_eq!(&v.date, &rfc2822(r.date));
                prop_assert_eq!(v.date_epoch, r.date);
                prop_assert_eq!(v.valid_until_epoch, r.valid_for.map(|d| r.date + d));
                prop_assert_eq!(v.acquire_by_hash, r.by_hash);
                let entries: BTreeMap<String, (Sha256Digest, u64)> = v
                    .sha256
                    .iter()
                    .map(|(p, e)| (p.clone(), (e.sha256, e.size)))
                    .collect();
                let expected: BTreeMap<String, (Sha256Digest, u64)> = r
                    .sha256
                    .iter()
                    .map(|(p, (d, s))| (p.clone(), (Sha256Digest::from_bytes(*d), *s)))
                    .collect();
                prop_assert_eq!(entries, expected);
                prop_assert_eq!(v.inrelease_sha256, Sha256Digest::of(&bytes));
                prop_assert!(keyring.signing_fingerprints().contains(&v.signed_by), "{}", v.signed_by);
            }
            Err(ReleaseError::Expired { source_name, valid_until }) => {
                prop_assert!(expired && policy == ValidUntilPolicy::Enforce, "refused as expired");
                prop_assert_eq!(source_name, SOURCE);
                prop_assert_eq!(valid_until, rfc2822(r.date + r.valid_for.unwrap()));
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    /// A signed Release whose SHA256 list has a malformed line, or whose
    /// Date is missing or unreadable, is refused as malformed, quoting the
    /// line or naming the field.
    #[test]
    fn signed_malformed_release_is_refused_naming_the_problem(
        r in release(),
        at in any::<proptest::sample::Index>(),
        breakage in 0u8..5,
    ) {
        let (_, keyring) = archive_key();
        let good = release_text(&r);
        let sha_lines: Vec<&str> = good
            .split("SHA256:\n")
            .nth(1)
            .unwrap()
            .lines()
            .collect();
        let line = sha_lines[at.index(sha_lines.len())];
        let (text, expect) = match breakage {
            0 => {
                let bad = line.replacen(' ', " x", 1);
                (good.replacen(line, &bad, 1), format!("`{}`", bad.trim()))
            }
            1 => {
                let bad = format!("{line} extra");
                (good.replacen(line, &bad, 1), format!("`{}`", bad.trim()))
            }
            2 => {
                let mut parts: Vec<&str> = line.split_whitespace().collect();
                parts[1] = "12k";
                let bad = parts.join(" ");
                (good.replacen(line, &format!(" {bad}"), 1), format!("`{bad}`"))
            }
            3 => {
                let date_line = format!("Date: {}\n", rfc2822(r.date));
                (good.replacen(&date_line, "", 1), "Date".to_string())
            }
            _ => {
                let date_line = format!("Date: {}\n", rfc2822(r.date));
                (good.replacen(&date_line, "Date: soon\n", 1), "Date: soon".to_string())
            }
        };
        let err = verify_inrelease(SOURCE, &sign(&text), keyring, r.date, ValidUntilPolicy::Warn)
            .unwrap_err();
        prop_assert!(matches!(err, ReleaseError::Malformed { .. }), "{err}");
        let message = err.to_string();
        prop_assert!(message.contains(SOURCE) && message.contains(&expect), "{message}");
    }

    /// Changing any one byte of the signed text after signing makes the
    /// file fail verification (or not parse as signed at all).
    #[test]
    fn signed_text_changed_after_signing_never_verifies(
        r in release(),
        at in any::<proptest::sample::Index>(),
        replacement in "[A-Za-z0-9]",
    ) {
        let (_, keyring) = archive_key();
        let text = release_text(&r);
        let signed = String::from_utf8(sign(&text)).unwrap();
        // The signed text sits between the armor header's blank line and the signature.
        let start = signed.find("\n\n").unwrap() + 2;
        let end = signed.find("-----BEGIN PGP SIGNATURE-----").unwrap();
        let i = start + at.index(end - start);
        let c = signed[i..].chars().next().unwrap();
        prop_assume!(c.is_ascii_alphanumeric() && c.to_string() != replacement);
        let mut tampered = signed.clone();
        tampered.replace_range(i..i + 1, &replacement);
        let err = verify_inrelease(SOURCE, tampered.as_bytes(), keyring, r.date, ValidUntilPolicy::Warn)
            .unwrap_err();
        prop_assert!(
            matches!(err, ReleaseError::BadSignature { .. } | ReleaseError::NotSigned { .. }),
            "{err}"
        );
    }
}
