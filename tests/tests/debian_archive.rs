//! The Debian archive trust chain against real servers: a signed repository
//! served over loopback HTTP, and the host's Debian mirror.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use kina_builder::debian::archive::{ArchiveError, SuiteIndex, fetch_suite};
use kina_builder::debian::keyring::Keyring;
use kina_builder::debian::release::{ReleaseError, ValidUntilPolicy, verify_inrelease};
use kina_builder::digest::Sha256Digest;
use kina_builder::platform::Arch;
use kina_tests::{DebBuilder, HttpServer, PublishOptions, SignedRepo, Tamper, host_mirrors};

fn repo_with_packages() -> SignedRepo {
    let debs = tempfile::tempdir().unwrap();
    let mut repo = SignedRepo::new("trixie", &["amd64", "arm64"]).unwrap();
    for arch in ["amd64", "arm64"] {
        let deb = DebBuilder::new("hello", "2.10-3", arch)
            .field("Depends", "libc6 (>= 2.34)")
            .field("Priority", "optional")
            .file("/usr/bin/hello", format!("hello for {arch}"), 0o755)
            .build(debs.path())
            .unwrap();
        repo.add(&deb).unwrap();
    }
    let all = DebBuilder::new("base-files-data", "13.8", "all")
        .field("Essential", "yes")
        .field("Priority", "required")
        .file("/usr/share/base-files/motd", "welcome\n", 0o644)
        .build(debs.path())
        .unwrap();
    repo.add(&all).unwrap();
    repo
}

fn keyring_of(repo: &SignedRepo) -> Keyring {
    Keyring::load(&[repo.keyring_path().display().to_string()], Path::new("/")).unwrap()
}

async fn fetch(
    server: &HttpServer,
    suite: &str,
    keyring: &Keyring,
) -> Result<SuiteIndex, ArchiveError> {
    fetch_suite(
        &reqwest::Client::new(),
        server.url(),
        suite,
        &["main".to_string()],
        &[Arch::Amd64, Arch::Arm64],
        keyring,
        ValidUntilPolicy::Enforce,
    )
    .await
}

async fn fetch_published(
    options: PublishOptions,
) -> (SignedRepo, HttpServer, Result<SuiteIndex, ArchiveError>) {
    let repo = repo_with_packages();
    repo.publish(&options).unwrap();
    let server = HttpServer::serve_dir(repo.root()).unwrap();
    let result = fetch(&server, "trixie", &keyring_of(&repo)).await;
    (repo, server, result)
}

#[tokio::test]
async fn a_good_repository_verifies_and_returns_each_arch_index_with_arch_all_packages() {
    let (repo, server, result) = fetch_published(PublishOptions::default()).await;
    let index = result.unwrap();
    assert_eq!(index.release.signed_by, repo.signing_fingerprint().unwrap());
    assert_eq!(index.release.signed_by_primary, repo.primary_fingerprint());
    assert_eq!(index.release.date_epoch, PublishOptions::default().date);
    let inrelease = std::fs::read(repo.root().join("dists/trixie/InRelease")).unwrap();
    assert_eq!(index.inrelease_sha256, Sha256Digest::of(&inrelease));
    for arch in [Arch::Amd64, Arch::Arm64] {
        let packages = index.packages_for("main", arch).unwrap();
        assert_eq!(packages.path, format!("main/binary-{arch}/Packages.xz"));
        assert_eq!(packages.text, repo.packages_text(arch.debian()));
        assert!(packages.text.contains(&format!("Architecture: {arch}\n")));
        assert!(packages.text.contains("Package: base-files-data\n"));
    }
    // Without Acquire-By-Hash the indexes come from their plain names.
    assert_eq!(
        server.requests("/dists/trixie/main/binary-arm64/Packages.xz"),
        1
    );
}

