//! The OpenPGP keys an archive's `InRelease` must be signed with.
//!
//! Debian's archive keys ship inside kina (`builder/keys/`, from the
//! debian-archive-keyring package), so a fresh machine, or a Mac without
//! Debian's keyring, can verify the archive. A recipe may add its own key
//! files (a local mirror, a test repository).

use std::path::{Path, PathBuf};

use pgp::composed::{Deserializable, SignedPublicKey, SignedPublicSubKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::KeyDetails;

/// Keys shipped with kina, by the names recipes use.
const SHIPPED: &[(&str, &[u8])] = &[
    (
        "debian-archive-bookworm-automatic",
        include_bytes!("../../keys/debian-archive-bookworm-automatic.pgp"),
    ),
    (
        "debian-archive-bookworm-security-automatic",
        include_bytes!("../../keys/debian-archive-bookworm-security-automatic.pgp"),
    ),
    (
        "debian-archive-bookworm-stable",
        include_bytes!("../../keys/debian-archive-bookworm-stable.pgp"),
    ),
    (
        "debian-archive-trixie-automatic",
        include_bytes!("../../keys/debian-archive-trixie-automatic.pgp"),
    ),
    (
        "debian-archive-trixie-security-automatic",
        include_bytes!("../../keys/debian-archive-trixie-security-automatic.pgp"),
    ),
    (
        "debian-archive-trixie-stable",
        include_bytes!("../../keys/debian-archive-trixie-stable.pgp"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("unknown archive key `{name}`; kina ships {}; or give a path to a key file", shipped_names().join(", "))]
    UnknownName { name: String },
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key {origin} is not an OpenPGP public key: {message}")]
    Parse { origin: String, message: String },
}

pub fn shipped_names() -> Vec<&'static str> {
    SHIPPED.iter().map(|(n, _)| *n).collect()
}

/// A key that may sign a Release file: a primary key, or a subkey whose
/// binding to its primary verified and which is flagged for signing.
pub struct SigningKey {
    pub fingerprint: String,
    /// Creation time and optional expiry (seconds since the epoch).
    pub created: u64,
    pub expires: Option<u64>,
    pub revoked: bool,
    pub key: SigningKeyMaterial,
    /// The keyring entry it came from, for messages.
    pub origin: String,
}

pub enum SigningKeyMaterial {
    Primary(Box<SignedPublicKey>),
    Subkey(Box<SignedPublicSubKey>),
}

impl SigningKey {
    pub fn verify(&self, signature: &Signature, data: &[u8]) -> bool {
        match &self.key {
            SigningKeyMaterial::Primary(k) => signature.verify(k.as_ref(), data).is_ok(),
            SigningKeyMaterial::Subkey(k) => signature.verify(k.as_ref(), data).is_ok(),
        }
    }

    /// Whether the key could sign at `when`: created before, not expired, not revoked.
    pub fn valid_at(&self, when: u64) -> bool {
        !self.revoked && self.created <= when && self.expires.is_none_or(|e| when < e)
    }
}

pub struct Keyring {
    pub keys: Vec<SigningKey>,
}

impl Keyring {
    /// Loads the recipe's keyring entries: a shipped key's name, or (when the
    /// entry contains `/` or ends in .pgp/.gpg/.asc) a file relative to `base_dir`.
    pub fn load(entries: &[String], base_dir: &Path) -> Result<Self, KeyringError> {
        let mut keys = Vec::new();
        for entry in entries {
            let is_path = entry.contains('/')
                || [".pgp", ".gpg", ".asc"]
                    .iter()
                    .any(|ext| entry.ends_with(ext));
            let bytes = if is_path {
                let path = base_dir.join(entry);
                std::fs::read(&path).map_err(|source| KeyringError::Read { path, source })?
            } else {
                SHIPPED
                    .iter()
                    .find(|(n, _)| n == entry)
                    .map(|(_, b)| b.to_vec())
                    .ok_or_else(|| KeyringError::UnknownName {
                        name: entry.clone(),
                    })?
            };
            keys.extend(signing_keys(&bytes, entry)?);
        }
        Ok(Self { keys })
    }
}

/// Parses a binary or ASCII-armored keyring into its usable signing keys.
fn signing_keys(bytes: &[u8], origin: &str) -> Result<Vec<SigningKey>, KeyringError> {
    let parse_err = |message: String| KeyringError::Parse {
        origin: origin.to_string(),
        message,
    };
    let armored = bytes.starts_with(b"-----BEGIN");
    let parsed: Vec<SignedPublicKey> = if armored {
        let (iter, _) =
            SignedPublicKey::from_armor_many(bytes).map_err(|e| parse_err(e.to_string()))?;
        iter.collect::<Result<_, _>>()
            .map_err(|e| parse_err(e.to_string()))?
    } else {
        SignedPublicKey::from_bytes_many(bytes)
            .map_err(|e| parse_err(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| parse_err(e.to_string()))?
    };
    if parsed.is_empty() {
        return Err(parse_err("no keys in it".into()));
    }
    let mut keys = Vec::new();
    for primary in parsed {
        let created = u64::from(primary.primary_key.created_at().as_secs());
        let primary_revoked = !primary.details.revocation_signatures.is_empty();
        // The primary's expiry is in its newest self-signature on a user ID
        // (RFC 9580 §5.2.3.18); third-party certifications are not consulted.
        let primary_expiry = primary
            .details
            .users
            .iter()
            .flat_map(|u| u.signatures.iter())
            .filter(|s| {
                s.issuer_fingerprint()
                    .iter()
                    .any(|f| f.as_bytes() == primary.primary_key.fingerprint().as_bytes())
                    || s.issuer_key_id()
                        .iter()
                        .any(|id| **id == primary.primary_key.legacy_key_id())
            })
            .max_by_key(|s| s.created().map(|c| c.as_secs()))
            .and_then(|s| s.key_expiration_time())
            .filter(|d| d.as_secs() > 0)
            .map(|d| created + u64::from(d.as_secs()));
        for sub in &primary.public_subkeys {
            let binding_ok = sub.verify_bindings(&primary.primary_key).is_ok();
            let Some(binding) = sub
                .signatures
                .iter()
                .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding))
                .max_by_key(|s| s.created().map(|c| c.as_secs()))
            else {
                continue;
            };
            if !binding_ok || !binding.key_flags().sign() {
                continue;
            }
            let sub_created = u64::from(sub.key.created_at().as_secs());
            let sub_expiry = binding
                .key_expiration_time()
                .filter(|d| d.as_secs() > 0)
                .map(|d| sub_created + u64::from(d.as_secs()));
            keys.push(SigningKey {
                fingerprint: format!("{:X}", sub.key.fingerprint()),
                created: sub_created,
                expires: match (sub_expiry, primary_expiry) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
                revoked: primary_revoked
                    || sub
                        .signatures
                        .iter()
                        .any(|s| s.typ() == Some(SignatureType::SubkeyRevocation)),
                key: SigningKeyMaterial::Subkey(Box::new(sub.clone())),
                origin: origin.to_string(),
            });
        }
        keys.push(SigningKey {
            fingerprint: format!("{:X}", primary.primary_key.fingerprint()),
            created,
            expires: primary_expiry,
            revoked: primary_revoked,
            key: SigningKeyMaterial::Primary(Box::new(primary)),
            origin: origin.to_string(),
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_debian_key_parses_into_signing_keys() {
        for name in shipped_names() {
            let ring = Keyring::load(&[name.to_string()], Path::new(".")).unwrap();
            assert!(!ring.keys.is_empty(), "{name}");
        }
    }

    #[test]
    fn trixie_automatic_signing_subkey_is_bound_to_its_primary() {
        // The trixie automatic key signs with subkey B8E5…2265 (see builders.md §0.5).
        let ring =
            Keyring::load(&["debian-archive-trixie-automatic".into()], Path::new(".")).unwrap();
        assert!(
            ring.keys
                .iter()
                .any(|k| matches!(k.key, SigningKeyMaterial::Subkey(_))
                    && k.fingerprint.starts_with("B8E5")),
            "{:?}",
            ring.keys.iter().map(|k| &k.fingerprint).collect::<Vec<_>>()
        );
    }

    #[test]
    fn an_unknown_key_name_lists_the_shipped_ones() {
        let err = Keyring::load(&["debian-archive-sid".into()], Path::new("."))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("debian-archive-trixie-automatic"), "{err}");
    }
}
