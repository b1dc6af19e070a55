//! `kina image push` and `kina image pull` against Debian's `docker-registry`
//! on loopback, checked by an independent client (skopeo).

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::registry::*;
use common::*;
use kina_builder::digest::Sha256Digest;
use kina_builder::store::ImageStore;

#[test]
fn push_agrees_with_skopeo_repush_skips_everything_and_pull_round_trips() {
    require_tool("skopeo");
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let env = work.path().join("a");
    let entry = make_image(&env, "local/node:v1", 256 * 1024);
    let target = format!("{}/kina/node:v1", registry.host());

    let out = run_ok(&mut push(&env, &target, "local/node:v1"));
    let text = stdout(&out);
    let lines = blob_lines(&text);
    // 2 configs + 1 shared layer (once) + 2 own layers + 2 manifests + index.
    assert_eq!(lines.len(), 8, "{text}");
    // Each transferred blob says so, with its rate.
    assert!(
        lines
            .iter()
            .all(|l| l.contains(" pushed (") && l.ends_with("/s)")),
        "{text}"
    );
    assert!(text.contains(&entry.digest.oci()), "{text}");

    // skopeo reads back exactly the bytes kina stored, index and manifests.
    let store = ImageStore::open(env.join("data/images")).unwrap();
    let index = skopeo_raw(&target, &[]);
    assert_eq!(Sha256Digest::of(&index), entry.digest);
    assert_eq!(index, store.blobs().read(&entry.digest).unwrap());
    let doc: serde_json::Value = serde_json::from_slice(&index).unwrap();
    let platform_digests: Vec<Sha256Digest> = doc["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(platform_digests.len(), 2);
    for d in &platform_digests {
        let raw = skopeo_raw(&format!("{}/kina/node@{}", registry.host(), d.oci()), &[]);
        assert_eq!(Sha256Digest::of(&raw), *d);
    }
    let copy = work.path().join("skopeo-copy");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--all", "--src-tls-verify=false"])
            .arg(format!("docker://{target}"))
            .arg(format!("oci:{}:node", copy.display())),
    );
    let copied: serde_json::Value =
        serde_json::from_slice(&std::fs::read(copy.join("index.json")).unwrap()).unwrap();
    assert_eq!(copied["manifests"][0]["digest"], entry.digest.oci());

    // Pushing again uploads nothing.
    let blobs_before = registry.blob_count();
    let out = run_ok(&mut push(&env, &target, "local/node:v1"));
    let text = stdout(&out);
    let lines = blob_lines(&text);
    assert_eq!(lines.len(), 8, "{text}");
    assert!(
        lines.iter().all(|l| l.ends_with("skipped (present)")),
        "{text}"
    );
    assert!(text.contains("pushed 0 blobs"), "{text}");
    assert_eq!(registry.blob_count(), blobs_before);

    // Pull into an empty store: same index, same bytes for every blob.
    let env_b = work.path().join("b");
    let out = run_ok(kina(&env_b).args(["image", "pull", &target]));
    let text = stdout(&out);
    assert!(text.contains("pulled 8 blobs"), "{text}");
    let store_b = ImageStore::open(env_b.join("data/images")).unwrap();
    let pulled = store_b.find(&target).unwrap();
    assert_eq!(pulled.digest, entry.digest);
    let blobs = store.blobs_of(&entry.digest).unwrap();
    assert_eq!(store_b.blobs_of(&pulled.digest).unwrap(), blobs);
    for d in &blobs {
        assert_eq!(
            store_b.blobs().read(d).unwrap(),
            store.blobs().read(d).unwrap()
        );
    }
    // kina's own listing sees the pulled image with both platforms.
    let out = run_ok(kina(&env_b).args(["image", "inspect", &target, "--json"]));
    let inspect = stdout(&out);
    assert!(
        inspect.contains("amd64") && inspect.contains("arm64"),
        "{inspect}"
    );

    // Pulling again downloads no blob.
    let out = run_ok(kina(&env_b).args(["image", "pull", &target]));
    assert!(stdout(&out).contains("pulled 0 blobs"), "{}", stdout(&out));

    // The pulled image pushed to another repository of the same registry:
    // its configs and layers are mounted from where they came, not sent.
    let other = format!("{}/team/node:v1", registry.host());
    let blobs_before = registry.blob_count();
    let out = run_ok(&mut push(&env_b, &other, &target));
    let text = stdout(&out);
    let mounted = blobs_with_outcome(&text, "mounted");
    // 2 configs + 3 distinct layers; the manifests and index are PUT.
    assert_eq!(mounted, 5, "{text}");
    assert_eq!(registry.blob_count(), blobs_before, "no blob stored twice");
    assert_eq!(Sha256Digest::of(&skopeo_raw(&other, &[])), entry.digest);
}