#[tokio::test]
async fn with_acquire_by_hash_indexes_are_fetched_by_their_digest() {
    let options = PublishOptions {
        by_hash: true,
        ..PublishOptions::default()
    };
    let (_repo, server, result) = fetch_published(options).await;
    let index = result.unwrap();
    assert!(index.release.acquire_by_hash);
    let packages = index.packages_for("main", Arch::Arm64).unwrap();
    let by_hash = format!(
        "/dists/trixie/main/binary-arm64/by-hash/SHA256/{}",
        packages.sha256.hex()
    );
    assert_eq!(server.requests(&by_hash), 1);
    assert_eq!(
        server.requests("/dists/trixie/main/binary-arm64/Packages.xz"),
        0
    );
}

#[tokio::test]
async fn the_fixture_inrelease_verifies_with_gpgv_too() {
    // Cross-check the fixture against GnuPG, the verifier apt used before 3.0.
    let repo = repo_with_packages();
    repo.publish(&PublishOptions::default()).unwrap();
    let output = Command::new("gpgv")
        .arg("--keyring")
        .arg(repo.keyring_path())
        .arg(repo.root().join("dists/trixie/InRelease"))
        .output()
        .expect("gpgv must be installed (Debian package gpgv)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn a_corrupt_signature_is_rejected_naming_the_url_and_key() {
    let options = PublishOptions {
        tamper: Some(Tamper::CorruptSignature),
        ..PublishOptions::default()
    };
    let (repo, server, result) = fetch_published(options).await;
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            ArchiveError::Release(ReleaseError::BadSignature { .. })
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("{}/dists/trixie/InRelease", server.url())),
        "{text}"
    );
    assert!(
        text.contains(&repo.signing_fingerprint().unwrap()),
        "{text}"
    );
    assert!(text.contains("does not verify"), "{text}");
    // Nothing past the InRelease was fetched.
    assert_eq!(server.total_requests(), 1);
}

#[tokio::test]
async fn signed_text_altered_after_signing_is_rejected() {
    let options = PublishOptions {
        tamper: Some(Tamper::AlterSignedText),
        ..PublishOptions::default()
    };
    let (_repo, _server, result) = fetch_published(options).await;
    let err = result.unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
}

#[tokio::test]
async fn a_signature_by_an_untrusted_key_is_rejected() {
    let options = PublishOptions {
        tamper: Some(Tamper::SignWithOtherKey),
        ..PublishOptions::default()
    };
    let (repo, _server, result) = fetch_published(options).await;
    let text = result.unwrap_err().to_string();
    assert!(text.contains("key not in the trusted keyring"), "{text}");
    assert!(
        !text.contains(&repo.signing_fingerprint().unwrap()),
        "{text}"
    );
}

