//! The API server's serving certificate after the control plane's address
//! changed: the same certificate with the new address in place of the old
//! one among its IP subjectAltNames, signed by the cluster CA on the node.
//!
//! kind deletes `apiserver.{crt,key}` and runs `kubeadm init phase certs
//! apiserver` (kind `images/base/files/usr/local/bin/entrypoint`,
//! `fix_certificate`). kina-init signs it itself with rcgen instead, for
//! three reasons: the result is built from the certificate kubeadm issued,
//! so every name the user or kubeadm put there (certSANs, the service IP,
//! the node name) stays without reconstructing kubeadm's rules; it keeps
//! kubeadm's key, subject, usages and validity, so an address change is not
//! a silent renewal and `kubeadm certs check-expiration` stays true; and the
//! signing is real code that the tests run against `openssl verify`, where a
//! kubeadm call could only be tested against a stand-in.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;
use x509_parser::x509::X509Name;

/// A certificate file read from PEM, its DER kept for parsing.
struct PemCertificate {
    path: String,
    der: Vec<u8>,
}

impl PemCertificate {
    fn read(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let pem = Pem::iter_from_buffer(&bytes)
            .next()
            .ok_or_else(|| format!("{} holds no PEM block", path.display()))?
            .map_err(|e| format!("{} is not PEM: {e}", path.display()))?;
        Ok(Self {
            path: path.display().to_string(),
            der: pem.contents,
        })
    }

    fn parse(&self) -> Result<X509Certificate<'_>, String> {
        x509_parser::parse_x509_certificate(&self.der)
            .map(|(_, c)| c)
            .map_err(|e| format!("{} is not an X.509 certificate: {e}", self.path))
    }
}

/// The IP subjectAltNames the certificate has, in order.
pub fn ip_sans(certificate: &Path) -> Result<Vec<IpAddr>, String> {
    let pem = PemCertificate::read(certificate)?;
    let cert = pem.parse()?;
    Ok(sans(&cert, &pem.path)?
        .into_iter()
        .filter_map(|s| match s {
            SanType::IpAddress(ip) => Some(ip),
            _ => None,
        })
        .collect())
}

fn sans(cert: &X509Certificate<'_>, path: &str) -> Result<Vec<SanType>, String> {
    let Some(ext) = cert
        .subject_alternative_name()
        .map_err(|e| format!("{path}: subjectAltName: {e}"))?
    else {
        return Ok(Vec::new());
    };
    ext.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => (*dns)
                .try_into()
                .map(SanType::DnsName)
                .map_err(|e| format!("{path}: DNS name {dns:?}: {e}")),
            GeneralName::IPAddress(octets) => match octets.len() {
                4 => {
                    let a: [u8; 4] = [octets[0], octets[1], octets[2], octets[3]];
                    Ok(SanType::IpAddress(IpAddr::from(a)))
                }
                16 => {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(octets);
                    Ok(SanType::IpAddress(IpAddr::from(a)))
                }
                n => Err(format!("{path}: an IP subjectAltName of {n} bytes")),
            },
            other => Err(format!(
                "{path}: subjectAltName {other}, which kubeadm never writes in a serving certificate"
            )),
        })
        .collect()
}

/// `current` with every address in `old` replaced by `new`, `new` once.
fn moved_sans(current: &[SanType], old: &[Ipv4Addr], new: Ipv4Addr) -> Vec<SanType> {
    let new_san = SanType::IpAddress(IpAddr::V4(new));
    let mut out: Vec<SanType> = Vec::with_capacity(current.len() + 1);
    for san in current {
        let moved = match san {
            SanType::IpAddress(IpAddr::V4(ip)) if old.contains(ip) => new_san.clone(),
            other => other.clone(),
        };
        if !out.contains(&moved) {
            out.push(moved);
        }
    }
    if !out.contains(&new_san) {
        out.push(new_san);
    }
    out
}

