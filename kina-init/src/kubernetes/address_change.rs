//! A node that comes back at another address (Apple's vmnet hands one out on
//! every start): before the kubelet starts, every file kubeadm wrote that
//! names the old address names the new one, and the API server's serving
//! certificate is re-issued for it. This is what kind's node entrypoint does
//! on a restart (kind `images/base/files/usr/local/bin/entrypoint`, the
//! `files_to_update` list and `fix_certificate`), with the admin
//! kubeconfigs added: kina publishes admin.conf to the user.
//!
//! Without it a control plane does not come back: etcd's static pod listens
//! and advertises on the old address and cannot bind, the API server
//! advertises the old address (and the `kubernetes` Service's endpoints
//! with it), its probes go to the old host, and its certificate does not
//! name the new one.
//!
//! Which address the files name is recorded by kina-init (like kind's
//! `/kind/old-ipv4`): the address it gave kubeadm, written once kubeadm is
//! done and after every change. A change writes the new address as pending
//! first, so a boot cut short mid-way finishes the job on the next one, even
//! from yet another address. Every new file and the certificate are made
//! before the first is written, so a bad file or CA fails with nothing
//! changed; each file is then replaced atomically.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::apiserver_cert;
use super::files;
use super::kubelet::{KubeletPaths, read_env_var};

/// The address kubeadm's files name.
const RECORD: &str = "var/lib/kina/node-address";
/// The address a change that has not finished is moving them to.
const PENDING: &str = "var/lib/kina/node-address.pending";

/// The files that can name the node's address, relative to the node's
/// root; those a node lacks (a worker has no manifests) are skipped. kind's
/// list plus admin.conf and super-admin.conf.
pub const REWRITTEN: [&str; 11] = [
    "etc/kubernetes/manifests/etcd.yaml",
    "etc/kubernetes/manifests/kube-apiserver.yaml",
    "etc/kubernetes/manifests/kube-controller-manager.yaml",
    "etc/kubernetes/manifests/kube-scheduler.yaml",
    "etc/kubernetes/admin.conf",
    "etc/kubernetes/super-admin.conf",
    "etc/kubernetes/kubelet.conf",
    "etc/kubernetes/controller-manager.conf",
    "etc/kubernetes/scheduler.conf",
    super::KUBEADM_CONFIG,
    "var/lib/kubelet/kubeadm-flags.env",
];

/// What one change did.
#[derive(Debug, PartialEq, Eq)]
pub struct Moved {
    pub from: Vec<Ipv4Addr>,
    pub files: Vec<PathBuf>,
    pub certificate: bool,
}

/// Is `b` a byte that continues an address or a name (so an address next
/// to it is part of something longer)?
fn joins(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `text` with every whole occurrence of `old` replaced by `new`, and how
/// many there were. Whole means not part of a longer number or name:
/// 10.0.0.1 is not replaced in 10.0.0.10, 110.0.0.1 or 10.0.0.1.5, and is
/// in `https://10.0.0.1:6443` or at the end of a sentence. (kind's `sed
/// \b` boundaries, stricter about a following `.digit`.)
pub fn replace_address(text: &[u8], old: Ipv4Addr, new: Ipv4Addr) -> (Vec<u8>, usize) {
    let (old, new) = (old.to_string(), new.to_string());
    let (old, new) = (old.as_bytes(), new.as_bytes());
    let mut out = Vec::with_capacity(text.len());
    let mut count = 0;
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(old) {
            let before_ok = i == 0 || !(joins(text[i - 1]) || text[i - 1] == b'.');
            let end = i + old.len();
            let after_ok = match text.get(end) {
                None => true,
                Some(b'.') => !text.get(end + 1).is_some_and(u8::is_ascii_digit),
                Some(&b) => !joins(b),
            };
            if before_ok && after_ok {
                out.extend_from_slice(new);
                count += 1;
                i = end;
                continue;
            }
        }
        out.push(text[i]);
        i += 1;
    }
    (out, count)
}

fn read_address(path: &Path) -> Result<Option<Ipv4Addr>, String> {
    let Some(bytes) = files::read_if_present(path)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    text.trim().parse().map(Some).map_err(|_| {
        format!(
            "{} holds {:?}, not an IPv4 address; it records the address kubeadm's files name (delete it and kina-init falls back to --node-ip in kubeadm-flags.env)",
            path.display(),
            text.trim()
        )
    })
}

fn write_address(path: &Path, ip: Ipv4Addr) -> Result<(), String> {
    files::replace(path, format!("{ip}\n").as_bytes(), 0o644)
}

