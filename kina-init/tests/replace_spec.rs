//! `kina-init replace-spec` as the host runs it through exec: the real
//! binary with a spec on standard input, against a spec file in a scratch
//! directory (`--file`) instead of /etc/kina/node.json.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use kina_contract::node_spec::NodeSpec;
use kina_contract::spec_delivery::{REPLACE_SPEC_ARGV, digest};

/// The spec in force: node duo-worker of cluster duo, one peer.
const IN_FORCE: &str = r#"{
  "version": 1,
  "name": "duo-worker",
  "cluster": "duo",
  "role": "worker",
  "pod_cidr": "10.244.1.0/24",
  "peers": [
    {"name": "duo-control-plane", "address": "10.89.0.2", "pod_cidr": "10.244.0.0/24"}
  ]
}
"#;

fn replace(path: &Path, input: &[u8]) -> Output {
    assert_eq!(REPLACE_SPEC_ARGV[0], "kina-init");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kina-init"))
        .args(&REPLACE_SPEC_ARGV[1..])
        .arg("--file")
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn in_force(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("node.json");
    std::fs::write(&path, IN_FORCE).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn a_good_spec_replaces_the_file_by_rename_and_its_digest_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let path = in_force(dir.path());
    let before = std::fs::metadata(&path).unwrap().ino();
    // A new peer address and a new node list at once.
    let new = IN_FORCE
        .replace("10.89.0.2", "10.89.0.7")
        .replace(
            "\"pod_cidr\": \"10.244.0.0/24\"}",
            "\"pod_cidr\": \"10.244.0.0/24\"},\n    {\"name\": \"duo-worker2\", \"address\": \"10.89.0.4\", \"pod_cidr\": \"10.244.2.0/24\"}",
        );
    NodeSpec::from_json(new.as_bytes(), "the test's new spec").unwrap();
    let out = replace(&path, new.as_bytes());
    assert!(out.status.success(), "{out:?}");
    let answer = String::from_utf8(out.stdout).unwrap();
    assert_eq!(answer, format!("{}\n", digest(new.as_bytes())));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), new);
    let meta = std::fs::metadata(&path).unwrap();
    assert_ne!(meta.ino(), before, "the file was rewritten in place");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["node.json"], "a staged file is left behind");
}

#[test]
fn truncated_corrupt_foreign_or_empty_specs_are_refused_and_the_spec_in_force_stays() {
    let dir = tempfile::tempdir().unwrap();
    let path = in_force(dir.path());
    let inode = std::fs::metadata(&path).unwrap().ino();
    let half = &IN_FORCE.as_bytes()[..IN_FORCE.len() / 2];
    let mut flipped = IN_FORCE.as_bytes().to_vec();
    flipped[40] = b'\x00';
    let other_node = IN_FORCE.replace("\"duo-worker\"", "\"duo-worker2\"");
    let other_cluster = IN_FORCE.replace("\"cluster\": \"duo\"", "\"cluster\": \"trio\"");
    let newer = IN_FORCE.replace("\"version\": 1", "\"version\": 9");
    let cases: [(&str, &[u8], &str); 6] = [
        ("truncated", half, "EOF while parsing"),
        ("corrupt", &flipped, "the spec in force is unchanged"),
        (
            "for another node",
            other_node.as_bytes(),
            "for node duo-worker2 of cluster duo, but this is node duo-worker of cluster duo",
        ),
        (
            "for another cluster",
            other_cluster.as_bytes(),
            "for node duo-worker of cluster trio",
        ),
        ("of another version", newer.as_bytes(), "version 9"),
        ("empty", b"", "no spec on standard input"),
    ];
    for (what, input, says) in cases {
        let out = replace(&path, input);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
        assert!(out.stdout.is_empty(), "{what}: a digest was answered");
        assert!(
            stderr.contains(says) && stderr.contains("kina-init replace-spec:"),
            "{what}: {stderr}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), IN_FORCE, "{what}");
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode, "{what}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "{what}");
    }
    let out = replace(&path, b"");
    assert!(String::from_utf8_lossy(&out.stderr).contains("pipe the node spec"));
    // A usage error is told apart from a refusal.
    let out = Command::new(env!("CARGO_BIN_EXE_kina-init"))
        .args(["replace-spec", "--into", "x"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn without_a_spec_in_force_no_spec_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.json");
    let out = replace(&path, IN_FORCE.as_bytes());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot tell which node this is"),
        "{stderr}"
    );
    assert!(!path.exists());
}

/// A reader looking at the file while specs are replaced over and over
/// sees one whole spec or the other, never a mix or nothing.
#[test]
fn a_reader_never_sees_half_a_spec() {
    let dir = tempfile::tempdir().unwrap();
    let path = in_force(dir.path());
    // Large enough that a write in place would be seen half done.
    let peers: Vec<String> = (0..400)
        .map(|i| {
            format!(
                r#"{{"name":"n{i}","address":"10.89.{}.{}","pod_cidr":"10.{}.{}.0/24"}}"#,
                i / 250,
                i % 250 + 2,
                i / 250 + 1,
                i % 250
            )
        })
        .collect();
    let big = format!(
        r#"{{"version":1,"name":"duo-worker","cluster":"duo","role":"worker","pod_cidr":"10.244.1.0/24","peers":[{}]}}"#,
        peers.join(",")
    );
    let specs = [IN_FORCE.as_bytes(), big.as_bytes()];
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut looks = 0;
            while !done.load(Ordering::Relaxed) {
                let seen = std::fs::read(&path).unwrap();
                assert!(
                    specs.contains(&seen.as_slice()),
                    "read {} bytes that are neither spec",
                    seen.len()
                );
                looks += 1;
            }
            looks
        });
        for i in 0..200 {
            let spec = specs[i % 2];
            let answered = kina_init::spec_replace::replace_spec(&path, spec)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(answered, digest(spec));
        }
        done.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    });
}
