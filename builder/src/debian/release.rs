//! Signed `InRelease` files: the root of trust for everything fetched from a suite.
//!
//! Follows apt's `InRelease` handling: the file is a cleartext-signed Release
//! (RFC 9580 §7); it is accepted when any one signature comes from a trusted
//! key, and only the text under the signature is read, so nothing an attacker
//! adds around the signed block can reach the index list.

use std::collections::BTreeMap;

use pgp::composed::CleartextSignedMessage;

use crate::debian::control::parse_paragraphs;
use crate::debian::keyring::{Keyring, SignatureRejection};
use crate::digest::Sha256Digest;

/// What to do with a Release whose `Valid-Until` has passed.
///
/// apt refuses such files unless `Acquire::Check-Valid-Until=false`; kina
/// warns by default because pinned snapshots of `-security` suites expire
/// within a week, and the signature still proves where the file came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ValidUntilPolicy {
    #[default]
    Warn,
    Enforce,
}

/// One entry of the Release `SHA256:` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseEntry {
    pub sha256: Sha256Digest,
    pub size: u64,
}

/// A Release whose signature verified, with the fields kina uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRelease {
    pub origin: Option<String>,
    pub suite: Option<String>,
    pub codename: Option<String>,
    /// The `Date` field verbatim, as the lock records it.
    pub date: String,
    /// `Date` in unix seconds; the newest one becomes SOURCE_DATE_EPOCH.
    pub date_epoch: u64,
    pub valid_until: Option<String>,
    pub valid_until_epoch: Option<u64>,
    pub acquire_by_hash: bool,
    /// `SHA256:` entries by path relative to `dists/<suite>/`.
    pub sha256: BTreeMap<String, ReleaseEntry>,
    /// Fingerprint (lowercase hex) of the key or subkey whose signature verified.
    pub signed_by: String,
    /// Fingerprint of that key's primary key.
    pub signed_by_primary: String,
    /// sha256 of the InRelease file exactly as fetched.
    pub inrelease_sha256: Sha256Digest,
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("{source_name} is not a cleartext-signed InRelease file: {problem}")]
    NotSigned {
        source_name: String,
        problem: String,
    },
    #[error("{source_name}: no signature by a trusted key verifies ({}); check that the recipe's `debian.keyring` names the keys that sign this suite, or the mirror serves a tampered file", join_rejections(.rejections))]
    BadSignature {
        source_name: String,
        rejections: Vec<SignatureRejection>,
    },
    #[error("{source_name}: signed Release text is malformed: {problem}")]
    Malformed {
        source_name: String,
        problem: String,
    },
    #[error(
        "{source_name}: Release expired at {valid_until} (Valid-Until); the mirror is stale or the snapshot old; allow it with the Valid-Until `warn` policy"
    )]
    Expired {
        source_name: String,
        valid_until: String,
    },
}

