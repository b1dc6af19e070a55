//! Property tests of untrusted archive input: the `.deb` (ar) reader and the
//! unpacking of `data.tar` into the in-memory root filesystem.
//!
//! What `rootfs::unpack` and `rootfs::path` promise, and what is asserted:
//! entry names are relative and free of `..` (else refused); nothing is ever
//! written through a symlink other than a merged-/usr alias, nor under a
//! file; hard links name a file of the same package; device nodes and FIFOs
//! are refused; a file another package installed is not replaced without
//! `Replaces`. Tar archives are built byte by byte here (names the `tar`
//! crate's own path setters would refuse included).

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;

use kina_builder::deb::reader::{DebError, DebPackage, read_deb};
use kina_builder::debian::control::parse_single;
use kina_builder::platform::Arch;
use kina_builder::rootfs::path::{PathError, setup_merged_usr};
use kina_builder::rootfs::tree::{NodeKind, Tree};
use kina_builder::rootfs::unpack::{UnpackError, Unpacker};
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ------------------------------------------------------------ tar writing --

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    Hardlink(String),
    Char,
    Block,
    Fifo,
}

#[derive(Clone, Debug)]
struct Entry {
    name: String,
    kind: Kind,
}

fn entry(name: &str, kind: Kind) -> Entry {
    Entry {
        name: name.to_string(),
        kind,
    }
}

/// One GNU long-name (`L`) or long-link (`K`) record carrying `value`.
fn long_record(builder: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, value: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    header.set_entry_type(kind);
    header.set_mode(0o644);
    let mut data = value.to_vec();
    data.push(0);
    header.set_size(data.len() as u64);
    header.set_cksum();
    builder.append(&header, data.as_slice()).unwrap();
}

/// A tar archive of `entries` with their names and link targets exactly as
/// given (absolute, with `..`, long: GNU long-name records past 100 bytes).
fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let (kind, data, link): (tar::EntryType, &[u8], Option<&str>) = match &e.kind {
            Kind::File(data) => (tar::EntryType::Regular, data, None),
            Kind::Dir => (tar::EntryType::Directory, &[], None),
            Kind::Symlink(t) => (tar::EntryType::Symlink, &[], Some(t)),
            Kind::Hardlink(t) => (tar::EntryType::Link, &[], Some(t)),
            Kind::Char => (tar::EntryType::Char, &[], None),
            Kind::Block => (tar::EntryType::Block, &[], None),
            Kind::Fifo => (tar::EntryType::Fifo, &[], None),
        };
        let name = e.name.as_bytes();
        if name.len() > 100 {
            long_record(&mut builder, tar::EntryType::GNULongName, name);
        }
        if let Some(link) = link.filter(|l| l.len() > 100) {
            long_record(&mut builder, tar::EntryType::GNULongLink, link.as_bytes());
        }
        let mut header = tar::Header::new_gnu();
        let n = name.len().min(100);
        header.as_old_mut().name[..n].copy_from_slice(&name[..n]);
        if let Some(link) = link {
            let n = link.len().min(100);
            header.as_old_mut().linkname[..n].copy_from_slice(&link.as_bytes()[..n]);
        }
        header.set_entry_type(kind);
        header.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn deb(package: &str, extra_control: &str, entries: &[Entry]) -> DebPackage {
    DebPackage {
        control: parse_single(&format!(
            "Package: {package}\nVersion: 1\nArchitecture: amd64\n{extra_control}"
        ))
        .unwrap(),
        control_files: Default::default(),
        data_tar: tar_of(entries),
    }
}

