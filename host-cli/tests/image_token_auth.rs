//! `kina image push` and `kina image pull` against Debian's `docker-registry`
//! (distribution 2.8) configured for docker token authentication: the
//! registry answers `401` with a `Bearer realm=…,service=…` challenge, the
//! client fetches a JWT from the realm with Basic credentials, and the
//! registry verifies that token's signature, issuer, audience, lifetime and
//! `access` claim on every request.
//!
//! The token server is made by this test: a real HTTP server on loopback in
//! the test process, standing in for docker_auth, Harbor or Docker Hub's
//! auth service, because none of them is packaged for Debian. It does what
//! they do: checks Basic credentials (user `kina`, `PASSWORD`; a wrong one
//! gets 401), grants user `kina` exactly the actions asked for, gives an
//! anonymous client a token granting nothing (as Docker Hub does for a
//! repository it may not see), and records every request.
//!
//! What distribution 2.8 requires of a token (registry/auth/token/token.go
//! and accesscontroller.go at v2.8.2): an `alg` the signing key supports
//! (ES256 for a P-256 key, via libtrust) and its signing key named by `x5c`
//! (standard base64 DER certificates, verified up to a certificate of
//! `rootcertbundle`), a `jwk`, or a `kid` that is the libtrust fingerprint
//! of a `rootcertbundle` key; `iss` equal to the configured issuer; `aud` a
//! single string equal to the configured service (an array does not parse);
//! `exp` and `nbf` checked with 60 s of leeway; and an `access` entry
//! `{type, name, actions}` for each action the request needs (pull for
//! GET/HEAD, pull and push for POST/PUT/PATCH, and pull on the `from`
//! repository of a cross-repository mount). `sub`, `iat` and `jti` are
//! carried, not checked.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::registry::*;
use common::*;
use kina_builder::digest::Sha256Digest;
use kina_builder::store::ImageStore;

const SERVICE: &str = "kina-test-registry";
const ISSUER: &str = "kina-test-issuer";
/// distribution 2.8 accepts a token until this long after its `exp`
/// (`Leeway` in registry/auth/token/token.go).
const REGISTRY_LEEWAY: u64 = 60;
/// How long an ordinary token lives, as Docker Hub's do.
const TOKEN_LIFETIME: u64 = 300;

/// What the Basic credentials of a token request were.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Creds {
    Anonymous,
    Right,
    Wrong,
}

/// One request the token server answered.
#[derive(Clone, Debug)]
struct TokenRequest {
    creds: Creds,
    service: Option<String>,
    /// Every `scope` parameter, in order.
    scopes: Vec<String>,
    /// The token issued; none for wrong credentials.
    token: Option<String>,
    /// The last instant the registry accepts the token (its `exp` plus the
    /// registry's leeway).
    accepted_until: Option<SystemTime>,
}

#[derive(Clone, Copy)]
enum SaysLifetime {
    /// The lifetime the token has.
    Truly,
    /// Nothing: a client takes the spec's default of 60 s, and learns of
    /// an earlier expiry only from a refusal.
    Nothing,
    /// A number no clock can count to (a broken token server).
    Absurdly,
}

struct Policy {
    /// How long the registry accepts the first token issued, instead of
    /// `TOKEN_LIFETIME`.
    first_lifetime: Option<u64>,
    /// What answers say of the lifetime (`expires_in`).
    says_lifetime: SaysLifetime,
    /// The field of the JSON answer holding the token: `token` (Docker Hub,
    /// docker_auth) or `access_token` (the OAuth2 name, which some servers
    /// send alone).
    field: &'static str,
    /// User kina may only pull (as a read-only member of a Harbor project).
    pull_only: bool,
    /// A repository user kina gets nothing on (another team's).
    hidden: Option<&'static str>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            first_lifetime: None,
            says_lifetime: SaysLifetime::Truly,
            field: "token",
            pull_only: false,
            hidden: None,
        }
    }
}

/// The token signing key and its self-signed certificate, which is the
/// registry's `rootcertbundle`.
struct Signer {
    key: rcgen::KeyPair,
    cert_der: Vec<u8>,
    cert_pem: String,
}

impl Signer {
    fn new() -> Self {
        // P-256: the token is ES256.
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["kina-test-token-signer".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key,
        }
    }

