//! Who kina is to a registry: `WWW-Authenticate` challenges, Bearer
//! tokens, and credentials from docker's `config.json` (`auths`,
//! `credHelpers`, `credsStore`) and its credential helpers.

use super::session::{Session, challenge_of, error_text, http_error};
use super::*;

/// A `WWW-Authenticate` challenge: scheme and parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Challenge {
    pub(super) scheme: String,
    pub(super) params: BTreeMap<String, String>,
}

impl Challenge {
    /// The login is known but its token lacks what the request needs.
    pub(super) fn insufficient_scope(&self) -> bool {
        self.params
            .get("error")
            .is_some_and(|e| e == "insufficient_scope")
    }
}

pub(super) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

pub(super) fn docker_config_path(opts: &Options) -> Option<PathBuf> {
    opts.docker_config_dir
        .clone()
        .or_else(|| std::env::var_os("DOCKER_CONFIG").map(PathBuf::from))
        .or_else(|| dirs::home_dir().map(|h| h.join(".docker")))
        .map(|d| d.join("config.json"))
}

/// Credentials for `registry` from docker's config.json: `credHelpers`
/// first, then an inline `auths` entry, then `credsStore`, as docker does.
pub fn docker_credentials(opts: &Options, registry: &str) -> Result<Option<Credentials>> {
    let Some(path) = docker_config_path(opts) else {
        return Ok(None);
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(DistributionError::DockerConfig {
                path,
                message: e.to_string(),
            });
        }
    };
    let bad = |message: String| DistributionError::DockerConfig {
        path: path.clone(),
        message,
    };
    let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    // Entries are keyed by host, or by URL when written by older docker logins.
    let keys: Vec<String> = vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ];
    for key in &keys {
        if let Some(helper) = doc["credHelpers"][key].as_str() {
            return credential_helper(helper, key).map(Some);
        }
    }
    for key in &keys {
        let entry = &doc["auths"][key];
        if let Some(auth) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth)
                .map_err(|_| bad(format!("auths.{key}.auth is not base64")))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| bad(format!("auths.{key}.auth is not UTF-8")))?;
            let (username, password) = text
                .split_once(':')
                .ok_or_else(|| bad(format!("auths.{key}.auth is not user:password")))?;
            return Ok(Some(Credentials {
                username: username.to_string(),
                password: password.to_string(),
            }));
        }
        if let (Some(u), Some(p)) = (entry["username"].as_str(), entry["password"].as_str()) {
            return Ok(Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            }));
        }
    }
    if let Some(helper) = doc["credsStore"].as_str().filter(|h| !h.is_empty()) {
        return match credential_helper(helper, &keys[0]) {
            Ok(c) => Ok(Some(c)),
            // A store that has nothing for this registry means anonymous.
            Err(DistributionError::CredentialHelper { message, .. })
                if message.contains("not found") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        };
    }
    Ok(None)
}

