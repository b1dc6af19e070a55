//! Debian's `docker-registry` on loopback, and images and commands to push
//! and pull with, shared by the image push/pull tests.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kina_builder::digest::Sha256Digest;
use kina_builder::lock::LayerName;
use kina_builder::oci::image::{ImageConfigParams, write_index, write_platform_image};
use kina_builder::oci::layer::{Compression, write_layer};
use kina_builder::oci_layout::LayoutEntry;
use kina_builder::platform::Arch;
use kina_builder::rootfs::tree::{Node, Tree};
use kina_builder::store::ImageStore;

use super::{kina, require_tool, run_ok};

/// A bcrypt hash (cost 4) of `PASSWORD`, for the htpasswd registry.
pub const HTPASSWD: &str = "kina:$2b$04$1WVyEoXryJAZvr94KW9cW.NkE6BR5W7Sd/Cpu3pTUBoo35we7WCUa\n";
pub const PASSWORD: &str = "correct-horse-kina";

/// Debian's docker-registry on a free loopback port, optionally with
/// authentication and TLS; `stop` then `run` keeps port and storage. Its config
/// sets `http.secret`, so upload URLs handed out before a restart stay
/// valid after it (kina's DELETE of an interrupted upload, for one).
pub struct Registry {
    pub child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

pub struct Tls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Registry {
    pub fn start() -> Self {
        Self::start_with(false, None)
    }

    pub fn start_with(htpasswd: bool, tls: Option<&Tls>) -> Self {
        Self::launch(tls, |dir| {
            if !htpasswd {
                return String::new();
            }
            std::fs::write(dir.join("htpasswd"), HTPASSWD).unwrap();
            format!(
                "auth:\n  htpasswd:\n    realm: kina-test\n    path: {}\n",
                dir.join("htpasswd").display()
            )
        })
    }

    /// A registry whose config ends with `extra`: top-level YAML such as
    /// an `auth:` block.
    pub fn start_with_config(tls: Option<&Tls>, extra: &str) -> Self {
        Self::launch(tls, |_| extra.to_string())
    }