#[test]
fn a_tampered_local_blob_fails_a_whole_blob_push_naming_its_digest() {
    tampered_blob_never_lands("0");
}

#[test]
fn a_tampered_local_blob_fails_a_chunked_push_before_the_upload_completes() {
    let registry = tampered_blob_never_lands("16Ki");
    // The chunks went out; the closing PUT did not, and the upload was
    // cancelled instead of being left for the registry's purger.
    assert!(
        registry.requests("PATCH", 202).len() >= 4,
        "{:?}",
        registry.requests("PATCH", 202)
    );
    assert!(!registry.requests("DELETE", 204).is_empty());
}

/// Pushes an image whose largest layer has one byte flipped, in chunks of
/// `chunk` (`0`: whole blobs); returns the registry for more checks.
fn tampered_blob_never_lands(chunk: &str) -> Registry {
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let env = work.path().join("a");
    let entry = make_image(&env, "local/node:v1", 64 * 1024);
    let store = ImageStore::open(env.join("data/images")).unwrap();
    // The shared layer: the largest blob of the image.
    let layer = store
        .blobs_of(&entry.digest)
        .unwrap()
        .into_iter()
        .max_by_key(|d| store.blobs().read(d).unwrap().len())
        .unwrap();
    let path = store.blobs().path(&layer);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let target = format!("{}/kina/node:v1", registry.host());
    let err = run_err(push(&env, &target, "local/node:v1").args(["--chunk-size", chunk]));
    assert!(err.contains(&layer.oci()), "{err}");
    assert!(err.contains("does not hash to its name"), "{err}");
    assert!(!registry.has_blob(&layer), "a corrupt upload was completed");
    // Nothing names the image at the registry.
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{target}"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    registry
}

#[test]
fn an_unreachable_registry_and_a_digest_mismatch_are_clear_errors() {
    let work = tempfile::tempdir().unwrap();
    let env = work.path().join("a");
    let entry = make_image(&env, "local/node:v1", 1024);
    let port = free_port();
    let err = run_err(&mut push(
        &env,
        &format!("127.0.0.1:{port}/kina/node:v1"),
        "local/node:v1",
    ));
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("not reachable"), "{err}");

    let err = run_err(&mut push(&env, "127.0.0.1:1/kina/node:v1", "local/missing"));
    assert!(err.contains("no image `local/missing`"), "{err}");

    let registry = Registry::start();
    let wrong = Sha256Digest::of(b"not the index");
    let err = run_err(&mut push(
        &env,
        &format!("{}/kina/node@{}", registry.host(), wrong.oci()),
        "local/node:v1",
    ));
    assert!(
        err.contains(&wrong.oci()) && err.contains(&entry.digest.oci()),
        "{err}"
    );
}