/// Records `ip` as the address kubeadm's files name (after kubeadm wrote
/// them, or after a change).
pub fn record(root: &Path, ip: Ipv4Addr) -> Result<(), String> {
    let path = root.join(RECORD);
    if read_address(&path).ok().flatten() == Some(ip) {
        return Ok(());
    }
    write_address(&path, ip)
}

/// The addresses kubeadm's files may still name, other than `current`: the
/// recorded one and a change's pending one; for a node set up before kina
/// recorded it, the kubelet's `--node-ip` in kubeadm-flags.env.
fn previous_addresses(root: &Path, current: Ipv4Addr) -> Result<BTreeSet<Ipv4Addr>, String> {
    let mut seen = BTreeSet::new();
    seen.extend(read_address(&root.join(RECORD))?);
    seen.extend(read_address(&root.join(PENDING))?);
    if seen.is_empty() {
        let flags = KubeletPaths {
            root: root.to_path_buf(),
        }
        .flags_env();
        if flags.exists() {
            let args = read_env_var(&flags, "KUBELET_KUBEADM_ARGS")?;
            seen.extend(
                args.split_whitespace()
                    .filter_map(|a| a.strip_prefix("--node-ip="))
                    .filter_map(|ip| ip.parse::<Ipv4Addr>().ok()),
            );
        }
    }
    seen.remove(&current);
    Ok(seen)
}

