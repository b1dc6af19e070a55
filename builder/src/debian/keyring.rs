//! The OpenPGP keys trusted to sign Debian archive metadata.
//!
//! apt trusts a `Signed-By` keyring per source; kina does the same with keys
//! named in the recipe. Debian's archive keys ship with kina (copied from the
//! `debian-archive-keyring` package), so a build on macOS needs no host keyring.
//!
//! A key is trusted as a whole, but each of its component keys is checked the
//! way `sqv` (apt 3.0's verifier) does before it may vouch for a signature:
//! a subkey counts only if its binding signature from the primary verifies
//! (including the embedded back-signature for signing subkeys), it is flagged
//! for signing, and it was neither expired nor revoked when the signature was
//! made. rpgp's whole-key `verify_bindings` is not used: Debian's keys carry
//! third-party certifications on their user IDs, which it cannot verify.

use std::fmt;
use std::path::{Path, PathBuf};

use pgp::composed::{Deserializable, SignedPublicKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{self, RevocationCode, Signature, SignatureType};
use pgp::types::{KeyDetails, KeyId, Tag};

/// Debian's archive keys shipped with kina, by the name a recipe uses.
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
    #[error("unknown archive key `{name}`; kina ships: {}; or give a key file path (ending in .pgp, .gpg or .asc)", shipped_names().join(", "))]
    UnknownName { name: String },
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {source_name} is not an OpenPGP public keyring: {problem}")]
    Parse {
        source_name: String,
        problem: String,
    },
    #[error("key file {source_name} holds no OpenPGP public key")]
    Empty { source_name: String },
    #[error("no archive keys given: name at least one key that signs the suites")]
    NoEntries,
}

/// The names of the keys shipped with kina, as a recipe's `debian.keyring` takes them.
pub fn shipped_names() -> Vec<&'static str> {
    SHIPPED.iter().map(|(name, _)| *name).collect()
}

/// When a component key stops being valid because of a revocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Revoked {
    /// Compromised, or no reason given: no signature by it is trusted (RFC 9580 §5.2.3.31).
    Always,
    /// Superseded or retired: signatures made before this time stay valid.
    Since(u32),
}

#[derive(Clone, Debug)]
enum Material {
    Primary(packet::PublicKey),
    Subkey(packet::PublicSubkey),
}

impl Material {
    fn verify_signature(&self, sig: &Signature, text: &[u8]) -> pgp::errors::Result<()> {
        match self {
            Material::Primary(k) => sig.verify(k, text),
            Material::Subkey(k) => sig.verify(k, text),
        }
    }
}

/// A component key (primary or subkey) that passed the binding checks, with
/// the validity window its self-signatures give it.
#[derive(Clone, Debug)]
struct SigningCandidate {
    material: Material,
    fingerprint: String,
    key_id: KeyId,
    primary_fingerprint: String,
    source_name: String,
    created: u32,
    /// Unix seconds after which the key is expired, from the newest binding.
    expires: Option<u64>,
    revoked: Option<Revoked>,
    can_sign: bool,
}

/// The key that made the signature the archive metadata was accepted for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signer {
    /// Fingerprint (lowercase hex) of the key or subkey that made the signature.
    pub fingerprint: String,
    /// Fingerprint of its primary key, the one users compare with Debian's list.
    pub primary_fingerprint: String,
    /// Keyring entry the key came from (shipped name or file path).
    pub source_name: String,
}

/// Why one signature of a file did not count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureRejection {
    /// Issuer key ids and fingerprints the signature names (lowercase hex).
    pub issuer: String,
    pub reason: String,
}

impl fmt::Display for SignatureRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "signature by {}: {}", self.issuer, self.reason)
    }
}

/// Trusted archive keys, loaded from shipped names or key files.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    sources: Vec<String>,
    candidates: Vec<SigningCandidate>,
}

impl Keyring {
    /// Loads each entry: one containing `/` or ending in `.pgp`, `.gpg` or
    /// `.asc` is a key file (binary or armored) relative to `base_dir` (the
    /// recipe's directory), anything else the name of a shipped key.
    pub fn load(entries: &[String], base_dir: &Path) -> Result<Self, KeyringError> {
        if entries.is_empty() {
            return Err(KeyringError::NoEntries);
        }
        let mut keyring = Keyring::default();
        for entry in entries {
            let is_path = entry.contains('/')
                || [".pgp", ".gpg", ".asc"]
                    .iter()
                    .any(|ext| entry.ends_with(ext));
            if is_path {
                let path = base_dir.join(entry);
                let bytes = std::fs::read(&path).map_err(|source| KeyringError::Read {
                    path: path.clone(),
                    source,
                })?;
                keyring.add_bytes(&path.display().to_string(), &bytes)?;
            } else {
                let (_, bytes) =
                    SHIPPED
                        .iter()
                        .find(|(name, _)| name == entry)
                        .ok_or_else(|| KeyringError::UnknownName {
                            name: entry.clone(),
                        })?;
                keyring.add_bytes(entry, bytes)?;
            }
        }
        Ok(keyring)
    }

