//! Which kubelet serving CertificateSigningRequests the control plane's
//! kina-init approves.
//!
//! # Why anyone has to approve them
//!
//! A kubelet that rotates its serving certificate (the one kube-apiserver
//! checks when it connects to the kubelet for `kubectl logs`, `exec` and
//! metrics) creates a CSR with signer `kubernetes.io/kubelet-serving`,
//! subject `CN=system:node:<node name>, O=system:nodes`, and subjectAltNames
//! taken from the node's own status addresses: Hostname, InternalDNS and
//! ExternalDNS as DNS names, InternalIP and ExternalIP as IP addresses
//! (kubernetes `pkg/kubelet/certificate/kubelet.go`). Its usages are
//! `digital signature` and `server auth`, plus `key encipherment` when the
//! key is RSA (client-go `util/certificate`, `DefaultKubeletServingGetUsages`).
//!
//! Once such a CSR is approved, kube-controller-manager's kubelet-serving
//! signer issues it after a check of its *form* only
//! (`ValidateKubeletServingCSR`, `pkg/apis/certificates/helpers.go`):
//! O is exactly `system:nodes`, CN starts with `system:node:`, there is at
//! least one DNS or IP subjectAltName and no email or URI one, and the usages
//! are exactly {digital signature, key encipherment, server auth} or
//! {digital signature, server auth}. The signer copies the subject, the
//! subjectAltNames and the public key into the certificate
//! (`pkg/controller/certificates/authority/authority.go`). Nothing in that
//! path asks whether the names belong to the node that asked: the names are
//! whatever the requester claims. kube-controller-manager's own approver
//! (`pkg/controller/certificates/approver/sarapprove.go`) therefore
//! recognises kubelet *client* CSRs only (signer
//! `kubernetes.io/kube-apiserver-client-kubelet`, where it also requires the
//! requester to be the CN) and never auto-approves kubelet-serving ones.
//! Approving them blindly would let any node (every node holds a
//! `system:node:*` credential) obtain a certificate, trusted by the cluster
//! CA, for another node's name or address, or for an arbitrary DNS name, and
//! impersonate that server.
//!
//! # What kina approves
//!
//! kina knows each node's name and addresses from the node spec, so it can do
//! what Kubernetes cannot: approve a kubelet-serving CSR only when every name
//! in it is the requesting node's own. [`decide`] approves only if all of
//! these hold, and otherwise refuses with the first that fails:
//!
//! 1. The signer is `kubernetes.io/kubelet-serving`. Other signers' CSRs are
//!    not ours to judge.
//! 2. The requester (set by kube-apiserver from the credential that created
//!    the CSR, not by the requester) is `system:node:<name>` in group
//!    `system:nodes`, and `<name>` is a node of this cluster.
//! 3. The request is a PKCS#10 CSR whose subject is exactly
//!    `CN=system:node:<name>, O=system:nodes` for the requester's own name
//!    (the check kube's approver makes for self node client certificates),
//!    and nothing else: the signer copies the whole subject.
//! 4. It has at least one subjectAltName; every DNS name is the node's name
//!    and every IP address one of the node's addresses; no email address,
//!    URI or other kind of name (Kubernetes' own rule for this signer).
//! 5. Its usages are digital signature and server auth, plus key encipherment
//!    only for an RSA key (what the kubelet asks for; Kubernetes' form check
//!    allows key encipherment with any key, kina is stricter because no
//!    kubelet sends it for another key type and it means nothing for one).
//! 6. It was created at most 24 h before now: kube-controller-manager's CSR
//!    cleaner deletes a CSR still pending after 24 h
//!    (`pkg/controller/certificates/cleaner/cleaner.go`), and the kubelet has
//!    long given up waiting for it, so its certificate would be issued for a
//!    key nobody uses any more. A creation time more than 5 minutes in the
//!    future (the backdating the signer itself allows for clock skew) is
//!    refused too.
//!
//! The CSR's signature is not verified here: x509-parser verifies signatures
//! only with its `verify` features, which pull in ring or aws-lc (C code that
//! the static builds of kina-init for two architectures would have to
//! cross-compile), and it is not needed: kube-apiserver refuses to create a
//! CSR whose signature does not verify
//! (`pkg/apis/certificates/validation/validation.go`), a CSR's spec is
//! immutable, and the signer checks the signature again before it signs. The
//! signature only proves possession of the key, which the names do not
//! depend on.
//!
//! [`Decision::Refuse`] means kina-init does not approve: a CSR of another
//! signer is someone else's to decide, so a caller should leave those alone
//! rather than deny them. CSRs that are already decided ([`Csr::decided`])
//! are the caller's to skip; [`decide`] judges the request only.
//!
//! Length: about 590 lines of policy; the rest (from `mod tests`) check it
//! against a written-out model of its rules over generated real PKCS#10
//! requests, which need the policy's private helpers.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::objects::{oid_registry, oid2sn};
use x509_parser::oid_registry::{
    OID_PKCS1_RSAENCRYPTION, OID_X509_COMMON_NAME, OID_X509_EXT_SUBJECT_ALT_NAME,
    OID_X509_ORGANIZATION_NAME, Oid,
};
use x509_parser::pem::parse_x509_pem;
use x509_parser::prelude::FromDer;

/// The only signer whose CSRs kina-init approves.
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// A node's user name is this followed by the node name.
pub const NODE_USERNAME_PREFIX: &str = "system:node:";
/// The group of node credentials, and the O of a node's certificates.
pub const NODES_GROUP: &str = "system:nodes";
/// kube-controller-manager deletes a CSR still pending after this long.
pub const MAX_PENDING_AGE: Duration = Duration::from_secs(24 * 3600);
/// How far in the future a creation time may lie: the signer backdates
/// certificates by as much for clock skew.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

const USAGE_DIGITAL_SIGNATURE: &str = "digital signature";
const USAGE_SERVER_AUTH: &str = "server auth";
const USAGE_KEY_ENCIPHERMENT: &str = "key encipherment";