#[tokio::test]
async fn an_index_whose_hash_differs_from_the_release_is_rejected() {
    let options = PublishOptions {
        by_hash: true,
        tamper: Some(Tamper::IndexHashMismatch {
            arch: "arm64".into(),
        }),
        ..PublishOptions::default()
    };
    let (_repo, _server, result) = fetch_published(options).await;
    let err = result.unwrap_err();
    assert!(matches!(err, ArchiveError::DigestMismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("index main/binary-arm64/Packages.xz sha256 mismatch: Release says"),
        "{text}"
    );
}

#[tokio::test]
async fn a_missing_suite_is_a_404_naming_the_url() {
    let repo = repo_with_packages();
    repo.publish(&PublishOptions::default()).unwrap();
    let server = HttpServer::serve_dir(repo.root()).unwrap();
    let err = fetch(&server, "forky", &keyring_of(&repo))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ArchiveError::Status { status: 404, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("/dists/forky/InRelease"), "{err}");
}

#[tokio::test]
async fn an_expired_release_is_an_error_when_enforced_and_tolerated_by_default() {
    let repo = repo_with_packages();
    let options = PublishOptions {
        valid_until: Some(PublishOptions::default().date + 7 * 86_400),
        ..PublishOptions::default()
    };
    repo.publish(&options).unwrap();
    let server = HttpServer::serve_dir(repo.root()).unwrap();
    let keyring = keyring_of(&repo);
    let err = fetch(&server, "trixie", &keyring).await.unwrap_err();
    assert!(
        matches!(err, ArchiveError::Release(ReleaseError::Expired { .. })),
        "{err}"
    );
    let tolerated = fetch_suite(
        &reqwest::Client::new(),
        server.url(),
        "trixie",
        &["main".to_string()],
        &[Arch::Amd64],
        &keyring,
        ValidUntilPolicy::Warn,
    )
    .await
    .unwrap();
    assert!(tolerated.release.valid_until_epoch.is_some());
}

// ---- The real Debian archive, through the host's mirror ----

fn shipped(names: &[&str]) -> Keyring {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    Keyring::load(&names, Path::new("/")).unwrap()
}

async fn fetch_real(url: &str, suite: &str, keyring: &Keyring) -> SuiteIndex {
    fetch_suite(
        &reqwest::Client::new(),
        url,
        suite,
        &["main".to_string()],
        &[Arch::Amd64, Arch::Arm64],
        keyring,
        ValidUntilPolicy::Warn,
    )
    .await
    .unwrap()
}

fn assert_real_index(index: &SuiteIndex, codename: &str) {
    assert_eq!(index.release.codename.as_deref(), Some(codename));
    assert!(index.release.date_epoch > 1_754_000_000);
    for arch in [Arch::Amd64, Arch::Arm64] {
        let text = &index.packages_for("main", arch).unwrap().text;
        assert!(text.contains("\nPackage: base-files\n"), "{arch}");
        // No-Support-for-Architecture-all: arch-all packages are in binary-<arch>.
        assert!(text.contains("\nArchitecture: all\n"), "{arch}");
    }
}

#[tokio::test]
async fn the_real_trixie_suite_verifies_with_the_shipped_keys() {
    let mirrors = host_mirrors().unwrap();
    let keyring = shipped(&[
        "debian-archive-trixie-automatic",
        "debian-archive-trixie-stable",
    ]);
    let index = fetch_real(&mirrors.debian, "trixie", &keyring).await;
    assert_real_index(&index, "trixie");
    assert!(
        keyring
            .signing_fingerprints()
            .contains(&index.release.signed_by)
    );
}

#[tokio::test]
async fn the_real_trixie_security_suite_verifies_with_the_shipped_keys() {
    let mirrors = host_mirrors().unwrap();
    let keyring = shipped(&["debian-archive-trixie-security-automatic"]);
    let index = fetch_real(&mirrors.debian_security, "trixie-security", &keyring).await;
    assert_eq!(index.release.codename.as_deref(), Some("trixie-security"));
    for arch in [Arch::Amd64, Arch::Arm64] {
        assert!(index.packages_for("main", arch).is_some());
    }
}

#[tokio::test]
async fn the_real_trixie_inrelease_with_one_signed_byte_flipped_is_rejected() {
    let mirrors = host_mirrors().unwrap();
    let url = format!("{}/dists/trixie/InRelease", mirrors.debian);
    let bytes = reqwest::get(&url)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let keyring = shipped(&[
        "debian-archive-trixie-automatic",
        "debian-archive-trixie-stable",
    ]);
    verify_inrelease(&url, &bytes, &keyring, 0, ValidUntilPolicy::Warn).unwrap();

    let text = String::from_utf8(bytes).unwrap();
    let at = text.find("Codename: trixie").unwrap() + "Codename: t".len();
    let mut tampered = text.into_bytes();
    tampered[at] = b'T';
    let err = verify_inrelease(&url, &tampered, &keyring, 0, ValidUntilPolicy::Warn).unwrap_err();
    assert!(matches!(err, ReleaseError::BadSignature { .. }), "{err}");
    // All three of Debian's signatures were tried and each one failed.
    let ReleaseError::BadSignature { rejections, .. } = err else {
        unreachable!()
    };
    assert!(rejections.len() >= 2, "{rejections:?}");
}

#[tokio::test]
async fn the_real_trixie_inrelease_is_rejected_by_the_bookworm_keys_alone() {
    let mirrors = host_mirrors().unwrap();
    let url = format!("{}/dists/trixie/InRelease", mirrors.debian);
    let bytes = reqwest::get(&url)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let keyring = shipped(&["debian-archive-bookworm-stable"]);
    let err = verify_inrelease(&url, &bytes, &keyring, 0, ValidUntilPolicy::Warn).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("key not in the trusted keyring"), "{text}");
    assert!(text.contains("dists/trixie/InRelease"), "{text}");
}