pub(super) fn credential_helper(helper: &str, registry: &str) -> Result<Credentials> {
    use std::io::Write;
    let err = |message: String| DistributionError::CredentialHelper {
        helper: helper.to_string(),
        registry: registry.to_string(),
        message,
    };
    let mut child = std::process::Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("cannot run it ({e}); is it installed and on PATH?")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(registry.as_bytes())
            .map_err(|e| err(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        // Helpers print "credentials not found in native keychain" and the like,
        // never the secret.
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        return Err(err(format!("{} ({})", text, out.status)));
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|_| err("its output is not the expected JSON".into()))?;
    match (doc["Username"].as_str(), doc["Secret"].as_str()) {
        (Some(u), Some(s)) => Ok(Credentials {
            username: u.to_string(),
            password: s.to_string(),
        }),
        _ => Err(err("its output has no Username and Secret".into())),
    }
}

/// How long before its lifetime ends a token is replaced (at most half its
/// lifetime): enough for a request to reach the registry.
const TOKEN_RENEWAL_MARGIN: Duration = Duration::from_secs(10);

/// Tokens: fetched from the realm a challenge names, renewed shortly before
/// they expire and when refused.
impl Session {
    fn set_authorization(&self, value: String) {
        if let Ok(mut a) = self.authorization.lock() {
            *a = Some(value);
        }
    }

    /// Remembers when the token just received should be replaced: a little
    /// before its lifetime (`expires_in`, counted from its arrival, so the
    /// two clocks need not agree) is up, and how to ask for the next one.
    /// A lifetime too long to count (a server's garbage) is never due.
    fn set_token_due(&self, lifetime: Duration, challenge: Challenge) {
        let early = (lifetime / 2).min(TOKEN_RENEWAL_MARGIN);
        let due = std::time::Instant::now().checked_add(lifetime - early);
        if let Ok(mut d) = self.token_due.lock() {
            *d = due.map(|due| (due, challenge));
        }
    }

    /// A new token before a request, when the current one is about to
    /// expire: a registry refuses an expired token only once it has the
    /// request, which for a whole-blob `PUT` can be after its body went.
    /// (A refusal is still answered too: see [`Session::renew_token`].) A
    /// token service that fails here is only logged: the current token may
    /// still be good, and a refusal renews again and reports the failure.
    pub(super) async fn renew_token_if_due(&self) {
        let challenge = match self.token_due.lock() {
            Ok(d) => d
                .as_ref()
                .filter(|(due, _)| std::time::Instant::now() >= *due)
                .map(|(_, c)| c.clone()),
            Err(_) => None,
        };
        if let Some(challenge) = challenge {
            tracing::debug!(
                "registry {}: token about to expire, fetching a new one",
                self.target.registry
            );
            if let Err(e) = self.authenticate(Some(challenge)).await {
                tracing::warn!(
                    "registry {}: renewing the token ahead of time failed: {e}",
                    self.target.registry
                );
                // Not again before every request (each try waits out its
                // retries): the next renewal is the one a refusal asks for.
                if let Ok(mut d) = self.token_due.lock() {
                    *d = None;
                }
            }
        }
    }

    fn has_token(&self) -> bool {
        self.authorization
            .lock()
            .is_ok_and(|a| a.as_deref().is_some_and(|v| v.starts_with("Bearer ")))
    }

    /// After a 401 from a registry that gave us a token: a fresh token
    /// (also for the scope the challenge names), when the challenge is a
    /// Bearer one. Tokens live minutes; pushes of big images outlive them.
    /// `false` when there is nothing to renew.
    pub(super) async fn renew_token(&self, resp: &reqwest::Response) -> Result<bool> {
        let challenge = challenge_of(resp);
        let Some(c) = challenge.as_ref().filter(|c| c.scheme == "bearer") else {
            return Ok(false);
        };
        // A token lacking a scope it was asked for was refused on purpose:
        // asking again would only get the same answer.
        let insufficient = c.insufficient_scope();
        let named = c
            .params
            .get("scope")
            .map(String::as_str)
            .unwrap_or_default();
        let news = named
            .split_whitespace()
            .any(|scope| !scope_covered(&self.scopes, scope));
        if !self.has_token() || (insufficient && !news) {
            return Ok(false);
        }
        tracing::debug!(
            "registry {}: token refused, fetching a new one",
            self.target.registry
        );
        self.authenticate(challenge).await?;
        Ok(true)
    }

    pub(super) async fn authenticate(&self, challenge: Option<Challenge>) -> Result<()> {
        let Some(challenge) = challenge else {
            return Err(self.rejected());
        };
        match challenge.scheme.as_str() {
            "basic" => {
                let Some(c) = &self.credentials else {
                    return Err(self.rejected());
                };
                use base64::Engine as _;
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.username, c.password));
                self.set_authorization(format!("Basic {token}"));
                Ok(())
            }
            "bearer" => {
                let realm = challenge.params.get("realm").cloned().unwrap_or_default();
                let mut url = Url::parse(&realm).map_err(|e| DistributionError::Http {
                    registry: self.target.registry.clone(),
                    what: "the authentication challenge".into(),
                    status: 401,
                    message: format!("token realm `{realm}` is not a URL: {e}"),
                })?;
                if self.credentials.is_some() && !may_send_password(&url, self.insecure) {
                    return Err(DistributionError::PlainRealm {
                        registry: self.target.registry.clone(),
                        realm,
                    });
                }
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(service) = challenge.params.get("service") {
                        q.append_pair("service", service);
                    }
                    // As docker's client does: token servers log and match on it.
                    if let Some(c) = &self.credentials {
                        q.append_pair("account", &c.username);
                    }
                    // A challenge names its scopes space-separated in one parameter.
                    let named = challenge.params.get("scope").map(String::as_str);
                    let mut scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
                    for scope in named.unwrap_or_default().split_whitespace() {
                        if !scopes.contains(&scope) {
                            scopes.push(scope);
                        }
                    }
                    for scope in scopes {
                        q.append_pair("scope", scope);
                    }
                }
                let resp = self
                    .send_retrying(&format!("fetching a token from {realm}"), || {
                        let req = self.client.get(url.clone());
                        match &self.credentials {
                            Some(c) => req.basic_auth(&c.username, Some(&c.password)),
                            None => req,
                        }
                    })
                    .await?;
                if resp.status() == StatusCode::UNAUTHORIZED
                    || resp.status() == StatusCode::FORBIDDEN
                {
                    return Err(self.rejected());
                }
                if !resp.status().is_success() {
                    return Err(http_error(
                        &self.target.registry,
                        &format!("fetching a token from {realm}"),
                        resp,
                    )
                    .await);
                }
                let doc: serde_json::Value =
                    resp.json()
                        .await
                        .map_err(|e| DistributionError::Transport {
                            registry: self.target.registry.clone(),
                            what: format!("token response of {realm}"),
                            message: error_text(&e),
                        })?;
                // As distribution's own client: either field, never an empty token.
                let token = [&doc["token"], &doc["access_token"]]
                    .into_iter()
                    .filter_map(|t| t.as_str())
                    .find(|t| !t.is_empty())
                    .ok_or_else(|| DistributionError::Http {
                        registry: self.target.registry.clone(),
                        what: format!("token response of {realm}"),
                        status: 200,
                        message: "no token in the response".into(),
                    })?;
                self.set_authorization(format!("Bearer {token}"));
                // The token spec's default when the server does not say.
                let lifetime = doc["expires_in"].as_u64().filter(|s| *s > 0).unwrap_or(60);
                self.set_token_due(Duration::from_secs(lifetime), challenge);
                Ok(())
            }
            other => Err(DistributionError::Http {
                registry: self.target.registry.clone(),
                what: "the authentication challenge".into(),
                status: 401,
                message: format!("unsupported scheme `{other}`"),
            }),
        }
    }
}