    /// A compact JWS of `claims`, its key named by `x5c`.
    fn jwt(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [STANDARD.encode(&self.cert_der)],
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let der = rcgen::SigningKey::sign(&self.key, input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(der_to_jose(&der)))
    }
}

/// An ECDSA P-256 signature from ASN.1 DER (a SEQUENCE of the INTEGERs r
/// and s) to the 64 bytes r‖s that JWS uses (RFC 7518 section 3.4).
fn der_to_jose(der: &[u8]) -> Vec<u8> {
    assert_eq!(der[0], 0x30, "not a DER SEQUENCE");
    let mut rest = &der[2..];
    let mut out = Vec::with_capacity(64);
    for _ in 0..2 {
        assert_eq!(rest[0], 0x02, "not a DER INTEGER");
        let len = rest[1] as usize;
        let int = &rest[2..2 + len];
        let int = &int[int.iter().take_while(|b| **b == 0).count()..];
        assert!(int.len() <= 32);
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend_from_slice(int);
        rest = &rest[2 + len..];
    }
    out
}

/// The test-made token server on a loopback port; stops when dropped.
struct TokenServer {
    port: u16,
    server: Arc<tiny_http::Server>,
    log: Arc<Mutex<Vec<TokenRequest>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl TokenServer {
    fn start(policy: Policy) -> Self {
        let signer = Signer::new();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token-cert.pem"), &signer.cert_pem).unwrap();
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, log, stop) = (server.clone(), log.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match server.recv_timeout(Duration::from_millis(100)) {
                        Ok(Some(request)) => answer(&signer, &policy, &log, request),
                        Ok(None) => {}
                        Err(_) => break,
                    }
                }
            })
        };
        Self {
            port,
            server,
            log,
            stop,
            thread: Some(thread),
            dir,
        }
    }

    fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// Every request so far, in order.
    fn requests(&self) -> Vec<TokenRequest> {
        self.log.lock().unwrap().clone()
    }

    /// Every token issued so far.
    fn tokens(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter_map(|r| r.token)
            .collect()
    }

    /// Debian's docker-registry, taking tokens from this server.
    fn registry(&self) -> Registry {
        Registry::start_with_config(
            None,
            &format!(
                "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                self.realm(),
                self.dir.path().join("token-cert.pem").display()
            ),
        )
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(
    signer: &Signer,
    policy: &Policy,
    log: &Mutex<Vec<TokenRequest>>,
    request: tiny_http::Request,
) {
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    if path != "/token" {
        let _ = request.respond(tiny_http::Response::empty(404));
        return;
    }
    let mut service = None;
    let mut scopes = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "service" => service = Some(percent_decode(value)),
            "scope" => scopes.push(percent_decode(value)),
            _ => {}
        }
    }
    let basic = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string());
    let creds = match basic {
        None => Creds::Anonymous,
        Some(value) => {
            let decoded = value
                .strip_prefix("Basic ")
                .and_then(|b| STANDARD.decode(b).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            if decoded == Some(format!("kina:{PASSWORD}")) {
                Creds::Right
            } else {
                Creds::Wrong
            }
        }
    };
    let mut log = log.lock().unwrap();
    if creds == Creds::Wrong {
        log.push(TokenRequest {
            creds,
            service,
            scopes,
            token: None,
            accepted_until: None,
        });
        let body = r#"{"details":"incorrect username or password"}"#;
        let response = tiny_http::Response::from_string(body)
            .with_status_code(401)
            .with_header(header("Content-Type", "application/json"))
            .with_header(header(
                "WWW-Authenticate",
                r#"Basic realm="kina-test-token""#,
            ));
        let _ = request.respond(response);
        return;
    }
    // User kina gets exactly what it asked for; anonymous, nothing.
    let mut access = Vec::new();
    if creds == Creds::Right {
        for scope in scopes.iter().flat_map(|s| s.split_whitespace()) {
            let (kind, rest) = scope.split_once(':').unwrap();
            let (name, actions) = rest.rsplit_once(':').unwrap();
            let granted: Vec<&str> = actions
                .split(',')
                .filter(|a| !policy.pull_only || *a == "pull")
                .filter(|_| policy.hidden != Some(name))
                .collect();
            access.push(serde_json::json!({
                "type": kind,
                "name": name,
                "actions": granted,
            }));
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (issued, lifetime) = match policy.first_lifetime {
        // A short lifetime is backdated by the registry's leeway, so the
        // registry refuses the token `lifetime` seconds from now, not a
        // minute later.
        Some(lifetime) if log.is_empty() => (now - REGISTRY_LEEWAY, lifetime),
        _ => (now, TOKEN_LIFETIME),
    };
    let exp = issued + lifetime;
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": if creds == Creds::Right { "kina" } else { "" },
        "aud": service.clone().unwrap_or_default(),
        "exp": exp,
        "nbf": issued,
        "iat": issued,
        "jti": format!("kina-test-{}", log.len()),
        "access": access,
    });
    let token = signer.jwt(&claims);
    log.push(TokenRequest {
        creds,
        service,
        scopes,
        token: Some(token.clone()),
        accepted_until: Some(UNIX_EPOCH + Duration::from_secs(exp + REGISTRY_LEEWAY)),
    });
    let mut body = serde_json::json!({ policy.field: token });
    match policy.says_lifetime {
        SaysLifetime::Truly => body["expires_in"] = lifetime.into(),
        SaysLifetime::Nothing => {}
        SaysLifetime::Absurdly => body["expires_in"] = i64::MAX.into(),
    }
    let response = tiny_http::Response::from_string(body.to_string())
        .with_header(header("Content-Type", "application/json"));
    let _ = request.respond(response);
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap()
}