    /// A keyring of one OpenPGP keyring file's contents; `source_name` names it in errors.
    pub fn from_bytes(source_name: &str, bytes: &[u8]) -> Result<Self, KeyringError> {
        let mut keyring = Keyring::default();
        keyring.add_bytes(source_name, bytes)?;
        Ok(keyring)
    }

    /// Where the keys came from, in load order.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// Fingerprints (lowercase hex) of every primary key and subkey that may sign.
    pub fn signing_fingerprints(&self) -> Vec<String> {
        self.candidates
            .iter()
            .filter(|c| c.can_sign)
            .map(|c| c.fingerprint.clone())
            .collect()
    }

    fn add_bytes(&mut self, source_name: &str, bytes: &[u8]) -> Result<(), KeyringError> {
        let parse_err = |e: pgp::errors::Error| KeyringError::Parse {
            source_name: source_name.to_string(),
            problem: e.to_string(),
        };
        let (keys, _) = SignedPublicKey::from_reader_many(bytes).map_err(parse_err)?;
        let mut found = 0;
        for key in keys {
            let key = key.map_err(parse_err)?;
            found += 1;
            self.candidates.extend(candidates_of(&key, source_name));
        }
        if found == 0 {
            return Err(KeyringError::Empty {
                source_name: source_name.to_string(),
            });
        }
        self.sources.push(source_name.to_string());
        Ok(())
    }

    /// Finds a signature over `signed_text` made by a trusted, valid signing
    /// key. Signatures by unknown keys are ignored, as apt ignores them; if
    /// none counts, every signature's rejection is returned.
    pub fn verify_any(
        &self,
        signatures: &[Signature],
        signed_text: &[u8],
    ) -> Result<Signer, Vec<SignatureRejection>> {
        let mut rejections = Vec::new();
        for sig in signatures {
            match self.verify_one(sig, signed_text) {
                Ok(signer) => return Ok(signer),
                Err(reason) => rejections.push(SignatureRejection {
                    issuer: issuer_of(sig),
                    reason,
                }),
            }
        }
        if rejections.is_empty() {
            rejections.push(SignatureRejection {
                issuer: "nobody".into(),
                reason: "the file carries no signature".into(),
            });
        }
        Err(rejections)
    }

    fn verify_one(&self, sig: &Signature, text: &[u8]) -> Result<Signer, String> {
        let ids = sig.issuer_key_id();
        let fps = sig.issuer_fingerprint();
        let matching: Vec<&SigningCandidate> = self
            .candidates
            .iter()
            .filter(|c| {
                ids.iter().any(|id| **id == c.key_id)
                    || fps
                        .iter()
                        .any(|fp| hex::encode(fp.as_bytes()) == c.fingerprint)
            })
            .collect();
        if matching.is_empty() {
            return Err("key not in the trusted keyring".into());
        }
        match sig.typ() {
            Some(SignatureType::Text) | Some(SignatureType::Binary) => {}
            other => return Err(format!("not a document signature (type {other:?})")),
        }
        let hash = sig.hash_alg().unwrap_or(HashAlgorithm::None);
        if hash.digest_size().unwrap_or(0) < 32 {
            return Err(format!(
                "weak hash algorithm {hash:?}, apt requires SHA-256 or better"
            ));
        }
        let Some(created) = sig.created() else {
            return Err("signature has no creation time".into());
        };
        let created = created.as_secs();
        let mut last_problem = String::new();
        for candidate in matching {
            if let Err(e) = candidate.material.verify_signature(sig, text) {
                last_problem = format!("does not verify with key {}: {e}", candidate.fingerprint);
                continue;
            }
            if let Some(problem) = candidate.invalid_at(created) {
                last_problem = format!("key {} {problem}", candidate.fingerprint);
                continue;
            }
            return Ok(Signer {
                fingerprint: candidate.fingerprint.clone(),
                primary_fingerprint: candidate.primary_fingerprint.clone(),
                source_name: candidate.source_name.clone(),
            });
        }
        Err(last_problem)
    }
}

