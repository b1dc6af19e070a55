//! `kina up|get nodes|load|stop|start|down --provider apple` against a
//! STAND-IN for Apple's `container` CLI.
//!
//! Apple's `container` runs only on macOS 26 on Apple silicon, so it
//! cannot run here. The test double is a `/bin/sh` script that logs every
//! call's argv and keeps containers, networks and addresses as files: each
//! `start` hands out the next 192.168.64.x address (so a restart moves a
//! node, as vmnet may), `inspect`/`list` answer in the 1.x JSON shape of
//! kina-apple's own tests (written from Apple's source, not captured), and
//! `exec` answers the two commands kina runs (reading kina-init's status,
//! which the test prepares, and `ctr images import`, whose input it keeps).
//! What this shows is the sequence kina drives and how it keeps the node
//! specs in line with the addresses, not how Apple's program behaves.
//! The node image is real: the base image built from Debian's archive,
//! since `up` reads its Kubernetes label from kina's store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::node::build_base_image;
use common::{kina, run_err, run_ok};
use kina_contract::status::{NodeStatus, PhaseState};

const STAND_IN: &str = r#"#!/bin/sh
# Test double standing in for Apple's `container` CLI, which cannot run on
# Linux; written by host-cli/tests/cluster_apple_stand_in.rs.
dir='@DIR@'
for a in "$@"; do printf '%s\t' "$a"; done >> "$dir/argv.log"
printf '\n' >> "$dir/argv.log"
obj() {
  n=$1; c=$(cat "$dir/c/$n/cluster"); r=$(cat "$dir/c/$n/role"); s=$(cat "$dir/c/$n/state")
  net=""
  if [ "$s" = running ]; then
    ip=$(cat "$dir/c/$n/ip")
    net="{\"hostname\":\"$n\",\"ipv4Address\":\"$ip/24\",\"ipv4Gateway\":\"192.168.64.1\",\"macAddress\":\"82:17:0c:5d:e1:90\",\"mtu\":1280,\"network\":\"kina-$c\"}"
  fi
  printf '{"configuration":{"id":"%s","labels":{"io.kina.cluster":"%s","io.kina.role":"%s"},"networks":[{"network":"kina-%s","options":{"hostname":"%s"}}]},"id":"%s","status":{"networks":[%s],"state":"%s"}}' \
    "$n" "$c" "$r" "$c" "$n" "$n" "$net" "$s"
}
case "$1" in
system) cat "$dir/version.json" ;;
network)
  case "$2" in
  list) cat "$dir/networks" 2>/dev/null; exit 0 ;;
  create) for last in "$@"; do :; done; echo "$last" >> "$dir/networks" ;;
  delete) grep -vx "$3" "$dir/networks" > "$dir/networks.new"; mv "$dir/networks.new" "$dir/networks" ;;
  esac ;;
create)
  shift; name=""; cluster=""; role=""
  while [ $# -gt 1 ]; do
    case "$1" in
      --name) name=$2; shift ;;
      --label) case "$2" in io.kina.cluster=*) cluster=${2#*=} ;; io.kina.role=*) role=${2#*=} ;; esac; shift ;;
      --cpus|--memory|--cap-add|--masked-path|--read-only-path|--network|--publish|--volume|--kernel) shift ;;
    esac
    shift
  done
  mkdir -p "$dir/c/$name"
  echo "$cluster" > "$dir/c/$name/cluster"; echo "$role" > "$dir/c/$name/role"
  echo stopped > "$dir/c/$name/state"; echo "$name" ;;
start)
  n=$(cat "$dir/counter" 2>/dev/null || echo 1); n=$((n+1)); echo $n > "$dir/counter"
  echo "192.168.64.$n" > "$dir/c/$2/ip"; echo running > "$dir/c/$2/state"
  sed "s/@NODE@/$2/" "$dir/status.json" > "$dir/c/$2/status.json"; echo "$2" ;;