/// A merged-/usr root with one package, `base`, already unpacked: it owns
/// `etc/passwd` and `usr/bin/ls`.
fn base_root() -> (Tree, Unpacker) {
    let mut tree = Tree::new();
    setup_merged_usr(&mut tree, Arch::Amd64, 0);
    let mut unpacker = Unpacker::new(Arch::Amd64);
    let base = deb(
        "base",
        "",
        &[
            entry("./", Kind::Dir),
            entry("./etc/", Kind::Dir),
            entry(
                "./etc/passwd",
                Kind::File(b"root:x:0:0::/root:/bin/sh\n".to_vec()),
            ),
            entry("./bin/ls", Kind::File(b"\x7fELF ls".to_vec())),
        ],
    );
    unpacker.unpack(&mut tree, &base, "base.deb").unwrap();
    (tree, unpacker)
}

/// The containment invariants of a tree, whatever was unpacked into it.
fn assert_contained(tree: &Tree) -> Result<(), TestCaseError> {
    for (path, node) in tree.iter() {
        prop_assert!(!path.starts_with('/') && !path.contains('\0'), "{path:?}");
        for component in path.split('/') {
            prop_assert!(
                !matches!(component, "" | "." | ".."),
                "stored path `{path}` has a `{component}` component"
            );
        }
        // No path has a symlink, file or hard link above it: nothing was
        // written through a link or under a file.
        let mut ancestor = path;
        while let Some((parent, _)) = ancestor.rsplit_once('/') {
            if let Some(p) = tree.get(parent) {
                prop_assert!(
                    matches!(p.kind, NodeKind::Dir),
                    "`{path}` is stored under `{parent}`, a {:?}",
                    p.kind
                );
            }
            ancestor = parent;
        }
        if let NodeKind::Hardlink(target) = &node.kind {
            let t = tree.get(target);
            prop_assert!(
                t.is_some_and(|t| !matches!(t.kind, NodeKind::Dir)),
                "hard link `{path}` -> `{target}` names {t:?}"
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------- strategies --

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop_oneof![
            Just("etc"), Just("usr"), Just("bin"), Just("lib"), Just("lib64"),
            Just("a"), Just("b"), Just("passwd"),
        ]
        .prop_map(str::to_string),
        2 => prop_oneof![Just(".."), Just("."), Just("")].prop_map(str::to_string),
        1 => "[a-z]{100,160}",
        1 => "[a-z\u{e9}\u{4e2d} -]{1,8}",
    ]
}

fn hostile_path() -> impl Strategy<Value = String> {
    (
        prop_oneof![4 => Just(""), 4 => Just("./"), 1 => Just("/"), 1 => Just("//")],
        proptest::collection::vec(component(), 1..4),
        any::<bool>(),
    )
        .prop_map(|(prefix, parts, slash)| {
            format!(
                "{prefix}{}{}",
                parts.join("/"),
                if slash { "/" } else { "" }
            )
        })
}

fn hostile_kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..16).prop_map(Kind::File),
        2 => Just(Kind::Dir),
        3 => prop_oneof![
            Just("/".to_string()), Just("/etc".to_string()), Just("..".to_string()),
            Just("../../..".to_string()), Just("usr/bin".to_string()),
            Just("/root/.ssh".to_string()), hostile_path(),
        ]
        .prop_map(Kind::Symlink),
        2 => hostile_path().prop_map(Kind::Hardlink),
        1 => prop_oneof![Just(Kind::Char), Just(Kind::Block), Just(Kind::Fifo)],
    ]
}

fn hostile_entries() -> impl Strategy<Value = Vec<Entry>> {
    proptest::collection::vec(
        (hostile_path(), hostile_kind()).prop_map(|(name, kind)| Entry { name, kind }),
        1..10,
    )
}

/// Names that are neither root entries nor refused by name.
fn benign_name() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("usr/share"),
            Just("etc/kina"),
            Just("bin"),
            Just("opt/x")
        ],
        proptest::collection::vec(
            "[a-z0-9\u{e9}\u{4e2d}_-][a-z0-9\u{e9}\u{4e2d}._-]{0,11}|[a-z]{90,130}",
            1..3,
        ),
    )
        .prop_map(|(top, parts)| format!("{top}/{}", parts.join("/")))
}