/// A node of this cluster as the node spec knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    pub name: String,
    pub addresses: Vec<IpAddr>,
}

/// One CSR object as `kubectl get csr -o json` lists it (items[]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Csr {
    pub name: String,
    pub signer_name: String,
    pub username: String,
    pub groups: Vec<String>,
    pub usages: Vec<String>,
    /// spec.request base64-decoded: a PEM `CERTIFICATE REQUEST`.
    pub request_pem: Vec<u8>,
    /// metadata.creationTimestamp.
    pub created: SystemTime,
    /// status.conditions has Approved or Denied.
    pub decided: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Approve,
    /// Why not, one line, naming the problem with the CSR.
    Refuse(String),
}

/// Approve `csr` only if it is a kubelet serving CSR of a node in `nodes`
/// for that node's own names; see the module documentation for the rules.
pub fn decide(csr: &Csr, nodes: &[ClusterNode], now: SystemTime) -> Decision {
    match check(csr, nodes, now) {
        Ok(()) => Decision::Approve,
        // Values from the CSR are quoted with {:?}, which escapes them; this
        // also keeps a parser's message to one line.
        Err(reason) => Decision::Refuse(reason.replace(char::is_control, " ")),
    }
}

fn check(csr: &Csr, nodes: &[ClusterNode], now: SystemTime) -> Result<(), String> {
    if csr.signer_name != KUBELET_SERVING_SIGNER {
        return Err(format!(
            "signer {:?} is not {KUBELET_SERVING_SIGNER}: not a kubelet serving certificate, not kina's to approve",
            csr.signer_name
        ));
    }

    let node_name = csr
        .username
        .strip_prefix(NODE_USERNAME_PREFIX)
        .filter(|name| !name.is_empty())
        .ok_or_else(|| {
            format!(
                "requester {:?} is not a node ({NODE_USERNAME_PREFIX}<name>)",
                csr.username
            )
        })?;
    if !csr.groups.iter().any(|g| g == NODES_GROUP) {
        return Err(format!(
            "requester {:?} is not in group {NODES_GROUP}",
            csr.username
        ));
    }
    let node = nodes.iter().find(|n| n.name == node_name).ok_or_else(|| {
        format!(
            "requester {:?} names node {node_name:?}, which is not a node of this cluster",
            csr.username
        )
    })?;

    let request = Request::read(&csr.request_pem)?;
    check_subject(&request, &csr.username)?;
    check_subject_alt_names(&request, node)?;
    check_usages(&csr.usages, &request)?;
    check_age(csr.created, now)
}

/// What the policy needs of a PKCS#10 request, read into owned values.
struct Request {
    /// The subject as text, for messages.
    subject: String,
    subject_attributes: Vec<SubjectAttribute>,
    alt_names: Vec<AltName>,
    rsa_key: bool,
    key_algorithm: String,
}

enum AttributeKind {
    CommonName,
    Organization,
    Other(String),
}

struct SubjectAttribute {
    kind: AttributeKind,
    value: String,
}

enum AltName {
    Dns(String),
    Ip(IpAddr),
    Email(String),
    Uri(String),
    /// Any other GeneralName kind, by name.
    Other(&'static str),
}

fn oid_name(oid: &Oid) -> String {
    oid2sn(oid, oid_registry())
        .map(str::to_string)
        .unwrap_or_else(|_| oid.to_id_string())
}

impl Request {
    fn read(pem: &[u8]) -> Result<Request, String> {
        // Like kube-apiserver: the first PEM block, which must be a
        // CERTIFICATE REQUEST.
        let (_, block) = parse_x509_pem(pem)
            .map_err(|e| format!("spec.request is not a PEM CERTIFICATE REQUEST: {e}"))?;
        if block.label != "CERTIFICATE REQUEST" {
            return Err(format!(
                "spec.request holds a PEM {:?} block, not a CERTIFICATE REQUEST",
                block.label
            ));
        }
        let (rest, csr) = X509CertificationRequest::from_der(&block.contents)
            .map_err(|e| format!("spec.request is not a PKCS#10 certificate request: {e}"))?;
        if !rest.is_empty() {
            return Err(format!(
                "spec.request has {} bytes after its PKCS#10 certificate request",
                rest.len()
            ));
        }
        let info = &csr.certification_request_info;

        let mut subject_attributes = Vec::new();
        for attribute in info.subject.iter_attributes() {
            let oid = attribute.attr_type();
            let kind = if *oid == OID_X509_COMMON_NAME {
                AttributeKind::CommonName
            } else if *oid == OID_X509_ORGANIZATION_NAME {
                AttributeKind::Organization
            } else {
                AttributeKind::Other(oid_name(oid))
            };
            let value = attribute
                .as_str()
                .map_err(|_| format!("subject attribute {} is not a string", oid_name(oid)))?;
            subject_attributes.push(SubjectAttribute {
                kind,
                value: value.to_string(),
            });
        }

        // Every extensionRequest attribute counts, as it does for Go's
        // x509.ParseCertificateRequest, which kube's signer uses.
        let mut alt_names = Vec::new();
        for attribute in info.iter_attributes() {
            let ParsedCriAttribute::ExtensionRequest(request) = attribute.parsed_attribute() else {
                continue;
            };
            for extension in &request.extensions {
                if extension.oid != OID_X509_EXT_SUBJECT_ALT_NAME {
                    // The signer copies no other requested extension into
                    // the certificate.
                    continue;
                }
                let ParsedExtension::SubjectAlternativeName(san) = extension.parsed_extension()
                else {
                    return Err("the subjectAltName extension is malformed".to_string());
                };
                for name in &san.general_names {
                    alt_names.push(AltName::read(name)?);
                }
            }
        }

        let key_oid = &info.subject_pki.algorithm.algorithm;
        Ok(Request {
            subject: info.subject.to_string(),
            subject_attributes,
            alt_names,
            rsa_key: *key_oid == OID_PKCS1_RSAENCRYPTION,
            key_algorithm: oid_name(key_oid),
        })
    }
}

impl AltName {
    fn read(name: &GeneralName) -> Result<AltName, String> {
        Ok(match name {
            GeneralName::DNSName(dns) => AltName::Dns(dns.to_string()),
            GeneralName::IPAddress(bytes) => {
                if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                    AltName::Ip(IpAddr::V4(Ipv4Addr::from(v4)))
                } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                    AltName::Ip(IpAddr::V6(Ipv6Addr::from(v6)))
                } else {
                    return Err(format!(
                        "a subjectAltName IP address has {} bytes, neither 4 nor 16",
                        bytes.len()
                    ));
                }
            }
            GeneralName::RFC822Name(email) => AltName::Email(email.to_string()),
            GeneralName::URI(uri) => AltName::Uri(uri.to_string()),
            GeneralName::OtherName(..) => AltName::Other("otherName"),
            GeneralName::X400Address(_) => AltName::Other("x400Address"),
            GeneralName::DirectoryName(_) => AltName::Other("directoryName"),
            GeneralName::EDIPartyName(_) => AltName::Other("ediPartyName"),
            GeneralName::RegisteredID(_) => AltName::Other("registeredID"),
            GeneralName::Invalid(..) => {
                return Err("a subjectAltName is malformed".to_string());
            }
        })
    }
}

