use serde_json::json;

use super::*;

fn node(major: u32) -> NodeRuntime {
    NodeRuntime {
        containerd_major: major,
        snapshotter: Snapshotter::Native,
        sandbox_image: "registry.k8s.io/pause:3.10.1".into(),
        cni_bin_dirs: vec!["/usr/lib/cni".into(), "/opt/cni/bin".into()],
    }
}

fn spec(merge: &[&str], json6902: Vec<serde_json::Value>) -> NodeSpec {
    NodeSpec {
        containerd_config_patches: merge.iter().map(|s| s.to_string()).collect(),
        containerd_config_patches_json6902: json6902,
        ..NodeSpec::unnamed()
    }
}

fn parsed(text: &str) -> toml::Table {
    text.parse()
        .unwrap_or_else(|e| panic!("not TOML: {e}\n{text}"))
}

/// `table` at the dotted `path` of keys (keys may themselves hold dots).
fn at<'a>(table: &'a toml::Table, path: &[&str]) -> Option<&'a toml::Value> {
    let (last, parents) = path.split_last()?;
    let mut t = table;
    for key in parents {
        t = t.get(*key)?.as_table()?;
    }
    t.get(*last)
}

const CRI: &str = "io.containerd.grpc.v1.cri";

/// kind's local-registry guide (site/content/docs/user/local-registry.md,
/// static/examples/kind-with-registry.sh): the patch, verbatim in shape.
const KIND_REGISTRY_RECIPE: &str =
    "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"";

#[test]
fn only_directories_that_hold_the_ptp_plugin_are_used() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("usr/lib/cni")).unwrap();
    std::fs::write(dir.path().join("usr/lib/cni/ptp"), b"").unwrap();
    std::fs::create_dir_all(dir.path().join("opt/cni/bin")).unwrap();
    assert_eq!(cni_bin_dirs(dir.path()), ["/usr/lib/cni"]);
}

#[test]
fn versions_are_read_from_upstream_and_debian_builds() {
    assert_eq!(
        containerd_major("containerd github.com/containerd/containerd/v2 v2.2.1 dea7da5"),
        Some(2)
    );
    assert_eq!(
        containerd_major("containerd containerd.io 1.7.24~ds1 1.7.24~ds1-6+deb13u1"),
        Some(1)
    );
    assert_eq!(containerd_major("nonsense"), None);
}

#[test]
fn both_containerd_lines_get_a_version_2_config_with_cgroupfs_the_snapshotter_and_cni_directories()
{
    for major in [1, 2] {
        let text = base_config(&node(major));
        let doc = parsed(&text);
        assert_eq!(doc["version"].as_integer(), Some(2));
        let runc = [CRI, "containerd", "runtimes", "runc"];
        let options = [&runc[..], &["options", "SystemdCgroup"]].concat();
        let runtime_type = [&runc[..], &["runtime_type"]].concat();
        let sub = |path: &[&str]| at(&doc, &[&["plugins"][..], path].concat()).cloned();
        assert_eq!(sub(&options), Some(toml::Value::Boolean(false)));
        assert_eq!(
            sub(&runtime_type).and_then(|v| v.as_str().map(String::from)),
            Some("io.containerd.runc.v2".into())
        );
        assert_eq!(
            sub(&[CRI, "containerd", "snapshotter"]).unwrap().as_str(),
            Some("native")
        );
        assert_eq!(
            sub(&[CRI, "sandbox_image"]).unwrap().as_str(),
            Some("registry.k8s.io/pause:3.10.1")
        );
        assert_eq!(
            sub(&[CRI, "cni", "conf_dir"]).unwrap().as_str(),
            Some("/etc/cni/net.d")
        );
        // 1.7's aufs snapshotter starts a modprobe that cannot succeed;
        // 2.x has no such plugin.
        let disabled = doc.get("disabled_plugins").cloned();
        if major >= 2 {
            assert_eq!(disabled, None);
        } else {
            assert_eq!(
                disabled,
                Some(toml::Value::Array(vec![AUFS_SNAPSHOTTER.into()]))
            );
        }
        if major >= 2 {
            // containerd 2.x copies `bin_dirs` to the runtime plugin.
            assert_eq!(
                sub(&[CRI, "cni", "bin_dirs"]).unwrap(),
                toml::Value::Array(vec!["/usr/lib/cni".into(), "/opt/cni/bin".into()])
            );
            assert!(sub(&[CRI, "cni", "bin_dir"]).is_none());
        } else {
            assert_eq!(
                sub(&[CRI, "cni", "bin_dir"]).unwrap().as_str(),
                Some("/usr/lib/cni")
            );
        }
    }
}

#[test]
fn without_patches_the_config_is_written_as_kina_writes_it() {
    let report = config_text(&spec(&[], vec![]), &node(2)).unwrap();
    assert_eq!(report.text, base_config(&node(2)));
    assert_eq!((report.applied, report.skipped.len()), (0, 0));
}

