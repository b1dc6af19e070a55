//! A control plane that comes back at another address, on files shaped as
//! kubeadm writes them: the static pod manifests, the kubeconfigs, kina's
//! kubeadm configuration, the kubelet's flags and a serving certificate made
//! with the openssl CLI the way kubeadm makes it (PKCS#1 RSA keys as
//! kubeadm's keyutil writes them; subject CN=kube-apiserver, server auth
//! only, subjectAltNames in kubeadm's order: the node name and the
//! `kubernetes` service names, the service IP, the advertise address, then
//! certSANs; cmd/kubeadm/app/phases/certs/certlist.go `KubeadmCertAPIServer`
//! and cmd/kubeadm/app/util/pkiutil/pki_helpers.go `GetAPIServerAltNames`).
//! openssl, not kina, judges the result: `openssl verify` against the CA and
//! `openssl x509 -ext subjectAltName`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use kina_init::kubernetes::address_change::{REWRITTEN, follow, record};

const OLD: &str = "192.168.64.3";
const NEW: &str = "192.168.64.7";
/// A user's certSAN that starts with the old address: must stay.
const NEIGHBOUR: &str = "192.168.64.30";

fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI must be installed to run this test");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write(root: &Path, rel: &str, text: &str, mode: u32) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Where `text` names `ip` as a whole address (not 192.168.64.30 for .3).
fn names(text: &str, ip: &str) -> bool {
    text.match_indices(ip).any(|(i, _)| {
        let after = text[i + ip.len()..].chars().next();
        let before = text[..i].chars().last();
        !after.is_some_and(|c| c.is_ascii_digit()) && !before.is_some_and(|c| c.is_ascii_digit())
    })
}

/// The CA and serving certificate kubeadm would have on the node.
fn kubeadm_pki(pki: &Path) {
    std::fs::create_dir_all(pki).unwrap();
    openssl(pki, &["genrsa", "-traditional", "-out", "ca.key", "2048"]);
    openssl(
        pki,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-sha256",
            "-days",
            "3650",
            "-subj",
            "/CN=kubernetes",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        pki,
        &["genrsa", "-traditional", "-out", "apiserver.key", "2048"],
    );
    openssl(
        pki,
        &[
            "req",
            "-new",
            "-key",
            "apiserver.key",
            "-subj",
            "/CN=kube-apiserver",
            "-out",
            "apiserver.csr",
        ],
    );
    std::fs::write(
        pki.join("apiserver.ext"),
        format!(
            "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n\
             authorityKeyIdentifier=keyid\n\
             subjectAltName=DNS:kina-control-plane,DNS:kubernetes,DNS:kubernetes.default,\
             DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,\
             IP:10.96.0.1,IP:{OLD},IP:127.0.0.1,IP:{NEIGHBOUR}\n"
        ),
    )
    .unwrap();
    openssl(
        pki,
        &[
            "x509",
            "-req",
            "-in",
            "apiserver.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "0x1a2b3c4d5e6f",
            "-days",
            "365",
            "-sha256",
            "-extfile",
            "apiserver.ext",
            "-out",
            "apiserver.crt",
        ],
    );
    for scratch in ["apiserver.csr", "apiserver.ext"] {
        std::fs::remove_file(pki.join(scratch)).unwrap();
    }
    std::fs::set_permissions(pki.join("ca.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// kubeadm 1.36's static pods, reduced to the lines that carry addresses
/// and enough around them to be the files kubeadm writes.
fn kubeadm_manifests(root: &Path) {
    write(
        root,
        "etc/kubernetes/manifests/etcd.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://{OLD}:2379
  labels:
    component: etcd
    tier: control-plane
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://{OLD}:2379
    - --cert-file=/etc/kubernetes/pki/etcd/server.crt
    - --data-dir=/var/lib/etcd
    - --initial-advertise-peer-urls=https://{OLD}:2380
    - --initial-cluster=kina-control-plane=https://{OLD}:2380
    - --listen-client-urls=https://127.0.0.1:2379,https://{OLD}:2379
    - --listen-metrics-urls=http://127.0.0.1:2381
    - --listen-peer-urls=https://{OLD}:2380
    - --name=kina-control-plane
    livenessProbe:
      httpGet:
        host: 127.0.0.1
        path: /livez
        port: probe-port
"#
        ),
        0o600,
    );
    write(
        root,
        "etc/kubernetes/manifests/kube-apiserver.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: {OLD}:6443
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-apiserver
    - --advertise-address={OLD}
    - --etcd-servers=https://127.0.0.1:2379
    - --secure-port=6443
    - --service-cluster-ip-range=10.96.0.0/16
    livenessProbe:
      httpGet:
        host: {OLD}
        path: /livez
        port: probe-port
        scheme: HTTPS
    readinessProbe:
      httpGet:
        host: {OLD}
        path: /readyz
        port: probe-port
        scheme: HTTPS
    startupProbe:
      httpGet:
        host: {OLD}
        path: /livez
        port: probe-port
        scheme: HTTPS
"#
        ),
        0o600,
    );
    for component in ["kube-controller-manager", "kube-scheduler"] {
        write(
            root,
            &format!("etc/kubernetes/manifests/{component}.yaml"),
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {component}\nspec:\n  containers:\n  - command:\n    - {component}\n    - --bind-address=127.0.0.1\n    livenessProbe:\n      httpGet:\n        host: 127.0.0.1\n"
            ),
            0o600,
        );
    }
}