impl SigningCandidate {
    /// Why the key could not make a valid signature at `time`, if it could not.
    fn invalid_at(&self, time: u32) -> Option<String> {
        if !self.can_sign {
            return Some("is not flagged for signing".into());
        }
        if time < self.created {
            return Some(format!(
                "was created after the signature (key {}, signature {time})",
                self.created
            ));
        }
        if let Some(expires) = self.expires
            && u64::from(time) >= expires
        {
            return Some(format!(
                "had expired when the signature was made (expired {expires}, signed {time})"
            ));
        }
        match self.revoked {
            Some(Revoked::Always) => Some("is revoked".into()),
            Some(Revoked::Since(t)) if time >= t => {
                Some(format!("was revoked at {t}, before the signature ({time})"))
            }
            _ => None,
        }
    }
}

fn issuer_of(sig: &Signature) -> String {
    let mut names: Vec<String> = sig
        .issuer_fingerprint()
        .iter()
        .map(|fp| hex::encode(fp.as_bytes()))
        .collect();
    for id in sig.issuer_key_id() {
        let id = hex::encode(id.as_ref());
        if !names.iter().any(|n| n.ends_with(&id)) {
            names.push(id);
        }
    }
    if names.is_empty() {
        "an unnamed key".into()
    } else {
        names.join("/")
    }
}

fn revocation_of(sig: &Signature) -> Revoked {
    match sig.revocation_reason_code() {
        Some(RevocationCode::KeySuperseded) | Some(RevocationCode::KeyRetired) => {
            Revoked::Since(sig.created().map_or(0, |t| t.as_secs()))
        }
        _ => Revoked::Always,
    }
}

fn merge_revocation(a: Option<Revoked>, b: Revoked) -> Option<Revoked> {
    Some(match (a, b) {
        (Some(Revoked::Always), _) | (_, Revoked::Always) => Revoked::Always,
        (Some(Revoked::Since(x)), Revoked::Since(y)) => Revoked::Since(x.min(y)),
        (None, r) => r,
    })
}

fn expiry(created: u32, sig: &Signature) -> Option<u64> {
    sig.key_expiration_time()
        .map(|d| u64::from(d.as_secs()))
        .filter(|secs| *secs != 0)
        .map(|secs| u64::from(created) + secs)
}

fn newest<'a>(sigs: impl Iterator<Item = &'a Signature>) -> Option<&'a Signature> {
    sigs.max_by_key(|s| s.created().map_or(0, |t| t.as_secs()))
}