/// No name is a file above another one, and none is base's `bin/ls`.
fn unpackable_together(names: &[&String]) -> bool {
    names
        .iter()
        .all(|a| a.as_str() != "bin/ls" && names.iter().all(|b| !b.starts_with(&format!("{a}/"))))
}

fn deb_bytes(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = ar::Builder::new(Vec::new());
    for (name, data) in members {
        let header = ar::Header::new(name.as_bytes().to_vec(), data.len() as u64);
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn compress(ext: &str, data: &[u8]) -> Vec<u8> {
    match ext {
        "" => data.to_vec(),
        ".gz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        ".xz" => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        ".zst" => zstd::encode_all(data, 1).unwrap(),
        other => panic!("no compressor for {other}"),
    }
}

fn compression() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(""), Just(".gz"), Just(".xz"), Just(".zst")]
}

proptest! {
    #![proptest_config(config(1024))]

    // --------------------------------------------------------- .deb/ar --

    /// Any bytes, bare or behind the ar magic, are read or refused with an
    /// error naming the file; what is read has a control paragraph.
    #[test]
    fn deb_any_bytes_are_read_or_refused_naming_the_file(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        magic in any::<bool>(),
    ) {
        let mut input = if magic { b"!<arch>\n".to_vec() } else { Vec::new() };
        input.extend_from_slice(&bytes);
        match read_deb(&input, "pool/x.deb") {
            Ok(p) => prop_assert!(!p.control.is_empty()),
            Err(e) => prop_assert!(e.to_string().starts_with("pool/x.deb: "), "{e}"),
        }
    }

    /// Generated packages, with every compression kina supports for each
    /// tarball, read back to their control paragraph, control files and
    /// exact data.tar.
    #[test]
    fn deb_generated_packages_read_back(
        name in "[a-z0-9][a-z0-9+.-]{1,12}",
        description in "[!-~]([ -~]{0,30}[!-~])?",
        scripts in proptest::collection::btree_map(
            prop_oneof![Just("md5sums"), Just("postinst"), Just("conffiles"), Just("triggers")],
            proptest::collection::vec(any::<u8>(), 0..64),
            0..4,
        ),
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        control_ext in compression(),
        data_ext in compression(),
        dot_slash in any::<bool>(),
    ) {
        let control_text = format!("Package: {name}\nVersion: 1.0-1\nDescription: {description}\n");
        let prefix = if dot_slash { "./" } else { "" };
        let mut control_entries = vec![entry(&format!("{prefix}control"), Kind::File(control_text.into_bytes()))];
        for (file, contents) in &scripts {
            control_entries.push(entry(&format!("{prefix}{file}"), Kind::File(contents.clone())));
        }
        let control_tar = compress(control_ext, &tar_of(&control_entries));
        let data_tar = compress(data_ext, &data);
        let bytes = deb_bytes(&[
            ("debian-binary", b"2.0\n"),
            (&format!("control.tar{control_ext}"), &control_tar),
            (&format!("data.tar{data_ext}"), &data_tar),
        ]);
        let p = read_deb(&bytes, "x.deb").unwrap();
        prop_assert_eq!(p.name(), name.as_str());
        prop_assert_eq!(p.control.get("Description"), Some(description.as_str()));
        let files: std::collections::BTreeMap<String, Vec<u8>> =
            scripts.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect();
        prop_assert_eq!(&p.control_files, &files);
        prop_assert_eq!(p.data_tar, data);
    }

    /// A compressed member whose bytes are not what its name says, a missing
    /// member or a format other than 2.x is refused, naming the file and, for
    /// a member that does not decompress, the member.
    #[test]
    fn deb_broken_packages_are_refused_saying_what_is_wrong(
        garbage in proptest::collection::vec(any::<u8>(), 4..64),
        ext in prop_oneof![Just(".gz"), Just(".xz"), Just(".zst"), Just(".bz2")],
        which in 0u8..4,
    ) {
        let control_tar = tar_of(&[entry("control", Kind::File(b"Package: a\n".to_vec()))]);
        let data_member = format!("data.tar{ext}");
        let (members, expect): (Vec<(&str, &[u8])>, &str) = match which {
            0 => (
                vec![("debian-binary", b"2.0\n"), ("control.tar", &control_tar), (&data_member, &garbage)],
                &data_member,
            ),
            1 => (vec![("debian-binary", b"2.0\n"), ("control.tar", &control_tar)], "no data.tar"),
            2 => (
                vec![("debian-binary", b"3.0\n"), ("control.tar", &control_tar), ("data.tar", &garbage)],
                "format 3.0",
            ),
            _ => (vec![("control.tar", &control_tar), ("data.tar", &garbage)], "no debian-binary"),
        };
        let err = read_deb(&deb_bytes(&members), "x.deb").unwrap_err();
        let message = err.to_string();
        prop_assert!(message.starts_with("x.deb: "), "{message}");
        prop_assert!(message.contains(expect), "{message}");
        if which == 0 {
            prop_assert!(matches!(err, DebError::Member { .. }), "{message}");
        }
    }

    // ----------------------------------------------------------- unpack --

    /// Archives of hostile entries (absolute names, `..`, symlinks out of the
    /// tree then entries through them, hard links anywhere, long names,
    /// duplicates, device nodes) never leave anything stored through a link
    /// or under a file, never replace another package's file, and are
    /// accepted only if no entry was of a refused kind or name.
    #[test]
    fn unpack_hostile_entries_stay_contained(entries in hostile_entries()) {
        let (mut tree, mut unpacker) = base_root();
        let before = tree.clone();
        let result = unpacker.unpack(&mut tree, &deb("evil", "", &entries), "evil.deb");
        assert_contained(&tree)?;
        for path in ["etc/passwd", "usr/bin/ls"] {
            prop_assert_eq!(tree.get(path), before.get(path), "base's /{} was replaced", path);
        }
        match result {
            Ok(installed) => {
                for e in &entries {
                    prop_assert!(
                        !matches!(e.kind, Kind::Char | Kind::Block | Kind::Fifo),
                        "a {:?} entry `{}` was accepted", e.kind, e.name
                    );
                    let root = e.name.trim_start_matches("./").trim_end_matches('/').is_empty()
                        && e.kind == Kind::Dir;
                    prop_assert!(
                        root || (!e.name.starts_with('/')
                            && !e.name.split('/').any(|c| c == "..")),
                        "entry `{}` was accepted", e.name
                    );
                }
                prop_assert_eq!(installed.first().map(String::as_str), Some("/."));
                for p in &installed[1..] {
                    prop_assert!(tree.contains(&p[1..]), "{p} is listed but not in the tree");
                }
            }
            Err(e) => prop_assert!(e.to_string().starts_with("evil.deb"), "{e}"),
        }
    }

    /// Each kind of hostile entry, after any number of harmless ones, is
    /// refused with the error that names it, and stores nothing.
    #[test]
    fn unpack_each_hostile_entry_is_refused_with_a_clear_error(
        harmless in proptest::collection::btree_set(benign_name(), 0..4),
        hostile in 0u8..8,
        name in "[a-z]{1,8}",
    ) {
        let names: Vec<&String> = harmless.iter().collect();
        prop_assume!(unpackable_together(&names));
        let (mut tree, mut unpacker) = base_root();
        let mut entries: Vec<Entry> = harmless
            .iter()
            .map(|n| entry(&format!("./{n}"), Kind::File(n.as_bytes().to_vec())))
            .collect();
        let (bad, expect): (Vec<Entry>, fn(&UnpackError) -> bool) = match hostile {
            0 => (vec![entry(&format!("/etc/{name}"), Kind::File(b"x".to_vec()))],
                  |e| matches!(e, UnpackError::Path { source: PathError::Absolute(_), .. })),
            1 => (vec![entry(&format!("./usr/../../{name}"), Kind::File(b"x".to_vec()))],
                  |e| matches!(e, UnpackError::Path { source: PathError::ParentDir(_), .. })),
            2 => (vec![
                    entry(&format!("./tmp-{name}"), Kind::Symlink("/etc".into())),
                    entry(&format!("./tmp-{name}/shadow"), Kind::File(b"x".to_vec())),
                  ],
                  |e| matches!(e, UnpackError::Path { source: PathError::ThroughSymlink { .. }, .. })),
            3 => (vec![entry(&format!("./{name}"), Kind::Hardlink("./etc/passwd".into()))],
                  |e| matches!(e, UnpackError::Entry { problem, .. } if problem.contains("not a file of this package"))),
            4 => (vec![entry(&format!("./dev/{name}"), Kind::Char)],
                  |e| matches!(e, UnpackError::Entry { problem, .. } if problem.contains("only files, directories and links"))),
            5 => (vec![entry(&format!("./run/{name}"), Kind::Fifo)],
                  |e| matches!(e, UnpackError::Entry { problem, .. } if problem.contains("only files, directories and links"))),
            6 => (vec![entry(&format!("./etc/passwd/{name}"), Kind::File(b"x".to_vec()))],
                  |e| matches!(e, UnpackError::Path { source: PathError::UnderFile { .. }, .. })),
            _ => (vec![entry("./etc/passwd", Kind::File(b"toor::0:0\n".to_vec()))],
                  |e| matches!(e, UnpackError::Overwrite { owner, .. } if owner == "base")),
        };
        let last = bad.last().unwrap().name.clone();
        entries.extend(bad);
        let before = tree.clone();
        let err = unpacker.unpack(&mut tree, &deb("evil", "", &entries), "evil.deb").unwrap_err();
        prop_assert!(expect(&err), "{err:?}");
        let message = err.to_string();
        prop_assert!(message.starts_with("evil.deb"), "{message}");
        let shown = last.trim_start_matches("./");
        prop_assert!(message.contains(shown), "`{message}` does not name `{shown}`");
        assert_contained(&tree)?;
        prop_assert_eq!(tree.get("etc/passwd"), before.get("etc/passwd"));
        let (through_link, absolute) = (format!("tmp-{name}/shadow"), format!("etc/{name}"));
        prop_assert!(!tree.contains(&through_link) && !tree.contains(&absolute));
    }

    /// Harmless archives (long and non-ASCII names, `./` or not, duplicate
    /// entries, names through the merged-/usr aliases) unpack to exactly
    /// their contents, the last duplicate winning, `bin/…` landing in
    /// `usr/bin/…`, and the installed list naming each entry in order.
    #[test]
    fn unpack_harmless_archives_unpack_faithfully(
        files in proptest::collection::vec(
            (benign_name(), proptest::collection::vec(any::<u8>(), 0..32), any::<bool>()),
            1..8,
        ),
        duplicate in any::<proptest::sample::Index>(),
    ) {
        let (mut tree, mut unpacker) = base_root();
        let names: Vec<&String> = files.iter().map(|(n, _, _)| n).collect();
        prop_assume!(unpackable_together(&names));
        let mut entries: Vec<Entry> = files
            .iter()
            .map(|(n, data, dot)| entry(&format!("{}{n}", if *dot { "./" } else { "" }), Kind::File(data.clone())))
            .collect();
        let again = duplicate.index(files.len());
        entries.push(entry(&files[again].0, Kind::File(b"second copy".to_vec())));
        let installed = unpacker.unpack(&mut tree, &deb("good", "", &entries), "good.deb").unwrap();
        let canonical = |n: &str| match n.strip_prefix("bin/") {
            Some(rest) => format!("usr/bin/{rest}"),
            None => n.to_string(),
        };
        let mut expected_list = vec!["/.".to_string()];
        for e in &entries {
            expected_list.push(format!("/{}", canonical(e.name.trim_start_matches("./"))));
        }
        prop_assert_eq!(installed, expected_list);
        for (i, (n, data, _)) in files.iter().enumerate() {
            let last = entries.iter().rposition(|e| e.name.trim_start_matches("./") == n).unwrap();
            let want = match &entries[last].kind {
                Kind::File(d) => d.clone(),
                _ => unreachable!(),
            };
            let got = tree.get(&canonical(n)).map(|node| node.kind.clone());
            prop_assert_eq!(got, Some(NodeKind::File(want.into())), "entry {} ({:?})", i, data);
        }
        prop_assert!(matches!(tree.get("bin").map(|n| &n.kind), Some(NodeKind::Symlink(_))));
        assert_contained(&tree)?;
    }

    /// Arbitrary bytes, and valid archives with bytes overwritten, as a
    /// data.tar are unpacked or refused naming the package file; the tree
    /// stays contained either way.
    #[test]
    fn unpack_corrupt_data_tar_is_refused_naming_the_file(
        files in proptest::collection::vec((benign_name(), proptest::collection::vec(any::<u8>(), 0..600)), 1..4),
        damage in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 0..8),
        raw in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..1200)),
    ) {
        let (mut tree, mut unpacker) = base_root();
        let mut package = deb("junk", "", &[]);
        package.data_tar = raw.unwrap_or_else(|| {
            let entries: Vec<Entry> = files.iter().map(|(n, d)| entry(n, Kind::File(d.clone()))).collect();
            let mut bytes = tar_of(&entries);
            for (at, byte) in &damage {
                let i = at.index(bytes.len());
                bytes[i] = *byte;
            }
            bytes
        });
        if let Err(e) = unpacker.unpack(&mut tree, &package, "junk.deb") {
            prop_assert!(e.to_string().starts_with("junk.deb"), "{e}");
        }
        assert_contained(&tree)?;
    }
}

