//! The Kubernetes half of a node image through the same code paths as the
//! real upstream hosts, which this build environment cannot reach:
//! release artifacts from a loopback HTTP server standing in for dl.k8s.io and
//! GitHub releases (via `--url-rewrite`), and control-plane images from
//! Debian's `docker-registry` on loopback standing in for registry.k8s.io
//! (via `--registry-mirror`). The "binaries" served are small test files, not
//! real Kubernetes builds: those cannot be downloaded here.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use kina_builder::digest::Sha256Digest;
use kina_builder::lock::LayerName;
use kina_builder::oci::image::{ImageConfigParams, write_index, write_platform_image};
use kina_builder::oci::layer::{Compression, write_layer};
use kina_builder::oci_layout::{BlobStore, LayoutEntry, layout_index_json, write_output};
use kina_builder::platform::Arch;
use kina_builder::rootfs::tree::{Node, Tree};
use kina_tests::{DebBuilder, HttpServer, PublishOptions, SignedRepo};

/// Debian's docker-registry, serving from a temporary directory on a free loopback port.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Self {
        let binary = require_tool("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A two-platform image made with kina's own OCI writer, as an OCI layout.
fn make_image_layout(dir: &Path, reference: &str) -> PathBuf {
    let store = BlobStore::open(dir.join("staging")).unwrap();
    let mut manifests = Vec::new();
    for arch in Arch::ALL {
        let mut tree = Tree::new();
        tree.insert("usr", Node::dir(0o755));
        tree.insert("usr/local", Node::dir(0o755));
        tree.insert("usr/local/bin", Node::dir(0o755));
        tree.insert(
            "usr/local/bin/kube-apiserver",
            Node::file(
                format!("test kube-apiserver for {arch}\n").into_bytes(),
                0o755,
            ),
        );
        let layer = write_layer(&tree, 0, Compression::Gzip, &store).unwrap();
        let params = ImageConfigParams {
            arch,
            created_epoch: 0,
            entrypoint: vec!["/usr/local/bin/kube-apiserver".into()],
            stop_signal: "SIGTERM".into(),
            env: vec![],
            labels: Default::default(),
        };
        manifests
            .push(write_platform_image(&params, &[(LayerName::Images, layer)], &store).unwrap());
    }
    let (digest, size) = write_index(&manifests, &store).unwrap();
    let entry = LayoutEntry {
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        digest,
        size,
        reference: reference.into(),
    };
    let mut blobs = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(store.root().join("blobs/sha256")).unwrap() {
        if let Ok(d) = entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .parse::<Sha256Digest>()
        {
            blobs.insert(d);
        }
    }
    let out = dir.join("image-layout");
    write_output(
        &store,
        &blobs,
        &layout_index_json(&[entry]).unwrap(),
        &out,
        0,
    )
    .unwrap();
    out
}

fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_mtime(0);
        tar.append_data(&mut h, path, *data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn write(path: &Path, bytes: &[u8]) -> Sha256Digest {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(bytes).unwrap();
    Sha256Digest::of(bytes)
}

#[test]
fn artifacts_and_preloaded_images_come_through_the_upstream_code_paths() {
    require_tool("skopeo");
    require_tool("umoci");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // The Debian part: one small package from a signed loopback repository.
    let mut repo = SignedRepo::new("kina-test", &["amd64", "arm64"]).unwrap();
    let deb = DebBuilder::new("node-tools", "1", "all")
        .file("usr/bin/node-tool", b"#!/bin/sh\n".to_vec(), 0o755)
        .build(w)
        .unwrap();
    repo.add(&deb).unwrap();
    repo.publish(&PublishOptions::default()).unwrap();
    let debian = HttpServer::serve_dir(repo.root()).unwrap();

    // Upstream release hosts, laid out with the real URL paths.
    let upstream = w.join("upstream");
    let version = "v1.35.1";
    let mut sums = std::collections::BTreeMap::new();
    for arch in ["amd64", "arm64"] {
        for bin in ["kubeadm", "kubelet", "kubectl"] {
            let path = upstream.join(format!("dl/release/{version}/bin/linux/{arch}/{bin}"));
            sums.insert(
                format!("{bin}-{arch}"),
                write(&path, format!("test {bin} {arch}\n").as_bytes()),
            );
        }
        let archive = tar_gz(&[
            (
                "bin/containerd",
                format!("test containerd {arch}").as_bytes(),
            ),
            ("bin/containerd-shim-runc-v2", b"shim"),
            ("bin/ctr", b"ctr"),
            ("bin/containerd-stress", b"not installed"),
        ]);
        let path = upstream.join(format!(
            "gh/containerd/containerd/releases/download/v2.2.1/containerd-2.2.1-linux-{arch}.tar.gz"
        ));
        sums.insert(format!("containerd-{arch}"), write(&path, &archive));
    }
    let http = HttpServer::serve_dir(&upstream).unwrap();

    // registry.k8s.io/kube-apiserver, pushed to the loopback registry.
    let registry = Registry::start();
    let reference = "registry.k8s.io/kube-apiserver:v1.35.1";
    let layout = make_image_layout(w, reference);
    let pushed = format!(
        "docker://127.0.0.1:{}/kube-apiserver:v1.35.1",
        registry.port
    );
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--all", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:v1.35.1", layout.display()))
            .arg(&pushed),
    );
    let raw = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(&pushed),
    )
    .stdout;
    let index_digest = Sha256Digest::of(&raw);

    let sha = |k: &str| sums[k].hex();
    let mut recipe = recipe_head(
        "k8s-path-test",
        debian.url(),
        "kina-test",
        repo.keyring_path(),
        &["node-tools"],
    );
    recipe.push_str(&format!(
        r#"
[[runtime.artifacts]]
name = "containerd"
version = "2.2.1"
url = "https://github.com/containerd/containerd/releases/download/v{{version}}/containerd-{{version}}-linux-{{arch}}.tar.gz"
sha256.amd64 = "{ca}"
sha256.arm64 = "{cb}"
install = {{ kind = "tar-gz", dest = "/usr/local", files = ["bin/containerd", "bin/containerd-shim-runc-v2"] }}

[kubernetes]
version = "{version}"
images = [{{ reference = "{reference}", digest = "{index}" }}]
"#,
        ca = sha("containerd-amd64"),
        cb = sha("containerd-arm64"),
        index = index_digest.hex(),
    ));
    for bin in ["kubeadm", "kubelet", "kubectl"] {
        recipe.push_str(&format!(
            "\n[[kubernetes.artifacts]]\nname = \"{bin}\"\nversion = \"{version}\"\nurl = \"https://dl.k8s.io/release/{{version}}/bin/linux/{{arch}}/{bin}\"\nsha256.amd64 = \"{}\"\nsha256.arm64 = \"{}\"\ninstall = {{ kind = \"file\", path = \"/usr/bin/{bin}\" }}\n",
            sha(&format!("{bin}-amd64")),
            sha(&format!("{bin}-arm64")),
        ));
    }
    recipe.push_str("\n[kina_init]\nsource = \"local\"\npath = \"kina-init.{rust_target}\"\n");
    let recipe_path = w.join("k8s.toml");
    std::fs::write(&recipe_path, recipe).unwrap();

    let mirrors = |cmd: &mut Command| {
        cmd.args([
            "--url-rewrite",
            &format!("https://dl.k8s.io={}/dl", http.url()),
        ])
        .args([
            "--url-rewrite",
            &format!("https://github.com={}/gh", http.url()),
        ])
        .args([
            "--registry-mirror",
            &format!("registry.k8s.io=http://127.0.0.1:{}", registry.port),
        ]);
    };
    let mut lock = kina(w);
    lock.args(["image", "lock", "--recipe"]).arg(&recipe_path);
    mirrors(&mut lock);
    run_ok(&mut lock);
    let lock_text = std::fs::read_to_string(recipe_path.with_extension("lock")).unwrap();
    assert!(lock_text.contains("manifest_digest"), "{lock_text}");
    assert!(
        lock_text.contains("url = \"https://dl.k8s.io/release/v1.35.1/bin/linux/arm64/kubeadm\""),
        "the lock keeps upstream URLs"
    );

    let output = w.join("node.tar");
    let mut build = kina(w);
    build
        .args(["image", "build", "--recipe"])
        .arg(&recipe_path)
        .arg("--output")
        .arg(&output)
        .args(kina_init_flags());
    mirrors(&mut build);
    run_ok(&mut build);
    assert!(http.requests("/dl/release/v1.35.1/bin/linux/arm64/kubeadm") >= 1);

    for arch in ["amd64", "arm64"] {
        let unpacked = unpack_platform(
            &format!("oci-archive:{}:k8s-path-test", output.display()),
            arch,
            w,
        );
        let config: serde_json::Value = serde_json::from_slice(
            &run_ok(
                Command::new("skopeo")
                    .args(["inspect", "--config"])
                    .arg(&unpacked.layout),
            )
            .stdout,
        )
        .unwrap();
        assert_eq!(
            config["config"]["Labels"]["io.kina.kubernetes.version"],
            "v1.35.1"
        );
        let history: Vec<String> = config["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["created_by"].as_str().unwrap().to_string())
            .collect();
        for layer in [
            "debian-base",
            "runtime",
            "kubernetes",
            "images",
            "kina-init",
        ] {
            assert!(
                history
                    .iter()
                    .any(|h| h.contains(&format!(" {layer} layer"))),
                "{arch}: no {layer} layer in {history:?}"
            );
        }
        let root = unpacked.rootfs;
        assert_eq!(
            std::fs::read_to_string(root.join("usr/bin/kubeadm")).unwrap(),
            format!("test kubeadm {arch}\n")
        );
        assert_eq!(
            std::fs::read_to_string(root.join("usr/local/bin/containerd")).unwrap(),
            format!("test containerd {arch}")
        );
        for unlisted in ["containerd-stress", "ctr"] {
            assert!(
                !root.join("usr/local/bin").join(unlisted).exists(),
                "{unlisted}: only the listed archive members are installed"
            );
        }
        // The preloaded image: an OCI layout kina-init imports on first boot,
        // holding this platform's manifest under its full reference for
        // containerd's import, and the tag alone for layout tools.
        let images = root.join("var/lib/kina/images");
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(images.join("index.json")).unwrap()).unwrap();
        let entry = &index["manifests"][0];
        assert_eq!(entry["annotations"]["io.containerd.image.name"], reference);
        assert_eq!(
            entry["annotations"]["org.opencontainers.image.ref.name"],
            "v1.35.1"
        );
        let manifest_digest: Sha256Digest = entry["digest"].as_str().unwrap().parse().unwrap();
        let manifest =
            std::fs::read(images.join("blobs/sha256").join(manifest_digest.hex())).unwrap();
        assert_eq!(Sha256Digest::of(&manifest), manifest_digest);
        let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        let layer: Sha256Digest = manifest["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(images.join("blobs/sha256").join(layer.hex()).exists());
        let sbom = std::fs::read_to_string(root.join("usr/share/kina/sbom.spdx.json")).unwrap();
        for name in [
            "kubeadm",
            "containerd",
            "node-tools",
            "registry.k8s.io/kube-apiserver:v1.35.1",
            "kina-init",
        ] {
            assert!(
                sbom.contains(&format!("\"name\":\"{name}\"")),
                "{arch}: SBOM lacks {name}"
            );
        }
    }

    // The upstream host now serves different bytes: refused, nothing written.
    write(
        &upstream.join(format!("dl/release/{version}/bin/linux/amd64/kubectl")),
        b"tampered kubectl\n",
    );
    let fresh = w.join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let output2 = w.join("node2.tar");
    let mut build = kina(&fresh);
    build
        .args(["image", "build", "--recipe"])
        .arg(&recipe_path)
        .arg("--output")
        .arg(&output2)
        .args(kina_init_flags());
    mirrors(&mut build);
    let err = run_err(&mut build);
    assert!(
        err.contains("kubectl v1.35.1 (amd64)") && err.contains(&sha("kubectl-amd64")),
        "{err}"
    );
    assert!(!output2.exists());
}
