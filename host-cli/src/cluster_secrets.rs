//! What kubeadm needs before any node boots, so that workers can join at
//! once instead of waiting for the control plane to print a join command.
//!
//! kina makes the cluster CA itself, on the host, and hands it to the first
//! control-plane node as `/etc/kubernetes/pki/ca.crt` and `ca.key`: kubeadm
//! uses a CA it finds there instead of making one. Because the CA is known up
//! front, so is kubeadm's discovery pin (`--discovery-token-ca-cert-hash`),
//! and together with a bootstrap token chosen here every worker gets a
//! complete `kubeadm join` configuration from the start.
//!
//! The CA mirrors the one `kubeadm init` makes itself (kubeadm's
//! `pkiutil.NewSelfSignedCACert`): self-signed, subject and DNS SAN
//! `kubernetes`, basicConstraints `CA:TRUE`, key usages digitalSignature,
//! keyEncipherment and keyCertSign, a random serial in `[1, 2^63-1)`,
//! valid from five minutes ago (kubeadm's `CertificateBackdate`) until
//! 87600 hours from now (kubeadm's `CACertificateValidityPeriod`, 10 × 365
//! days).
//!
//! The key is RSA 2048 with SHA-256 signatures: `RSA-2048` is the default
//! `encryptionAlgorithm` of kubeadm's ClusterConfiguration, so a cluster from
//! kina has the same kind of CA as one from a plain `kubeadm init`. rcgen can
//! generate RSA keys with its aws-lc-rs backend (ring cannot), which is why
//! the workspace enables that backend.

use kina_contract::node_spec::Secret;
use rand::RngCore;
use rand::rngs::OsRng;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, PKCS_RSA_SHA256,
    RsaKeySize, SerialNumber,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

/// The CA's common name and only DNS name, as kubeadm sets them.
const CA_COMMON_NAME: &str = "kubernetes";

/// kubeadm backdates its CA by this much to tolerate small clock jumps
/// (kubeadm's `CertificateBackdate`).
const CA_BACKDATE: Duration = Duration::minutes(5);

/// How long kubeadm's CA is valid: 87600 hours, i.e. 10 × 365 days
/// (kubeadm's `CACertificateValidityPeriod`).
const CA_VALIDITY: Duration = Duration::days(10 * 365);

/// A bootstrap token is `<id>.<secret>`: 6 and 16 characters of this set
/// (k8s.io/cluster-bootstrap/token/api: `BootstrapTokenPattern`).
const TOKEN_CHARS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const TOKEN_ID_LEN: usize = 6;
const TOKEN_SECRET_LEN: usize = 16;

/// Everything the cluster's nodes must agree on before the first boot.
///
/// The CA key and the bootstrap token are [`Secret`]s: `Debug` never shows
/// them and they have no `Display`.
#[derive(Clone, Debug)]
pub struct ClusterSecrets {
    /// The CA certificate, PEM (`/etc/kubernetes/pki/ca.crt`).
    pub ca_cert_pem: String,
    /// The CA private key, PKCS#8 PEM (`/etc/kubernetes/pki/ca.key`).
    pub ca_key_pem: Secret,
    /// kubeadm's discovery pin of the CA: `sha256:<64 lowercase hex>`.
    pub ca_cert_hash: String,
    /// A bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}`.
    pub bootstrap_token: Secret,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read random bytes from the operating system: {0}")]
    Random(#[source] rand::Error),
    #[error("cannot generate the CA of cluster {cluster}: {source}")]
    Ca {
        cluster: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("the CA certificate is not PEM: {0}")]
    Pem(String),
    #[error("the CA PEM holds a {0:?} block, not a CERTIFICATE")]
    NotACertificate(String),
    #[error("the CA certificate is not a valid X.509 certificate: {0}")]
    X509(String),
}

/// Generates a new CA and bootstrap token for the cluster `cluster_name`.
///
/// The name only labels errors: kubeadm's CA is called `kubernetes` whatever
/// the cluster is called, and kina's is the same.
pub fn generate(cluster_name: &str) -> Result<ClusterSecrets, Error> {
    let ca_error = |source| Error::Ca {
        cluster: cluster_name.to_owned(),
        source,
    };
    let key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).map_err(ca_error)?;

    let mut params = CertificateParams::new(vec![CA_COMMON_NAME.to_owned()]).map_err(ca_error)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyCertSign,
    ];
    params.serial_number = Some(random_serial()?);
    let now = OffsetDateTime::now_utc();
    params.not_before = now - CA_BACKDATE;
    params.not_after = now + CA_VALIDITY;

    let cert = params.self_signed(&key).map_err(ca_error)?;
    let ca_cert_pem = cert.pem();
    let ca_cert_hash = ca_cert_hash(&ca_cert_pem)?;
    Ok(ClusterSecrets {
        ca_cert_pem,
        ca_key_pem: Secret::new(key.serialize_pem()),
        ca_cert_hash,
        bootstrap_token: Secret::new(bootstrap_token()?),
    })
}

