//! `kina lock` and `kina image build` against a signed Debian repository made
//! by the test (generated key, real .deb files from dpkg-deb) and served by a
//! real HTTP server on loopback: the whole trust chain, and every way an input
//! can be bad.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use kina_tests::{BuiltDeb, DebBuilder, HttpServer, PublishOptions, SignedRepo, Tamper};

const SUITE: &str = "kina-test";

/// A repository, its server, and a work directory with a recipe for it.
struct Fixture {
    dir: tempfile::TempDir,
    repo: SignedRepo,
    server: Option<HttpServer>,
    debs: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let debs = dir.path().join("debs");
        std::fs::create_dir_all(&debs).unwrap();
        Self {
            repo: SignedRepo::new(SUITE, &["amd64", "arm64"]).unwrap(),
            dir,
            server: None,
            debs,
        }
    }

    fn add(&mut self, deb: DebBuilder) -> BuiltDeb {
        let built = deb.build(&self.debs).unwrap();
        self.repo.add(&built).unwrap();
        built
    }

    fn publish(&mut self, tamper: Option<Tamper>) {
        self.repo
            .publish(&PublishOptions {
                tamper,
                ..Default::default()
            })
            .unwrap();
        self.server = Some(HttpServer::serve_dir(self.repo.root()).unwrap());
    }

    fn server(&self) -> &HttpServer {
        self.server.as_ref().unwrap()
    }

    /// Writes a recipe installing `packages` from the repository and returns its path.
    fn recipe(&self, packages: &[&str]) -> PathBuf {
        let mut text = recipe_head(
            "local-test",
            self.server().url(),
            SUITE,
            self.repo.keyring_path(),
            packages,
        );
        text.push_str("\n[kina_init]\nsource = \"local\"\npath = \"kina-init.{rust_target}\"\n");
        let path = self.dir.path().join("local.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn kina(&self) -> Command {
        let mut cmd = kina(self.dir.path());
        cmd.current_dir(self.dir.path());
        cmd
    }

    fn lock(&self, recipe: &Path) {
        run_ok(self.kina().args(["image", "lock", "--recipe"]).arg(recipe));
    }

    fn build(&self, recipe: &Path, output: &Path) -> Command {
        let mut cmd = self.kina();
        cmd.args(["image", "build", "--recipe"])
            .arg(recipe)
            .arg("--output")
            .arg(output)
            .args(kina_init_flags());
        cmd
    }

    fn cache_entries(&self) -> Vec<String> {
        let dir = self.dir.path().join("cache/blobs/sha256");
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn hello_packages(f: &mut Fixture) -> (BuiltDeb, BuiltDeb) {
    let lib = f.add(
        DebBuilder::new("libhello1", "1.0-1", "amd64")
            .field("Multi-Arch", "same")
            .file(
                "usr/lib/x86_64-linux-gnu/libhello.so.1",
                b"\x7fELF fake library".to_vec(),
                0o644,
            ),
    );
    f.add(
        DebBuilder::new("libhello1", "1.0-1", "arm64")
            .field("Multi-Arch", "same")
            .file(
                "usr/lib/aarch64-linux-gnu/libhello.so.1",
                b"\x7fELF fake library".to_vec(),
                0o644,
            ),
    );
    let hello = f.add(
        DebBuilder::new("hello", "2.10-3", "all")
            .field("Depends", "libhello1 (>= 1.0), default-greeting")
            .file("usr/bin/hello", b"#!/bin/sh\necho hello\n".to_vec(), 0o755)
            .file("usr/bin/hello-admin", b"#!/bin/sh\n".to_vec(), 0o4755)
            .file("etc/hello.conf", b"greeting=hi\n".to_vec(), 0o640)
            .control_file("conffiles", b"/etc/hello.conf\n".to_vec(), 0o644),
    );
    f.add(
        DebBuilder::new("greeting-en", "1", "all")
            .field("Provides", "default-greeting")
            .file("usr/share/greeting/en", b"hi\n".to_vec(), 0o644),
    );
    (lib, hello)
}

#[test]
fn a_signed_local_repository_builds_an_image_that_independent_tools_read() {
    require_tool("umoci");
    let mut f = Fixture::new();
    hello_packages(&mut f);
    f.publish(None);
    let recipe = f.recipe(&["hello"]);
    f.lock(&recipe);
    let lock = std::fs::read_to_string(recipe.with_extension("lock")).unwrap();
    for name in ["hello", "libhello1", "greeting-en"] {
        assert!(
            lock.contains(&format!("name = \"{name}\"")),
            "{name} missing from lock:\n{lock}"
        );
    }
    assert!(
        !lock.contains(f.server().url().trim_start_matches("http://")),
        "the lock names no mirror host"
    );

    let output = f.dir.path().join("out");
    run_ok(&mut f.build(&recipe, &output));
    // Layout tools address kina's layout by its tag alone, as they do
    // buildx's (`org.opencontainers.image.ref.name` holds the tag).
    let tags = run_ok(Command::new("umoci").args(["ls", "--layout"]).arg(&output));
    assert_eq!(String::from_utf8_lossy(&tags.stdout).trim(), "local-test");
    let layout = format!("{}:local-test", output.display());
    for arch in ["amd64", "arm64"] {
        let root = unpack_platform(&format!("oci:{layout}"), arch, f.dir.path()).rootfs;
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(root.join("usr/bin/hello-admin"))
                .unwrap()
                .mode()
                & 0o7777,
            0o4755
        );
        assert_eq!(
            std::fs::metadata(root.join("etc/hello.conf"))
                .unwrap()
                .mode()
                & 0o7777,
            0o640
        );
        let triplet = if arch == "amd64" {
            "x86_64-linux-gnu"
        } else {
            "aarch64-linux-gnu"
        };
        assert!(
            root.join(format!("usr/lib/{triplet}/libhello.so.1"))
                .exists()
        );
        let status = std::fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
        assert!(
            status.contains("Package: hello\nStatus: install ok installed\n"),
            "{status}"
        );
        assert!(status.contains("Conffiles:\n /etc/hello.conf "), "{status}");
        assert!(
            root.join("var/lib/dpkg/info/libhello1:".to_string() + arch + ".list")
                .exists()
        );
    }
}

#[test]
fn a_tampered_deb_is_refused_and_nothing_is_cached_or_written() {
    let mut f = Fixture::new();
    let (_, hello) = hello_packages(&mut f);
    f.publish(None);
    let recipe = f.recipe(&["hello"]);
    f.lock(&recipe);
    // The mirror now serves different bytes for the locked file.
    let pool = f.repo.root().join(hello.pool_path());
    let mut bytes = std::fs::read(&pool).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&pool, &bytes).unwrap();

    let output = f.dir.path().join("out.tar");
    let err = run_err(&mut f.build(&recipe, &output));
    assert!(
        err.contains("hello 2.10-3") && err.contains(&hello.sha256.hex()),
        "{err}"
    );
    assert!(err.contains("sha256"), "{err}");
    assert!(!output.exists(), "no output after a failed build");
    let cached = f.cache_entries();
    assert!(
        !cached.contains(&hello.sha256.hex()),
        "the bad download entered the cache: {cached:?}"
    );
    let partial = f.dir.path().join("cache/partial").join(hello.sha256.hex());
    assert!(!partial.exists(), "a bad download is not kept for resuming");
}

