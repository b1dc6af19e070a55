//! Keeping the cluster's join token valid while its control plane runs.
//!
//! Every worker's spec carries the one bootstrap token kina made for the
//! cluster, and kubeadm gives it a 24 h TTL when none is set
//! (cmd/kubeadm/app/constants `DefaultTokenDuration`); once it expires the
//! token cleaner deletes its Secret and the bootstrap signer drops its
//! signature from `kube-public/cluster-info`, so a worker that joins later
//! (its first join failed, `kina start` of a reset node) fails discovery
//! forever. kina-init's controller on the control plane moves the token's
//! expiration forward while it runs, and recreates the Secret if the token
//! cleaner got there first (the control plane was stopped past the
//! expiration).
//!
//! Why not `ttl: 0s` (never expires) in the kubeadm configuration:
//! - it would fix only clusters made from now on; an existing cluster's
//!   token Secret already has its 24 h expiration, and kubeadm never touches
//!   it again;
//! - a token that can join nodes lapses when the cluster is not running,
//!   within a day of its control plane stopping, instead of staying valid
//!   forever wherever a copy of a spec went.
//!
//! The Secret is the one kubeadm writes (cmd/kubeadm/app/apis/
//! bootstraptoken/v1/utils.go, `encodeTokenSecretData`; the format is the
//! Kubernetes documentation's "Authenticating with Bootstrap Tokens").

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How far ahead the expiration is set: kubeadm's default TTL.
pub const TTL: Duration = Duration::from_secs(24 * 3600);
/// The expiration is moved once less than this is left, so a running
/// control plane's token always has at least this long.
pub const RENEW_BELOW: Duration = Duration::from_secs(12 * 3600);
/// The group kubeadm's RBAC lets join (kubeadm constants
/// `NodeBootstrapTokenAuthGroup`).
pub const AUTH_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// A bootstrap token `<id>.<secret>`: 6 and 16 of `[a-z0-9]`
/// (k8s.io/cluster-bootstrap `BootstrapTokenPattern`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinToken {
    pub id: String,
    pub secret: String,
}

impl JoinToken {
    pub fn parse(token: &str) -> Result<Self, String> {
        let valid = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        match token.split_once('.') {
            Some((id, secret)) if valid(id, 6) && valid(secret, 16) => Ok(Self {
                id: id.to_string(),
                secret: secret.to_string(),
            }),
            _ => Err(
                "the node spec's kubernetes.bootstrap_token is not of the form [a-z0-9]{6}.[a-z0-9]{16}"
                    .into(),
            ),
        }
    }

    pub fn secret_name(&self) -> String {
        format!("bootstrap-token-{}", self.id)
    }
}

/// What the controller does about the token this round.
#[derive(Debug, PartialEq)]
pub enum Renewal {
    /// Far enough from expiring, or set never to expire.
    Keep,
    /// A merge patch that moves the expiration.
    Extend { patch: Value },
    /// The Secret is gone: this one recreates it.
    Create { secret: Value },
}

fn rfc3339(t: OffsetDateTime) -> Result<String, String> {
    t.replace_nanosecond(0)
        .map_err(|e| e.to_string())?
        .format(&Rfc3339)
        .map_err(|e| format!("formatting {t}: {e}"))
}

/// The token's Secret as kubeadm writes it, expiring at `expiration`.
pub fn secret(
    token: &JoinToken,
    cluster: &str,
    expiration: OffsetDateTime,
) -> Result<Value, String> {
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": token.secret_name(), "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "stringData": {
            "description": format!("kina: joins nodes to cluster {cluster}"),
            "token-id": token.id,
            "token-secret": token.secret,
            "expiration": rfc3339(expiration)?,
            "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true",
            "auth-extra-groups": AUTH_GROUP,
        },
    }))
}