fn check_subject(request: &Request, username: &str) -> Result<(), String> {
    let subject = &request.subject;
    let mut common_name = None;
    let mut organization = None;
    for attribute in &request.subject_attributes {
        let (slot, label) = match &attribute.kind {
            AttributeKind::CommonName => (&mut common_name, "CN"),
            AttributeKind::Organization => (&mut organization, "O"),
            AttributeKind::Other(name) => {
                return Err(format!(
                    "subject {subject:?} has {name}, beyond the CN and O of a kubelet serving certificate"
                ));
            }
        };
        if slot.replace(attribute.value.as_str()).is_some() {
            return Err(format!("subject {subject:?} has more than one {label}"));
        }
    }
    let Some(common_name) = common_name else {
        return Err(format!(
            "subject {subject:?} has no CN; expected CN={username}"
        ));
    };
    if common_name != username {
        return Err(format!(
            "subject CN {common_name:?} is not the requester {username:?}: a node may request only its own certificate"
        ));
    }
    match organization {
        None => Err(format!("subject {subject:?} lacks O={NODES_GROUP}")),
        Some(o) if o != NODES_GROUP => Err(format!("subject O {o:?} is not {NODES_GROUP}")),
        Some(_) => Ok(()),
    }
}

fn check_subject_alt_names(request: &Request, node: &ClusterNode) -> Result<(), String> {
    if request.alt_names.is_empty() {
        return Err(
            "the request has no subjectAltName; a serving certificate needs the node's name or an address"
                .to_string(),
        );
    }
    // An IPv4 address may be written as IPv4-mapped IPv6; compare the
    // canonical forms, as Go's net.IP.Equal does.
    let own: Vec<IpAddr> = node.addresses.iter().map(IpAddr::to_canonical).collect();
    for name in &request.alt_names {
        match name {
            AltName::Dns(dns) if *dns == node.name => {}
            AltName::Dns(dns) => {
                return Err(format!(
                    "subjectAltName DNS name {dns:?} is not the node's own name {:?}",
                    node.name
                ));
            }
            AltName::Ip(ip) if own.contains(&ip.to_canonical()) => {}
            AltName::Ip(ip) => {
                let list: Vec<String> = own.iter().map(IpAddr::to_string).collect();
                return Err(format!(
                    "subjectAltName IP {ip} is not an address of node {:?} ({})",
                    node.name,
                    list.join(", ")
                ));
            }
            AltName::Email(email) => {
                return Err(format!(
                    "subjectAltName email address {email:?} is not allowed in a kubelet serving certificate"
                ));
            }
            AltName::Uri(uri) => {
                return Err(format!(
                    "subjectAltName URI {uri:?} is not allowed in a kubelet serving certificate"
                ));
            }
            AltName::Other(kind) => {
                return Err(format!(
                    "subjectAltName of kind {kind} is not allowed in a kubelet serving certificate"
                ));
            }
        }
    }
    Ok(())
}

fn check_usages(usages: &[String], request: &Request) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for usage in usages {
        match usage.as_str() {
            USAGE_DIGITAL_SIGNATURE | USAGE_SERVER_AUTH => {}
            USAGE_KEY_ENCIPHERMENT if request.rsa_key => {}
            USAGE_KEY_ENCIPHERMENT => {
                return Err(format!(
                    "usage {USAGE_KEY_ENCIPHERMENT:?} is for RSA keys, and this request's key is {}",
                    request.key_algorithm
                ));
            }
            other => {
                return Err(format!(
                    "usage {other:?} is not one of a kubelet serving certificate ({USAGE_DIGITAL_SIGNATURE}, {USAGE_SERVER_AUTH}, {USAGE_KEY_ENCIPHERMENT} for RSA keys)"
                ));
            }
        }
        seen.insert(usage.as_str());
    }
    for required in [USAGE_DIGITAL_SIGNATURE, USAGE_SERVER_AUTH] {
        if !seen.contains(required) {
            return Err(format!(
                "usages lack {required:?}, which a kubelet serving certificate needs"
            ));
        }
    }
    Ok(())
}

fn check_age(created: SystemTime, now: SystemTime) -> Result<(), String> {
    match now.duration_since(created) {
        Ok(age) if age > MAX_PENDING_AGE => Err(format!(
            "expired: created {} ago, more than the 24h after which kube-controller-manager deletes a pending CSR",
            span(age)
        )),
        Ok(_) => Ok(()),
        Err(ahead) if ahead.duration() > MAX_CLOCK_SKEW => Err(format!(
            "created {} in the future, beyond 5m of clock skew",
            span(ahead.duration())
        )),
        Err(_) => Ok(()),
    }
}

/// `25h00m00s`.
fn span(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}h{:02}m{:02}s", s / 3600, s % 3600 / 60, s % 60)
}