fn distinguished_name(name: &X509Name<'_>, path: &str) -> Result<DistinguishedName, String> {
    let mut dn = DistinguishedName::new();
    for attr in name.iter_attributes() {
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or_else(|| format!("{path}: a subject attribute with an oversized OID"))?
            .collect();
        let text = attr
            .as_str()
            .map_err(|e| format!("{path}: subject attribute {}: {e}", attr.attr_type()))?;
        let value = match attr.attr_value().tag() {
            Tag::PrintableString => DnValue::PrintableString(
                text.try_into()
                    .map_err(|e| format!("{path}: subject {text:?}: {e}"))?,
            ),
            _ => DnValue::Utf8String(text.to_string()),
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

fn key_usages(cert: &X509Certificate<'_>, path: &str) -> Result<Vec<KeyUsagePurpose>, String> {
    let Some(ku) = cert
        .key_usage()
        .map_err(|e| format!("{path}: keyUsage: {e}"))?
    else {
        return Ok(Vec::new());
    };
    let ku = ku.value;
    Ok([
        (ku.digital_signature(), KeyUsagePurpose::DigitalSignature),
        (ku.non_repudiation(), KeyUsagePurpose::ContentCommitment),
        (ku.key_encipherment(), KeyUsagePurpose::KeyEncipherment),
        (ku.data_encipherment(), KeyUsagePurpose::DataEncipherment),
        (ku.key_agreement(), KeyUsagePurpose::KeyAgreement),
        (ku.key_cert_sign(), KeyUsagePurpose::KeyCertSign),
        (ku.crl_sign(), KeyUsagePurpose::CrlSign),
        (ku.encipher_only(), KeyUsagePurpose::EncipherOnly),
        (ku.decipher_only(), KeyUsagePurpose::DecipherOnly),
    ]
    .into_iter()
    .filter_map(|(set, usage)| set.then_some(usage))
    .collect())
}

fn extended_key_usages(
    cert: &X509Certificate<'_>,
    path: &str,
) -> Result<Vec<ExtendedKeyUsagePurpose>, String> {
    let Some(eku) = cert
        .extended_key_usage()
        .map_err(|e| format!("{path}: extendedKeyUsage: {e}"))?
    else {
        return Ok(Vec::new());
    };
    let eku = eku.value;
    let mut out: Vec<ExtendedKeyUsagePurpose> = [
        (eku.any, ExtendedKeyUsagePurpose::Any),
        (eku.server_auth, ExtendedKeyUsagePurpose::ServerAuth),
        (eku.client_auth, ExtendedKeyUsagePurpose::ClientAuth),
        (eku.code_signing, ExtendedKeyUsagePurpose::CodeSigning),
        (
            eku.email_protection,
            ExtendedKeyUsagePurpose::EmailProtection,
        ),
        (eku.time_stamping, ExtendedKeyUsagePurpose::TimeStamping),
        (eku.ocsp_signing, ExtendedKeyUsagePurpose::OcspSigning),
    ]
    .into_iter()
    .filter_map(|(set, usage)| set.then_some(usage))
    .collect();
    for oid in &eku.other {
        let arcs = oid
            .iter()
            .ok_or_else(|| format!("{path}: an extended key usage with an oversized OID"))?;
        out.push(ExtendedKeyUsagePurpose::Other(arcs.collect()));
    }
    Ok(out)
}

/// A fresh serial: RFC 5280 wants serials unique per CA, and the one
/// kubeadm gave the old certificate is taken. 16 random bytes, positive.
fn random_serial() -> Result<SerialNumber, String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("reading /dev/urandom for a certificate serial: {e}"))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// The serving certificate at `certificate` re-issued for `new` in place of
/// any address in `old`, signed with `ca_key` as `ca_cert`; `None` when it
/// already names `new` and none of `old`. The result is checked against the
/// CA before it is returned.
pub fn reissue(
    certificate: &Path,
    ca_cert: &Path,
    ca_key: &Path,
    old: &[Ipv4Addr],
    new: Ipv4Addr,
) -> Result<Option<String>, String> {
    let pem = PemCertificate::read(certificate)?;
    let cert = pem.parse()?;
    let path = pem.path.as_str();
    let current = sans(&cert, path)?;
    let wanted = moved_sans(&current, old, new);
    if wanted == current {
        return Ok(None);
    }
    let ca_pem = PemCertificate::read(ca_cert)?;
    let ca = ca_pem.parse()?;
    if cert.issuer().as_raw() != ca.subject().as_raw() {
        return Err(format!(
            "{path} was issued by {}, not by the cluster CA in {} ({}): kina-init signs only with that CA",
            cert.issuer(),
            ca_pem.path,
            ca.subject()
        ));
    }
    let key_pem = std::fs::read_to_string(ca_key)
        .map_err(|e| format!("reading {}: {e}", ca_key.display()))?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| {
        format!(
            "{} is not a private key kina-init can sign with: {e}",
            ca_key.display()
        )
    })?;
    let ca_pem_text = std::fs::read_to_string(ca_cert)
        .map_err(|e| format!("reading {}: {e}", ca_cert.display()))?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca_pem_text, key).map_err(|e| format!("{}: {e}", ca_pem.path))?;

    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(cert.subject(), path)?;
    params.subject_alt_names = wanted;
    params.not_before = cert.validity().not_before.to_datetime();
    params.not_after = cert.validity().not_after.to_datetime();
    params.serial_number = Some(random_serial()?);
    params.key_usages = key_usages(&cert, path)?;
    params.extended_key_usages = extended_key_usages(&cert, path)?;
    params.is_ca = match cert.basic_constraints() {
        Ok(Some(_)) => IsCa::ExplicitNoCa,
        _ => IsCa::NoCa,
    };
    // As Go's x509 does for kubeadm: the authority key identifier is the
    // CA's own subject key identifier, when it has one.
    params.use_authority_key_identifier_extension = ca.iter_extensions().any(|e| {
        matches!(
            e.parsed_extension(),
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(_)
        )
    });
    let public_key = SubjectPublicKeyInfo::from_der(cert.public_key().raw)
        .map_err(|e| format!("{path}: its public key: {e}"))?;
    let issued = params
        .signed_by(&public_key, &issuer)
        .map_err(|e| format!("signing the new {path}: {e}"))?;

    let (_, check) = x509_parser::parse_x509_certificate(issued.der())
        .map_err(|e| format!("the re-issued {path} does not parse: {e}"))?;
    check.verify_signature(Some(ca.public_key())).map_err(|e| {
        format!(
            "the re-issued {path} does not verify against {}: {e}",
            ca_pem.path
        )
    })?;
    Ok(Some(issued.pem()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, KeyUsagePurpose as Ku, PublicKeyData};

    #[test]
    fn the_old_address_is_replaced_in_place_and_others_stay() {
        let ip = |s: &str| SanType::IpAddress(s.parse().unwrap());
        let dns = |s: &str| SanType::DnsName(s.try_into().unwrap());
        let current = vec![
            dns("kina-control-plane"),
            dns("kubernetes"),
            ip("10.96.0.1"),
            ip("192.168.64.3"),
            ip("127.0.0.1"),
            ip("192.168.64.30"),
        ];
        let new: Ipv4Addr = "192.168.64.7".parse().unwrap();
        let moved = moved_sans(&current, &["192.168.64.3".parse().unwrap()], new);
        assert_eq!(
            moved,
            [
                dns("kina-control-plane"),
                dns("kubernetes"),
                ip("10.96.0.1"),
                ip("192.168.64.7"),
                ip("127.0.0.1"),
                ip("192.168.64.30"),
            ]
        );
        // Already moved: nothing changes, so nothing is re-issued.
        assert_eq!(moved_sans(&moved, &[], new), moved);
        // A certificate without either address gets the new one.
        assert_eq!(
            moved_sans(&[dns("kubernetes")], &[], new),
            [dns("kubernetes"), ip("192.168.64.7")]
        );
    }

    /// A CA as kina's host makes it (PKCS#8 key) and a kubeadm-shaped
    /// serving certificate; the re-issued one verifies and keeps the rest.
    #[test]
    fn a_reissued_certificate_has_the_new_address_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "kubernetes");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![Ku::DigitalSignature, Ku::KeyEncipherment, Ku::KeyCertSign];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let ca_issuer = Issuer::new(ca_params, &ca_key);

        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec![
            "kina-control-plane".to_string(),
            "kubernetes".to_string(),
            "10.96.0.1".to_string(),
            "192.168.64.3".to_string(),
        ])
        .unwrap();
        leaf.distinguished_name = DistinguishedName::new();
        leaf.distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        leaf.key_usages = vec![Ku::DigitalSignature, Ku::KeyEncipherment];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.is_ca = IsCa::ExplicitNoCa;
        let issued = leaf.signed_by(&leaf_key, &ca_issuer).unwrap();

        let (crt, ca_crt, ca_key_path) = (
            dir.path().join("apiserver.crt"),
            dir.path().join("ca.crt"),
            dir.path().join("ca.key"),
        );
        std::fs::write(&crt, issued.pem()).unwrap();
        std::fs::write(&ca_crt, ca.pem()).unwrap();
        std::fs::write(&ca_key_path, ca_key.serialize_pem()).unwrap();

        let new: Ipv4Addr = "192.168.64.7".parse().unwrap();
        let pem = reissue(
            &crt,
            &ca_crt,
            &ca_key_path,
            &["192.168.64.3".parse().unwrap()],
            new,
        )
        .unwrap()
        .unwrap();
        std::fs::write(&crt, &pem).unwrap();
        let ips = ip_sans(&crt).unwrap();
        assert_eq!(
            ips,
            [
                "10.96.0.1".parse::<IpAddr>().unwrap(),
                "192.168.64.7".parse().unwrap()
            ]
        );
        let reread = PemCertificate::read(&crt).unwrap();
        let cert = reread.parse().unwrap();
        assert_eq!(cert.subject().to_string(), "CN=kube-apiserver");
        assert_eq!(
            cert.public_key().raw,
            leaf_key.subject_public_key_info().as_slice()
        );
        assert!(
            cert.extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .server_auth
        );
        // Once moved, a second pass has nothing to do.
        assert_eq!(
            reissue(
                &crt,
                &ca_crt,
                &ca_key_path,
                &["192.168.64.3".parse().unwrap()],
                new
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn a_certificate_from_another_ca_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let make_ca = |cn: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::default();
            p.distinguished_name = DistinguishedName::new();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let cert = p.self_signed(&key).unwrap();
            (p, key, cert)
        };
        let (other_params, other_key, _) = make_ca("front-proxy-ca");
        let (_, ca_key, ca_cert) = make_ca("kubernetes");
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["192.168.64.3".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &Issuer::new(other_params, &other_key))
            .unwrap();
        let (crt, ca_crt, ca_key_path) = (
            dir.path().join("apiserver.crt"),
            dir.path().join("ca.crt"),
            dir.path().join("ca.key"),
        );
        std::fs::write(&crt, leaf.pem()).unwrap();
        std::fs::write(&ca_crt, ca_cert.pem()).unwrap();
        std::fs::write(&ca_key_path, ca_key.serialize_pem()).unwrap();
        let err = reissue(
            &crt,
            &ca_crt,
            &ca_key_path,
            &["192.168.64.3".parse().unwrap()],
            "192.168.64.7".parse().unwrap(),
        )
        .unwrap_err();
        assert!(err.contains("CN=front-proxy-ca"), "{err}");
        assert!(err.contains("ca.crt"), "{err}");
    }
}