/// kubeadm's `discovery-token-ca-cert-hash` of a CA: SHA-256 over the DER
/// SubjectPublicKeyInfo of its certificate, as `sha256:<lowercase hex>`
/// (kubeadm's `pubkeypin.Hash`). Reads the first PEM block of `ca_cert_pem`.
pub fn ca_cert_hash(ca_cert_pem: &str) -> Result<String, Error> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(ca_cert_pem.as_bytes())
        .map_err(|e| Error::Pem(e.to_string()))?;
    if pem.label != "CERTIFICATE" {
        return Err(Error::NotACertificate(pem.label));
    }
    let (rest, cert) = x509_parser::parse_x509_certificate(&pem.contents)
        .map_err(|e| Error::X509(e.to_string()))?;
    if !rest.is_empty() {
        return Err(Error::X509(format!(
            "{} bytes after the certificate",
            rest.len()
        )));
    }
    let digest = Sha256::digest(cert.public_key().raw);
    Ok(format!("sha256:{}", hex::encode(digest)))
}

/// A new bootstrap token from the operating system's CSPRNG, each character
/// uniform over [`TOKEN_CHARS`].
fn bootstrap_token() -> Result<String, Error> {
    let id = random_token_chars(TOKEN_ID_LEN)?;
    let secret = random_token_chars(TOKEN_SECRET_LEN)?;
    Ok(format!("{id}.{secret}"))
}

fn random_token_chars(len: usize) -> Result<String, Error> {
    // 36 does not divide 256: bytes from 252 up would favour the first four
    // characters, so they are drawn again.
    const LIMIT: u8 = 252;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 32];
    while out.len() < len {
        OsRng.try_fill_bytes(&mut buf).map_err(Error::Random)?;
        for &b in buf.iter().filter(|&&b| b < LIMIT) {
            if out.len() == len {
                break;
            }
            out.push(char::from(TOKEN_CHARS[usize::from(b % 36)]));
        }
    }
    Ok(out)
}

