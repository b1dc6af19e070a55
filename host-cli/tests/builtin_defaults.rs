//! kina run as an installed binary: from an empty working directory, with
//! HOME and the XDG folders pointing at empty temporary ones, the recipes,
//! locks, kernel recipe and kernel profiles it needs are the ones built in,
//! printed byte for byte as the repository holds them. No network: the
//! builds stop at the kina-init binary, which comes before any download.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{run_err, run_ok, workspace_root};

/// `kina` in `home/work`, an empty directory, with nothing of the user's
/// or the checkout's in reach.
fn kina_in(home: &Path) -> Command {
    let work = home.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kina"));
    cmd.current_dir(&work)
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("xdg-data"))
        .env("XDG_CACHE_HOME", home.join("xdg-cache"))
        .env("XDG_CONFIG_HOME", home.join("xdg-config"));
    for var in [
        "KINA_DATA_DIR",
        "KINA_CACHE_DIR",
        "KINA_RECIPE",
        "KINA_KERNEL",
        "KINA_DEBIAN_MIRROR",
        "KINA_DEBIAN_SECURITY_MIRROR",
        "KINA_URL_REWRITE",
        "SOURCE_DATE_EPOCH",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn stdout(out: &Output) -> &[u8] {
    &out.stdout
}

#[test]
fn recipe_list_and_show_print_the_repositorys_files_byte_for_byte() {
    let home = tempfile::tempdir().unwrap();
    let root = workspace_root();
    let list = run_ok(kina_in(home.path()).args(["image", "recipe", "list"]));
    let listed: Vec<String> = String::from_utf8(list.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(root.join("recipes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|n| n.strip_suffix(".toml").map(str::to_string))
        .collect();
    on_disk.sort();
    assert_eq!(listed, on_disk);
    for name in &on_disk {
        for (flag, ext) in [(None, "toml"), (Some("--lock"), "lock")] {
            let mut cmd = kina_in(home.path());
            cmd.args(["image", "recipe", "show", name]).args(flag);
            let out = run_ok(&mut cmd);
            let file = std::fs::read(root.join(format!("recipes/{name}.{ext}"))).unwrap();
            assert!(
                stdout(&out) == file,
                "{name}.{ext} differs from the built-in"
            );
        }
    }
    let base = run_ok(kina_in(home.path()).args(["image", "recipe", "show"]));
    assert!(stdout(&base) == std::fs::read(root.join("recipes/base.toml")).unwrap());
    for (flag, ext) in [(None, "toml"), (Some("--lock"), "lock")] {
        let mut cmd = kina_in(home.path());
        cmd.args(["kernel", "recipe"]).args(flag);
        let out = run_ok(&mut cmd);
        let file = std::fs::read(root.join(format!("kernels/debian-cloud.{ext}"))).unwrap();
        assert!(stdout(&out) == file, "debian-cloud.{ext} differs");
    }
    let err = run_err(kina_in(home.path()).args(["image", "recipe", "show", "kubernetes-v1.30"]));
    assert!(err.contains("base, kubernetes-v1.34"), "{err}");
}

/// A kernel config with every symbol the repository's kubernetes-base and
/// ptp profiles name (alternatives included) set to `y`, optionally without one.
fn config_from_profiles(without: Option<&str>) -> String {
    let mut config = String::new();
    for profile in ["kubernetes-base", "ptp"] {
        let text = std::fs::read_to_string(
            workspace_root().join(format!("kernels/profiles/{profile}.toml")),
        )
        .unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        for option in table["option"].as_array().unwrap() {
            for symbol in option["symbols"].as_array().unwrap() {
                let symbol = symbol.as_str().unwrap();
                if Some(symbol) != without {
                    config.push_str(&format!("CONFIG_{symbol}=y\n"));
                }
            }
        }
    }
    config
}

#[test]
fn kernel_check_uses_the_built_in_profiles_from_an_empty_directory() {
    let home = tempfile::tempdir().unwrap();
    let good = home.path().join("config-good");
    std::fs::write(&good, config_from_profiles(None)).unwrap();
    run_ok(
        kina_in(home.path())
            .args(["kernel", "check", "--config"])
            .arg(&good),
    );

    let bad = home.path().join("config-no-veth");
    std::fs::write(&bad, config_from_profiles(Some("VETH"))).unwrap();
    let err = run_err(
        kina_in(home.path())
            .args(["kernel", "check", "--config"])
            .arg(&bad),
    );
    assert!(
        err.contains("config-no-veth") && err.contains("ptp"),
        "{err}"
    );
}

#[test]
fn image_build_takes_the_built_in_recipe_and_lock_from_an_empty_directory() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("no-kina-init");
    // The recipe and its lock are accepted (the lock matches the built-in
    // text); the build then stops at the kina-init it was told to use.
    for (version, reference) in [
        (None, "kina.local/node:base from built-in base.lock"),
        (
            Some("1.36"),
            "kina.local/node:v1.36.4 from built-in kubernetes-v1.36.lock",
        ),
    ] {
        let mut cmd = kina_in(home.path());
        cmd.args(["image", "build", "--platform", "linux/amd64", "--kina-init"])
            .arg(format!("amd64={}", missing.display()));
        if let Some(v) = version {
            cmd.args(["--kubernetes-version", v]);
        }
        let err = run_err(&mut cmd);
        assert!(
            err.contains(&format!("building {reference}")) && err.contains("no-kina-init"),
            "{err}"
        );
    }
    let err =
        run_err(kina_in(home.path()).args(["image", "build", "--kubernetes-version", "1.30"]));
    assert!(err.contains("built in: 1.34, 1.35, 1.36"), "{err}");
    let err = run_err(kina_in(home.path()).args(["image", "lock"]));
    assert!(
        err.contains("kina image recipe show base > base.toml"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(home.path().join("work")).unwrap().count(),
        0,
        "kina wrote into the working directory"
    );
}

/// `kina up` needs a kernel recipe before anything else (QEMU): without
/// `--kernel` it is the built-in one, kept as files in the data directory,
/// and the first thing missing is the node image, not a recipe file.
#[test]
fn up_boots_with_the_built_in_kernel_recipe_from_an_empty_directory() {
    let home = tempfile::tempdir().unwrap();
    let err = run_err(kina_in(home.path()).args([
        "up",
        "--provider",
        "qemu",
        "--image",
        "ghost",
        "--accel",
        "tcg",
        "--wait",
        "0",
    ]));
    assert!(
        err.contains("ghost is not in the local image store"),
        "{err}"
    );
    let kept = home.path().join("xdg-data/kina/built-in/kernels");
    for ext in ["toml", "lock"] {
        let file = std::fs::read(workspace_root().join(format!("kernels/debian-cloud.{ext}")));
        assert!(
            std::fs::read(kept.join(format!("debian-cloud.{ext}"))).unwrap() == file.unwrap(),
            "debian-cloud.{ext}"
        );
    }
    assert_eq!(
        std::fs::read_dir(home.path().join("work")).unwrap().count(),
        0
    );
}