/// `application/x-www-form-urlencoded` value decoding.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// A plain HTTP GET to the registry, optionally with a bearer token:
/// status and the whole response text.
fn registry_get(host: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(host).unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

/// The scopes of `requests`, each request's as a set.
fn scope_sets(requests: &[TokenRequest]) -> Vec<BTreeSet<&str>> {
    requests
        .iter()
        .map(|r| r.scopes.iter().map(String::as_str).collect())
        .collect()
}

#[test]
fn push_and_pull_fetch_tokens_for_their_scopes_and_round_trip_the_image() {
    require_tool("skopeo");
    let tokens = TokenServer::start(Policy::default());
    let registry = tokens.registry();
    // The registry really asks for a token from this realm.
    let (status, response) = registry_get(&registry.host(), "/v2/", None);
    assert_eq!(status, 401, "{response}");
    assert!(
        response.contains(&format!(
            r#"Bearer realm="{}",service="{SERVICE}""#,
            tokens.realm()
        )),
        "{response}"
    );

    let work = tempfile::tempdir().unwrap();
    let env = work.path().join("a");
    let entry = make_image(&env, "local/node:v1", 64 * 1024);
    let target = format!("{}/kina/node:v1", registry.host());

    let out = push_with_password(&env, &target, PASSWORD, &[]);
    assert!(out.status.success(), "{}", all_output(&out));
    let text = stdout(&out);
    // 2 configs + 1 shared layer + 2 own layers + 2 manifests + index.
    assert_eq!(blob_lines(&text).len(), 8, "{text}");
    let asked = tokens.requests();
    assert!(!asked.is_empty(), "the push fetched no token");
    for request in &asked {
        assert_eq!(request.creds, Creds::Right, "{asked:#?}");
        assert_eq!(request.service.as_deref(), Some(SERVICE), "{asked:#?}");
        assert_eq!(
            request.scopes,
            ["repository:kina/node:pull,push"],
            "{asked:#?}"
        );
    }

    // skopeo, with the same credentials and its own token, reads back
    // exactly the index kina stored.
    let creds = format!("kina:{PASSWORD}");
    let index = skopeo_raw(&target, &["--creds", &creds]);
    assert_eq!(Sha256Digest::of(&index), entry.digest);
    let store = ImageStore::open(env.join("data/images")).unwrap();
    assert_eq!(index, store.blobs().read(&entry.digest).unwrap());

    // Pull into an empty store, with a token for pulling only.
    let before = tokens.requests().len();
    let env_b = work.path().join("b");
    let out = run_with_password(&mut pull(&env_b, &target), PASSWORD);
    assert!(out.status.success(), "{}", all_output(&out));
    assert!(stdout(&out).contains("pulled 8 blobs"), "{}", stdout(&out));
    let asked = &tokens.requests()[before..];
    assert!(!asked.is_empty(), "the pull fetched no token");
    for request in asked {
        assert_eq!(request.creds, Creds::Right, "{asked:#?}");
        assert_eq!(request.scopes, ["repository:kina/node:pull"], "{asked:#?}");
    }
    let store_b = ImageStore::open(env_b.join("data/images")).unwrap();
    assert_eq!(store_b.find(&target).unwrap().digest, entry.digest);
}

#[test]
fn anonymous_and_wrong_credentials_are_refused_and_no_secret_is_printed() {
    let tokens = TokenServer::start(Policy::default());
    let registry = tokens.registry();
    let work = tempfile::tempdir().unwrap();
    let env = work.path().join("a");
    make_image(&env, "local/node:v1", 4096);
    let target = format!("{}/kina/node:v1", registry.host());

    // Anonymous: the token server's token grants nothing, the registry
    // refuses it, and kina says credentials are needed.
    let out = push(&env, &target, "local/node:v1").output().unwrap();
    assert!(!out.status.success(), "{}", all_output(&out));
    let anonymous = all_output(&out);
    assert!(anonymous.contains("requires credentials"), "{anonymous}");
    let asked = tokens.requests();
    assert!(!asked.is_empty(), "no token was asked for");
    for request in &asked {
        assert_eq!(request.creds, Creds::Anonymous, "{asked:#?}");
        assert_eq!(
            request.scopes,
            ["repository:kina/node:pull,push"],
            "{asked:#?}"
        );
    }
    assert_eq!(registry.blob_count(), 0);

    // A wrong password: the token server answers 401 and kina names the user.
    let before = tokens.requests().len();
    let wrong = "wrong-password-do-not-print";
    let out = push_with_password(&env, &target, wrong, &["-v"]);
    assert!(!out.status.success());
    let refused = all_output(&out);
    assert!(
        refused.contains("rejected the credentials of user `kina`"),
        "{refused}"
    );
    let asked = &tokens.requests()[before..];
    assert!(!asked.is_empty(), "no token was asked for");
    assert!(asked.iter().all(|r| r.creds == Creds::Wrong), "{asked:#?}");
    assert_eq!(registry.blob_count(), 0);

    // The right one, printing everything kina prints at -vv.
    let out = push_with_password(&env, &target, PASSWORD, &["-vv"]);
    let accepted = all_output(&out);
    assert!(out.status.success(), "{accepted}");

    let issued = tokens.tokens();
    assert!(issued.len() >= 2, "{issued:?}");
    for (text, secrets) in [
        (&anonymous, vec![]),
        (
            &refused,
            vec![wrong.to_string(), STANDARD.encode(format!("kina:{wrong}"))],
        ),
        (
            &accepted,
            vec![
                PASSWORD.to_string(),
                STANDARD.encode(format!("kina:{PASSWORD}")),
            ],
        ),
    ] {
        for secret in secrets.iter().chain(&issued) {
            assert!(
                !text.contains(secret.as_str()),
                "a secret was printed ({secret}):\n{text}"
            );
        }
    }
}

#[test]
fn a_push_from_another_repository_mounts_with_one_token_for_both() {
    require_tool("skopeo");
    // This server answers with `access_token` only.
    let tokens = TokenServer::start(Policy {
        field: "access_token",
        ..Policy::default()
    });
    let registry = tokens.registry();
    let work = tempfile::tempdir().unwrap();
    let env = work.path().join("a");
    let entry = make_image(&env, "local/node:v1", 64 * 1024);
    let source = format!("{}/kina/node:v1", registry.host());
    let out = push_with_password(&env, &source, PASSWORD, &[]);
    assert!(out.status.success(), "{}", all_output(&out));
    let env_b = work.path().join("b");
    let out = run_with_password(&mut pull(&env_b, &source), PASSWORD);
    assert!(out.status.success(), "{}", all_output(&out));

    // The pulled image, named by its registry reference, pushed to another
    // repository of the same registry.
    let before = tokens.requests().len();
    let blobs_before = registry.blob_count();
    let other = format!("{}/team/node:v1", registry.host());
    let out = run_with_password(&mut push(&env_b, &other, &source), PASSWORD);
    let text = all_output(&out);
    assert!(out.status.success(), "{text}");
    let mounted = blobs_with_outcome(&text, "mounted");
    // 2 configs + 3 distinct layers; the manifests and index are PUT.
    assert_eq!(mounted, 5, "{text}");
    assert_eq!(registry.blob_count(), blobs_before, "no blob stored twice");

    // The push's first token request asked for both repositories: push on
    // the target and pull on the one its blobs are mounted from. A token
    // without the pull makes the registry refuse every mount (401,
    // insufficient_scope), costing a refused request and a second token.
    let asked = &tokens.requests()[before..];
    assert!(!asked.is_empty(), "the push fetched no token");
    assert!(asked.iter().all(|r| r.creds == Creds::Right), "{asked:#?}");
    assert_eq!(
        scope_sets(asked)[0],
        BTreeSet::from([
            "repository:team/node:pull,push",
            "repository:kina/node:pull"
        ]),
        "the first token request lacks a scope: {asked:#?}"
    );
    let creds = format!("kina:{PASSWORD}");
    let index = skopeo_raw(&other, &["--creds", &creds]);
    assert_eq!(Sha256Digest::of(&index), entry.digest);
}

/// A token whose lifetime the token server says is replaced before it
/// runs out: the registry never has to refuse a request.
#[test]
fn a_token_about_to_expire_is_renewed_before_the_next_request() {
    let (registry, text) = push_outliving_its_first_token(SaysLifetime::Truly);
    for method in ["HEAD", "POST", "PATCH", "PUT"] {
        let refused = registry.unauthorized(method);
        assert!(refused.is_empty(), "{method} refused: {refused:#?}\n{text}");
    }
}

/// A token that expires sooner than the token server said (or says
/// nothing, so the default 60 s is assumed) is renewed when the registry
/// refuses it, and the refused chunk goes again.
#[test]
fn a_token_refused_as_expired_during_a_push_is_renewed_and_the_push_completes() {
    let (registry, text) = push_outliving_its_first_token(SaysLifetime::Nothing);
    let refused = registry.unauthorized("PATCH").len() + registry.unauthorized("PUT").len();
    assert!(refused >= 1, "no chunk was refused:\n{text}");
}

/// A lifetime no clock can count to is taken as "not said" (renewed when
/// refused) instead of overflowing kina's clock arithmetic.
#[test]
fn a_token_server_saying_an_absurd_lifetime_does_not_break_the_push() {
    let (_, text) = push_outliving_its_first_token(SaysLifetime::Absurdly);
    assert!(!text.contains("panicked"), "{text}");
}

/// Pushes an image whose first token expires mid-push; returns the
/// registry and kina's output after checking that the push completed with
/// no upload started over and a second token, as pushed.
fn push_outliving_its_first_token(says_lifetime: SaysLifetime) -> (Registry, String) {
    require_tool("skopeo");
    // The first token is accepted for about 3 s, later ones for 5 minutes.
    // distribution 2.8 accepts a token until 60 s past its `exp`, so the
    // token server backdates that first token by the 60 s (see `answer`);
    // a plain 3 s token would make this test wait over a minute.
    //
    // The push must outlive the token, and size alone cannot do it: kina
    // pushes 64 MiB to this registry in about 0.4 s, so it would take
    // hundreds of megabytes, more on a faster machine. Instead kina is
    // stopped with SIGSTOP mid-push and continued once the registry
    // refuses the token, as a suspended laptop or a stalled link would.
    let tokens = TokenServer::start(Policy {
        first_lifetime: Some(3),
        says_lifetime,
        ..Policy::default()
    });
    let registry = tokens.registry();
    let work = tempfile::tempdir().unwrap();
    let env = work.path().join("a");
    let entry = make_image(&env, "local/node:v1", 8 << 20);
    let target = format!("{}/kina/node:v1", registry.host());

    // In 1 MiB chunks, so the token runs out between two PATCH requests
    // of one upload: the refused chunk is sent again with a new token
    // rather than the whole blob from its first byte.
    let mut child = spawn_with_password(
        push(&env, &target, "local/node:v1").args(["--chunk-size", "1Mi"]),
        PASSWORD,
    );
    // Once a chunk of the 8 MiB layer is at the registry the push is under
    // way with its first token: stop kina there (a suspended laptop, a
    // stalled link) until the registry no longer accepts that token, then
    // let it go on.
    let repository = registry
        .dir
        .path()
        .join("data/docker/registry/v2/repositories/kina/node");
    registry.wait_for_upload("kina/node", 1 << 20, &mut child);
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    assert!(
        child.try_wait().unwrap().is_none(),
        "the push ended before it could be paused"
    );
    assert!(
        !repository.join("_manifests/tags/v1").exists(),
        "the push was complete before it could be paused"
    );
    let first = tokens.requests()[0].clone();
    let expired = first.accepted_until.unwrap() + Duration::from_secs(1);
    if let Ok(wait) = expired.duration_since(SystemTime::now()) {
        std::thread::sleep(wait);
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let out = child.wait_with_output().unwrap();

    // The registry refuses the first token now, as it did kina's requests.
    let (status, response) = registry_get(
        &registry.host(),
        "/v2/kina/node/tags/list",
        first.token.as_deref(),
    );
    assert_eq!(status, 401, "{response}");
    assert!(response.contains(r#"error="invalid_token""#), "{response}");

    let text = all_output(&out);
    assert!(out.status.success(), "the push failed:\n{text}");
    // No upload started over: one POST per blob (2 configs, 3 layers).
    assert!(!text.contains("retrying"), "{text}");
    let posts = registry.requests("POST", 202);
    assert_eq!(posts.len(), 5, "{posts:#?}");
    assert!(registry.requests("PATCH", 202).len() >= 8);
    let asked = tokens.requests();
    assert!(
        asked.len() >= 2,
        "no new token was fetched after the first expired: {asked:#?}"
    );
    for request in &asked {
        assert_eq!(request.creds, Creds::Right, "{asked:#?}");
        assert!(
            request
                .scopes
                .iter()
                .any(|s| s == "repository:kina/node:pull,push"),
            "{asked:#?}"
        );
    }
    let creds = format!("kina:{PASSWORD}");
    let index = skopeo_raw(&target, &["--creds", &creds]);
    assert_eq!(Sha256Digest::of(&index), entry.digest);
    // Every blob made it: pulling into an empty store verifies them all.
    let out = run_with_password(&mut pull(&work.path().join("b"), &target), PASSWORD);
    assert!(out.status.success(), "{}", all_output(&out));
    (registry, text)
}

/// A user the token server lets pull but not push gets an error saying
/// so, not "wrong password", and kina does not keep asking for tokens.
#[test]
fn a_user_who_may_only_pull_is_told_the_push_is_not_allowed() {
    let tokens = TokenServer::start(Policy {
        pull_only: true,
        ..Policy::default()
    });
    let registry = tokens.registry();
    let work = tempfile::tempdir().unwrap();
    let env = work.path().join("a");
    make_image(&env, "local/node:v1", 4096);
    let target = format!("{}/kina/node:v1", registry.host());
    let out = push_with_password(&env, &target, PASSWORD, &[]);
    assert!(!out.status.success());
    let text = all_output(&out);
    assert!(
        text.contains("accepted user `kina` but refused")
            && text.contains("lacks repository:kina/node:")
            && !text.contains("check the username and password"),
        "{text}"
    );
    assert_eq!(tokens.requests().len(), 1, "{:#?}", tokens.requests());
    assert_eq!(registry.blob_count(), 0);
}

/// `--from` names a repository of the same registry that the user may not
/// read: the mount is refused, and the blobs are uploaded instead of the
/// push failing.
#[test]
fn a_mount_from_a_repository_the_user_may_not_read_becomes_an_upload() {
    let tokens = TokenServer::start(Policy {
        hidden: Some("secret/node"),
        ..Policy::default()
    });
    let registry = tokens.registry();
    let work = tempfile::tempdir().unwrap();
    let env = work.path().join("a");
    let local = format!("{}/secret/node:v1", registry.host());
    let entry = make_image(&env, &local, 64 * 1024);
    let target = format!("{}/kina/node:v1", registry.host());
    let out = run_with_password(&mut push(&env, &target, &local), PASSWORD);
    let text = all_output(&out);
    assert!(out.status.success(), "{text}");
    let pushed = blobs_with_outcome(&text, "pushed");
    // 2 configs + 3 layers uploaded, then 2 manifests and the index.
    assert_eq!(pushed, 8, "{text}");
    let refused = registry.unauthorized("POST");
    assert_eq!(refused.len(), 5, "one refused mount per blob: {refused:?}");
    let creds = format!("kina:{PASSWORD}");
    let index = skopeo_raw(&target, &["--creds", &creds]);
    assert_eq!(Sha256Digest::of(&index), entry.digest);
}
