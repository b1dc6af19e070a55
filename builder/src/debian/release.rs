//! Signed `InRelease` files: the root of trust of a Debian suite.
//!
//! As apt does: the file is accepted when any one of its signatures verifies
//! with a trusted key that was valid when it signed; signatures by unknown
//! keys are ignored. Only the signed text is read afterwards, so nothing
//! outside the signature can inject an index hash.

use std::collections::BTreeMap;

use pgp::composed::CleartextSignedMessage;

use super::control::parse_single;
use super::keyring::Keyring;
use crate::digest::Sha256Digest;

/// What to do when `Valid-Until` has passed. Pinned snapshots and slow
/// mirrors have old Release files; the signature still protects them, so by
/// default kina warns, as `Acquire::Check-Valid-Until=false` would allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValidUntilPolicy {
    Warn,
    Enforce,
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("{origin} is not an OpenPGP cleartext-signed file: {message}")]
    NotSigned { origin: String, message: String },
    #[error(
        "{origin}: no signature verifies with the recipe's keyring (signatures by key ids {seen}); the mirror may be tampered with, or the keyring lacks this suite's key"
    )]
    BadSignature { origin: String, seen: String },
    #[error("{origin}: the signed Release is malformed: {message}")]
    Malformed { origin: String, message: String },
    #[error(
        "{origin}: Valid-Until {valid_until} has passed; pass --enforce-valid-until only for live mirrors"
    )]
    Expired { origin: String, valid_until: String },
}

#[derive(Clone, Debug)]
pub struct IndexEntry {
    pub sha256: Sha256Digest,
    pub size: u64,
}

/// A Release whose signature verified.
#[derive(Clone, Debug)]
pub struct VerifiedRelease {
    date: String,
    date_epoch: Option<u64>,
    pub valid_until: Option<String>,
    pub acquire_by_hash: bool,
    pub codename: String,
    pub suite: String,
    signer: String,
    /// `main/binary-arm64/Packages.xz` → digest and size.
    pub sha256: BTreeMap<String, IndexEntry>,
}

impl VerifiedRelease {
    pub fn date(&self) -> &str {
        &self.date
    }

    pub fn date_epoch(&self) -> Option<u64> {
        self.date_epoch
    }

    pub fn signer_fingerprint(&self) -> &str {
        &self.signer
    }
}

/// Verifies `bytes` (an InRelease file named `origin` in messages) and parses
/// its signed text. `now` is seconds since the epoch.
pub fn verify_inrelease(
    bytes: &[u8],
    origin: &str,
    keyring: &Keyring,
    now: u64,
    policy: ValidUntilPolicy,
) -> Result<VerifiedRelease, ReleaseError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ReleaseError::NotSigned {
        origin: origin.to_string(),
        message: "not UTF-8".into(),
    })?;
    let (message, _) =
        CleartextSignedMessage::from_string(text).map_err(|e| ReleaseError::NotSigned {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
    let signed = message.signed_text();
    let mut seen = Vec::new();
    let mut signer = None;
    'signatures: for signature in message.signatures() {
        let created = signature.created().map_or(0, |c| u64::from(c.as_secs()));
        seen.extend(
            signature
                .issuer_key_id()
                .iter()
                .map(|id| hex_id(id.as_ref())),
        );
        for key in &keyring.keys {
            if key.valid_at(created) && key.verify(signature, signed.as_bytes()) {
                signer = Some(key.fingerprint.clone());
                break 'signatures;
            }
        }
    }
    let Some(signer) = signer else {
        return Err(ReleaseError::BadSignature {
            origin: origin.to_string(),
            seen: if seen.is_empty() {
                "none".into()
            } else {
                seen.join(", ")
            },
        });
    };

    // The signed text as the signer hashed it (CRLF-normalised) is what we parse.
    let body = signed.replace("\r\n", "\n");
    let malformed = |message: String| ReleaseError::Malformed {
        origin: origin.to_string(),
        message,
    };
    let p = parse_single(&body).map_err(|e| malformed(e.to_string()))?;
    let date = p
        .get("Date")
        .ok_or_else(|| malformed("no Date field".into()))?
        .to_string();
    let mut sha256 = BTreeMap::new();
    for line in p.get("SHA256").unwrap_or_default().lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let [hash, size, path] = fields[..] else {
            return Err(malformed(format!("bad SHA256 line `{line}`")));
        };
        let entry = IndexEntry {
            sha256: hash
                .parse()
                .map_err(|e: crate::digest::DigestParseError| malformed(e.to_string()))?,
            size: size
                .parse()
                .map_err(|_| malformed(format!("bad size in `{line}`")))?,
        };
        sha256.insert(path.to_string(), entry);
    }
    if sha256.is_empty() {
        return Err(malformed("no SHA256 index list".into()));
    }
    let valid_until = p.get("Valid-Until").map(str::to_string);
    if let Some(until) = &valid_until {
        if let Some(until_epoch) = parse_debian_date(until) {
            if until_epoch < now {
                match policy {
                    ValidUntilPolicy::Enforce => {
                        return Err(ReleaseError::Expired {
                            origin: origin.to_string(),
                            valid_until: until.clone(),
                        });
                    }
                    ValidUntilPolicy::Warn => tracing::warn!(
                        "{origin}: Valid-Until {until} has passed; the signature is valid, continuing"
                    ),
                }
            }
        }
    }
    Ok(VerifiedRelease {
        date_epoch: parse_debian_date(&date),
        date,
        valid_until,
        acquire_by_hash: p.get("Acquire-By-Hash") == Some("yes"),
        codename: p.get("Codename").unwrap_or_default().to_string(),
        suite: p.get("Suite").unwrap_or_default().to_string(),
        signer,
        sha256,
    })
}

fn hex_id(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Parses the RFC 2822 dates of Release files (`Sat, 12 Sep 2026 07:55:41 UTC`)
/// into seconds since the epoch. Only UTC/GMT/+0000 appear in Debian archives.
pub fn parse_debian_date(text: &str) -> Option<u64> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let rest = if parts.first()?.ends_with(',') {
        &parts[1..]
    } else {
        &parts[..]
    };
    let [day, month, year, time, zone] = rest[..] else {
        return None;
    };
    if !matches!(zone, "UTC" | "GMT" | "+0000" | "Z") {
        return None;
    }
    let day: u64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == month)? as u64
        + 1;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<u64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms[..] else {
        return None;
    };
    let days = days_from_civil(year, month, day)?;
    Some(days * 86_400 + h * 3_600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u64, day: u64) -> Option<u64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u64::try_from(era * 146_097 + doe - 719_468).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_dates_parse_to_unix_time() {
        assert_eq!(parse_debian_date("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(
            parse_debian_date("Sat, 12 Sep 2026 07:55:41 UTC"),
            Some(1_789_199_741)
        );
        assert_eq!(
            parse_debian_date("Sat, 29 Feb 2020 12:00:00 UTC"),
            Some(1_582_977_600)
        );
        assert_eq!(parse_debian_date("Sat, 12 Sep 2026 07:55:41 CEST"), None);
        assert_eq!(parse_debian_date("garbage"), None);
    }

    #[test]
    fn an_unsigned_file_is_refused() {
        let ring = Keyring::load(
            &["debian-archive-trixie-stable".into()],
            std::path::Path::new("."),
        )
        .unwrap();
        let err = verify_inrelease(
            b"Origin: Debian\n",
            "test",
            &ring,
            0,
            ValidUntilPolicy::Warn,
        )
        .unwrap_err();
        assert!(matches!(err, ReleaseError::NotSigned { .. }), "{err}");
    }
}