stop) echo stopped > "$dir/c/$2/state"; echo "$2" ;;
delete) rm -rf "$dir/c/$3"; echo "$3" ;;
image)
  case "$2" in
  inspect)
    if grep -qx "$3" "$dir/images" 2>/dev/null; then echo "[{\"name\":\"$3\"}]"
    else echo "Error: notFound: \"image not found: $3\"" >&2; exit 1; fi ;;
  load)
    cp "$4" "$dir/loaded.tar"
    tar -xOf "$4" index.json | grep -o '"org.opencontainers.image.ref.name":"[^"]*"' | cut -d'"' -f4 >> "$dir/images" ;;
  esac ;;
inspect) printf '['; obj "$2"; printf ']\n' ;;
logs)
  if [ "$2" = --boot ]; then echo "[    0.000000] Linux version 6.12.0 (stand-in boot log of $3)"
  else echo "kina-init: ready ok (stand-in output of $2)"; fi ;;
list)
  printf '['; first=1
  for d in "$dir"/c/*/; do
    [ -d "$d" ] || continue; [ $first = 1 ] || printf ','; first=0; obj "$(basename "$d")"
  done
  printf ']\n' ;;
exec)
  n=$3; shift 3
  case "$*" in
    "cat /run/kina/status.json") cat "$dir/c/$n/status.json" ;;
    "ctr --namespace k8s.io images import --digests -") cat > "$dir/c/$n/imported.tar"; echo "unpacking kina.local/test:tiny...done" ;;
    *) echo "Error: the stand-in cannot run: $*" >&2; exit 1 ;;
  esac ;;
*) echo "Error: the stand-in has no answer for: $*" >&2; exit 64 ;;
esac
"#;

const VERSION_1_2_1: &str = r#"[{"appName":"container","buildType":"release","commit":"0123456789abcdef0123456789abcdef01234567","version":"1.2.1"},{"appName":"container-apiserver","buildType":"release","commit":"0123456789abcdef0123456789abcdef01234567","version":"container-apiserver version 1.2.1 (build: release, commit: 0123456)"}]"#;
const VERSION_0_11: &str =
    r#"[{"version":"0.11.0","buildType":"release","commit":"abcdef0","appName":"container"}]"#;

const TWO_NODES: &str = "kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
- role: worker
";

/// The stand-in's directory and program (a test double for Apple's CLI).
fn stand_in(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("c")).unwrap();
    let source = dir.join("stand-in.sh");
    std::fs::write(
        &source,
        STAND_IN.replace("@DIR@", &dir.display().to_string()),
    )
    .unwrap();
    std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Copied by another process, so no thread of this one holds it open
    // for writing when it is executed (ETXTBSY).
    let program = dir.join("container");
    assert!(
        Command::new("cp")
            .arg(&source)
            .arg(&program)
            .status()
            .unwrap()
            .success()
    );
    // What kina-init would report: every phase done.
    let mut status = NodeStatus::new("@NODE@", "container-pid1");
    for p in &mut status.phases {
        p.state = PhaseState::Ok;
    }
    std::fs::write(
        dir.join("status.json"),
        serde_json::to_vec(&status).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("version.json"), VERSION_1_2_1).unwrap();
    program
}

fn calls(dir: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(dir.join("argv.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            l.trim_end_matches('\t')
                .split('\t')
                .map(str::to_string)
                .collect()
        })
        .collect()
}

fn apple(env: &Path, program: &Path) -> Command {
    let mut cmd = kina(env);
    cmd.env("KINA_CONTAINER_CLI", program)
        .env("KINA_PROVIDER", "apple")
        .env("KUBECONFIG", env.join("kubeconfig"));
    cmd
}

fn spec(env: &Path, cluster: &str, node: &str) -> (serde_json::Value, u32) {
    let path = env
        .join("data/clusters")
        .join(cluster)
        .join("nodes")
        .join(node)
        .join("etc-kina/node.json");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    (
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap(),
        mode,
    )
}

fn peers(spec: &serde_json::Value) -> Vec<(String, String)> {
    spec["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["address"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn stand_in_apple_cluster_is_created_its_specs_follow_restarts_and_it_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path();
    build_base_image(env, "amd64");
    let fake = env.join("apple");
    let program = stand_in(&fake);
    let config = env.join("two-nodes.yaml");
    std::fs::write(&config, TWO_NODES).unwrap();

    // --- up: version gate, network, nodes, control plane first.
    run_ok(
        apple(env, &program)
            .args([
                "up",
                "--name",
                "duo",
                "--platform",
                "amd64",
                "--wait",
                "1m",
                "--config",
            ])
            .arg(&config),
    );
    let log = calls(&fake);
    let verbs: Vec<String> = log.iter().map(|c| c[..2.min(c.len())].join(" ")).collect();
    assert_eq!(verbs[0], "system version", "{verbs:?}");
    let create_net = log
        .iter()
        .position(|c| c[..2] == ["network", "create"])
        .unwrap_or_else(|| panic!("no network create: {verbs:?}"));
    assert_eq!(
        log[create_net],
        [
            "network",
            "create",
            "--label",
            "io.kina.cluster=duo",
            "kina-duo"
        ]
    );
    let creates: Vec<&Vec<String>> = log.iter().filter(|c| c[0] == "create").collect();
    assert_eq!(creates.len(), 2, "{verbs:?}");
    for create in &creates {
        let line = create.join(" ");
        for must in [
            "--cap-add ALL --masked-path NONE --read-only-path NONE",
            "--network kina-duo",
            "--label io.kina.cluster=duo",
            ":/etc/kina",
        ] {
            assert!(line.contains(must), "`{must}` missing in: {line}");
        }
        assert_eq!(create.last().unwrap(), "kina.local/node:base");
    }
    // The image was not in Apple's store: exported from kina's and loaded,
    // before any node was created, and the export removed.
    let load = log
        .iter()
        .position(|c| c[..2] == ["image", "load"])
        .unwrap_or_else(|| panic!("no image load: {verbs:?}"));
    assert!(load < log.iter().position(|c| c[0] == "create").unwrap());
    assert_eq!(
        std::fs::read_to_string(fake.join("images")).unwrap().trim(),
        "kina.local/node:base"
    );
    assert!(
        !Path::new(&log[load][3]).exists(),
        "the export is left behind"
    );

    let starts: Vec<&str> = log
        .iter()
        .filter(|c| c[0] == "start")
        .map(|c| c[1].as_str())
        .collect();
    assert_eq!(
        starts,
        ["duo-control-plane", "duo-worker"],
        "control plane first"
    );

    // --- the specs carry each peer at the address inspect gave; no QEMU
    // interfaces (vminitd configures eth0), secrets-grade mode.
    let (cp_spec, mode) = spec(env, "duo", "duo-control-plane");
    assert_eq!(mode, 0o600);
    assert!(cp_spec.get("interface").is_none() && cp_spec.get("cluster_interface").is_none());
    assert_eq!(
        peers(&cp_spec),
        [("duo-worker".to_string(), "192.168.64.3".to_string())]
    );
    let (worker_spec, _) = spec(env, "duo", "duo-worker");
    assert_eq!(
        peers(&worker_spec),
        [("duo-control-plane".to_string(), "192.168.64.2".to_string())]
    );

    // --- get nodes reads the record and the nodes' status through exec.
    let out = run_ok(apple(env, &program).args(["get", "nodes", "--name", "duo", "--json"]));
    let nodes: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(nodes[0]["address"], "192.168.64.2");
    assert_eq!(nodes[1]["address"], "192.168.64.3");
    assert!(
        nodes
            .iter()
            .all(|n| n["phase"] == "ready" && n["running"] == true)
    );

    // --- load image-archive streams the archive into each node's ctr.
    let archive = env.join("tiny.tar");
    {
        let mut builder = tar::Builder::new(std::fs::File::create(&archive).unwrap());
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        let mut header = tar::Header::new_gnu();
        header.set_size(index.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "index.json", &index[..])
            .unwrap();
        builder.finish().unwrap();
    }
    run_ok(
        apple(env, &program)
            .args(["load", "image-archive", "--name", "duo"])
            .arg(&archive),
    );
    for node in ["duo-control-plane", "duo-worker"] {
        assert_eq!(
            std::fs::read(fake.join("c").join(node).join("imported.tar")).unwrap(),
            std::fs::read(&archive).unwrap(),
            "{node}"
        );
    }

    // --- load image: an image of kina's store, exported and streamed to
    // the node --nodes names only; the export is not left behind, nor the
    // one an earlier, killed kina left (its process is gone).
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    std::fs::create_dir_all(env.join("data/tmp")).unwrap();
    std::fs::write(env.join(format!("data/tmp/load-{dead}-0.tar")), b"stale").unwrap();
    run_ok(apple(env, &program).args([
        "load",
        "image",
        "--name",
        "duo",
        "--nodes",
        "duo-worker",
        "kina.local/node:base",
    ]));
    let loaded = fake.join("c/duo-worker/imported.tar");
    let mut archive_entries = tar::Archive::new(std::fs::File::open(&loaded).unwrap());
    let names: Vec<String> = archive_entries
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.trim_start_matches("./") == "index.json"),
        "{names:?}"
    );
    assert_eq!(
        std::fs::read(fake.join("c/duo-control-plane/imported.tar")).unwrap(),
        std::fs::read(&archive).unwrap(),
        "--nodes left the control plane alone"
    );
    let scratch: Vec<_> = std::fs::read_dir(env.join("data/tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(scratch.is_empty(), "exports left behind: {scratch:?}");
    let err = run_err(apple(env, &program).args([
        "load",
        "image",
        "--name",
        "duo",
        "--nodes",
        "duo-nope",
        "kina.local/node:base",
    ]));
    assert!(
        err.contains("duo-nope") && err.contains("duo-worker"),
        "{err}"
    );

    // --- export logs: Apple's inspect document and logs, kina-init's
    // status through exec, and what could not be had listed.
    let logs = env.join("logs");
    run_ok(
        apple(env, &program)
            .args(["export", "logs", "--name", "duo"])
            .arg(&logs),
    );
    let worker = logs.join("duo-worker");
    let inspect: serde_json::Value =
        serde_json::from_slice(&std::fs::read(worker.join("inspect.json")).unwrap()).unwrap();
    assert_eq!(inspect[0]["id"], "duo-worker");
    assert!(
        std::fs::read_to_string(worker.join("stdio.log"))
            .unwrap()
            .contains("stand-in output of duo-worker")
    );
    assert!(
        std::fs::read_to_string(worker.join("boot.log"))
            .unwrap()
            .contains("boot log of duo-worker")
    );
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(worker.join("status.json")).unwrap()).unwrap();
    assert_eq!(status["node"], "duo-worker");
    let errors = std::fs::read_to_string(logs.join("errors.txt")).unwrap();
    assert!(errors.contains("duo-worker/dmesg.txt"), "{errors}");

    // --- stop and start: the nodes come back at new addresses and every
    // spec follows (kina-init watches the file).
    run_ok(apple(env, &program).args(["stop", "--name", "duo"]));
    run_ok(apple(env, &program).args(["start", "--name", "duo", "--wait", "1m"]));
    let (cp_spec, _) = spec(env, "duo", "duo-control-plane");
    let (worker_spec, _) = spec(env, "duo", "duo-worker");
    assert_eq!(
        peers(&cp_spec),
        [("duo-worker".to_string(), "192.168.64.5".to_string())]
    );
    assert_eq!(
        peers(&worker_spec),
        [("duo-control-plane".to_string(), "192.168.64.4".to_string())]
    );
    let out = run_ok(apple(env, &program).args(["get", "nodes", "--name", "duo", "--json"]));
    let nodes: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(nodes[0]["address"], "192.168.64.4");

    // --- down deletes the nodes and the network, and the record.
    run_ok(apple(env, &program).args(["down", "--name", "duo"]));
    let log = calls(&fake);
    let deletes: Vec<&str> = log
        .iter()
        .filter(|c| c[..2] == ["delete", "--force"])
        .map(|c| c[2].as_str())
        .collect();
    assert_eq!(deletes.len(), 2, "{log:?}");
    assert!(
        log.iter()
            .any(|c| c[..] == ["network", "delete", "kina-duo"])
    );
    assert!(!env.join("data/clusters/duo").exists());
    assert_eq!(std::fs::read_dir(fake.join("c")).unwrap().count(), 0);

    // --- kina image load hands the image to `container image load` as an
    // OCI archive carrying the full reference under both annotations.
    std::fs::remove_file(fake.join("loaded.tar")).unwrap();
    run_ok(apple(env, &program).args(["image", "load", "kina.local/node:base"]));
    let mut loaded = tar::Archive::new(std::fs::File::open(fake.join("loaded.tar")).unwrap());
    let index: serde_json::Value = loaded
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().to_string_lossy().trim_start_matches("./") == "index.json")
        .map(|e| serde_json::from_reader(e).unwrap())
        .unwrap();
    let annotations = &index["manifests"][0]["annotations"];
    assert_eq!(
        annotations["io.containerd.image.name"],
        "kina.local/node:base"
    );
    assert_eq!(
        annotations["org.opencontainers.image.ref.name"],
        "kina.local/node:base"
    );
}

#[test]
fn stand_in_apple_cli_too_old_stops_up_before_anything_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path();
    let fake = env.join("apple");
    let program = stand_in(&fake);
    std::fs::write(fake.join("version.json"), VERSION_0_11).unwrap();
    let err = run_err(apple(env, &program).args(["up", "--name", "old", "--platform", "amd64"]));
    assert!(err.contains("0.11.0") && err.contains("1.2.1"), "{err}");
    let log = calls(&fake);
    assert!(
        log.iter().all(|c| c[0] == "system"),
        "nothing but the version check ran: {log:?}"
    );
    assert!(!env.join("data/clusters/old").exists());
}

#[test]
fn stand_in_apple_up_that_fails_deletes_the_nodes_it_made_and_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path();
    build_base_image(env, "amd64");
    let fake = env.join("apple");
    let program = stand_in(&fake);
    // The worker cannot start (the stand-in refuses it, as Apple would a
    // VM it cannot boot).
    let script = std::fs::read_to_string(&program).unwrap().replace(
        "start)\n",
        "start)\n  case \"$2\" in *-worker) echo \"Error: internalError: cannot boot $2\" >&2; exit 1 ;; esac\n",
    );
    std::fs::write(fake.join("stand-in.sh"), script).unwrap();
    assert!(
        Command::new("cp")
            .arg(fake.join("stand-in.sh"))
            .arg(&program)
            .status()
            .unwrap()
            .success()
    );
    let config = env.join("two-nodes.yaml");
    std::fs::write(&config, TWO_NODES).unwrap();
    let err = run_err(
        apple(env, &program)
            .args(["up", "--name", "duo", "--platform", "amd64", "--config"])
            .arg(&config),
    );
    assert!(err.contains("cannot boot duo-worker"), "{err}");
    assert!(err.contains("everything it made was removed"), "{err}");
    let log = calls(&fake);
    let mut deleted: Vec<&str> = log
        .iter()
        .filter(|c| c[..2] == ["delete", "--force"])
        .map(|c| c[2].as_str())
        .collect();
    deleted.sort();
    assert_eq!(deleted, ["duo-control-plane", "duo-worker"], "{log:?}");
    assert!(
        log.iter()
            .any(|c| c[..] == ["network", "delete", "kina-duo"])
    );
    assert_eq!(std::fs::read_dir(fake.join("c")).unwrap().count(), 0);
    assert!(!env.join("data/clusters/duo").exists());
}