#[test]
fn a_missing_package_fails_locking_and_names_it() {
    let mut f = Fixture::new();
    hello_packages(&mut f);
    f.publish(None);
    let recipe = f.recipe(&["hello", "no-such-package"]);
    let err = run_err(f.kina().args(["image", "lock", "--recipe"]).arg(&recipe));
    assert!(err.contains("no-such-package"), "{err}");
    assert!(
        !recipe.with_extension("lock").exists(),
        "no lock after a failed lock"
    );
}

#[test]
fn an_unsatisfiable_dependency_fails_locking_with_the_candidates() {
    let mut f = Fixture::new();
    f.add(
        DebBuilder::new("app", "1", "all")
            .field("Depends", "libz (>= 3)")
            .file("usr/bin/app", b"x".to_vec(), 0o755),
    );
    f.add(DebBuilder::new("libz", "2", "all").file("usr/lib/libz", b"z".to_vec(), 0o644));
    f.publish(None);
    let recipe = f.recipe(&["app"]);
    let err = run_err(f.kina().args(["image", "lock", "--recipe"]).arg(&recipe));
    assert!(
        err.contains("libz (>= 3)") && err.contains("libz 2"),
        "{err}"
    );
}

#[test]
fn a_bad_signature_or_index_hash_fails_locking() {
    for (tamper, expected) in [
        (Tamper::CorruptSignature, "signature"),
        (Tamper::SignWithOtherKey, "signature"),
        (
            Tamper::IndexHashMismatch {
                arch: "arm64".into(),
            },
            "sha256",
        ),
    ] {
        let mut f = Fixture::new();
        hello_packages(&mut f);
        f.publish(Some(tamper.clone()));
        let recipe = f.recipe(&["hello"]);
        let err = run_err(f.kina().args(["image", "lock", "--recipe"]).arg(&recipe));
        assert!(err.to_lowercase().contains(expected), "{tamper:?}: {err}");
        assert!(!recipe.with_extension("lock").exists());
    }
}