/// The primary key and subkeys of `key` that may vouch for signatures, with
/// only self-signatures that verify taken into account.
fn candidates_of(key: &SignedPublicKey, source_name: &str) -> Vec<SigningCandidate> {
    let primary = &key.primary_key;
    let primary_fp = hex::encode(primary.fingerprint().as_bytes());
    let primary_created = primary.created_at().as_secs();

    // The primary's flags and expiry come from its newest user-ID
    // self-certification, as GnuPG reads v4 keys; third-party certifications
    // are skipped. Debian's keys also carry direct-key signatures (revoker
    // designations) without flags; those count only when the key has no user
    // ID, but an expiry they set still applies.
    let user_sigs = key.details.users.iter().flat_map(|user| {
        user.signatures.iter().filter(move |s| {
            s.is_certification()
                && s.verify_certification(primary, Tag::UserId, &user.id)
                    .is_ok()
        })
    });
    let direct_sigs: Vec<&Signature> = key
        .details
        .direct_signatures
        .iter()
        .filter(|s| s.verify_key(primary).is_ok())
        .collect();
    let primary_sig = newest(user_sigs).or_else(|| newest(direct_sigs.iter().copied()));
    let primary_expires = primary_sig
        .into_iter()
        .chain(direct_sigs.iter().copied())
        .filter_map(|s| expiry(primary_created, s))
        .min();
    let mut primary_revoked = None;
    for sig in &key.details.revocation_signatures {
        if sig.typ() == Some(SignatureType::KeyRevocation) && sig.verify_key(primary).is_ok() {
            primary_revoked = merge_revocation(primary_revoked, revocation_of(sig));
        }
    }

    let mut out = vec![SigningCandidate {
        material: Material::Primary(primary.clone()),
        fingerprint: primary_fp.clone(),
        key_id: primary.legacy_key_id(),
        primary_fingerprint: primary_fp.clone(),
        source_name: source_name.to_string(),
        created: primary_created,
        expires: primary_expires,
        revoked: primary_revoked,
        // Without any verified self-signature the key has no usable identity.
        can_sign: primary_sig.is_some_and(|s| s.key_flags().sign()),
    }];

    for subkey in &key.public_subkeys {
        let sub = &subkey.key;
        let bindings = subkey.signatures.iter().filter(|s| {
            s.typ() == Some(SignatureType::SubkeyBinding)
                && s.verify_subkey_binding(primary, sub).is_ok()
                && (!s.key_flags().sign()
                    || s.embedded_signature()
                        .is_some_and(|back| back.verify_primary_key_binding(sub, primary).is_ok()))
        });
        let Some(binding) = newest(bindings) else {
            continue;
        };
        let sub_created = sub.created_at().as_secs();
        let mut revoked = primary_revoked;
        for sig in &subkey.signatures {
            if sig.typ() == Some(SignatureType::SubkeyRevocation)
                && sig.verify_subkey_binding(primary, sub).is_ok()
            {
                revoked = merge_revocation(revoked, revocation_of(sig));
            }
        }
        let expires = match (expiry(sub_created, binding), primary_expires) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        out.push(SigningCandidate {
            material: Material::Subkey(sub.clone()),
            fingerprint: hex::encode(sub.fingerprint().as_bytes()),
            key_id: sub.legacy_key_id(),
            primary_fingerprint: primary_fp.clone(),
            source_name: source_name.to_string(),
            created: sub_created,
            expires,
            revoked,
            can_sign: binding.key_flags().sign(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(entries: &[&str]) -> Result<Keyring, KeyringError> {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        Keyring::load(&entries, Path::new("/nonexistent"))
    }

    #[test]
    fn every_shipped_key_parses_and_has_a_signing_key() {
        for name in shipped_names() {
            let keyring = load(&[name]).unwrap();
            assert!(
                !keyring.signing_fingerprints().is_empty(),
                "{name} has no usable signing key"
            );
        }
    }

    #[test]
    fn trixie_automatic_key_may_sign_with_its_primary_and_its_subkey() {
        // As `gpg --show-keys` lists it: primary [SC] and subkey [S], both
        // expiring 2035-03-28 (2058699029).
        let keyring = load(&["debian-archive-trixie-automatic"]).unwrap();
        assert_eq!(
            keyring.signing_fingerprints(),
            [
                "04b54c3cdca79751b16bc6b5225629df75b188bd",
                "b8e5f13176d2a7a75220028078dba3bc47ef2265"
            ]
        );
        assert!(
            keyring
                .candidates
                .iter()
                .all(|c| c.expires == Some(2058699029))
        );
    }

    #[test]
    fn trixie_stable_key_is_an_ed25519_primary_that_signs_itself() {
        let keyring = load(&["debian-archive-trixie-stable"]).unwrap();
        let c = &keyring.candidates[0];
        assert!(c.can_sign);
        assert_eq!(c.fingerprint, c.primary_fingerprint);
    }

    #[test]
    fn an_unknown_key_name_lists_the_shipped_keys() {
        let err = load(&["debian-archive-sid"]).unwrap_err().to_string();
        assert!(err.contains("debian-archive-sid"), "{err}");
        assert!(err.contains("debian-archive-trixie-automatic"), "{err}");
    }

    #[test]
    fn an_entry_with_a_key_extension_is_read_relative_to_the_base_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("archive.pgp"),
            SHIPPED[3].1, // trixie automatic
        )
        .unwrap();
        let keyring = Keyring::load(&["archive.pgp".to_string()], dir.path()).unwrap();
        assert_eq!(keyring.signing_fingerprints().len(), 2);
        assert!(keyring.sources()[0].ends_with("archive.pgp"));

        let err = Keyring::load(&["keys/missing.asc".to_string()], dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("keys/missing.asc"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_keyring_is_rejected_with_its_name() {
        let err = Keyring::from_bytes("junk.gpg", b"hello, not a key")
            .unwrap_err()
            .to_string();
        assert!(err.contains("junk.gpg"), "{err}");
    }

    #[test]
    fn an_empty_entry_list_is_an_error() {
        assert!(matches!(load(&[]), Err(KeyringError::NoEntries)));
    }

    #[test]
    fn validity_is_judged_at_the_signature_creation_time() {
        let keyring = load(&["debian-archive-trixie-automatic"]).unwrap();
        let mut key = keyring.candidates[1].clone();
        let expires = key.expires.unwrap() as u32;
        assert_eq!(key.invalid_at(key.created + 1), None);
        assert!(key.invalid_at(expires).unwrap().contains("expired"));
        assert!(
            key.invalid_at(key.created - 1)
                .unwrap()
                .contains("created after")
        );
        key.revoked = Some(Revoked::Since(key.created + 100));
        assert_eq!(key.invalid_at(key.created + 99), None);
        assert!(
            key.invalid_at(key.created + 100)
                .unwrap()
                .contains("revoked")
        );
        key.revoked = Some(Revoked::Always);
        assert!(key.invalid_at(key.created + 1).unwrap().contains("revoked"));
        key.revoked = None;
        key.can_sign = false;
        assert!(key.invalid_at(key.created + 1).unwrap().contains("signing"));
    }
}
