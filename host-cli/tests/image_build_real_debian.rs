//! `kina image build` of `recipes/base.toml` from the real Debian archive (the
//! host's apt mirror), for both node architectures, read back by independent
//! tools: skopeo, umoci and dpkg.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::*;

/// Resolves a symlink chain inside an unpacked root filesystem (not on the host).
fn resolve_in_root(root: &Path, path: &str) -> String {
    let mut current = path.trim_start_matches('/').to_string();
    for _ in 0..16 {
        let full = root.join(&current);
        match std::fs::read_link(&full) {
            Ok(target) => {
                let target = target.to_string_lossy().into_owned();
                current = if let Some(abs) = target.strip_prefix('/') {
                    abs.to_string()
                } else {
                    let parent = Path::new(&current)
                        .parent()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    normalize(&format!("{parent}/{target}"))
                };
            }
            Err(_) => return format!("/{current}"),
        }
    }
    panic!("symlink loop at {path}");
}

fn normalize(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

#[test]
fn base_recipe_builds_for_amd64_and_arm64_and_independent_readers_accept_it() {
    require_tool("skopeo");
    require_tool("umoci");
    require_tool("dpkg-query");
    let dir = tempfile::tempdir().unwrap();
    let recipe = copy_recipe("base.toml", dir.path());
    run_ok(
        kina(dir.path())
            .args(["image", "lock", "--recipe"])
            .arg(&recipe),
    );
    let lock_text = std::fs::read_to_string(recipe.with_extension("lock")).unwrap();
    assert!(
        lock_text.contains("name = \"iptables\""),
        "lock lacks iptables"
    );

    let archive = dir.path().join("base.oci.tar");
    let reference = "kina.local/node:base-test";
    let mut build = kina(dir.path());
    build
        .args(["image", "build", "--recipe"])
        .arg(&recipe)
        .args(["--tag", reference, "--output"])
        .arg(&archive)
        .args(kina_init_flags());
    run_ok(&mut build);

    let inspect = run_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        &format!("oci-archive:{}:base-test", archive.display()),
    ]));
    let index: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(platforms, ["amd64", "arm64"]);

    for arch in ["amd64", "arm64"] {
        let root = unpack_platform(
            &format!("oci-archive:{}:base-test", archive.display()),
            arch,
            dir.path(),
        )
        .rootfs;
        // usrmerge aliases survived every layer.
        assert_eq!(
            std::fs::read_link(root.join("bin")).unwrap().to_str(),
            Some("usr/bin")
        );
        // iptables resolves through the alternatives system to the nft backend.
        assert_eq!(
            resolve_in_root(&root, "/usr/sbin/iptables"),
            "/usr/sbin/xtables-nft-multi"
        );
        assert_eq!(
            std::fs::read_link(root.join("usr/sbin/iptables"))
                .unwrap()
                .to_str(),
            Some("/etc/alternatives/iptables")
        );
        let alt = std::fs::read_to_string(root.join("var/lib/dpkg/alternatives/iptables")).unwrap();
        assert!(alt.starts_with("auto\n/usr/sbin/iptables\n"), "{alt}");
        // Accounts from base-passwd; shadow readable only by root and group shadow.
        let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
        assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
        let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
        let shadow_gid: u32 = group
            .lines()
            .find(|l| l.starts_with("shadow:"))
            .and_then(|l| l.split(':').nth(2))
            .unwrap()
            .parse()
            .unwrap();
        let shadow = std::fs::metadata(root.join("etc/shadow")).unwrap();
        assert_eq!(shadow.mode() & 0o7777, 0o640);
        assert_eq!((shadow.uid(), shadow.gid()), (0, shadow_gid));
        // Setuid and sticky bits as packaged.
        assert_eq!(
            std::fs::metadata(root.join("tmp")).unwrap().mode() & 0o7777,
            0o1777
        );
        assert_eq!(
            std::fs::metadata(root.join("usr/bin/su")).unwrap().mode() & 0o7777,
            0o4755
        );
        // The CA bundle update-ca-certificates would have written.
        let bundle =
            std::fs::read_to_string(root.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
        assert!(bundle.matches("BEGIN CERTIFICATE").count() > 100);
        // dpkg's own tools read the database kina wrote.
        let out = run_ok(Command::new("dpkg-query").args([
            &format!("--admindir={}", root.join("var/lib/dpkg").display()),
            "-W",
            "-f=${db:Status-Abbrev} ${Package}\n",
            "iptables",
            "containerd",
        ]));
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(listing.contains("ii  iptables"), "{listing}");
        assert!(listing.contains("ii  containerd"), "{listing}");
        // The runtime and the init are where the node expects them.
        assert!(root.join("usr/bin/containerd").exists());
        assert!(root.join("usr/lib/cni/ptp").exists());
        let init = root.join("usr/local/bin/kina-init");
        let version = if arch == "amd64" {
            run_ok(Command::new(&init).arg("--version"))
        } else {
            require_tool("qemu-aarch64-static");
            run_ok(
                Command::new("qemu-aarch64-static")
                    .arg(&init)
                    .arg("--version"),
            )
        };
        assert!(String::from_utf8_lossy(&version.stdout).starts_with("kina-init "));
        // The SBOM lists every package with its checksum.
        let sbom: serde_json::Value = serde_json::from_slice(
            &std::fs::read(root.join("usr/share/kina/sbom.spdx.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(sbom["spdxVersion"], "SPDX-2.3");
        let names: Vec<&str> = sbom["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"iptables")
                && names.contains(&"containerd")
                && names.contains(&"kina-init")
        );
    }
}

#[test]
fn two_cold_builds_in_different_directories_umasks_and_time_zones_are_identical() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let mut digests = Vec::new();
    for (dir, umask, tz) in [
        (first.path(), "022", "UTC"),
        (second.path(), "077", "Pacific/Kiritimati"),
    ] {
        let recipe = copy_recipe("base.toml", dir);
        run_ok(kina(dir).args(["image", "lock", "--recipe"]).arg(&recipe));
        let out = dir.join("image");
        let kina_bin = env!("CARGO_BIN_EXE_kina");
        let mut cmd = kina(dir);
        let mut args = vec![
            "image".to_string(),
            "build".into(),
            "--platform".into(),
            "linux/amd64".into(),
            "--recipe".into(),
            recipe.display().to_string(),
            "--output".into(),
            out.display().to_string(),
        ];
        args.extend(kina_init_flags());
        let script = format!("umask {umask}; exec \"$0\" \"$@\"");
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(script)
            .arg(kina_bin)
            .args(&args)
            .env("TZ", tz);
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => sh.env(k, v),
                None => sh.env_remove(k),
            };
        }
        cmd = sh;
        run_ok(&mut cmd);
        digests.push(std::fs::read(out.join("index.json")).unwrap());
    }
    assert_eq!(
        String::from_utf8_lossy(&digests[0]),
        String::from_utf8_lossy(&digests[1]),
        "index.json differs between the two builds"
    );
}