/// The decision for the Secret as `kubectl get -o json` shows it (`None`
/// when there is none). An expiration that does not parse counts as expired,
/// as the token authenticator treats it.
pub fn renewal(
    existing: Option<&Value>,
    token: &JoinToken,
    cluster: &str,
    now: OffsetDateTime,
) -> Result<Renewal, String> {
    let next = now + TTL;
    let Some(existing) = existing else {
        return Ok(Renewal::Create {
            secret: secret(token, cluster, next)?,
        });
    };
    let Some(encoded) = existing["data"]["expiration"].as_str() else {
        return Ok(Renewal::Keep);
    };
    let expires = STANDARD
        .decode(encoded)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| OffsetDateTime::parse(s.trim(), &Rfc3339).ok());
    if expires.is_some_and(|e| e - now >= RENEW_BELOW) {
        return Ok(Renewal::Keep);
    }
    Ok(Renewal::Extend {
        patch: json!({"data": {"expiration": STANDARD.encode(rfc3339(next)?)}}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> JoinToken {
        JoinToken::parse("abcdef.0123456789abcdef").unwrap()
    }

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).unwrap()
    }

    fn existing(expiration: Option<&str>) -> Value {
        let mut data = json!({
            "token-id": STANDARD.encode("abcdef"),
            "token-secret": STANDARD.encode("0123456789abcdef"),
        });
        if let Some(e) = expiration {
            data["expiration"] = json!(STANDARD.encode(e));
        }
        json!({"metadata": {"name": "bootstrap-token-abcdef"}, "data": data})
    }

    #[test]
    fn tokens_are_checked_for_kubeadms_form() {
        assert_eq!(token().secret_name(), "bootstrap-token-abcdef");
        for bad in [
            "abcdef",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123",
        ] {
            let err = JoinToken::parse(bad).unwrap_err();
            assert!(err.contains("bootstrap_token"), "{bad}: {err}");
            assert!(!err.contains(bad), "the token must not be echoed: {err}");
        }
    }

    #[test]
    fn the_secret_is_the_one_kubeadm_writes() {
        let s = secret(&token(), "kina", at("2026-09-02T10:00:00.5Z")).unwrap();
        assert_eq!(
            s,
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
                "type": "bootstrap.kubernetes.io/token",
                "stringData": {
                    "description": "kina: joins nodes to cluster kina",
                    "token-id": "abcdef",
                    "token-secret": "0123456789abcdef",
                    "expiration": "2026-09-02T10:00:00Z",
                    "usage-bootstrap-authentication": "true",
                    "usage-bootstrap-signing": "true",
                    "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
                },
            })
        );
    }

    #[test]
    fn the_expiration_moves_only_when_it_comes_near() {
        let now = at("2026-09-01T10:00:00Z");
        let decide = |e: Option<&str>| renewal(Some(&existing(e)), &token(), "kina", now).unwrap();
        // Just made by kubeadm (24 h left) and at the threshold: kept.
        assert_eq!(decide(Some("2026-09-02T10:00:00Z")), Renewal::Keep);
        assert_eq!(decide(Some("2026-09-01T22:00:00Z")), Renewal::Keep);
        // Set never to expire (a user's `ttl: 0s`): kept.
        assert_eq!(decide(None), Renewal::Keep);
        let extended = Renewal::Extend {
            patch: json!({"data": {"expiration": STANDARD.encode("2026-09-02T10:00:00Z")}}),
        };
        // Under 12 h left, already expired, or unreadable: moved to now + 24 h.
        assert_eq!(decide(Some("2026-09-01T21:59:59Z")), extended);
        assert_eq!(decide(Some("2026-08-30T00:00:00Z")), extended);
        assert_eq!(decide(Some("tomorrow")), extended);
        // Gone (the token cleaner deleted it): recreated.
        assert_eq!(
            renewal(None, &token(), "kina", now).unwrap(),
            Renewal::Create {
                secret: secret(&token(), "kina", at("2026-09-02T10:00:00Z")).unwrap()
            }
        );
    }
}