fn kubeconfig(server: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==\n    server: https://{server}:6443\n  name: kina\ncontexts:\n- context:\n    cluster: kina\n    user: {user}\n  name: {user}@kina\ncurrent-context: {user}@kina\nkind: Config\nusers:\n- name: {user}\n  user:\n    client-certificate-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==\n"
    )
}

#[test]
fn every_file_and_the_serving_certificate_move_to_the_new_address() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let pki = root.join("etc/kubernetes/pki");
    kubeadm_pki(&pki);
    kubeadm_manifests(root);
    for (file, user) in [
        ("admin.conf", "kubernetes-admin"),
        ("super-admin.conf", "kubernetes-super-admin"),
        ("kubelet.conf", "system:node:kina-control-plane"),
        ("controller-manager.conf", "system:kube-controller-manager"),
        ("scheduler.conf", "system:kube-scheduler"),
    ] {
        write(
            root,
            &format!("etc/kubernetes/{file}"),
            &kubeconfig(OLD, user),
            0o600,
        );
    }
    write(
        root,
        "etc/kina/kubeadm.yaml",
        &format!(
            "{{\"kind\": \"InitConfiguration\", \"localAPIEndpoint\": {{\"advertiseAddress\": \"{OLD}\", \"bindPort\": 6443}},\n \"nodeRegistration\": {{\"kubeletExtraArgs\": [{{\"name\": \"node-ip\", \"value\": \"{OLD}\"}}]}}}}\n---\n{{\"kind\": \"ClusterConfiguration\", \"controlPlaneEndpoint\": \"{OLD}:6443\", \"apiServer\": {{\"certSANs\": [\"{OLD}\", \"127.0.0.1\", \"localhost\", \"{NEIGHBOUR}\"]}}}}\n"
        ),
        0o600,
    );
    write(
        root,
        "var/lib/kubelet/kubeadm-flags.env",
        &format!(
            "KUBELET_KUBEADM_ARGS=\"--node-ip={OLD} --rotate-server-certificates=true --v=2\"\n"
        ),
        0o644,
    );
    record(root, OLD.parse().unwrap()).unwrap();
    let dates_before = openssl(&pki, &["x509", "-in", "apiserver.crt", "-noout", "-dates"]);
    let serial_before = openssl(&pki, &["x509", "-in", "apiserver.crt", "-noout", "-serial"]);
    let key_before = std::fs::read(pki.join("apiserver.key")).unwrap();

    let moved = follow(root, NEW.parse().unwrap()).unwrap().unwrap();
    assert_eq!(moved.from, [OLD.parse::<std::net::Ipv4Addr>().unwrap()]);
    assert!(moved.certificate);
    // Every file that named the old address (the component manifests of
    // the controller manager and scheduler bind to 127.0.0.1 only).
    assert_eq!(moved.files.len(), REWRITTEN.len() - 2, "{:?}", moved.files);

    // openssl: the certificate verifies against the cluster CA, names the
    // new address and not the old, and keeps every other name.
    let verified = openssl(&pki, &["verify", "-CAfile", "ca.crt", "apiserver.crt"]);
    assert_eq!(verified.trim(), "apiserver.crt: OK");
    let san = openssl(
        &pki,
        &[
            "x509",
            "-in",
            "apiserver.crt",
            "-noout",
            "-ext",
            "subjectAltName",
        ],
    );
    assert!(
        san.contains(&format!(
            "DNS:kina-control-plane, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local, DNS:localhost, IP Address:10.96.0.1, IP Address:{NEW}, IP Address:127.0.0.1, IP Address:{NEIGHBOUR}"
        )),
        "{san}"
    );
    assert!(!names(&san, OLD), "{san}");
    // The same key (apiserver.key is untouched and still matches), the
    // same subject, usages and validity; a new serial.
    assert_eq!(
        std::fs::read(pki.join("apiserver.key")).unwrap(),
        key_before
    );
    let modulus = |args: &[&str]| openssl(&pki, args);
    assert_eq!(
        modulus(&["x509", "-in", "apiserver.crt", "-noout", "-modulus"]),
        modulus(&["rsa", "-in", "apiserver.key", "-noout", "-modulus"])
    );
    let text = openssl(&pki, &["x509", "-in", "apiserver.crt", "-noout", "-text"]);
    assert!(text.contains("Subject: CN = kube-apiserver"), "{text}");
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(
        text.contains("Digital Signature, Key Encipherment"),
        "{text}"
    );
    assert!(text.contains("CA:FALSE"), "{text}");
    assert_eq!(
        openssl(&pki, &["x509", "-in", "apiserver.crt", "-noout", "-dates"]),
        dates_before
    );
    assert_ne!(
        openssl(&pki, &["x509", "-in", "apiserver.crt", "-noout", "-serial"]),
        serial_before
    );

    // No file names the old address; the neighbour address is intact.
    for rel in REWRITTEN {
        let path = root.join(rel);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!names(&text, OLD), "{rel}:\n{text}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        let want = if rel.ends_with("kubeadm-flags.env") {
            0o644
        } else {
            0o600
        };
        assert_eq!(mode, want, "{rel}");
    }
    let etcd = std::fs::read_to_string(root.join(REWRITTEN[0])).unwrap();
    assert!(
        etcd.contains(&format!("--listen-peer-urls=https://{NEW}:2380")),
        "{etcd}"
    );
    assert!(
        etcd.contains("--listen-metrics-urls=http://127.0.0.1:2381"),
        "{etcd}"
    );
    let apiserver = std::fs::read_to_string(root.join(REWRITTEN[1])).unwrap();
    assert_eq!(
        apiserver.matches(&format!("host: {NEW}")).count(),
        3,
        "{apiserver}"
    );
    let config = std::fs::read_to_string(root.join("etc/kina/kubeadm.yaml")).unwrap();
    assert!(config.contains(&format!("\"{NEIGHBOUR}\"")), "{config}");
    assert!(
        config.contains(&format!("\"advertiseAddress\": \"{NEW}\"")),
        "{config}"
    );
    let flags = std::fs::read_to_string(root.join("var/lib/kubelet/kubeadm-flags.env")).unwrap();
    assert!(
        flags.contains(&format!(
            "--node-ip={NEW} --rotate-server-certificates=true --v=2"
        )),
        "{flags}"
    );
    // No temporary file is left beside any of them.
    for d in [
        "etc/kubernetes",
        "etc/kubernetes/manifests",
        "etc/kubernetes/pki",
    ] {
        for entry in std::fs::read_dir(root.join(d)).unwrap() {
            let name = entry.unwrap().file_name();
            assert!(!name.to_string_lossy().contains("kina-new"), "{name:?}");
        }
    }

    // A second boot at the same address has nothing to do.
    assert_eq!(follow(root, NEW.parse().unwrap()).unwrap(), None);
}