/// Found by `unpack_hostile_entries_stay_contained`: a file listed before
/// its parent, then the parent as a symlink to `/` (or as a file), left the
/// file stored under the symlink, so a layer would write `/passwd/x` through
/// `passwd -> /`.
#[test]
fn a_link_or_file_over_entries_already_unpacked_under_it_is_refused() {
    for parent in [Kind::Symlink("/".into()), Kind::File(b"x".to_vec())] {
        let (mut tree, mut unpacker) = base_root();
        let entries = [
            entry("./escape/x", Kind::File(Vec::new())),
            entry("./escape", parent.clone()),
        ];
        let err = unpacker
            .unpack(&mut tree, &deb("evil", "", &entries), "evil.deb")
            .unwrap_err();
        assert!(err.to_string().contains("entries exist under it"), "{err}");
        assert!(tree.get("escape").is_none(), "{parent:?}");
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// A file entry whose header claims more bytes than the archive holds
    /// (up to the largest size a tar header can encode) is refused as
    /// corrupt, without trying to allocate what it claims (a crash or an
    /// abort fails the test as surely as a wrong answer).
    #[test]
    fn unpack_a_size_beyond_the_archive_is_refused(
        claimed in prop_oneof![1_000u64..1_000_000, any::<u64>()],
        data in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        prop_assume!(claimed > data.len() as u64);
        let mut bytes = big_file_header(claimed);
        bytes.extend_from_slice(&data);
        let (mut tree, mut unpacker) = base_root();
        let mut package = deb("big", "", &[]);
        package.data_tar = bytes;
        let err = unpacker.unpack(&mut tree, &package, "big.deb").unwrap_err();
        prop_assert!(matches!(err, UnpackError::Corrupt { .. }), "{err}");
        prop_assert!(err.to_string().starts_with("big.deb: data.tar is corrupt"), "{err}");
    }

    /// A package cut short anywhere after the ar magic (inside any member,
    /// an uncompressed data.tar included) is refused, naming the file.
    #[test]
    fn deb_a_truncated_package_is_refused(
        data in proptest::collection::vec(any::<u8>(), 1..512),
        cut in any::<proptest::sample::Index>(),
    ) {
        let control_tar = tar_of(&[entry("control", Kind::File(b"Package: a\n".to_vec()))]);
        let bytes = deb_bytes(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &control_tar),
            ("data.tar", &data),
        ]);
        prop_assert!(read_deb(&bytes, "x.deb").is_ok());
        // Keep the magic; drop at least one byte of content (not just the
        // padding byte an odd-sized last member gets).
        let end = bytes.len() - data.len() % 2;
        let keep = 8 + cut.index(end - 8);
        match read_deb(&bytes[..keep], "x.deb") {
            Ok(p) => prop_assert!(false, "cut at {keep} of {}: read {} of {} data bytes", bytes.len(), p.data_tar.len(), data.len()),
            Err(e) => prop_assert!(e.to_string().starts_with("x.deb: "), "{e}"),
        }
    }

    /// An ar member header claiming more bytes than follow (up to the ten
    /// decimal digits the field holds) is refused, naming the file.
    #[test]
    fn deb_a_member_size_beyond_the_file_is_refused(
        claimed in prop_oneof![100u64..10_000, 0u64..10_000_000_000],
        name in prop_oneof![Just("debian-binary"), Just("control.tar.gz"), Just("data.tar")],
        data in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        prop_assume!(claimed > data.len() as u64);
        let mut bytes = b"!<arch>\n".to_vec();
        bytes.extend_from_slice(format!("{name:<16}{:<12}{:<6}{:<6}{:<8}{claimed:<10}`\n", 0, 0, 0, 100_644).as_bytes());
        bytes.extend_from_slice(&data);
        let err = read_deb(&bytes, "x.deb").unwrap_err();
        prop_assert!(err.to_string().starts_with("x.deb: "), "{err}");
    }
}

