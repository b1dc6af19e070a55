//! Pinned reference inputs: served through a URL rewrite they are fetched and
//! verified, a file inside a Debian package is taken out and verified, and an
//! input that cannot be had fails naming its URL instead of being skipped.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kina_builder::digest::Sha256Digest;
use kina_builder::fetch::cache::Cache;
use kina_builder::fetch::mirror::{DebianMirrors, UrlRewrites};
use kina_builder::recipe::DebianArchive;
use kina_tests::reference_inputs::fetch_pinned;
use kina_tests::{DebBuilder, HttpServer, Origin, REFERENCE_INPUTS, ReferenceInput};

const UPSTREAM: &str = "https://upstream.example.invalid/kernel/config-test";

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn url_input(content: &[u8]) -> ReferenceInput {
    ReferenceInput {
        name: "test.config",
        sha256: leak(Sha256Digest::of(content).hex()),
        origin: Origin::Url(UPSTREAM),
    }
}

fn no_mirrors() -> anyhow::Result<DebianMirrors> {
    panic!("a URL input asked for the Debian mirrors")
}

fn rewrite_to(server: &HttpServer, name: &str) -> UrlRewrites {
    UrlRewrites::parse([format!("{UPSTREAM}={}/{name}", server.url()).as_str()]).unwrap()
}

#[test]
fn every_pinned_input_has_a_unique_name_and_a_sha256() {
    let mut names: Vec<&str> = REFERENCE_INPUTS.iter().map(|i| i.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), REFERENCE_INPUTS.len(), "{names:?}");
    for input in REFERENCE_INPUTS {
        input.sha256.parse::<Sha256Digest>().unwrap();
        if let Origin::DebianPackage { sha256, .. } = input.origin {
            sha256.parse::<Sha256Digest>().unwrap();
        }
    }
}

#[test]
fn a_rewritten_url_serves_the_input_and_the_cache_serves_it_again() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("local.config"), b"CONFIG_X=y\n").unwrap();
    let server = HttpServer::serve_dir(dir.path()).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cache_dir.path()).unwrap();
    let input = url_input(b"CONFIG_X=y\n");

    let path = fetch_pinned(
        &input,
        &cache,
        rewrite_to(&server, "local.config"),
        no_mirrors,
    )
    .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"CONFIG_X=y\n");
    assert_eq!(server.requests("/local.config"), 1);

    let again = fetch_pinned(&input, &cache, UrlRewrites::default(), no_mirrors).unwrap();
    assert_eq!(again, path);
    assert_eq!(
        server.requests("/local.config"),
        1,
        "a cache hit makes no request"
    );
}

#[test]
fn other_bytes_than_the_pinned_ones_are_refused_naming_the_url() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("local.config"), b"CONFIG_X=m\n").unwrap();
    let server = HttpServer::serve_dir(dir.path()).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cache_dir.path()).unwrap();
    let input = url_input(b"CONFIG_X=y\n");

    let err = fetch_pinned(
        &input,
        &cache,
        rewrite_to(&server, "local.config"),
        no_mirrors,
    )
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains(UPSTREAM) && text.contains(input.sha256) && text.contains("KINA_URL_REWRITE"),
        "{text}"
    );
    assert!(cache.get(&input.sha256.parse().unwrap()).unwrap().is_none());
}

#[test]
fn an_unreachable_input_fails_naming_its_url_and_how_to_serve_it() {
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cache_dir.path()).unwrap();
    let input = url_input(b"CONFIG_X=y\n");
    // Nothing listens on port 1 of loopback: every attempt is refused at once.
    let rewrites =
        UrlRewrites::parse([format!("{UPSTREAM}=http://127.0.0.1:1/x").as_str()]).unwrap();

    let err = fetch_pinned(&input, &cache, rewrites, no_mirrors).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains(UPSTREAM)
            && text.contains("http://127.0.0.1:1/x")
            && text.contains("KINA_URL_REWRITE"),
        "{text}"
    );
}

#[test]
fn a_file_inside_a_debian_package_is_taken_out_and_verified() {
    let config = b"CONFIG_MODULES=y\nCONFIG_VETH=m\n".to_vec();
    let archive = tempfile::tempdir().unwrap();
    let deb = DebBuilder::new("linux-image-test", "1.0-1", "amd64")
        .file("/boot/System.map-test", b"map".to_vec(), 0o644)
        .file("/boot/config-test", config.clone(), 0o644)
        .build(archive.path())
        .unwrap();
    let filename = leak(format!(
        "pool/updates/main/l/linux-test/{}",
        deb.file_name()
    ));
    let pool_file = archive.path().join("debian-security").join(filename);
    std::fs::create_dir_all(pool_file.parent().unwrap()).unwrap();
    std::fs::copy(&deb.path, &pool_file).unwrap();
    let server = HttpServer::serve_dir(archive.path()).unwrap();
    let mirrors = DebianMirrors {
        debian: format!("{}/debian", server.url()),
        security: format!("{}/debian-security", server.url()),
    };
    let input = |member: &'static str, sha256: &str| ReferenceInput {
        name: "debian-test.config",
        sha256: leak(sha256.to_string()),
        origin: Origin::DebianPackage {
            archive: DebianArchive::DebianSecurity,
            filename,
            sha256: leak(deb.sha256.hex()),
            size: deb.size,
            member,
        },
    };
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cache_dir.path()).unwrap();

    let wrong = input("boot/config-test", &Sha256Digest::of(b"other").hex());
    let err = fetch_pinned(&wrong, &cache, UrlRewrites::default(), || {
        Ok(mirrors.clone())
    })
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("boot/config-test") && text.contains(filename),
        "{text}"
    );

    let absent = input("boot/config-absent", &Sha256Digest::of(&config).hex());
    let err = fetch_pinned(&absent, &cache, UrlRewrites::default(), || {
        Ok(mirrors.clone())
    })
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("no boot/config-absent"),
        "{err:#}"
    );

    let right = input("boot/config-test", &Sha256Digest::of(&config).hex());
    let path = fetch_pinned(&right, &cache, UrlRewrites::default(), || {
        Ok(mirrors.clone())
    })
    .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), config);
    assert_eq!(
        server.requests(&format!("/debian-security/{filename}")),
        1,
        "the package is fetched once and kept in the cache"
    );
}
