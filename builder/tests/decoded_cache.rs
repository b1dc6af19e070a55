//! The decoded-package cache in a build: a package built by `dpkg-deb` is
//! assembled from its `.deb`, then from the cache entry that first build
//! left, then from damaged entries. The layers must be the same every time,
//! a damaged entry must never reach a layer (the `.deb` is decoded again and
//! the entry replaced), and without a usable entry or `.deb` the build must
//! fail naming the package.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use kina_builder::assemble::path_filter::PathFilters;
use kina_builder::assemble::stages::{DebSource, build_layers};
use kina_builder::deb::decoded::DecodedDebs;
use kina_builder::digest::Sha256Digest;
use kina_builder::rootfs::tree::Tree;

const PACKAGE: &str = "cache-probe";
const EPOCH: u64 = 1_700_000_000;

/// A package with a few files, one of them large enough to span many tar
/// blocks, built by `dpkg-deb` with xz as Debian's packages are; `probe` is
/// the contents of one of them.
fn build_deb(dir: &Path, probe: &[u8]) -> Vec<u8> {
    let root = dir.join("pkg");
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::create_dir_all(root.join("usr/share/cache-probe")).unwrap();
    std::fs::write(root.join("usr/bin/probe"), probe).unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(root.join("usr/share/cache-probe/data.bin"), big).unwrap();
    common::dpkg_deb_build(
        &root,
        &dir.join("probe.deb"),
        PACKAGE,
        "test package for the decoded cache",
    )
}

fn build(deb: &[u8], source: DebSource, cache: &DecodedDebs) -> Result<Vec<Tree>, String> {
    let inputs = common::platform_inputs(
        common::locked_package(PACKAGE, deb),
        source,
        Some(cache.clone()),
        PathFilters::new(&[]),
    );
    build_layers(&inputs, EPOCH)
        .map(|built| built.layers.into_iter().map(|(_, tree)| tree).collect())
        .map_err(|e| e.to_string())
}

struct Fixture {
    _dir: tempfile::TempDir,
    deb: Vec<u8>,
    deb_path: PathBuf,
    cache: DecodedDebs,
    entry: PathBuf,
    /// The layers built straight from the `.deb`, with no entry.
    expected: Vec<Tree>,
}

/// Builds once from the `.deb`'s bytes, which leaves the cache entry.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let deb = build_deb(dir.path(), b"\x7fELF probe");
    let deb_path = dir.path().join("probe.deb");
    let cache = DecodedDebs::open(&dir.path().join("cache")).unwrap();
    let entry = cache.entry_path(&Sha256Digest::of(&deb));
    assert!(!entry.exists());
    let expected = build(&deb, DebSource::Bytes(deb.clone()), &cache).unwrap();
    assert!(entry.exists(), "decoding the package stored its entry");
    Fixture {
        _dir: dir,
        deb,
        deb_path,
        cache,
        entry,
        expected,
    }
}

#[test]
fn a_whole_entry_builds_the_same_layers_without_reading_the_deb() {
    let f = fixture();
    // The `.deb` path names nothing: only the entry can have served.
    let gone = f.deb_path.with_extension("absent");
    let layers = build(&f.deb, DebSource::Cached(gone), &f.cache).unwrap();
    assert_eq!(layers, f.expected);
}

#[test]
fn a_damaged_entry_is_never_used_and_is_rebuilt_from_the_deb() {
    let f = fixture();
    let whole = std::fs::read(&f.entry).unwrap();
    let damages: Vec<(&str, Vec<u8>)> = vec![
        ("a flipped byte in data.tar", {
            let mut b = whole.clone();
            let at = b.len() - 5000;
            b[at] ^= 0x20;
            b
        }),
        ("truncated", whole[..whole.len() / 2].to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in damages {
        std::fs::write(&f.entry, &bytes).unwrap();
        let layers = build(&f.deb, DebSource::Cached(f.deb_path.clone()), &f.cache).unwrap();
        assert_eq!(layers, f.expected, "{what}: the layers come from the .deb");
        assert_eq!(
            std::fs::read(&f.entry).unwrap(),
            whole,
            "{what}: the entry is written anew"
        );
    }
}

#[test]
fn a_damaged_entry_without_its_deb_fails_naming_the_package() {
    let f = fixture();
    let mut bytes = std::fs::read(&f.entry).unwrap();
    let at = bytes.len() - 1;
    bytes[at] ^= 1;
    std::fs::write(&f.entry, &bytes).unwrap();
    let gone = f.deb_path.with_extension("absent");
    let err = build(&f.deb, DebSource::Cached(gone.clone()), &f.cache).unwrap_err();
    assert!(err.contains(PACKAGE), "{err}");
    assert!(err.contains(&gone.display().to_string()), "{err}");
    assert!(!f.entry.exists(), "the damaged entry is removed");
}

#[test]
fn a_deb_that_does_not_match_the_lock_is_refused() {
    let f = fixture();
    std::fs::remove_file(&f.entry).unwrap();
    let mut other = f.deb.clone();
    other.push(b'\n');
    std::fs::write(&f.deb_path, &other).unwrap();
    let err = build(&f.deb, DebSource::Cached(f.deb_path.clone()), &f.cache).unwrap_err();
    assert!(err.contains("not the"), "{err}");
    assert!(!f.entry.exists(), "nothing is cached from a wrong .deb");
}

#[test]
fn another_packages_entry_under_this_name_is_not_used() {
    let f = fixture();
    // A whole entry of a different package, copied under this one's name.
    let other_dir = tempfile::tempdir().unwrap();
    let other_deb = build_deb(other_dir.path(), b"\x7fELF another probe");
    assert_ne!(other_deb, f.deb);
    build(&other_deb, DebSource::Bytes(other_deb.clone()), &f.cache).unwrap();
    let other_entry = f.cache.entry_path(&Sha256Digest::of(&other_deb));
    std::fs::copy(&other_entry, &f.entry).unwrap();
    let layers = build(&f.deb, DebSource::Cached(f.deb_path.clone()), &f.cache).unwrap();
    assert_eq!(layers, f.expected);
}
