//! Where `kina up` gets a node image the local store lacks, decided before
//! any VM is made: a reference naming a registry is pulled from it (here
//! Debian's docker-registry on loopback, which does not have it), a name
//! that is neither kina's own nor a registry's is refused without the
//! network. Either way no cluster is left behind. (The build of the
//! default image as up's first step, and the boot after it, are run for
//! real in `release.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::registry::Registry;
use common::{kina, run_err};

fn up(env: &std::path::Path, image: &str) -> String {
    run_err(kina(env).args([
        "up",
        "--provider",
        "qemu",
        "--accel",
        "tcg",
        "--wait",
        "0",
        "--image",
        image,
    ]))
}

#[test]
fn a_registry_reference_missing_from_the_store_is_pulled_and_a_bare_name_is_refused() {
    let env = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let reference = format!("127.0.0.1:{}/kina/node:absent", registry.port);
    let err = up(env.path(), &reference);
    assert!(
        err.contains(&format!("Pulling node image {reference}"))
            && err.contains("pulling it failed")
            && err.contains("nothing of the cluster was made"),
        "{err}"
    );
    // The registry was asked for the manifest and had none, as its own log
    // says (`requests` first waits until the log holds every answer).
    registry.requests("GET", 404);
    let log = std::fs::read_to_string(registry.dir.path().join("registry.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("/v2/kina/node/manifests/absent")
                && l.contains("http.response.status=404")),
        "{log}"
    );

    let err = up(env.path(), "kina/ghost:v1");
    assert!(
        err.contains("kina/ghost:v1 is not in the local image store")
            && err.contains("names no registry"),
        "{err}"
    );
    assert!(!err.contains("Pulling"), "{err}");
    assert!(!env.path().join("data/clusters/kina").exists());
}
