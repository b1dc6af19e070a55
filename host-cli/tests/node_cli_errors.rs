//! Bad input to `kina node` is refused with a message naming it, and a
//! failed create leaves no node behind. No VM boots here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::node::{kernel_recipe, node_dir};
use common::{kina, run_err};

#[test]
fn a_create_from_an_image_not_in_the_store_fails_first_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let err = run_err(
        kina(dir.path())
            .args([
                "node",
                "create",
                "n1",
                "--image",
                "kina.local/node:missing",
                "--kernel",
            ])
            .arg(kernel_recipe())
            .args(["--accel", "tcg"]),
    );
    assert!(err.contains("kina.local/node:missing"), "{err}");
    assert!(
        !node_dir(dir.path(), "n1").exists(),
        "a failed create left its directory"
    );
    assert!(
        !dir.path().join("cache/kernels").exists(),
        "the kernel was fetched before the image was looked up"
    );
}

#[test]
fn unknown_nodes_and_malformed_flags_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = run_err(kina(dir.path()).args(["node", "exec", "ghost", "--", "true"]));
    assert!(err.contains("no node ghost"), "{err}");
    let err = run_err(kina(dir.path()).args(["node", "stop", "ghost"]));
    assert!(err.contains("no node ghost"), "{err}");
    let err = run_err(
        kina(dir.path())
            .args(["node", "create", "n1", "--image", "x", "--forward", "6443"])
            .arg("--kernel")
            .arg(kernel_recipe()),
    );
    assert!(err.contains("--forward 6443"), "{err}");
    let err = run_err(
        kina(dir.path())
            .args([
                "node", "create", "n1", "--image", "x", "--accel", "hvf", "--kernel",
            ])
            .arg(kernel_recipe()),
    );
    assert!(err.contains("accelerator `hvf`"), "{err}");
}
