//! SHA-256 digests as every part of the builder passes them around.
//!
//! One type for the lock, the cache, the OCI blobs and the SBOM, so a digest is
//! validated once when it enters the program and compared as bytes afterwards.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A SHA-256 digest. Displays as 64 lowercase hex characters; `oci()` gives the
/// `sha256:`-prefixed form OCI descriptors use.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Digest([u8; 32]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "`{input}` is not a sha256 digest: expected 64 hex characters, optionally prefixed by `sha256:`"
)]
pub struct DigestParseError {
    input: String,
}

impl Sha256Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Digest of everything `reader` yields, without holding it in memory.
    pub fn of_reader(mut reader: impl Read) -> io::Result<(Self, u64)> {
        let mut writer = HashingWriter::new(io::sink());
        let size = io::copy(&mut reader, &mut writer)?;
        let (digest, _, _) = writer.finish();
        Ok((digest, size))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// `sha256:<hex>`, the form of OCI descriptors and image references.
    pub fn oci(&self) -> String {
        format!("sha256:{}", self.hex())
    }
}

impl FromStr for Sha256Digest {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s.strip_prefix("sha256:").unwrap_or(s);
        let err = || DigestParseError {
            input: s.to_string(),
        };
        if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| err())?;
        Ok(Self(out))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A writer that hashes and counts what passes through it, so a blob's digest
/// and size come from the exact bytes written and never from a second read.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    pub fn finish(self) -> (Sha256Digest, u64, W) {
        (
            Sha256Digest(self.hasher.finalize().into()),
            self.written,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_input_is_the_well_known_value() {
        assert_eq!(
            Sha256Digest::of(b"").hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parses_both_plain_and_prefixed_forms_and_rejects_junk() {
        let d = Sha256Digest::of(b"kina");
        assert_eq!(d.hex().parse::<Sha256Digest>(), Ok(d));
        assert_eq!(d.oci().parse::<Sha256Digest>(), Ok(d));
        assert!("sha256:abc".parse::<Sha256Digest>().is_err());
        assert!(d.hex().to_uppercase().parse::<Sha256Digest>().is_err());
        assert!("z".repeat(64).parse::<Sha256Digest>().is_err());
    }

    #[test]
    fn hashing_writer_matches_one_shot_digest() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (digest, size, inner) = w.finish();
        assert_eq!(digest, Sha256Digest::of(b"hello world"));
        assert_eq!(size, 11);
        assert_eq!(inner, b"hello world");
    }
}