    /// `extra` gets the registry's directory and returns top-level YAML
    /// appended to the config.
    fn launch(tls: Option<&Tls>, extra: impl FnOnce(&Path) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: kina-test-upload-secret\n",
            dir.path().join("data").display()
        );
        if let Some(tls) = tls {
            std::fs::write(dir.path().join("cert.pem"), &tls.cert_pem).unwrap();
            std::fs::write(dir.path().join("key.pem"), &tls.key_pem).unwrap();
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("cert.pem").display(),
                dir.path().join("key.pem").display()
            ));
        }
        config.push_str(&extra(dir.path()));
        let path = dir.path().join("config.yml");
        std::fs::write(&path, config).unwrap();
        let mut registry = Self {
            child: None,
            port,
            dir,
            config: path,
        };
        registry.run();
        registry
    }

    pub fn run(&mut self) {
        let child = Command::new(require_tool("docker-registry"))
            .arg("serve")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(self.log_file())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until an upload to `repository` holds at least `bytes` bytes
    /// at the registry (a PATCH or PUT under way, or done), failing if the
    /// pushing `child` ends first.
    pub fn wait_for_upload(&self, repository: &str, bytes: u64, child: &mut Child) {
        let uploads = self
            .dir
            .path()
            .join("data/docker/registry/v2/repositories")
            .join(repository)
            .join("_uploads");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let held = std::fs::read_dir(&uploads)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|u| std::fs::metadata(u.path().join("data")).ok())
                .any(|m| m.len() >= bytes);
            if held {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no upload to {repository} reached {bytes} bytes"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "the push ended before an upload to {repository} reached {bytes} bytes"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The registry's log (every run of it, appended).
    fn log_file(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .unwrap()
    }

    /// The paths of the requests the registry answered with this method
    /// and status, from its own access log: what it really received.
    pub fn requests(&self, method: &str, status: u16) -> Vec<String> {
        let status = format!(" http.response.status={status} ");
        self.logged(method, |l| {
            l.contains("msg=\"response completed\"") && l.contains(&status)
        })
    }

    /// The paths of the requests with this method the registry refused
    /// for want of authorization (it logs those apart, unanswered).
    pub fn unauthorized(&self, method: &str) -> Vec<String> {
        self.logged(method, |l| l.contains("msg=\"error authorizing context"))
    }

    /// The paths of the logged requests with this method whose log lines
    /// pass `keep`, once the log holds every request answered so far.
    fn logged(&self, method: &str, keep: impl Fn(&str) -> bool) -> Vec<String> {
        // The registry logs a request just after answering it, so a request
        // of our own, answered after everything before it, marks the point
        // where the log holds them all. (Plain http registries only.)
        let path = self.dir.path().join("registry.log");
        let mark = format!(
            "kina-mark-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            conn,
            "GET /v2/?{mark} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        std::io::Read::read_to_end(&mut conn, &mut Vec::new()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !String::from_utf8_lossy(&std::fs::read(&path).unwrap()).contains(&mark) {
            assert!(
                Instant::now() < deadline,
                "the registry never logged {mark}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let log = std::fs::read(&path).unwrap();
        String::from_utf8_lossy(&log)
            .lines()
            .filter(|l| l.contains(&format!(" http.request.method={method} ")))
            .filter(|l| keep(l))
            .filter_map(|l| {
                // logrus quotes a value only when it has to.
                let uri = l.split(" http.request.uri=").nth(1)?;
                let uri = uri.strip_prefix('"').unwrap_or(uri);
                let end = uri.find(['?', '"', ' '])?;
                Some(uri[..end].to_string())
            })
            .collect()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Blobs the registry stores (its filesystem layout: blobs/sha256/xx/<hex>/data).
    pub fn blob_count(&self) -> usize {
        let root = self.dir.path().join("data/docker/registry/v2/blobs/sha256");
        let Ok(prefixes) = std::fs::read_dir(&root) else {
            return 0;
        };
        prefixes
            .flat_map(|p| std::fs::read_dir(p.unwrap().path()).unwrap())
            .filter(|b| b.as_ref().unwrap().path().join("data").exists())
            .count()
    }

    pub fn has_blob(&self, digest: &Sha256Digest) -> bool {
        let hex = digest.hex();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(&hex)
            .join("data")
            .exists()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Deterministic incompressible bytes, so a layer's size is its content's.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A two-platform image in the store under `env/data/images`, named
/// `reference`: one layer shared by both platforms (`shared_len` bytes of
/// noise) and one per platform, written by kina's own OCI writer.
pub fn make_image(env: &Path, reference: &str, shared_len: usize) -> LayoutEntry {
    let store = ImageStore::open(env.join("data/images")).unwrap();
    let mut shared = Tree::new();
    shared.insert("opt", Node::dir(0o755));
    shared.insert("opt/shared.bin", Node::file(noise(7, shared_len), 0o644));
    let mut manifests = Vec::new();
    for arch in Arch::ALL {
        let base = write_layer(&shared, 0, Compression::Gzip, store.blobs()).unwrap();
        let mut tree = Tree::new();
        tree.insert("etc", Node::dir(0o755));
        tree.insert(
            "etc/platform",
            Node::file(format!("{arch}\n").into_bytes(), 0o644),
        );
        let own = write_layer(&tree, 0, Compression::Gzip, store.blobs()).unwrap();
        let params = ImageConfigParams {
            arch,
            created_epoch: 0,
            entrypoint: vec!["/sbin/init".into()],
            stop_signal: "SIGRTMIN+3".into(),
            env: vec![],
            labels: Default::default(),
        };
        manifests.push(
            write_platform_image(
                &params,
                &[(LayerName::DebianBase, base), (LayerName::Images, own)],
                store.blobs(),
            )
            .unwrap(),
        );
    }
    let (digest, size) = write_index(&manifests, store.blobs()).unwrap();
    let entry = LayoutEntry {
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        digest,
        size,
        reference: reference.into(),
    };
    store.tag(entry.clone()).unwrap();
    entry
}

pub fn push(env: &Path, target: &str, from: &str) -> Command {
    let mut cmd = kina(env);
    cmd.args(["image", "push", target, "--from", from])
        .env("DOCKER_CONFIG", env.join("docker"));
    cmd
}

/// `kina image pull`, with no docker config of the user's.
pub fn pull(env: &Path, target: &str) -> Command {
    let mut cmd = kina(env);
    cmd.args(["image", "pull", target])
        .env("DOCKER_CONFIG", env.join("docker"));
    cmd
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard output and standard error together.
pub fn all_output(out: &Output) -> String {
    format!("{}{}", stdout(out), String::from_utf8_lossy(&out.stderr))
}

pub fn skopeo_raw(image: &str, extra: &[&str]) -> Vec<u8> {
    let out = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .args(extra)
            .arg(format!("docker://{image}")),
    );
    out.stdout
}

/// Every blob line of a push or pull (kind, digest, outcome).
pub fn blob_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            ["layer ", "config ", "manifest ", "index "]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .collect()
}

/// Runs `cmd` as user `kina` with `password` on its standard input
/// (`--username kina --password-stdin`), capturing its output.
pub fn run_with_password(cmd: &mut Command, password: &str) -> Output {
    spawn_with_password(cmd, password)
        .wait_with_output()
        .unwrap()
}

/// Starts `cmd` as user `kina` with `password` on its standard input, its
/// output captured.
pub fn spawn_with_password(cmd: &mut Command, password: &str) -> Child {
    let mut child = cmd
        .args(["--username", "kina", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child
}

/// How many blob lines of a push or pull end with `outcome` (`mounted`,
/// `pushed`, …).
pub fn blobs_with_outcome(text: &str, outcome: &str) -> usize {
    blob_lines(text)
        .iter()
        .filter(|l| l.contains(&format!(" {outcome}")))
        .count()
}

/// Pushes the local image `local/node:v1` to `target` as user `kina`.
pub fn push_with_password(env: &Path, target: &str, password: &str, extra: &[&str]) -> Output {
    run_with_password(push(env, target, "local/node:v1").args(extra), password)
}