/// A password goes to a token realm over https, or over plain http only
/// on loopback or with `--insecure`.
fn may_send_password(realm: &Url, insecure: bool) -> bool {
    realm.scheme() == "https" || insecure || realm.host_str().is_some_and(is_loopback)
}

/// Whether `scope` (`type:name:actions`) asks for nothing beyond what
/// `asked` did.
fn scope_covered(asked: &[String], scope: &str) -> bool {
    let Some((resource, actions)) = scope.rsplit_once(':') else {
        return asked.iter().any(|a| a == scope);
    };
    asked.iter().any(|a| {
        a.rsplit_once(':').is_some_and(|(r, have)| {
            r == resource
                && actions
                    .split(',')
                    .all(|want| have.split(',').any(|h| h == want || h == "*"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..Default::default()
        })]

        /// A registry's header is untrusted input: nothing in it may panic.
        #[test]
        fn any_header_parses_without_panicking(header in "\\PC{0,200}") {
            let _ = parse_challenge(&header);
        }

        /// Whatever a registry puts in quoted parameters (commas, quotes,
        /// backslashes, `=`, spaces) comes back as it was sent.
        #[test]
        fn quoted_parameters_round_trip(
            scheme in "(Bearer|Basic|bEaReR)",
            params in proptest::collection::btree_map(
                "[a-zA-Z][a-zA-Z0-9_]{0,10}",
                "[!-~]([ -~]{0,40}[!-~])?",
                0..6,
            ),
        ) {
            let params: BTreeMap<String, String> = params
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect();
            let rendered: Vec<String> = params
                .iter()
                .map(|(k, v)| {
                    format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
                })
                .collect();
            let header = format!("{scheme} {}", rendered.join(", "));
            let parsed = parse_challenge(&header).unwrap();
            proptest::prop_assert_eq!(parsed.scheme, scheme.to_ascii_lowercase());
            proptest::prop_assert_eq!(parsed.params, params);
        }
    }

    #[test]
    fn bearer_challenges_are_parsed_with_quoted_commas() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example.invalid/token",service="registry",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example.invalid/token");
        assert_eq!(c.params["service"], "registry");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let basic = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(basic.scheme, "basic");
        assert_eq!(basic.params["realm"], "Registry Realm");
    }

    #[test]
    fn docker_config_auths_are_decoded() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("bob:pa:ss");
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
        let opts = Options {
            docker_config_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let c = docker_credentials(&opts, "127.0.0.1:5000")
            .unwrap()
            .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("bob", "pa:ss"));
        assert!(
            docker_credentials(&opts, "127.0.0.1:5001")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn passwords_go_to_plain_http_realms_only_on_loopback_or_when_insecure() {
        let url = |u: &str| Url::parse(u).unwrap();
        assert!(may_send_password(
            &url("https://auth.example.invalid/token"),
            false
        ));
        assert!(may_send_password(
            &url("http://127.0.0.1:5001/token"),
            false
        ));
        assert!(may_send_password(&url("http://localhost/token"), false));
        assert!(!may_send_password(
            &url("http://auth.example.invalid/token"),
            false
        ));
        assert!(may_send_password(
            &url("http://auth.example.invalid/token"),
            true
        ));
    }

    #[test]
    fn a_scope_is_covered_only_by_the_same_resource_with_every_action() {
        let asked = vec!["repository:kina/node:pull,push".to_string()];
        assert!(scope_covered(&asked, "repository:kina/node:pull"));
        assert!(scope_covered(&asked, "repository:kina/node:push,pull"));
        assert!(!scope_covered(&asked, "repository:kina/node:delete"));
        assert!(!scope_covered(&asked, "repository:kina/other:pull"));
        assert!(!scope_covered(&asked, "repository:kina:pull"));
        let all = vec!["repository:kina/node:*".to_string()];
        assert!(scope_covered(&all, "repository:kina/node:pull,push"));
    }
}