/// Found by `unpack_a_size_beyond_the_archive_is_refused`: the claimed size
/// was reserved up front, and the allocation failure aborted the process.
#[test]
fn a_tar_header_claiming_exabytes_is_refused_without_aborting() {
    let (mut tree, mut unpacker) = base_root();
    let mut package = deb("big", "", &[]);
    package.data_tar = big_file_header(7_952_167_985_320_972_571);
    let err = unpacker.unpack(&mut tree, &package, "big.deb").unwrap_err();
    assert!(matches!(err, UnpackError::Corrupt { .. }), "{err}");
}

/// Found by `deb_a_truncated_package_is_refused`: a member shorter than its
/// header says was read as whatever bytes were there, so a cut uncompressed
/// data.tar became a shorter (here empty) one.
#[test]
fn a_member_shorter_than_its_header_is_refused() {
    let control_tar = tar_of(&[entry("control", Kind::File(b"Package: a\n".to_vec()))]);
    let data = vec![7u8; 287];
    let bytes = deb_bytes(&[
        ("debian-binary", b"2.0\n"),
        ("control.tar", &control_tar),
        ("data.tar", &data),
    ]);
    let cut = bytes.len() - data.len() - 1;
    let err = read_deb(&bytes[..cut], "x.deb").unwrap_err();
    assert!(
        matches!(&err, DebError::Member { member, .. } if member == "data.tar"),
        "{err}"
    );
    assert!(err.to_string().contains("truncated"), "{err}");
}

/// The tar header of a regular file `./big-x` claiming `size` bytes.
fn big_file_header(size: u64) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..7].copy_from_slice(b"./big-x");
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(size);
    header.set_cksum();
    header.as_bytes().to_vec()
}