#[test]
fn an_interrupted_download_is_resumed_with_a_range_request() {
    let mut f = Fixture::new();
    let (lib, _) = hello_packages(&mut f);
    f.publish(None);
    let recipe = f.recipe(&["hello"]);
    f.lock(&recipe);
    let path = format!("/{}", lib.pool_path());
    f.server().cut_next_after(&path, (lib.size / 2) as usize);
    run_ok(&mut f.build(&recipe, &f.dir.path().join("out")));
    let ranges = f.server().ranges_requested(&path);
    assert!(
        ranges.iter().any(Option::is_some),
        "no Range request after the cut: {ranges:?}"
    );
    assert!(f.cache_entries().contains(&lib.sha256.hex()));
}

#[test]
fn a_corrupted_cache_entry_is_detected_and_fetched_again() {
    let mut f = Fixture::new();
    let (_, hello) = hello_packages(&mut f);
    f.publish(None);
    let recipe = f.recipe(&["hello"]);
    f.lock(&recipe);
    run_ok(&mut f.build(&recipe, &f.dir.path().join("out1")));
    let path = format!("/{}", hello.pool_path());
    assert_eq!(f.server().requests(&path), 1);
    let entry = f
        .dir
        .path()
        .join("cache/blobs/sha256")
        .join(hello.sha256.hex());
    let mut bytes = std::fs::read(&entry).unwrap();
    bytes[10] ^= 0x01;
    std::fs::write(&entry, bytes).unwrap();
    // A fresh store, so the build cannot be answered from the previous one.
    std::fs::remove_dir_all(f.dir.path().join("data")).unwrap();
    run_ok(&mut f.build(&recipe, &f.dir.path().join("out2")));
    assert_eq!(
        f.server().requests(&path),
        2,
        "the corrupt entry was fetched again"
    );
    assert_eq!(
        kina_builder::digest::Sha256Digest::of(&std::fs::read(&entry).unwrap()),
        hello.sha256
    );
}