fn join_rejections(rejections: &[SignatureRejection]) -> String {
    rejections
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Verifies an `InRelease` file fetched from `source_name` (its URL) and
/// parses the signed Release. `now` is unix seconds, for `Valid-Until`.
pub fn verify_inrelease(
    source_name: &str,
    bytes: &[u8],
    keyring: &Keyring,
    now: u64,
    policy: ValidUntilPolicy,
) -> Result<VerifiedRelease, ReleaseError> {
    let not_signed = |problem: String| ReleaseError::NotSigned {
        source_name: source_name.to_string(),
        problem,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| not_signed(format!("not UTF-8: {e}")))?;
    let (message, _) =
        CleartextSignedMessage::from_string(text).map_err(|e| not_signed(e.to_string()))?;
    let signed_text = message.signed_text();
    let signer = keyring
        .verify_any(message.signatures(), signed_text.as_bytes())
        .map_err(|rejections| ReleaseError::BadSignature {
            source_name: source_name.to_string(),
            rejections,
        })?;

    // The signed text is normalised to CRLF line ends for hashing.
    let release_text = signed_text.replace("\r\n", "\n");
    let mut release = parse_release(&release_text).map_err(|problem| ReleaseError::Malformed {
        source_name: source_name.to_string(),
        problem,
    })?;
    release.signed_by = signer.fingerprint;
    release.signed_by_primary = signer.primary_fingerprint;
    release.inrelease_sha256 = Sha256Digest::of(bytes);

    if let (Some(until), Some(text)) = (release.valid_until_epoch, &release.valid_until)
        && until < now
    {
        match policy {
            ValidUntilPolicy::Enforce => {
                return Err(ReleaseError::Expired {
                    source_name: source_name.to_string(),
                    valid_until: text.clone(),
                });
            }
            ValidUntilPolicy::Warn => tracing::warn!(
                source = source_name,
                valid_until = text.as_str(),
                "Release is past its Valid-Until; using it because the signature verifies"
            ),
        }
    }
    Ok(release)
}

/// Parses the (already verified) Release paragraph.
fn parse_release(text: &str) -> Result<VerifiedRelease, String> {
    let paragraphs = parse_paragraphs(text).map_err(|e| e.to_string())?;
    let [paragraph] = paragraphs.as_slice() else {
        return Err(format!(
            "expected one paragraph, found {}",
            paragraphs.len()
        ));
    };
    let field = |name: &str| paragraph.get(name).map(str::to_string);
    let date = field("Date").ok_or("no `Date` field")?;
    let date_epoch = parse_debian_date(&date).ok_or(format!("unreadable `Date: {date}`"))?;
    let valid_until = field("Valid-Until");
    let valid_until_epoch = match &valid_until {
        Some(v) => Some(parse_debian_date(v).ok_or(format!("unreadable `Valid-Until: {v}`"))?),
        None => None,
    };
    let mut sha256 = BTreeMap::new();
    for line in paragraph.get("SHA256").unwrap_or_default().lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [digest, size, path] = parts.as_slice() else {
            return Err(format!(
                "SHA256 line `{line}` is not `<sha256> <size> <path>`"
            ));
        };
        let sha256_digest = digest
            .parse::<Sha256Digest>()
            .map_err(|e| format!("SHA256 line `{line}`: {e}"))?;
        let size = size
            .parse::<u64>()
            .map_err(|_| format!("SHA256 line `{line}`: size is not a number"))?;
        sha256.insert(
            (*path).to_string(),
            ReleaseEntry {
                sha256: sha256_digest,
                size,
            },
        );
    }
    if sha256.is_empty() {
        return Err("no `SHA256` index list; apt requires it since Debian 9".into());
    }
    Ok(VerifiedRelease {
        origin: field("Origin"),
        suite: field("Suite"),
        codename: field("Codename"),
        date,
        date_epoch,
        valid_until,
        valid_until_epoch,
        acquire_by_hash: paragraph
            .get("Acquire-By-Hash")
            .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
        sha256,
        signed_by: String::new(),
        signed_by_primary: String::new(),
        inrelease_sha256: Sha256Digest::of(b""),
    })
}