#[test]
fn htpasswd_registry_takes_the_right_password_and_never_echoes_a_wrong_one() {
    require_tool("skopeo");
    let registry = Registry::start_with(true, None);
    let work = tempfile::tempdir().unwrap();
    let env = work.path().join("a");
    let entry = make_image(&env, "local/node:v1", 4096);
    let target = format!("{}/kina/node:v1", registry.host());

    let err = run_err(&mut push(&env, &target, "local/node:v1"));
    assert!(err.contains("requires credentials"), "{err}");

    let wrong = "wrong-password-do-not-print";
    let out = push_with_password(&env, &target, wrong, &["-v"]);
    assert!(!out.status.success());
    let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(
        all.contains("rejected the credentials of user `kina`"),
        "{all}"
    );
    assert!(!all.contains(wrong), "the password was printed:\n{all}");
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("kina:{wrong}"));
    assert!(
        !all.contains(&encoded),
        "the Basic header was printed:\n{all}"
    );
    assert_eq!(registry.blob_count(), 0);

    let out = push_with_password(&env, &target, PASSWORD, &["-vv"]);
    let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{all}");
    assert!(!all.contains(PASSWORD), "the password was printed:\n{all}");
    let index = skopeo_raw(&target, &["--creds", &format!("kina:{PASSWORD}")]);
    assert_eq!(Sha256Digest::of(&index), entry.digest);

    // docker's config.json is used when no flags are given.
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("kina:{PASSWORD}"));
    std::fs::create_dir_all(env.join("docker")).unwrap();
    std::fs::write(
        env.join("docker/config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    let out = run_ok(&mut push(&env, &target, "local/node:v1"));
    assert!(stdout(&out).contains("pushed 0 blobs"), "{}", stdout(&out));

    // A credential helper named in credHelpers answers instead: a script
    // speaking docker's helper protocol (`get`, the registry on stdin, JSON
    // out), standing in for docker-credential-pass, -osxkeychain and the
    // like. It records what it was asked.
    let helpers = work.path().join("helpers");
    std::fs::create_dir_all(&helpers).unwrap();
    let source = work.path().join("helper.sh");
    let asked = work.path().join("helper-asked");
    std::fs::write(
        &source,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\ncat > '{}'\nprintf '{{\"ServerURL\":\"x\",\"Username\":\"kina\",\"Secret\":\"{PASSWORD}\"}}'\n",
            asked.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&source, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // Copied by another process, so no thread of this one can hold it open
    // for writing when it is executed (ETXTBSY).
    let helper = helpers.join("docker-credential-kinatest");
    assert!(
        Command::new("cp")
            .arg(&source)
            .arg(&helper)
            .status()
            .unwrap()
            .success()
    );
    std::fs::write(
        env.join("docker/config.json"),
        format!(r#"{{"credHelpers":{{"{}":"kinatest"}}}}"#, registry.host()),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        helpers.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let other = format!("{}/kina/helped:v1", registry.host());
    let out = run_ok(push(&env, &other, "local/node:v1").env("PATH", &path));
    assert!(
        stdout(&out).contains(&entry.digest.oci()),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&asked).unwrap().trim(),
        registry.host(),
        "the helper is asked for this registry"
    );
}

/// A CA and a leaf certificate for 127.0.0.1 signed by it.
fn make_tls() -> Tls {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(vec!["kina test CA".to_string()]).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    Tls {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

#[test]
fn tls_registry_with_htpasswd_needs_its_ca_and_pull_verifies_into_an_empty_store() {
    let tls = make_tls();
    let registry = Registry::start_with(true, Some(&tls));
    let work = tempfile::tempdir().unwrap();
    let env = work.path().join("a");
    let entry = make_image(&env, "local/node:v1", 4096);
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, &tls.ca_pem).unwrap();
    let target = format!("{}/kina/node:v1", registry.host());

    let ca_arg = ca.display().to_string();
    let out = push_with_password(&env, &target, PASSWORD, &["--ca-file", &ca_arg]);
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );

    // Without the CA: https fails verification (the http fallback meets a
    // TLS server), and the error says what to do about the certificate.
    let out = push_with_password(&env, &target, PASSWORD, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("certificate could not be verified") && stderr.contains("--ca-file"),
        "{stderr}"
    );

    let env_b = work.path().join("b");
    let mut pull = kina(&env_b);
    pull.args([
        "image",
        "pull",
        &target,
        "--ca-file",
        &ca_arg,
        "-u",
        "kina",
        "--password-stdin",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = pull.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(PASSWORD.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store_b = ImageStore::open(env_b.join("data/images")).unwrap();
    assert_eq!(store_b.find(&target).unwrap().digest, entry.digest);
}

#[test]
fn a_whole_blob_push_interrupted_by_a_registry_restart_is_retried_to_completion() {
    push_through_a_registry_restart("0");
}

#[test]
fn a_chunked_push_interrupted_by_a_registry_restart_is_retried_to_completion() {
    push_through_a_registry_restart("1Mi");
}

/// Stops the registry while a push (in chunks of `chunk`, `0`: whole
/// blobs) is uploading, brings it back, and checks the push completed.
fn push_through_a_registry_restart(chunk: &str) {
    require_tool("skopeo");
    let mut registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let env = work.path().join("a");
    let entry = make_image(&env, "local/node:v1", 8 << 20);
    let target = format!("{}/kina/node:v1", registry.host());
    let mut child = push(&env, &target, "local/node:v1")
        .args(["--chunk-size", chunk])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A MiB of the 8 MiB layer at the registry means its upload is under
    // way (a chunk or more of it landed): stop the registry under it, then
    // bring it back on the same port and storage.
    registry.wait_for_upload("kina/node", 1 << 20, &mut child);
    registry.stop();
    std::thread::sleep(Duration::from_millis(300));
    registry.run();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}{stderr}", stdout(&out));
    assert!(stderr.contains("retrying"), "no retry happened:\n{stderr}");
    let index = skopeo_raw(&target, &[]);
    assert_eq!(Sha256Digest::of(&index), entry.digest);
    // Every blob made it: pulling into an empty store verifies them all.
    run_ok(kina(&work.path().join("b")).args(["image", "pull", &target]));
}

/// A single-platform image (a manifest, no index) made by umoci and pushed
/// by skopeo, both independent of kina: pull keeps it a manifest with every
/// blob verified, and pushing it on gives the registry the same bytes.
#[test]
fn a_single_platform_image_from_other_tools_pulls_and_pushes_unchanged() {
    require_tool("skopeo");
    require_tool("umoci");
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let image = format!("{}:solo", layout.display());
    run_ok(
        Command::new("umoci")
            .arg("init")
            .arg("--layout")
            .arg(&layout),
    );
    run_ok(Command::new("umoci").args(["new", "--image", &image]));
    let file = work.path().join("payload.bin");
    std::fs::write(&file, noise(11, 300 * 1024)).unwrap();
    run_ok(
        Command::new("umoci")
            .args(["insert", "--image", &image])
            .arg(&file)
            .arg("/payload.bin"),
    );
    let source = format!("{}/other/solo:v1", registry.host());
    run_ok(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{image}"),
        &format!("docker://{source}"),
    ]));
    let manifest = skopeo_raw(&source, &[]);
    let doc: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert!(doc.get("manifests").is_none(), "skopeo pushed an index");

    let env = work.path().join("a");
    let out = run_ok(kina(&env).args(["image", "pull", &source]));
    let text = stdout(&out);
    let lines = blob_lines(&text);
    assert_eq!(lines.len(), 3, "config, layer, manifest:\n{text}");
    assert!(lines[2].starts_with("manifest "), "{text}");
    let store = ImageStore::open(env.join("data/images")).unwrap();
    let entry = store.find(&source).unwrap();
    assert_eq!(entry.digest, Sha256Digest::of(&manifest));
    // umoci leaves the optional mediaType field out: the type comes from
    // the registry's Content-Type, and the image stays a manifest.
    assert_eq!(
        entry.media_type,
        "application/vnd.oci.image.manifest.v1+json"
    );
    for d in [&doc["config"], &doc["layers"][0]] {
        let digest: Sha256Digest = d["digest"].as_str().unwrap().parse().unwrap();
        let bytes = std::fs::read(store.blobs().path(&digest)).unwrap();
        assert_eq!(Sha256Digest::of(&bytes), digest);
    }

    // Pushed on to another repository (named by another host spelling, so
    // nothing is mounted): the registry holds the very same manifest bytes.
    let target = format!("localhost:{}/kina/solo:v1", registry.port);
    let out = run_ok(&mut push(&env, &target, &source));
    let text = stdout(&out);
    assert_eq!(blobs_with_outcome(&text, "pushed"), 3, "{text}");
    assert_eq!(skopeo_raw(&target, &[]), manifest);
}

/// A blob bigger than the chunk size reaches the registry as PATCH
/// requests (its own access log says so), which it assembles into the
/// same blob skopeo sees; `--chunk-size 0` sends it in one PUT.
#[test]
fn big_blobs_go_in_patch_chunks_and_the_registry_assembles_them() {
    require_tool("skopeo");
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let env = work.path().join("a");
    let entry = make_image(&env, "local/node:v1", 5 << 20);
    let target = format!("{}/kina/node:v1", registry.host());
    let out = run_ok(push(&env, &target, "local/node:v1").args(["--chunk-size", "1Mi"]));
    let patches = registry.requests("PATCH", 202);
    // Only the shared layer (5 MiB of noise, gzip can't shrink it) is
    // bigger than a chunk: 5 full chunks and a short last one.
    assert_eq!(patches.len(), 6, "{patches:?}\n{}", stdout(&out));
    assert!(
        patches
            .iter()
            .all(|p| p.starts_with("/v2/kina/node/blobs/uploads/")),
        "{patches:?}"
    );
    let index = skopeo_raw(&target, &[]);
    assert_eq!(Sha256Digest::of(&index), entry.digest);
    run_ok(Command::new("skopeo").args([
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{target}"),
        &format!("oci:{}:copy", work.path().join("copy").display()),
    ]));
    // Pulling into an empty store verifies every blob, the big one included.
    run_ok(&mut pull(&work.path().join("b"), &target));

    let whole = format!("localhost:{}/kina/whole:v1", registry.port);
    run_ok(push(&env, &whole, "local/node:v1").args(["--chunk-size", "0"]));
    assert_eq!(registry.requests("PATCH", 202).len(), 6, "no new PATCH");
    assert_eq!(skopeo_raw(&whole, &[]), index);
}

/// What the proxy in front of a docker-registry does besides passing
/// requests on.
#[derive(Clone, Copy)]
enum Misbehaviour {
    /// Answers `PATCH` with 405: a TEST DOUBLE for a registry without
    /// chunked uploads, since every registry packaged for Debian has them.
    RefusesPatch,
    /// Cuts the connection of the first answer whose body is longer than
    /// `longer_than`, after `keep` bytes of it: a network that drops a
    /// download (TEST DOUBLE for a flaky link; loopback never drops one).
    /// `resume` says what becomes of a `Range` header on its way to the
    /// registry.
    CutsOneDownload {
        longer_than: usize,
        keep: usize,
        resume: RangeOnTheWay,
    },
    /// Answers every `POST` (the start of an upload) with a bare 403 and a
    /// registry error body, no challenge: a TEST DOUBLE for the registries
    /// and proxies that say "denied" that way, since docker-registry only
    /// says it through a token's scopes.
    ForbidsUploads,
}

/// What a proxy does to the `Range` header of a resumed download.
#[derive(Clone, Copy)]
enum RangeOnTheWay {
    PassedOn,
    /// As a proxy that does not pass it on: the registry answers 200.
    Dropped,
    /// Asks for the blob from its first byte instead: the registry answers
    /// 206 for a range the client did not ask for.
    FromTheStart,
}

/// A reverse proxy in front of a docker-registry. Plain HTTP/1.1 with
/// `Content-Length` bodies, which is all kina and docker-registry send
/// here; each request goes upstream on a connection of its own. A TLS hello
/// is refused at once, so kina's https probe fails fast as it does against
/// docker-registry.
struct Proxy {
    port: u16,
    state: Arc<Mutex<ProxyState>>,
}

#[derive(Default)]
struct ProxyState {
    /// The path of the download that was cut, once it was.
    cut: Option<String>,
    /// The `Range` header (or none) of every GET of that path, in order.
    gets_of_cut: Vec<Option<String>>,
}

impl Proxy {
    fn start(upstream: u16, misbehaviour: Misbehaviour) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let shared = state.clone();
        // The thread ends with the test process.
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(conn, upstream, misbehaviour, &state));
            }
        });
        Self { port, state }
    }

    fn gets_of_cut(&self) -> (Option<String>, Vec<Option<String>>) {
        let state = self.state.lock().unwrap();
        (state.cut.clone(), state.gets_of_cut.clone())
    }
}