/// A `.deb` made by hand: dpkg-deb refuses to build the hostile ones.
fn raw_deb(dir: &Path, name: &str, entries: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> BuiltDeb {
    let control = format!(
        "Package: {name}\nVersion: 1\nArchitecture: all\nMaintainer: kina tests <tests@kina.invalid>\nDescription: hostile test package\n"
    );
    let mut control_tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(control.len() as u64);
    h.set_mode(0o644);
    control_tar
        .append_data(&mut h, "./control", control.as_bytes())
        .unwrap();
    let control_tar = control_tar.into_inner().unwrap();
    let mut data_tar = tar::Builder::new(Vec::new());
    entries(&mut data_tar);
    let data_tar = data_tar.into_inner().unwrap();
    let mut deb = ar::Builder::new(Vec::new());
    for (member, bytes) in [
        ("debian-binary", b"2.0\n".to_vec()),
        ("control.tar", control_tar),
        ("data.tar", data_tar),
    ] {
        deb.append(
            &ar::Header::new(member.as_bytes().to_vec(), bytes.len() as u64),
            bytes.as_slice(),
        )
        .unwrap();
    }
    let bytes = deb.into_inner().unwrap();
    let path = dir.join(format!("{name}_1_all.deb"));
    std::fs::write(&path, &bytes).unwrap();
    BuiltDeb {
        path,
        name: name.into(),
        version: "1".into(),
        arch: "all".into(),
        control,
        size: bytes.len() as u64,
        sha256: kina_builder::digest::Sha256Digest::of(&bytes),
    }
}

fn entry(
    b: &mut tar::Builder<Vec<u8>>,
    kind: tar::EntryType,
    path: &str,
    link: Option<&str>,
    data: &[u8],
) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    // Raw names: the tar crate's checked setters refuse `..` (as they should).
    let name = h.as_old_mut().name.as_mut_slice();
    name[..path.len()].copy_from_slice(path.as_bytes());
    if let Some(link) = link {
        let field = h.as_old_mut().linkname.as_mut_slice();
        field[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_cksum();
    b.append(&h, data).unwrap();
}

#[test]
fn hostile_packages_are_refused_naming_the_package_and_the_entry() {
    use tar::EntryType::*;
    type Maker = fn(&mut tar::Builder<Vec<u8>>);
    let cases: [(&str, &str, Maker); 5] = [
        ("dotdot", "../../etc/cron.d/evil", |b| {
            entry(b, Regular, "./../../etc/cron.d/evil", None, b"x")
        }),
        ("absolute", "/etc/evil", |b| {
            entry(b, Regular, "/etc/evil", None, b"x")
        }),
        ("symlink-escape", "etc/trap/authorized_keys", |b| {
            entry(b, Directory, "./etc/", None, b"");
            entry(b, Symlink, "./etc/trap", Some("/root/.ssh"), b"");
            entry(
                b,
                Regular,
                "./etc/trap/authorized_keys",
                None,
                b"ssh-ed25519 evil",
            );
        }),
        ("hardlink-escape", "etc/shadow-copy", |b| {
            entry(b, Directory, "./etc/", None, b"");
            entry(b, Link, "./etc/shadow-copy", Some("./etc/shadow"), b"");
        }),
        ("device-node", "dev/kmem", |b| {
            entry(b, Directory, "./dev/", None, b"");
            entry(b, Char, "./dev/kmem", None, b"");
        }),
    ];
    for (name, needle, make) in cases {
        let mut f = Fixture::new();
        let deb = raw_deb(&f.debs.clone(), name, make);
        f.repo.add(&deb).unwrap();
        f.publish(None);
        let recipe = f.recipe(&[name]);
        f.lock(&recipe);
        let output = f.dir.path().join("out.tar");
        let err = run_err(&mut f.build(&recipe, &output));
        assert!(
            err.contains(name) && err.contains(needle.trim_start_matches('/')),
            "{name}: {err}"
        );
        assert!(
            !output.exists(),
            "{name}: no output after a refused package"
        );
    }
}

#[test]
fn two_builds_at_once_share_the_cache_and_the_store_safely() {
    let mut f = Fixture::new();
    let (lib, hello) = hello_packages(&mut f);
    f.publish(None);
    let recipe = f.recipe(&["hello"]);
    f.lock(&recipe);
    let children: Vec<_> = (0..2)
        .map(|i| {
            let mut cmd = f.build(&recipe, &f.dir.path().join(format!("out{i}")));
            cmd.args(["--tag", &format!("kina.local/node:concurrent-{i}")]);
            cmd.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Each file was downloaded once, and both images are in the store.
    assert_eq!(f.server().requests(&format!("/{}", hello.pool_path())), 1);
    assert_eq!(f.server().requests(&format!("/{}", lib.pool_path())), 1);
    let list = run_ok(f.kina().args(["image", "list"]));
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains("concurrent-0") && list.contains("concurrent-1"),
        "{list}"
    );
}

#[test]
fn an_image_is_never_assembled_with_a_kina_init_for_another_architecture() {
    let mut f = Fixture::new();
    hello_packages(&mut f);
    f.publish(None);
    let recipe = f.recipe(&["hello"]);
    f.lock(&recipe);
    let amd64_init = kina_init_path("x86_64-unknown-linux-gnu");
    let output = f.dir.path().join("out.tar");
    let mut build = f.build(&recipe, &output);
    build
        .arg("--kina-init")
        .arg(format!("arm64={}", amd64_init.display()));
    let err = run_err(&mut build);
    assert!(
        err.contains("kina-init for arm64") && err.contains("built for amd64"),
        "{err}"
    );
    assert!(!output.exists());
    // And a recipe whose local kina-init does not exist says how to build it.
    let mut build = f.kina();
    build
        .args(["image", "build", "--recipe"])
        .arg(&recipe)
        .args(["--platform", "linux/amd64"]);
    let err = run_err(&mut build);
    assert!(
        err.contains("no kina-init for amd64") && err.contains("scripts/build-kina-init"),
        "{err}"
    );
}

/// The digest an image layout at `dir` gives its one image.
fn layout_digest(dir: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    manifests[0]["digest"].as_str().unwrap().to_string()
}

/// Issue 17: nothing in the image names the tag it was built under (the
/// SBOM is named after the recipe and its lock), so anyone can rebuild a
/// published image from its recipe and get the published digest.
#[test]
fn the_same_lock_built_under_two_tags_gives_one_digest() {
    let mut f = Fixture::new();
    hello_packages(&mut f);
    f.publish(None);
    let recipe = f.recipe(&["hello"]);
    f.lock(&recipe);
    let mut digests = Vec::new();
    for tag in ["kina.local/node:a", "example.test/team/node:b"] {
        let out = f.dir.path().join(tag.replace(['/', ':'], "_"));
        run_ok(f.build(&recipe, &out).args(["--tag", tag]));
        digests.push(layout_digest(&out));
    }
    assert_eq!(digests[0], digests[1]);
}