#[test]
fn kinds_local_registry_recipe_lands_in_the_cri_registry_of_both_containerd_lines() {
    for major in [1, 2] {
        let report = config_text(&spec(&[KIND_REGISTRY_RECIPE], vec![]), &node(major)).unwrap();
        assert_eq!(report.applied, 1);
        assert!(report.skipped.is_empty());
        let doc = parsed(&report.text);
        // The key containerd 1.7 reads, and the one containerd 2.x moves
        // to `io.containerd.cri.v1.images` when it reads a version 2
        // config (plugins/cri/images/plugin.go, migrateConfig's "registry").
        assert_eq!(
            at(&doc, &["plugins", CRI, "registry", "config_path"]).and_then(toml::Value::as_str),
            Some("/etc/containerd/certs.d"),
            "{}",
            report.text
        );
        // kina's own settings survive the merge.
        assert_eq!(doc["version"].as_integer(), Some(2));
        assert_eq!(
            at(&doc, &["plugins", CRI, "sandbox_image"]).and_then(toml::Value::as_str),
            Some("registry.k8s.io/pause:3.10.1")
        );
        assert_eq!(
            at(
                &doc,
                &[
                    "plugins",
                    CRI,
                    "containerd",
                    "runtimes",
                    "runc",
                    "options",
                    "SystemdCgroup"
                ]
            ),
            Some(&toml::Value::Boolean(false))
        );
        assert!(report.text.starts_with("# Written by kina-init"));
    }
}

/// containerd 2.x's own default, version 3, patched with the same recipe:
/// kind's semantics hold for any version (an unversioned patch applies,
/// a patch for another version is skipped and said so).
#[test]
fn on_a_version_3_config_the_recipe_applies_and_a_version_2_patch_is_skipped() {
    let v3 =
        "version = 3\n[plugins.'io.containerd.cri.v1.images']\n  snapshotter = \"overlayfs\"\n";
    let versioned_v2 = format!("version = 2\n{KIND_REGISTRY_RECIPE}");
    let v3_patch = "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\n  config_path = \"/etc/containerd/certs.d\"";
    let report = patch::apply(v3, &[versioned_v2.clone(), v3_patch.to_string()], &[]).unwrap();
    assert_eq!(report.applied, 1);
    assert_eq!(report.skipped.len(), 1);
    assert!(
        report.skipped[0].starts_with("containerdConfigPatches[0] is for config version 2"),
        "{:?}",
        report.skipped
    );
    let doc = parsed(&report.text);
    assert_eq!(doc["version"].as_integer(), Some(3));
    assert_eq!(
        at(
            &doc,
            &[
                "plugins",
                "io.containerd.cri.v1.images",
                "registry",
                "config_path"
            ]
        )
        .and_then(toml::Value::as_str),
        Some("/etc/containerd/certs.d")
    );
    assert!(at(&doc, &["plugins", CRI]).is_none());

    // And on kina's version 2 config the other way round: the versioned
    // recipe applies, the version 3 patch is skipped.
    let report = config_text(&spec(&[&versioned_v2, v3_patch], vec![]), &node(2)).unwrap();
    assert_eq!((report.applied, report.skipped.len()), (1, 1));
    assert!(report.skipped[0].contains("containerdConfigPatches[1] is for config version 3"));
}