/// The CSRs of a `kubectl get csr -o json` document (a `List`, or the API's
/// own `CertificateSigningRequestList`). An error names the item and the
/// field that is missing or malformed.
pub fn parse_csr_list(json: &[u8]) -> Result<Vec<Csr>, String> {
    let doc: Value =
        serde_json::from_slice(json).map_err(|e| format!("the CSR list is not JSON: {e}"))?;
    match doc.get("kind").and_then(Value::as_str) {
        None | Some("List" | "CertificateSigningRequestList") => {}
        Some(kind) => return Err(format!("the CSR list is a {kind:?}, not a List")),
    }
    let items = doc
        .get("items")
        .and_then(Value::as_array)
        .ok_or("the CSR list has no items array")?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            read_item(item).map_err(|e| {
                match item.pointer("/metadata/name").and_then(Value::as_str) {
                    Some(name) => format!("CSR list items[{i}] ({name:?}): {e}"),
                    None => format!("CSR list items[{i}]: {e}"),
                }
            })
        })
        .collect()
}

fn read_item(item: &Value) -> Result<Csr, String> {
    if !item.is_object() {
        return Err("not an object".to_string());
    }
    match item.get("kind").and_then(Value::as_str) {
        None | Some("CertificateSigningRequest") => {}
        Some(kind) => return Err(format!("kind is {kind:?}, not CertificateSigningRequest")),
    }
    let name = required_str(item, "metadata.name")?;
    if name.is_empty() {
        return Err("metadata.name is empty".to_string());
    }
    let created = parse_rfc3339(required_str(item, "metadata.creationTimestamp")?)
        .map_err(|e| format!("metadata.creationTimestamp: {e}"))?;
    let request_pem = BASE64
        .decode(required_str(item, "spec.request")?)
        .map_err(|e| format!("spec.request is not base64: {e}"))?;
    let signer_name = required_str(item, "spec.signerName")?;
    // Go's omitempty: an absent username, groups or usages is empty, which
    // decide() refuses; only a wrong type is malformed.
    let username = optional(item, "spec.username")
        .map(|v| v.as_str().ok_or("spec.username is not a string"))
        .transpose()?
        .unwrap_or_default();
    let groups = string_list(item, "spec.groups")?;
    let usages = string_list(item, "spec.usages")?;

    let mut decided = false;
    if let Some(conditions) = optional(item, "status.conditions") {
        let conditions = conditions
            .as_array()
            .ok_or("status.conditions is not an array")?;
        for (j, condition) in conditions.iter().enumerate() {
            let kind = condition
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("status.conditions[{j}].type is missing"))?;
            decided |= kind == "Approved" || kind == "Denied";
        }
    }

    Ok(Csr {
        name: name.to_string(),
        signer_name: signer_name.to_string(),
        username: username.to_string(),
        groups,
        usages,
        request_pem,
        created,
        decided,
    })
}

/// The field at a dotted path; JSON null counts as absent.
fn optional<'a>(item: &'a Value, path: &str) -> Option<&'a Value> {
    let pointer = format!("/{}", path.replace('.', "/"));
    item.pointer(&pointer).filter(|v| !v.is_null())
}

fn required_str<'a>(item: &'a Value, path: &str) -> Result<&'a str, String> {
    optional(item, path)
        .ok_or_else(|| format!("{path} is missing"))?
        .as_str()
        .ok_or_else(|| format!("{path} is not a string"))
}

fn string_list(item: &Value, path: &str) -> Result<Vec<String>, String> {
    let Some(value) = optional(item, path) else {
        return Ok(Vec::new());
    };
    let list = value
        .as_array()
        .ok_or_else(|| format!("{path} is not an array"))?;
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{path}[{i}] is not a string"))
        })
        .collect()
}

