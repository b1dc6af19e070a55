//! Answering a registry's challenge: Basic with the session's
//! credentials, or a Bearer token fetched from the realm the challenge
//! names, renewed shortly before it expires and when refused.

use super::challenge::{Challenge, challenge_of};
use super::session::{Session, error_text, http_error};
use super::*;

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