/// One HTTP message from `reader`: its head (start line and headers) and
/// body; `None` at the end of the connection.
fn read_message(reader: &mut impl std::io::BufRead) -> Option<(Vec<String>, Vec<u8>)> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let length = head
        .iter()
        .filter_map(|h| h.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.trim().parse::<usize>().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((head, body))
}

fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter()
        .filter_map(|h| h.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

fn serve(
    conn: std::net::TcpStream,
    upstream: u16,
    misbehaviour: Misbehaviour,
    state: &Mutex<ProxyState>,
) {
    use std::io::BufReader;
    let mut first = [0u8; 1];
    if conn.peek(&mut first).is_err() || !first[0].is_ascii_uppercase() {
        return;
    }
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut client = conn;
    while let Some((head, body)) = read_message(&mut reader) {
        let path = head[0].split(' ').nth(1).unwrap_or_default().to_string();
        if head[0].starts_with("PATCH ") && matches!(misbehaviour, Misbehaviour::RefusesPatch) {
            client
                .write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            continue;
        }
        if head[0].starts_with("POST ") && matches!(misbehaviour, Misbehaviour::ForbidsUploads) {
            let body = br#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#;
            let head = format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            client.write_all(head.as_bytes()).unwrap();
            client.write_all(body).unwrap();
            continue;
        }
        let range_becomes = match misbehaviour {
            Misbehaviour::CutsOneDownload { resume, .. } => resume,
            _ => RangeOnTheWay::PassedOn,
        };
        {
            let mut state = state.lock().unwrap();
            if head[0].starts_with("GET ") && state.cut.as_deref() == Some(path.as_str()) {
                let range = header(&head, "range").map(str::to_string);
                state.gets_of_cut.push(range);
            }
        }
        let mut request = String::new();
        for line in &head {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("connection:") {
                continue;
            }
            match range_becomes {
                RangeOnTheWay::Dropped if lower.starts_with("range:") => {}
                RangeOnTheWay::FromTheStart if lower.starts_with("range:") => {
                    request.push_str("Range: bytes=0-\r\n");
                }
                _ => {
                    request.push_str(line);
                    request.push_str("\r\n");
                }
            }
        }
        request.push_str("Connection: close\r\n\r\n");
        let mut registry = std::net::TcpStream::connect(("127.0.0.1", upstream)).unwrap();
        registry.write_all(request.as_bytes()).unwrap();
        registry.write_all(&body).unwrap();
        // The registry closes after answering; a HEAD answer has no body
        // whatever its Content-Length says, so relay the bytes as they come.
        let mut answer = Vec::new();
        std::io::Read::read_to_end(&mut registry, &mut answer).unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert!(
            !text
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "the proxy does not relay chunked responses"
        );
        if let Misbehaviour::CutsOneDownload {
            longer_than, keep, ..
        } = misbehaviour
        {
            let body_at = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            let mut state = state.lock().unwrap();
            if head[0].starts_with("GET ")
                && state.cut.is_none()
                && answer.len() - body_at > longer_than
            {
                state.cut = Some(path.clone());
                state
                    .gets_of_cut
                    .push(header(&head, "range").map(str::to_string));
                client.write_all(&answer[..body_at + keep]).unwrap();
                // A clean close mid-body: the client has `keep` bytes of a
                // body its Content-Length says is longer.
                let _ = client.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
        client.write_all(&answer).unwrap();
    }
}

/// A registry that refuses `PATCH` gets whole blobs: the push says so once
/// and completes, with the registry holding the very image.
#[test]
fn a_registry_refusing_chunks_gets_whole_blobs() {
    require_tool("skopeo");
    let registry = Registry::start();
    let proxy = Proxy::start(registry.port, Misbehaviour::RefusesPatch);
    let work = tempfile::tempdir().unwrap();
    let env = work.path().join("a");
    let entry = make_image(&env, "local/node:v1", 256 * 1024);
    let target = format!("127.0.0.1:{}/kina/node:v1", proxy.port);
    let out = run_ok(push(&env, &target, "local/node:v1").args(["--chunk-size", "64Ki"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("does not take chunked uploads").count(),
        1,
        "{stderr}"
    );
    assert!(registry.requests("PATCH", 202).is_empty());
    // Every blob arrived in one PUT each (2 configs, 3 layers).
    let direct = format!("{}/kina/node:v1", registry.host());
    assert_eq!(Sha256Digest::of(&skopeo_raw(&direct, &[])), entry.digest);
    let puts = registry.requests("PUT", 201);
    assert_eq!(puts.len(), 5 + 3, "{puts:#?}");
}

/// A download cut off mid-blob is taken up at the byte where it stopped
/// (`Range`, answered 206 by the registry), and the blob still verifies.
#[test]
fn a_pull_cut_off_mid_blob_resumes_where_it_stopped() {
    let (proxy, registry, out) = pull_through_a_cut(RangeOnTheWay::PassedOn);
    let (cut, gets) = proxy.gets_of_cut();
    let cut = cut.expect("the proxy cut a download");
    assert_eq!(
        gets,
        [None, Some(format!("bytes={CUT_AFTER}-"))],
        "GETs of {cut}"
    );
    assert_eq!(registry.requests("GET", 206), std::slice::from_ref(&cut));
    assert_said(&out, &format!("broke after {CUT_AFTER} bytes"));
}

/// Where `Range` does not reach the registry it answers 200 with the whole
/// blob, which is downloaded again from its first byte.
#[test]
fn a_pull_cut_off_where_range_is_not_honoured_downloads_the_blob_again() {
    let (proxy, registry, out) = pull_through_a_cut(RangeOnTheWay::Dropped);
    let (cut, gets) = proxy.gets_of_cut();
    assert_eq!(
        gets,
        [None, Some(format!("bytes={CUT_AFTER}-"))],
        "GETs of {cut:?}"
    );
    assert!(registry.requests("GET", 206).is_empty());
    assert_said(&out, &format!("did not resume at byte {CUT_AFTER}"));
}

/// A 206 for another range than the one asked for is not spliced onto
/// what was received: the blob is asked for again whole, without `Range`.
#[test]
fn a_pull_answered_with_another_range_downloads_the_blob_again() {
    let (proxy, registry, out) = pull_through_a_cut(RangeOnTheWay::FromTheStart);
    let (cut, gets) = proxy.gets_of_cut();
    let cut = cut.expect("the proxy cut a download");
    assert_eq!(
        gets,
        [None, Some(format!("bytes={CUT_AFTER}-")), None],
        "GETs of {cut}"
    );
    assert_eq!(registry.requests("GET", 206), std::slice::from_ref(&cut));
    assert_said(&out, &format!("did not resume at byte {CUT_AFTER} (206"));
}

const CUT_AFTER: usize = 300 * 1024;

fn assert_said(out: &std::process::Output, needle: &str) {
    let text = all_output(out);
    assert!(text.contains(needle), "no `{needle}` in:\n{text}");
}

/// Pushes an image with a 2 MiB layer straight to a registry, then pulls it
/// into an empty store through a proxy that cuts that layer's download
/// after [`CUT_AFTER`] bytes; the pull must complete with every blob as
/// pushed.
fn pull_through_a_cut(resume: RangeOnTheWay) -> (Proxy, Registry, std::process::Output) {
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let env = work.path().join("a");
    let entry = make_image(&env, "local/node:v1", 2 << 20);
    run_ok(&mut push(
        &env,
        &format!("{}/kina/node:v1", registry.host()),
        "local/node:v1",
    ));
    let proxy = Proxy::start(
        registry.port,
        Misbehaviour::CutsOneDownload {
            longer_than: 1 << 20,
            keep: CUT_AFTER,
            resume,
        },
    );
    let other = work.path().join("b");
    let out = run_ok(pull(&other, &format!("127.0.0.1:{}/kina/node:v1", proxy.port)).arg("-v"));
    let pushed = ImageStore::open(env.join("data/images")).unwrap();
    let pulled = ImageStore::open(other.join("data/images")).unwrap();
    let (cut, _) = proxy.gets_of_cut();
    let cut = cut.expect("the proxy cut a download");
    let digest: Sha256Digest = cut.rsplit('/').next().unwrap().parse().unwrap();
    assert_eq!(
        pulled.blobs().read(&digest).unwrap(),
        pushed.blobs().read(&digest).unwrap()
    );
    assert_eq!(
        pulled.blobs().read(&entry.digest).unwrap(),
        pushed.blobs().read(&entry.digest).unwrap()
    );
    (proxy, registry, out)
}

/// A bare 403 (no challenge) is "not allowed", not "wrong password": with a
/// login it names the user and what was refused, without one it asks for
/// credentials; either way once, with no retry and no password shown.
#[test]
fn a_bare_403_to_an_upload_says_the_user_may_not_push_here() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.port, Misbehaviour::ForbidsUploads);
    let work = tempfile::tempdir().unwrap();
    let env = work.path().join("a");
    make_image(&env, "local/node:v1", 64 * 1024);
    let target = format!("127.0.0.1:{}/kina/node:v1", proxy.port);

    let out = push_with_password(&env, &target, "s3cret-pass", &[]);
    assert!(!out.status.success());
    let text = all_output(&out);
    assert!(
        text.contains("accepted user `kina` but refused")
            && text.contains("HTTP 403")
            && text.contains("may not do this in this repository"),
        "{text}"
    );
    assert!(
        !text.contains("s3cret-pass") && !text.contains("retrying"),
        "{text}"
    );

    let text = run_err(&mut push(&env, &target, "local/node:v1"));
    assert!(text.contains("requires credentials"), "{text}");
    assert!(registry.requests("PUT", 201).is_empty());
}