/// Parses an RFC 2822 date as Debian's archive tools write them
/// (`Sat, 12 Sep 2026 07:55:41 UTC`) into unix seconds. The weekday is
/// optional and not checked; the zone may be `UTC`, `GMT`, `Z` or `±hhmm`.
pub fn parse_debian_date(text: &str) -> Option<u64> {
    let text = text.trim();
    let text = match text.split_once(',') {
        Some((_, rest)) => rest.trim(),
        None => text,
    };
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [day, month, year, time, zone] = parts.as_slice() else {
        return None;
    };
    let day: u32 = day.parse().ok()?;
    let month = crate::civil_time::month_number(month)?;
    let year: i64 = year.parse().ok()?;
    // Four-digit years, as RFC 2822 writes them; far larger ones would
    // overflow the day arithmetic below.
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut hms = time.split(':').map(|p| p.parse::<u32>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next().unwrap_or(Some(0))?);
    if hms.next().is_some() || h > 23 || m > 59 || s > 60 || day == 0 || day > 31 {
        return None;
    }
    let offset: i64 = match *zone {
        "UTC" | "GMT" | "Z" | "UT" => 0,
        z if z.len() == 5
            && (z.starts_with('+') || z.starts_with('-'))
            && z[1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            let hh: i64 = z[1..3].parse().ok()?;
            let mm: i64 = z[3..5].parse().ok()?;
            let secs = hh * 3600 + mm * 60;
            if z.starts_with('-') { -secs } else { secs }
        }
        _ => return None,
    };
    let days = crate::civil_time::days_from_civil(year, month, day);
    let secs = days * 86400 + i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(s) - offset;
    u64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_dates_parse_to_unix_seconds() {
        // `date -u -d 'Sat, 09 Aug 2025 09:09:45 UTC' +%s` = 1754730585
        assert_eq!(
            parse_debian_date("Sat, 09 Aug 2025 09:09:45 UTC"),
            Some(1_754_730_585)
        );
        assert_eq!(parse_debian_date("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        // Leap day and a century leap year.
        assert_eq!(
            parse_debian_date("Tue, 29 Feb 2000 12:00:00 +0000"),
            Some(951_825_600)
        );
    }

    #[test]
    fn a_numeric_zone_offset_is_applied() {
        assert_eq!(
            parse_debian_date("01 Jan 2026 02:00:00 +0200"),
            parse_debian_date("01 Jan 2026 00:00:00 UTC")
        );
        assert_eq!(
            parse_debian_date("31 Dec 2025 22:00:00 -0200"),
            parse_debian_date("01 Jan 2026 00:00:00 GMT")
        );
    }

    #[test]
    fn malformed_dates_are_rejected() {
        for bad in [
            "",
            "Sat, 09 Aug 2025",
            "Sat, 09 Foo 2025 09:09:45 UTC",
            "Sat, 09 Aug 2025 25:09:45 UTC",
            "Sat, 09 Aug 2025 09:09:45 CEST",
            "Sat, 32 Aug 2025 09:09:45 UTC",
            // Found by tests/prop_debian.rs: overflowed (a panic in debug builds).
            "Sun, 1 Jan 300000000000 0:0 UTC",
            "Sun, 1 Jan -300000000000 0:0 UTC",
            // Found by tests/prop_debian.rs: sliced inside a character and panicked.
            "Sun, 1 Jan 2020 00:00 -0\u{4e2d}",
            "Sun, 1 Jan 2020 00:00 +\u{4e2d}0",
            "Sun, 1 Jan 2020 00:00 +-100",
        ] {
            assert_eq!(parse_debian_date(bad), None, "{bad}");
        }
    }

    const RELEASE: &str = "Origin: Debian\nSuite: stable\nCodename: trixie\nDate: Sat, 09 Aug 2025 09:09:45 UTC\nValid-Until: Sat, 16 Aug 2025 09:09:45 UTC\nAcquire-By-Hash: yes\nNo-Support-for-Architecture-all: Packages\nSHA256:\n 0000000000000000000000000000000000000000000000000000000000000001 10 main/binary-amd64/Packages\n 0000000000000000000000000000000000000000000000000000000000000002   7 main/binary-amd64/Packages.xz\n";

    #[test]
    fn release_fields_and_sha256_entries_are_read() {
        let r = parse_release(RELEASE).unwrap();
        assert_eq!(r.origin.as_deref(), Some("Debian"));
        assert_eq!(r.codename.as_deref(), Some("trixie"));
        assert_eq!(r.date_epoch, 1_754_730_585);
        assert_eq!(r.valid_until_epoch, Some(1_754_730_585 + 7 * 86400));
        assert!(r.acquire_by_hash);
        assert_eq!(r.sha256.len(), 2);
        assert_eq!(r.sha256["main/binary-amd64/Packages.xz"].size, 7);
    }

    #[test]
    fn a_release_without_date_or_sha256_is_malformed() {
        let no_date = RELEASE.replace("Date: Sat, 09 Aug 2025 09:09:45 UTC\n", "");
        assert!(parse_release(&no_date).unwrap_err().contains("Date"));
        let no_sha = RELEASE.split("SHA256:").next().unwrap().to_string();
        assert!(parse_release(&no_sha).unwrap_err().contains("SHA256"));
    }

    #[test]
    fn a_file_without_a_cleartext_signature_is_rejected() {
        let keyring = Keyring::load(
            &["debian-archive-trixie-automatic".to_string()],
            std::path::Path::new("/"),
        )
        .unwrap();
        let err = verify_inrelease(
            "http://mirror.invalid/debian/dists/trixie/InRelease",
            RELEASE.as_bytes(),
            &keyring,
            0,
            ValidUntilPolicy::Warn,
        )
        .unwrap_err();
        assert!(matches!(err, ReleaseError::NotSigned { .. }), "{err}");
        assert!(err.to_string().contains("dists/trixie/InRelease"), "{err}");
    }
}