/// An RFC 3339 date-time: `2026-05-28T20:26:40Z` as Kubernetes writes
/// metadata.creationTimestamp, and also with a fraction or an offset.
fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(SystemTime::from)
        .map_err(|e| format!("{text:?} is not an RFC 3339 date-time: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
    use std::time::UNIX_EPOCH;

    /// 2026-05-28T20:26:40Z.
    const NOW_SECS: u64 = 1_780_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW_SECS)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn nodes() -> Vec<ClusterNode> {
        vec![
            ClusterNode {
                name: "kina-control-plane".to_string(),
                addresses: vec![ip("10.89.0.11"), ip("fd00:89::11")],
            },
            ClusterNode {
                name: "kina-worker".to_string(),
                addresses: vec![ip("10.89.0.12")],
            },
        ]
    }

    fn dns(name: &str) -> SanType {
        SanType::DnsName(name.try_into().unwrap())
    }

    /// A real PKCS#10 request, signed by `key`.
    fn request(subject: &[(DnType, &str)], sans: Vec<SanType>, key: &KeyPair) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.subject_alt_names = sans;
        params
            .serialize_request(key)
            .unwrap()
            .pem()
            .unwrap()
            .into_bytes()
    }

    /// What a kubelet of `node` sends: its own name and address, 3 minutes ago.
    fn kubelet_csr(node: &str, address: &str, key: &KeyPair) -> Csr {
        let common_name = format!("system:node:{node}");
        let subject = [
            (DnType::CommonName, common_name.as_str()),
            (DnType::OrganizationName, "system:nodes"),
        ];
        Csr {
            name: "csr-7xk2p".to_string(),
            signer_name: KUBELET_SERVING_SIGNER.to_string(),
            username: format!("system:node:{node}"),
            groups: vec![
                "system:nodes".to_string(),
                "system:authenticated".to_string(),
            ],
            usages: vec!["digital signature".to_string(), "server auth".to_string()],
            request_pem: request(
                &subject,
                vec![dns(node), SanType::IpAddress(ip(address))],
                key,
            ),
            created: now() - Duration::from_secs(180),
            decided: false,
        }
    }

    fn refusal(csr: &Csr) -> String {
        match decide(csr, &nodes(), now()) {
            Decision::Refuse(reason) => {
                assert!(!reason.contains('\n'), "reason spans lines: {reason}");
                reason
            }
            Decision::Approve => panic!("approved {csr:?}"),
        }
    }

    fn ecdsa() -> KeyPair {
        KeyPair::generate().unwrap()
    }

    mod generated {
        use super::*;
        use proptest::prelude::*;

        /// One generated request and what the policy should say of it.
        #[derive(Clone, Debug)]
        struct Case {
            /// Index into `nodes()` of the requesting node, or a stranger.
            requester: Option<usize>,
            in_nodes_group: bool,
            /// Subject CN: the requester's own, another node's, or junk.
            common_name: Pick,
            organization: Option<&'static str>,
            extra_subject: bool,
            dns: Vec<Pick>,
            /// IPs: own (index, modulo their number, into the node's
            /// addresses) or foreign.
            ips: Vec<Option<usize>>,
            usages: Vec<&'static str>,
            /// Seconds before `now()` the CSR was made (negative: future).
            age: i64,
        }

        #[derive(Clone, Copy, Debug, PartialEq)]
        enum Pick {
            Own,
            OtherNode,
            Junk,
        }

        fn pick() -> impl Strategy<Value = Pick> {
            prop_oneof![4 => Just(Pick::Own), 1 => Just(Pick::OtherNode), 1 => Just(Pick::Junk)]
        }

        fn cases() -> impl Strategy<Value = Case> {
            (
                prop_oneof![4 => (0usize..2).prop_map(Some), 1 => Just(None)],
                prop::bool::weighted(0.9),
                pick(),
                prop_oneof![8 => Just(Some("system:nodes")), 1 => Just(Some("system:masters")), 1 => Just(None)],
                prop::bool::weighted(0.1),
                prop::collection::vec(pick(), 0..3),
                prop::collection::vec(prop_oneof![4 => (0usize..2).prop_map(Some), 1 => Just(None)], 0..3),
                // Mostly the two a kubelet asks for, sometimes with one more
                // or some missing, so near misses are common.
                (
                    prop_oneof![
                        4 => Just(vec!["digital signature", "server auth"]),
                        1 => prop::sample::subsequence(vec!["digital signature", "server auth"], 0..=1),
                    ],
                    prop_oneof![
                        3 => Just(None),
                        1 => Just(Some("key encipherment")),
                        1 => Just(Some("client auth")),
                    ],
                )
                    .prop_map(|(mut usages, extra)| {
                        usages.extend(extra);
                        usages
                    }),
                prop_oneof![8 => 0i64..(24 * 3600), 1 => (24 * 3600 + 1i64)..(48 * 3600), 1 => -3600i64..0],
            )
                .prop_map(
                    |(requester, in_nodes_group, common_name, organization, extra_subject, dns, ips, usages, age)| Case {
                        requester,
                        in_nodes_group,
                        common_name,
                        organization,
                        extra_subject,
                        dns,
                        ips,
                        usages,
                        age,
                    },
                )
        }

        fn name_of(pick: Pick, own: &str) -> String {
            match pick {
                Pick::Own => own.to_string(),
                Pick::OtherNode if own == "kina-worker" => "kina-control-plane".to_string(),
                Pick::OtherNode => "kina-worker".to_string(),
                Pick::Junk => "evil.example.invalid".to_string(),
            }
        }

        /// The policy written out plainly, as the model the real one must
        /// agree with (every request here is ECDSA).
        fn should_approve(case: &Case) -> bool {
            if case.requester.is_none() {
                return false;
            }
            let sans = case.dns.len() + case.ips.len();
            case.in_nodes_group
                && case.common_name == Pick::Own
                && case.organization == Some("system:nodes")
                && !case.extra_subject
                && sans > 0
                && case.dns.iter().all(|d| *d == Pick::Own)
                && case.ips.iter().all(Option::is_some)
                && case.usages.contains(&"digital signature")
                && case.usages.contains(&"server auth")
                && case
                    .usages
                    .iter()
                    .all(|u| ["digital signature", "server auth"].contains(u))
                && (-300..=24 * 3600).contains(&case.age)
        }

        fn csr_of(case: &Case, key: &KeyPair) -> Csr {
            let own = case
                .requester
                .map_or("kina-stranger".to_string(), |i| nodes()[i].name.clone());
            let addresses = case
                .requester
                .map_or(vec![ip("10.89.0.99")], |i| nodes()[i].addresses.clone());
            let common_name = format!("system:node:{}", name_of(case.common_name, &own));
            let mut subject = vec![(DnType::CommonName, common_name.as_str())];
            if let Some(o) = case.organization {
                subject.push((DnType::OrganizationName, o));
            }
            if case.extra_subject {
                subject.push((DnType::CountryName, "DE"));
            }
            let mut sans: Vec<SanType> = case.dns.iter().map(|d| dns(&name_of(*d, &own))).collect();
            sans.extend(case.ips.iter().map(|i| {
                SanType::IpAddress(match i {
                    Some(i) => addresses[*i % addresses.len()],
                    None => ip("192.0.2.7"),
                })
            }));
            let created = if case.age >= 0 {
                now() - Duration::from_secs(case.age.unsigned_abs())
            } else {
                now() + Duration::from_secs(case.age.unsigned_abs())
            };
            let mut groups = vec!["system:authenticated".to_string()];
            if case.in_nodes_group {
                groups.push("system:nodes".to_string());
            }
            Csr {
                name: "csr-generated".to_string(),
                signer_name: KUBELET_SERVING_SIGNER.to_string(),
                username: format!("system:node:{own}"),
                groups,
                usages: case.usages.iter().map(|u| u.to_string()).collect(),
                request_pem: request(&subject, sans, key),
                created,
                decided: false,
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 512,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            /// Over generated requests from nodes and strangers, with own
            /// and foreign names, addresses, subjects, usages and ages, the
            /// policy approves exactly what the written-out rules allow.
            #[test]
            fn approves_exactly_what_the_rules_allow(case in cases()) {
                let key = ecdsa();
                let csr = csr_of(&case, &key);
                let decision = decide(&csr, &nodes(), now());
                prop_assert_eq!(
                    decision == Decision::Approve,
                    should_approve(&case),
                    "{:?} for {:?}",
                    decision,
                    case
                );
            }

            /// Whatever bytes sit in spec.request, nothing is approved and
            /// nothing panics.
            #[test]
            fn junk_requests_are_never_approved(bytes in prop::collection::vec(any::<u8>(), 0..600), pem in any::<bool>()) {
                let mut csr = kubelet_csr("kina-worker", "10.89.0.12", &ecdsa());
                csr.request_pem = if pem {
                    let mut text = b"-----BEGIN CERTIFICATE REQUEST-----\n".to_vec();
                    text.extend(BASE64.encode(&bytes).into_bytes());
                    text.extend(b"\n-----END CERTIFICATE REQUEST-----\n");
                    text
                } else {
                    bytes
                };
                prop_assert!(matches!(decide(&csr, &nodes(), now()), Decision::Refuse(_)));
            }

            /// A CSR list from the API server is parsed or refused with a
            /// reason; never a panic.
            #[test]
            fn any_json_is_a_csr_list_or_refused(text in "(\\PC|[{}\\[\\]\":,]){0,200}") {
                let _ = parse_csr_list(text.as_bytes());
            }
        }
    }

    #[test]
    fn approves_a_kubelets_own_ecdsa_request() {
        let csr = kubelet_csr("kina-control-plane", "10.89.0.11", &ecdsa());
        assert_eq!(decide(&csr, &nodes(), now()), Decision::Approve);
    }

    #[test]
    fn approves_every_own_address_ipv6_included() {
        let key = ecdsa();
        let mut csr = kubelet_csr("kina-control-plane", "10.89.0.11", &key);
        csr.request_pem = request(
            &[
                (DnType::CommonName, "system:node:kina-control-plane"),
                (DnType::OrganizationName, "system:nodes"),
            ],
            vec![
                dns("kina-control-plane"),
                SanType::IpAddress(ip("10.89.0.11")),
                SanType::IpAddress(ip("fd00:89::11")),
            ],
            &key,
        );
        assert_eq!(decide(&csr, &nodes(), now()), Decision::Approve);
    }

    #[test]
    fn approves_rsa_request_with_key_encipherment() {
        let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let mut csr = kubelet_csr("kina-worker", "10.89.0.12", &key);
        csr.usages = ["digital signature", "key encipherment", "server auth"]
            .map(str::to_string)
            .to_vec();
        assert_eq!(decide(&csr, &nodes(), now()), Decision::Approve);
    }

    #[test]
    fn refuses_key_encipherment_for_an_ecdsa_key() {
        let mut csr = kubelet_csr("kina-worker", "10.89.0.12", &ecdsa());
        csr.usages.push("key encipherment".to_string());
        let reason = refusal(&csr);
        assert!(reason.contains("key encipherment"), "{reason}");
        assert!(reason.contains("RSA"), "{reason}");
    }

    #[test]
    fn refuses_a_node_asking_for_another_nodes_certificate() {
        // kina-worker's credential, kina-control-plane's names.
        let mut csr = kubelet_csr("kina-control-plane", "10.89.0.11", &ecdsa());
        csr.username = "system:node:kina-worker".to_string();
        let reason = refusal(&csr);
        assert!(
            reason.contains("system:node:kina-control-plane"),
            "{reason}"
        );
        assert!(reason.contains("system:node:kina-worker"), "{reason}");
    }

    #[test]
    fn refuses_a_node_not_in_the_cluster() {
        let csr = kubelet_csr("stranger", "10.89.0.11", &ecdsa());
        let reason = refusal(&csr);
        assert!(reason.contains("\"stranger\""), "{reason}");
        assert!(reason.contains("not a node of this cluster"), "{reason}");
    }

    #[test]
    fn refuses_a_requester_that_is_no_node() {
        let mut csr = kubelet_csr("kina-worker", "10.89.0.12", &ecdsa());
        csr.username = "system:serviceaccount:default:builder".to_string();
        let reason = refusal(&csr);
        assert!(
            reason.contains("system:serviceaccount:default:builder"),
            "{reason}"
        );

        let mut csr = kubelet_csr("kina-worker", "10.89.0.12", &ecdsa());
        csr.groups = vec!["system:authenticated".to_string()];
        let reason = refusal(&csr);
        assert!(reason.contains("not in group system:nodes"), "{reason}");
    }

    #[test]
    fn refuses_an_extra_dns_name() {
        let key = ecdsa();
        let mut csr = kubelet_csr("kina-worker", "10.89.0.12", &key);
        csr.request_pem = request(
            &[
                (DnType::CommonName, "system:node:kina-worker"),
                (DnType::OrganizationName, "system:nodes"),
            ],
            vec![dns("kina-worker"), dns("evil.example")],
            &key,
        );
        let reason = refusal(&csr);
        assert!(reason.contains("evil.example"), "{reason}");
    }

    #[test]
    fn refuses_a_foreign_ip_and_another_nodes_ip() {
        for foreign in ["192.0.2.7", "10.89.0.11"] {
            let csr = kubelet_csr("kina-worker", foreign, &ecdsa());
            let reason = refusal(&csr);
            assert!(reason.contains(foreign), "{reason}");
            assert!(reason.contains("not an address of node"), "{reason}");
        }
    }

    #[test]
    fn refuses_email_uri_and_missing_alt_names() {
        let key = ecdsa();
        let subject = [
            (DnType::CommonName, "system:node:kina-worker"),
            (DnType::OrganizationName, "system:nodes"),
        ];
        let mut csr = kubelet_csr("kina-worker", "10.89.0.12", &key);

        csr.request_pem = request(
            &subject,
            vec![
                dns("kina-worker"),
                SanType::Rfc822Name("root@kina-worker".try_into().unwrap()),
            ],
            &key,
        );
        let reason = refusal(&csr);
        assert!(
            reason.contains("email address \"root@kina-worker\""),
            "{reason}"
        );

        csr.request_pem = request(
            &subject,
            vec![SanType::URI("spiffe://kina/worker".try_into().unwrap())],
            &key,
        );
        let reason = refusal(&csr);
        assert!(reason.contains("URI \"spiffe://kina/worker\""), "{reason}");

        csr.request_pem = request(&subject, Vec::new(), &key);
        let reason = refusal(&csr);
        assert!(reason.contains("no subjectAltName"), "{reason}");
    }

    #[test]
    fn refuses_client_auth_usage() {
        let mut csr = kubelet_csr("kina-worker", "10.89.0.12", &ecdsa());
        csr.usages.push("client auth".to_string());
        let reason = refusal(&csr);
        assert!(reason.contains("\"client auth\""), "{reason}");
    }

    #[test]
    fn refuses_missing_server_auth_usage() {
        let mut csr = kubelet_csr("kina-worker", "10.89.0.12", &ecdsa());
        csr.usages = vec!["digital signature".to_string()];
        let reason = refusal(&csr);
        assert!(reason.contains("lack \"server auth\""), "{reason}");
    }

    #[test]
    fn refuses_an_expired_request() {
        let mut csr = kubelet_csr("kina-worker", "10.89.0.12", &ecdsa());
        csr.created = now() - Duration::from_secs(25 * 3600);
        let reason = refusal(&csr);
        assert!(reason.contains("expired"), "{reason}");
        assert!(reason.contains("25h00m00s"), "{reason}");

        // 23 hours is still in time.
        csr.created = now() - Duration::from_secs(23 * 3600);
        assert_eq!(decide(&csr, &nodes(), now()), Decision::Approve);
    }

    #[test]
    fn refuses_a_request_from_the_future_beyond_clock_skew() {
        let mut csr = kubelet_csr("kina-worker", "10.89.0.12", &ecdsa());
        csr.created = now() + Duration::from_secs(120);
        assert_eq!(decide(&csr, &nodes(), now()), Decision::Approve);
        csr.created = now() + Duration::from_secs(3600);
        let reason = refusal(&csr);
        assert!(reason.contains("in the future"), "{reason}");
    }

    #[test]
    fn refuses_another_signer() {
        let mut csr = kubelet_csr("kina-worker", "10.89.0.12", &ecdsa());
        csr.signer_name = "kubernetes.io/kube-apiserver-client-kubelet".to_string();
        let reason = refusal(&csr);
        assert!(
            reason.contains("\"kubernetes.io/kube-apiserver-client-kubelet\""),
            "{reason}"
        );
    }

    #[test]
    fn refuses_a_subject_without_organization() {
        let key = ecdsa();
        let mut csr = kubelet_csr("kina-worker", "10.89.0.12", &key);
        csr.request_pem = request(
            &[(DnType::CommonName, "system:node:kina-worker")],
            vec![dns("kina-worker")],
            &key,
        );
        let reason = refusal(&csr);
        assert!(reason.contains("lacks O=system:nodes"), "{reason}");
    }

    #[test]
    fn refuses_a_subject_with_more_than_cn_and_o() {
        let key = ecdsa();
        let mut csr = kubelet_csr("kina-worker", "10.89.0.12", &key);
        csr.request_pem = request(
            &[
                (DnType::CommonName, "system:node:kina-worker"),
                (DnType::OrganizationName, "system:nodes"),
                (DnType::OrganizationalUnitName, "admins"),
            ],
            vec![dns("kina-worker")],
            &key,
        );
        let reason = refusal(&csr);
        assert!(reason.contains("beyond the CN and O"), "{reason}");

        csr.request_pem = request(
            &[
                (DnType::CommonName, "system:node:kina-worker"),
                (DnType::OrganizationName, "system:masters"),
            ],
            vec![dns("kina-worker")],
            &key,
        );
        let reason = refusal(&csr);
        assert!(reason.contains("\"system:masters\""), "{reason}");
    }

    #[test]
    fn refuses_what_is_no_certificate_request() {
        let mut csr = kubelet_csr("kina-worker", "10.89.0.12", &ecdsa());
        csr.request_pem =
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec();
        let reason = refusal(&csr);
        assert!(reason.contains("\"CERTIFICATE\" block"), "{reason}");

        csr.request_pem = b"not pem at all".to_vec();
        let reason = refusal(&csr);
        assert!(reason.contains("not a PEM CERTIFICATE REQUEST"), "{reason}");

        csr.request_pem =
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                .to_vec();
        let reason = refusal(&csr);
        assert!(reason.contains("not a PKCS#10"), "{reason}");
    }

    #[test]
    fn reasons_stay_on_one_line() {
        let mut csr = kubelet_csr("kina-worker", "10.89.0.12", &ecdsa());
        csr.username = "system:node:kina-worker\nsystem:node:forged".to_string();
        let reason = refusal(&csr);
        assert!(reason.contains("\\n"), "{reason}");
    }

    /// Shaped as `kubectl get csr -o json` prints it: one pending serving
    /// CSR, one kubelet client CSR already approved and issued.
    fn kubectl_output(request_b64: &str) -> String {
        format!(
            r#"{{
    "apiVersion": "v1",
    "items": [
        {{
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {{
                "creationTimestamp": "2026-05-28T20:23:40Z",
                "generateName": "csr-",
                "name": "csr-7xk2p",
                "resourceVersion": "1184",
                "uid": "0f6a3a55-2f1e-4c1b-9d38-8f0b0f3e6f21"
            }},
            "spec": {{
                "groups": [
                    "system:nodes",
                    "system:authenticated"
                ],
                "request": "{request_b64}",
                "signerName": "kubernetes.io/kubelet-serving",
                "usages": [
                    "digital signature",
                    "server auth"
                ],
                "username": "system:node:kina-worker"
            }},
            "status": {{}}
        }},
        {{
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {{
                "creationTimestamp": "2026-05-28T18:26:40Z",
                "generateName": "csr-",
                "name": "csr-q2m9d",
                "resourceVersion": "402",
                "uid": "5c1e6b7a-8d2f-4f0e-a7b3-2d4c6e8f0a1b"
            }},
            "spec": {{
                "extra": {{
                    "authentication.kubernetes.io/credential-id": [
                        "X509SHA256=4f0c"
                    ]
                }},
                "groups": [
                    "system:bootstrappers",
                    "system:bootstrappers:kubeadm:default-node-token",
                    "system:authenticated"
                ],
                "request": "{request_b64}",
                "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                "uid": "",
                "usages": [
                    "digital signature",
                    "client auth"
                ],
                "username": "system:bootstrap:abcdef"
            }},
            "status": {{
                "certificate": "TFMwdExTMUNSVWRKVGlCRFJWSlVTVVpKUTBGVVJTMHRMUzB0Q2c9PQ==",
                "conditions": [
                    {{
                        "lastTransitionTime": "2026-05-28T18:26:41Z",
                        "lastUpdateTime": "2026-05-28T18:26:41Z",
                        "message": "Auto approving kubelet client certificate after SubjectAccessReview.",
                        "reason": "AutoApproved",
                        "status": "True",
                        "type": "Approved"
                    }}
                ]
            }}
        }}
    ],
    "kind": "List",
    "metadata": {{
        "resourceVersion": ""
    }}
}}"#
        )
    }

    #[test]
    fn parses_kubectl_csr_list() {
        let key = ecdsa();
        let pem = kubelet_csr("kina-worker", "10.89.0.12", &key).request_pem;
        let list = parse_csr_list(kubectl_output(&BASE64.encode(&pem)).as_bytes()).unwrap();
        assert_eq!(list.len(), 2);

        let pending = &list[0];
        assert_eq!(pending.name, "csr-7xk2p");
        assert_eq!(pending.signer_name, KUBELET_SERVING_SIGNER);
        assert_eq!(pending.username, "system:node:kina-worker");
        assert_eq!(pending.groups, ["system:nodes", "system:authenticated"]);
        assert_eq!(pending.usages, ["digital signature", "server auth"]);
        assert_eq!(pending.request_pem, pem);
        assert_eq!(pending.created, now() - Duration::from_secs(180));
        assert!(!pending.decided);
        assert_eq!(decide(pending, &nodes(), now()), Decision::Approve);

        let approved = &list[1];
        assert_eq!(approved.name, "csr-q2m9d");
        assert_eq!(approved.username, "system:bootstrap:abcdef");
        assert_eq!(approved.created, now() - Duration::from_secs(7200));
        assert!(approved.decided);
    }

    #[test]
    fn parses_an_empty_list_and_a_denied_item() {
        assert!(
            parse_csr_list(br#"{"apiVersion":"v1","items":[],"kind":"List"}"#)
                .unwrap()
                .is_empty()
        );
        let denied = br#"{"kind":"List","items":[{"metadata":{"name":"csr-d",
            "creationTimestamp":"2026-05-28T20:26:40Z"},"spec":{"request":"",
            "signerName":"kubernetes.io/kubelet-serving"},"status":{"conditions":
            [{"type":"Denied","status":"True"}]}}]}"#;
        let list = parse_csr_list(denied).unwrap();
        assert!(list[0].decided);
        assert!(list[0].username.is_empty() && list[0].usages.is_empty());
    }

    #[test]
    fn list_errors_name_the_item_and_field() {
        let item = |metadata: &str, spec: &str| {
            format!(r#"{{"kind":"List","items":[{{"metadata":{metadata},"spec":{spec}}}]}}"#)
        };
        let spec = r#"{"request":"","signerName":"kubernetes.io/kubelet-serving"}"#;
        let cases = [
            (
                item(r#"{"name":"csr-a"}"#, spec),
                r#"items[0] ("csr-a"): metadata.creationTimestamp is missing"#,
            ),
            (
                item(r#"{"name":"csr-a","creationTimestamp":"yesterday"}"#, spec),
                "metadata.creationTimestamp: \"yesterday\" is not an RFC 3339 date-time",
            ),
            (
                item(
                    r#"{"name":"csr-a","creationTimestamp":"2026-05-28T20:26:40Z"}"#,
                    r#"{"request":"%%%","signerName":"x"}"#,
                ),
                "spec.request is not base64",
            ),
            (
                item(r#"{"creationTimestamp":"2026-05-28T20:26:40Z"}"#, spec),
                "items[0]: metadata.name is missing",
            ),
            (
                item(
                    r#"{"name":"csr-a","creationTimestamp":"2026-05-28T20:26:40Z"}"#,
                    r#"{"request":"","signerName":"x","usages":"server auth"}"#,
                ),
                "spec.usages is not an array",
            ),
            (r#"{"kind":"List"}"#.to_string(), "no items array"),
            ("{".to_string(), "not JSON"),
        ];
        for (json, expected) in cases {
            let error = parse_csr_list(json.as_bytes()).unwrap_err();
            assert!(error.contains(expected), "{error} lacks {expected}");
        }
    }

    #[test]
    fn rfc3339_times() {
        let t = |s: &str| parse_rfc3339(s).unwrap();
        assert_eq!(t("2026-05-28T20:26:40Z"), now());
        assert_eq!(t("2026-05-28T22:26:40+02:00"), now());
        assert_eq!(
            t("2026-05-28t20:26:40.5z"),
            now() + Duration::from_millis(500)
        );
        assert_eq!(t("1970-01-01T00:00:00Z"), UNIX_EPOCH);
        assert_eq!(
            t("1969-12-31T23:59:59Z"),
            UNIX_EPOCH - Duration::from_secs(1)
        );
        assert_eq!(
            t("2000-02-29T00:00:00Z"),
            UNIX_EPOCH + Duration::from_secs(951_782_400)
        );
        for bad in [
            "",
            "2026-05-28",
            "2026-05-28T20:26:40",
            "2026-02-30T00:00:00Z",
            "2026-05-28T24:00:00Z",
            "2026-05-28T20:26:40.Z",
            "2026-05-28T20:26:40+0200",
            "2026-05-28T20:26:40Zjunk",
            "２０２６-05-28T20:26:40Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad:?} parsed");
        }
    }
}
