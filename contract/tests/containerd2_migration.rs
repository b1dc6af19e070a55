//! kina's containerd configuration (config version 2, written for 1.7 and
//! 2.x alike) read by a real containerd 2.x: Debian's 2.1.9 binary, pinned
//! in `kina_tests::reference_inputs` and fetched from the Debian archive by
//! kina's download code, migrates the file in memory and prints what it
//! runs with (`containerd --config FILE config dump`, no daemon). The
//! settings kina and kind's local-registry patch make must come out in
//! 2.x's version 3 layout: the sandbox image as the images plugin's pinned
//! sandbox, `config_path`, the snapshotter, runc with cgroupfs, the CNI
//! directories.
//!
//! x86_64 Linux hosts only: the pinned binary is Debian's amd64 build.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]
// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kina_contract::containerd_config::{NodeRuntime, Snapshotter, config_text};
use kina_contract::node_spec::NodeSpec;

/// Kubernetes 1.34's pause image, named where kina names it.
fn pause_3_10_1() -> String {
    format!(
        "{}:3.10.1",
        kina_contract::containerd_config::sandbox::PAUSE_REPOSITORY
    )
}

const CONTAINERD_2: &str = "debian-containerd-2.1.9-amd64";

/// kind's local-registry recipe (kind `site/static/examples/kind-with-registry.sh`).
const KIND_REGISTRY_PATCH: &str =
    "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"";

const IMAGES: &str = "io.containerd.cri.v1.images";
const RUNTIME: &str = "io.containerd.cri.v1.runtime";

/// The pinned containerd 2.x binary, executable, in `dir`.
fn containerd_2(dir: &Path) -> PathBuf {
    let bytes = kina_tests::fetch_reference_input(CONTAINERD_2).unwrap_or_else(|e| panic!("{e:#}"));
    let path = dir.join("containerd");
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A node kina-init would describe on an image with upstream containerd
/// 2.x, with settings that differ from containerd's defaults so that
/// finding them in the dump means they were carried over.
fn node() -> NodeRuntime {
    NodeRuntime {
        containerd_major: 2,
        snapshotter: Snapshotter::Native,
        sandbox_image: pause_3_10_1(),
        cni_bin_dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
    }
}

/// What `containerd` at `binary` runs with for the config `text`, as TOML.
fn dump(binary: &Path, dir: &Path, text: &str) -> toml::Table {
    let config = dir.join("config.toml");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(binary)
        .arg("--config")
        .arg(&config)
        .args(["config", "dump"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "containerd 2.x refused kina's config:\n{text}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .parse()
        .unwrap_or_else(|e| panic!("containerd's dump is not TOML: {e}\n{stdout}"))
}

/// The value at `path` under the dump's `plugins` table.
fn plugin<'a>(dump: &'a toml::Table, path: &[&str]) -> &'a toml::Value {
    let mut value = dump
        .get("plugins")
        .unwrap_or_else(|| panic!("no plugins in {dump}"));
    for key in path {
        value = value
            .get(key)
            .unwrap_or_else(|| panic!("no {path:?} under plugins in the dump:\n{dump}"));
    }
    value
}

fn text(value: &toml::Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a string"))
}

#[test]
fn containerd_2_migrates_kinas_version_2_config_with_kinds_registry_patch() {
    let dir = tempfile::tempdir().unwrap();
    let binary = containerd_2(dir.path());
    let version = Command::new(&binary).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    assert_eq!(
        kina_contract::containerd_config::containerd_major(&version),
        Some(2),
        "{version}"
    );
    let spec = NodeSpec {
        containerd_config_patches: vec![KIND_REGISTRY_PATCH.into()],
        ..NodeSpec::unnamed()
    };
    let written = config_text(&spec, &node()).unwrap().text;
    assert!(written.contains("version = 2"), "{written}");
    let dump = dump(&binary, dir.path(), &written);

    assert_eq!(dump["version"].as_integer(), Some(3), "{dump}");
    assert_eq!(
        text(plugin(&dump, &[IMAGES, "pinned_images", "sandbox"])),
        pause_3_10_1()
    );
    assert_eq!(
        text(plugin(&dump, &[IMAGES, "registry", "config_path"])),
        "/etc/containerd/certs.d"
    );
    assert_eq!(text(plugin(&dump, &[IMAGES, "snapshotter"])), "native");
    let runc = [RUNTIME, "containerd", "runtimes", "runc"];
    assert_eq!(
        text(plugin(&dump, &[&runc[..], &["runtime_type"]].concat())),
        "io.containerd.runc.v2"
    );
    assert_eq!(
        plugin(&dump, &[&runc[..], &["options", "SystemdCgroup"]].concat()).as_bool(),
        Some(false)
    );
    assert_eq!(
        text(plugin(
            &dump,
            &[RUNTIME, "containerd", "default_runtime_name"]
        )),
        "runc"
    );
    let bin_dirs: Vec<&str> = plugin(&dump, &[RUNTIME, "cni", "bin_dirs"])
        .as_array()
        .unwrap()
        .iter()
        .map(text)
        .collect();
    assert_eq!(bin_dirs, ["/opt/cni/bin", "/usr/lib/cni"]);
    assert_eq!(
        text(plugin(&dump, &[RUNTIME, "cni", "conf_dir"])),
        "/etc/cni/net.d"
    );
}

#[test]
fn without_the_patch_containerd_2_has_no_registry_config_path_and_its_own_defaults_differ() {
    // The control for the test above: the settings it finds are the
    // config's, not containerd 2.x's defaults.
    let dir = tempfile::tempdir().unwrap();
    let binary = containerd_2(dir.path());
    let unpatched = config_text(&NodeSpec::unnamed(), &node()).unwrap().text;
    let dump_unpatched = dump(&binary, dir.path(), &unpatched);
    let config_path = dump_unpatched["plugins"][IMAGES]
        .get("registry")
        .and_then(|r| r.get("config_path"))
        .and_then(toml::Value::as_str)
        .unwrap_or("");
    assert_ne!(config_path, "/etc/containerd/certs.d", "{dump_unpatched}");
    let defaults = dump(&binary, dir.path(), "version = 2\n");
    let sandbox = text(plugin(&defaults, &[IMAGES, "pinned_images", "sandbox"]));
    assert_ne!(sandbox, pause_3_10_1(), "{defaults}");
    assert_ne!(text(plugin(&defaults, &[IMAGES, "snapshotter"])), "native");
    let cni = &defaults["plugins"][RUNTIME]["cni"];
    assert_ne!(
        cni.get("bin_dirs"),
        plugin(&dump_unpatched, &[RUNTIME, "cni"]).get("bin_dirs")
    );
}