/// Moves the node's Kubernetes files from the address they name to
/// `current`; `None` when they already name it.
pub fn follow(root: &Path, current: Ipv4Addr) -> Result<Option<Moved>, String> {
    let old: Vec<Ipv4Addr> = previous_addresses(root, current)?.into_iter().collect();
    if old.is_empty() {
        record(root, current)?;
        let _ = std::fs::remove_file(root.join(PENDING));
        return Ok(None);
    }
    let mut writes = Vec::new();
    for rel in REWRITTEN {
        let path = root.join(rel);
        let Some(mut bytes) = files::read_if_present(&path)? else {
            continue;
        };
        let mut replaced = 0;
        for &from in &old {
            let (next, n) = replace_address(&bytes, from, current);
            bytes = next;
            replaced += n;
        }
        if replaced > 0 {
            let mode = files::mode(&path)?;
            writes.push((path, bytes, mode));
        }
    }
    let pki = KubeletPaths {
        root: root.to_path_buf(),
    }
    .pki_dir();
    let crt = pki.join("apiserver.crt");
    // Only a control plane serves the API (kind's `fix_certificate` skips
    // a node without the files as well).
    let certificate = if crt.exists() {
        apiserver_cert::reissue(
            &crt,
            &pki.join("ca.crt"),
            &pki.join("ca.key"),
            &old,
            current,
        )?
    } else {
        None
    };

    write_address(&root.join(PENDING), current)?;
    let mut moved = Vec::new();
    for (path, bytes, mode) in writes {
        files::replace(&path, &bytes, mode)?;
        moved.push(path);
    }
    let reissued = certificate.is_some();
    if let Some(pem) = certificate {
        files::replace(&crt, pem.as_bytes(), files::mode(&crt)?)?;
    }
    write_address(&root.join(RECORD), current)?;
    std::fs::remove_file(root.join(PENDING))
        .map_err(|e| format!("removing {}: {e}", root.join(PENDING).display()))?;
    Ok(Some(Moved {
        from: old,
        files: moved,
        certificate: reissued,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn replaced(text: &str) -> (String, usize) {
        let (out, n) = replace_address(text.as_bytes(), ip("10.0.0.1"), ip("10.0.0.2"));
        (String::from_utf8(out).unwrap(), n)
    }

    #[test]
    fn only_whole_addresses_are_replaced() {
        for (text, want) in [
            ("10.0.0.1", "10.0.0.2"),
            (
                "--advertise-address=10.0.0.1",
                "--advertise-address=10.0.0.2",
            ),
            ("https://10.0.0.1:6443", "https://10.0.0.2:6443"),
            ("- 10.0.0.1\n", "- 10.0.0.2\n"),
            ("\"10.0.0.1\",", "\"10.0.0.2\","),
            ("10.0.0.1/32", "10.0.0.2/32"),
            ("at 10.0.0.1.", "at 10.0.0.2."),
            ("10.0.0.10", "10.0.0.10"),
            ("110.0.0.1", "110.0.0.1"),
            ("10.0.0.1.5", "10.0.0.1.5"),
            ("5.10.0.0.1", "5.10.0.0.1"),
            ("a10.0.0.1", "a10.0.0.1"),
            ("10.0.0.1x", "10.0.0.1x"),
            ("10.0.0.1,10.0.0.10,10.0.0.1", "10.0.0.2,10.0.0.10,10.0.0.2"),
        ] {
            assert_eq!(replaced(text).0, want, "{text}");
        }
        assert_eq!(replaced("10.0.0.1 and 10.0.0.1:2379").1, 2);
    }

    #[test]
    fn a_cut_short_change_is_finished_from_yet_another_address() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let flags = root.join("var/lib/kubelet/kubeadm-flags.env");
        let conf = root.join("etc/kubernetes/kubelet.conf");
        files::replace(
            &flags,
            b"KUBELET_KUBEADM_ARGS=\"--node-ip=10.0.0.2\"\n",
            0o644,
        )
        .unwrap();
        files::replace(&conf, b"server: https://10.0.0.1:6443\n", 0o600).unwrap();
        // The change to 10.0.0.2 rewrote the flags and stopped there.
        write_address(&root.join(RECORD), ip("10.0.0.1")).unwrap();
        write_address(&root.join(PENDING), ip("10.0.0.2")).unwrap();

        let moved = follow(root, ip("10.0.0.3")).unwrap().unwrap();
        assert_eq!(moved.from, [ip("10.0.0.1"), ip("10.0.0.2")]);
        assert!(!moved.certificate);
        assert_eq!(
            std::fs::read_to_string(&flags).unwrap(),
            "KUBELET_KUBEADM_ARGS=\"--node-ip=10.0.0.3\"\n"
        );
        assert_eq!(
            std::fs::read_to_string(&conf).unwrap(),
            "server: https://10.0.0.3:6443\n"
        );
        assert_eq!(files::mode(&conf).unwrap(), 0o600);
        assert_eq!(
            read_address(&root.join(RECORD)).unwrap(),
            Some(ip("10.0.0.3"))
        );
        assert!(!root.join(PENDING).exists());
        assert_eq!(follow(root, ip("10.0.0.3")).unwrap(), None);
    }

    #[test]
    fn a_node_without_a_record_falls_back_to_the_kubelets_node_ip() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let flags = root.join("var/lib/kubelet/kubeadm-flags.env");
        files::replace(
            &flags,
            b"KUBELET_KUBEADM_ARGS=\"--node-ip=192.168.64.3 --v=2\"\n",
            0o644,
        )
        .unwrap();
        let moved = follow(root, ip("192.168.64.7")).unwrap().unwrap();
        assert_eq!(moved.from, [ip("192.168.64.3")]);
        assert_eq!(moved.files, std::slice::from_ref(&flags));
        assert_eq!(
            std::fs::read_to_string(&flags).unwrap(),
            "KUBELET_KUBEADM_ARGS=\"--node-ip=192.168.64.7 --v=2\"\n"
        );
    }

    #[test]
    fn a_damaged_record_is_named_and_nothing_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let conf = root.join("etc/kubernetes/kubelet.conf");
        files::replace(&conf, b"server: https://10.0.0.1:6443\n", 0o600).unwrap();
        files::replace(&root.join(RECORD), b"not an address\n", 0o644).unwrap();
        let err = follow(root, ip("10.0.0.3")).unwrap_err();
        assert!(err.contains("node-address"), "{err}");
        assert!(err.contains("not an address"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&conf).unwrap(),
            "server: https://10.0.0.1:6443\n"
        );
    }

    #[test]
    fn a_certificate_that_cannot_be_signed_leaves_every_file_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let manifest = root.join("etc/kubernetes/manifests/etcd.yaml");
        files::replace(
            &manifest,
            b"- --listen-peer-urls=https://10.0.0.1:2380\n",
            0o600,
        )
        .unwrap();
        // A serving certificate but no CA to sign a new one with.
        files::replace(
            &root.join("etc/kubernetes/pki/apiserver.crt"),
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            0o644,
        )
        .unwrap();
        write_address(&root.join(RECORD), ip("10.0.0.1")).unwrap();
        let err = follow(root, ip("10.0.0.3")).unwrap_err();
        assert!(err.contains("apiserver.crt"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&manifest).unwrap(),
            "- --listen-peer-urls=https://10.0.0.1:2380\n"
        );
        assert_eq!(
            read_address(&root.join(RECORD)).unwrap(),
            Some(ip("10.0.0.1"))
        );
        assert!(!root.join(PENDING).exists());
    }
}