#[test]
fn merge_patches_apply_in_order_and_json_6902_patches_after_them() {
    // kind's "trivial patch and trivial 6902 patch" (pkg/internal/patch/
    // toml_test.go): the merge sets a key, the JSON patch then removes it.
    let report = patch::apply(
        "version = 2\ndisabled_plugins = [\"restart\"]\n",
        &[
            "disabled_plugins = [\"foo\"]".into(),
            "disabled_plugins = [\"bar\"]".into(),
        ],
        &[json!([{ "op": "remove", "path": "/disabled_plugins" }])],
    )
    .unwrap();
    let doc = parsed(&report.text);
    assert!(doc.get("disabled_plugins").is_none(), "{}", report.text);
    assert_eq!(report.applied, 3);

    let report = patch::apply(
        "version = 2\ndisabled_plugins = [\"restart\"]\n",
        &[
            "disabled_plugins = [\"foo\"]".into(),
            "disabled_plugins = [\"bar\"]".into(),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(
        parsed(&report.text)["disabled_plugins"],
        toml::Value::Array(vec!["bar".into()])
    );
}

#[test]
fn json_6902_patches_address_the_json_form_of_the_config() {
    // A key with dots is one path element; `~1` escapes a slash (RFC 6901).
    let ops = json!([
        { "op": "replace", "path": "/plugins/io.containerd.grpc.v1.cri/containerd/snapshotter", "value": "overlayfs" },
        { "op": "add", "path": "/plugins/io.containerd.grpc.v1.cri/registry", "value": {
            "mirrors": { "localhost:5001": { "endpoint": ["http://kind-registry:5000"] } }
        } },
        { "op": "add", "path": "/plugins/io.containerd.grpc.v1.cri/max_concurrent_downloads", "value": 5 },
        { "op": "test", "path": "/version", "value": 2 }
    ]);
    let report = config_text(&spec(&[], vec![ops]), &node(1)).unwrap();
    let doc = parsed(&report.text);
    assert_eq!(
        at(&doc, &["plugins", CRI, "containerd", "snapshotter"]).and_then(toml::Value::as_str),
        Some("overlayfs")
    );
    assert_eq!(
        at(
            &doc,
            &[
                "plugins",
                CRI,
                "registry",
                "mirrors",
                "localhost:5001",
                "endpoint"
            ]
        ),
        Some(&toml::Value::Array(vec![
            "http://kind-registry:5000".into()
        ]))
    );
    // Integers stay integers through JSON.
    assert_eq!(
        at(&doc, &["plugins", CRI, "max_concurrent_downloads"]),
        Some(&toml::Value::Integer(5))
    );
}

#[test]
fn a_patch_that_cannot_apply_is_refused_by_its_name() {
    let cases: Vec<(Vec<&str>, Vec<serde_json::Value>, &str, &str)> = vec![
        (
            vec!["version = 2", "[plugins"],
            vec![],
            "containerdConfigPatches[1]: not TOML",
            "",
        ),
        (
            vec!["version = \"two\""],
            vec![],
            "containerdConfigPatches[0]: `version` is \"two\", not an integer",
            "",
        ),
        (
            vec![],
            vec![
                json!([{ "op": "add", "path": "/debug", "value": { "level": "info" } }]),
                json!([{ "op": "remove", "path": "/plugins/io.containerd.grpc.v1.cri/registry" }]),
            ],
            "containerdConfigPatchesJSON6902[1]: cannot apply",
            "",
        ),
        (
            vec![],
            vec![json!([{ "op": "test", "path": "/version", "value": 3 }])],
            "containerdConfigPatchesJSON6902[0]: cannot apply",
            "",
        ),
        (
            vec![],
            vec![json!({ "op": "remove", "path": "/version" })],
            "containerdConfigPatchesJSON6902[0]: not a JSON 6902 patch",
            "",
        ),
        (
            vec![],
            vec![json!([{ "op": "add", "path": "/plugins/x", "value": null }])],
            "containerdConfigPatchesJSON6902[0]: /plugins/x is null",
            "",
        ),
        (
            vec![],
            vec![json!([{ "op": "remove", "path": "/version" }])],
            "containerdConfigPatchesJSON6902[0]: the result has no integer `version`",
            "",
        ),
    ];
    for (merge, json6902, expected, _) in cases {
        let err = config_text(&spec(&merge, json6902), &node(2))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(expected), "{err}\nexpected: {expected}");
    }
}

#[test]
fn the_dry_run_assumes_what_the_recipes_install() {
    let s = spec(&[KIND_REGISTRY_RECIPE], vec![]);
    let text = dry_run_text(&s, 2, Some("v1.36.4")).unwrap();
    let doc = parsed(&text);
    assert_eq!(
        at(&doc, &["plugins", CRI, "sandbox_image"]).and_then(toml::Value::as_str),
        Some("registry.k8s.io/pause:3.10.2")
    );
    assert_eq!(
        at(&doc, &["plugins", CRI, "cni", "bin_dirs"]),
        Some(&toml::Value::Array(vec!["/opt/cni/bin".into()]))
    );
    assert_eq!(
        at(&doc, &["plugins", CRI, "containerd", "snapshotter"]).and_then(toml::Value::as_str),
        Some("overlayfs")
    );
    let base = parsed(&dry_run_text(&NodeSpec::unnamed(), 1, None).unwrap());
    assert_eq!(
        at(&base, &["plugins", CRI, "cni", "bin_dir"]).and_then(toml::Value::as_str),
        Some("/usr/lib/cni")
    );
    let err = dry_run_text(&s, 2, Some("v1.30.0")).unwrap_err();
    assert!(err.contains("`v1.30.0`"), "{err}");
    let err = dry_run_text(&spec(&["[x"], vec![]), 2, None).unwrap_err();
    assert!(err.starts_with("containerdConfigPatches[0]"), "{err}");
}

#[test]
fn the_cri_snapshotter_is_read_from_either_config_version() {
    assert_eq!(cri_snapshotter(&base_config(&node(1))).unwrap(), "native");
    let mut overlay = node(2);
    overlay.snapshotter = Snapshotter::Overlayfs;
    assert_eq!(
        cri_snapshotter(&base_config(&overlay)).unwrap(),
        "overlayfs"
    );
    assert_eq!(
        cri_snapshotter(
            "version = 3\n[plugins.'io.containerd.cri.v1.images']\n  snapshotter = \"native\"\n"
        )
        .unwrap(),
        "native"
    );
    assert_eq!(cri_snapshotter("version = 2\n").unwrap(), "overlayfs");
    assert!(cri_snapshotter("not toml [").is_err());
}