/// A serial number uniform in `[1, 2^63-1)`, the range kubeadm draws from.
fn random_serial() -> Result<SerialNumber, Error> {
    loop {
        let mut bytes = [0u8; 8];
        OsRng.try_fill_bytes(&mut bytes).map_err(Error::Random)?;
        let n = u64::from_be_bytes(bytes) >> 1;
        if n != 0 && n != (1 << 63) - 1 {
            return Ok(SerialNumber::from(n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kina_contract::kubernetes_spec::is_bootstrap_token as is_valid_bootstrap_token;

    use std::io::Write;
    use std::path::Path;
    use std::process::{Command, Stdio};

    /// Runs the real `openssl` CLI; a missing openssl fails the test.
    fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let mut child = Command::new("openssl")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run openssl (install it: apt-get install -y openssl): {e}")
            });
        let mut child_stdin = child.stdin.take().unwrap();
        child_stdin.write_all(stdin).unwrap();
        drop(child_stdin);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn openssl_text(args: &[&str], stdin: &[u8]) -> String {
        String::from_utf8(openssl(args, stdin)).unwrap()
    }

    fn write(dir: &Path, name: &str, text: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }

    #[test]
    fn ca_is_what_kubeadm_makes_according_to_openssl() {
        let s = generate("test").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca = write(dir.path(), "ca.crt", &s.ca_cert_pem);

        let text = openssl_text(&["x509", "-noout", "-text", "-in", &ca], b"");
        for want in [
            "Issuer: CN = kubernetes\n",
            "Subject: CN = kubernetes\n",
            "X509v3 Basic Constraints: critical\n                CA:TRUE\n",
            "X509v3 Key Usage: critical\n                Digital Signature, Key Encipherment, Certificate Sign\n",
            "DNS:kubernetes\n",
            "Public Key Algorithm: rsaEncryption\n",
            "Public-Key: (2048 bit)\n",
            "Signature Algorithm: sha256WithRSAEncryption\n",
        ] {
            assert!(text.contains(want), "no {want:?} in\n{text}");
        }

        // Valid now: the self-signature verifies, and notBefore has passed.
        let verified = openssl_text(&["verify", "-x509_strict", "-CAfile", &ca, &ca], b"");
        assert_eq!(verified.trim(), format!("{ca}: OK"));

        // Expires 10 × 365 days from now, give or take a minute.
        let ten_years = 10 * 365 * 24 * 3600;
        let check_end = |secs: i64| {
            Command::new("openssl")
                .args(["x509", "-noout", "-in", &ca, "-checkend", &secs.to_string()])
                .output()
                .unwrap()
                .status
                .success()
        };
        assert!(check_end(ten_years - 60), "expires before 10 years");
        assert!(!check_end(ten_years + 60), "still valid after 10 years");
    }

    #[test]
    fn ca_cert_hash_matches_kubeadms_documented_openssl_pipeline() {
        let s = generate("test").unwrap();
        // openssl x509 -pubkey -in ca.crt | openssl pkey -pubin -outform der
        //   | openssl dgst -sha256 -hex
        let pubkey = openssl(&["x509", "-pubkey", "-noout"], s.ca_cert_pem.as_bytes());
        let der = openssl(&["pkey", "-pubin", "-outform", "der"], &pubkey);
        let dgst = openssl_text(&["dgst", "-sha256", "-hex"], &der);
        // "SHA2-256(stdin)= <hex>" (OpenSSL 3) or "(stdin)= <hex>" (1.1).
        let hex = dgst.split_whitespace().last().unwrap();
        assert_eq!(s.ca_cert_hash, format!("sha256:{hex}"));
        assert_eq!(ca_cert_hash(&s.ca_cert_pem).unwrap(), s.ca_cert_hash);

        let digits = s.ca_cert_hash.strip_prefix("sha256:").unwrap();
        assert_eq!(digits.len(), 64);
        assert!(
            digits
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        );
    }

    #[test]
    fn key_matches_certificate() {
        let s = generate("test").unwrap();
        let key_pem = s.ca_key_pem.expose();
        assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let from_key = openssl_text(&["pkey", "-pubout"], key_pem.as_bytes());
        let from_cert = openssl_text(&["x509", "-pubkey", "-noout"], s.ca_cert_pem.as_bytes());
        assert!(from_key.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(from_key, from_cert);
        // The key is a sound RSA 2048 key.
        let check = openssl_text(&["pkey", "-check", "-noout", "-text"], key_pem.as_bytes());
        assert!(check.contains("Private-Key: (2048 bit"), "{check}");
        assert!(check.contains("Key is valid"), "{check}");
    }

    #[test]
    fn every_generate_is_new() {
        let a = generate("a").unwrap();
        let b = generate("a").unwrap();
        assert_ne!(a.bootstrap_token, b.bootstrap_token);
        assert_ne!(a.ca_key_pem, b.ca_key_pem);
        assert_ne!(a.ca_cert_pem, b.ca_cert_pem);
        assert_ne!(a.ca_cert_hash, b.ca_cert_hash);
    }

    #[test]
    fn bootstrap_tokens_have_kubeadms_form() {
        let s = generate("test").unwrap();
        assert!(is_valid_bootstrap_token(s.bootstrap_token.expose()));
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..300 {
            let token = bootstrap_token().unwrap();
            assert!(is_valid_bootstrap_token(&token), "{token}");
            seen.extend(token.bytes().filter(|&b| b != b'.'));
        }
        // 6600 draws leave out one of 36 characters with odds below 1e-70.
        assert_eq!(seen.len(), 36, "characters drawn: {seen:?}");
    }

    #[test]
    fn bootstrap_token_validation() {
        for good in ["abcdef.0123456789abcdef", "07401b.f395accd246ae52d"] {
            assert!(is_valid_bootstrap_token(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "abcdef0123456789abcdef",
            "abcdef.0123456789abcde",
            "abcdef.0123456789abcdef0",
            "abcde.0123456789abcdefg",
            "abcdefg.0123456789abcde",
            "ABCDEF.0123456789abcdef",
            "abcdef.0123456789ABCDEF",
            "abcdef:0123456789abcdef",
            "abcdef.0123456789abcdef\n",
            " abcdef.0123456789abcdef",
            "abc-ef.0123456789abcdef",
            "abcdef.0123456789abc.ef",
            "abcdéf.0123456789abcdef",
        ] {
            assert!(!is_valid_bootstrap_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn debug_shows_neither_key_nor_token() {
        let s = generate("test").unwrap();
        let token = s.bootstrap_token.expose();
        let (id, secret) = token.split_once('.').unwrap();
        for shown in [format!("{s:?}"), format!("{s:#?}")] {
            assert!(shown.contains("<redacted>"), "{shown}");
            assert!(shown.contains(&s.ca_cert_hash), "{shown}");
            assert!(!shown.contains(secret), "token secret in {shown}");
            assert!(!shown.contains(id), "token id in {shown}");
            assert!(!shown.contains("PRIVATE KEY"), "key in {shown}");
            for line in s
                .ca_key_pem
                .expose()
                .lines()
                .filter(|l| !l.starts_with("-----"))
            {
                assert!(!shown.contains(line), "key line {line:?} in {shown}");
            }
        }
        assert_eq!(format!("{:?}", s.ca_key_pem), "<redacted>");
        assert_eq!(format!("{:?}", s.bootstrap_token), "<redacted>");
    }

    #[test]
    fn ca_cert_hash_rejects_what_is_not_a_certificate() {
        let s = generate("test").unwrap();
        assert!(matches!(
            ca_cert_hash(s.ca_key_pem.expose()),
            Err(Error::NotACertificate(label)) if label == "PRIVATE KEY"
        ));
        assert!(matches!(ca_cert_hash("not pem"), Err(Error::Pem(_))));
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(ca_cert_hash(garbage), Err(Error::X509(_))));
    }
}
