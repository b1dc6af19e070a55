//! Lockfiles: what `kina image lock` writes is exactly what builds read
//! back, whatever the strings in it (an archive's package names, versions
//! and dates are input kina does not control), and the committed locks of
//! the shipped recipes re-serialise to their very bytes, so locking again
//! with nothing changed rewrites nothing.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use kina_builder::digest::Sha256Digest;
use kina_builder::lock::{LOCK_SCHEMA, LayerName, Lock, LockedImage, LockedPackage, LockedRelease};
use kina_builder::platform::Arch;
use kina_builder::recipe::DebianArchive;
use proptest::prelude::*;

/// Strings with what TOML must escape: quotes, backslashes, control
/// characters, line breaks, non-ASCII, `#` and `=`.
fn text() -> impl Strategy<Value = String> {
    "(\\PC|[\"\\\\#=\\n\\t\\r\u{0}\u{7f}]){0,24}"
}

fn digest() -> impl Strategy<Value = Sha256Digest> {
    any::<[u8; 32]>().prop_map(Sha256Digest::from_bytes)
}

fn arch() -> impl Strategy<Value = Arch> {
    prop::sample::select(Arch::ALL.to_vec())
}

fn archive() -> impl Strategy<Value = DebianArchive> {
    prop::sample::select(vec![DebianArchive::Debian, DebianArchive::DebianSecurity])
}

fn package() -> impl Strategy<Value = LockedPackage> {
    (
        (arch(), text(), text(), text(), archive(), text()),
        (text(), any::<u64>(), digest(), text(), text()),
        prop::sample::select(LayerName::ALL.to_vec()),
    )
        .prop_map(
            |(
                (platform, name, version, architecture, archive, suite),
                (filename, size, sha256, source, source_version),
                layer,
            )| LockedPackage {
                platform,
                name,
                version,
                architecture,
                archive,
                suite,
                filename,
                // TOML integers are i64.
                size: size >> 1,
                sha256,
                source,
                source_version,
                layer,
            },
        )
}

fn lock() -> impl Strategy<Value = Lock> {
    (
        text(),
        digest(),
        0u64..(1 << 40),
        prop::collection::vec(
            (archive(), text(), text(), digest(), text()).prop_map(
                |(archive, suite, date, inrelease_sha256, signed_by)| LockedRelease {
                    archive,
                    suite,
                    date,
                    inrelease_sha256,
                    signed_by,
                },
            ),
            0..3,
        ),
        prop::collection::vec(package(), 0..6),
        prop::collection::vec(
            (arch(), text(), digest(), digest()).prop_map(
                |(platform, reference, digest, manifest_digest)| LockedImage {
                    platform,
                    reference,
                    digest,
                    manifest_digest,
                },
            ),
            0..3,
        ),
    )
        .prop_map(
            |(recipe, recipe_sha256, source_date_epoch, releases, packages, images)| Lock {
                schema: LOCK_SCHEMA,
                recipe,
                recipe_sha256,
                source_date_epoch,
                releases,
                packages,
                artifacts: Vec::new(),
                images,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_written_lock_reads_back_as_written_and_is_not_rewritten(lock in lock()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.lock");
        prop_assert!(lock.write_if_changed(&path).unwrap());
        let back = Lock::read(&path, Path::new("r.toml")).unwrap();
        prop_assert_eq!(&back, &lock);
        prop_assert!(!back.write_if_changed(&path).unwrap(), "same lock, new bytes");
    }

    /// A damaged lockfile is refused naming the file and the command that
    /// makes a new one; it never panics.
    #[test]
    fn any_text_is_a_lock_or_refused_by_name(text in "(\\PC|\\n){0,300}") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.lock");
        std::fs::write(&path, &text).unwrap();
        if let Err(e) = Lock::read(&path, Path::new("r.toml")) {
            let message = e.to_string();
            prop_assert!(message.contains("r.lock"), "{}", message);
            prop_assert!(message.contains("kina image lock"), "{}", message);
        }
    }
}

#[test]
fn shipped_locks_reserialise_to_their_bytes() {
    let recipes = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes");
    let mut seen = 0;
    for entry in std::fs::read_dir(&recipes).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "lock") {
            let lock = Lock::read(&path, &path.with_extension("toml")).unwrap();
            assert_eq!(
                lock.to_toml().unwrap(),
                std::fs::read_to_string(&path).unwrap(),
                "{}",
                path.display()
            );
            seen += 1;
        }
    }
    assert!(
        seen >= 4,
        "only {seen} lockfiles under {}",
        recipes.display()
    );
}
