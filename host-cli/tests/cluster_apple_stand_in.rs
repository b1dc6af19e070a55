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
//! which the test prepares, and `kina-init images import`, whose input it keeps).
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
  # One container as `list --all --format json` and `inspect` print it:
  # compact, keys sorted (ContainerList.swift, OutputRendering.swift
  # JSONOptions.compact); `status` is ContainerStatus{state, networks}
  # with state one of unknown/stopped/running/stopping (ContainerStatus.swift,
  # RuntimeStatus.swift); an attachment encodes network, hostname,
  # ipv4Address as "a.b.c.d/len", ipv4Gateway, macAddress, mtu 1280
  # (Attachment.swift:97-108, CIDRv4.swift:98-113, Utility.swift:310); a
  # stopped container has none.
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
# `system version --format json`: [CLI, API server] VersionInfo records
# (SystemVersion.swift, HealthCheckHarness.swift:47); version.json holds one.
system) cat "$dir/version.json" ;;
network)
  case "$2" in
  list) cat "$dir/networks" 2>/dev/null; exit 0 ;;
  create) for last in "$@"; do :; done; echo "$last" >> "$dir/networks" ;;
  delete)
    # Refused while any container, running or not, is configured with it
    # (NetworksService.swift:252-270, logged; NetworkDelete.swift:123-124).
    for d in "$dir"/c/*/; do
      [ -d "$d" ] || continue
      if [ "kina-$(cat "$d/cluster")" = "$3" ]; then
        echo "Error: internalError: \"delete failed for one or more networks: [\"$3\"]\"" >&2; exit 1
      fi
    done
    grep -vx "$3" "$dir/networks" > "$dir/networks.new"; mv "$dir/networks.new" "$dir/networks" ;;
  esac ;;
# `create` takes every option before the image and prints the ID
# (ContainerCreate.swift); the container starts stopped.
create)
  shift; name=""; cluster=""; role=""; etc=""
  while [ $# -gt 1 ]; do
    case "$1" in
      --name) name=$2; shift ;;
      --label) case "$2" in io.kina.cluster=*) cluster=${2#*=} ;; io.kina.role=*) role=${2#*=} ;; esac; shift ;;
      # The host directory shared at /etc/kina (a virtiofs share:
      # Parser.swift:508-568), kept so the node's writes land in it.
      --volume) case "$2" in *:/etc/kina) etc=${2%:/etc/kina} ;; esac; shift ;;
      --cpus|--memory|--cap-add|--masked-path|--read-only-path|--network|--publish|--kernel) shift ;;
    esac
    shift
  done
  mkdir -p "$dir/c/$name"
  echo "$cluster" > "$dir/c/$name/cluster"; echo "$role" > "$dir/c/$name/role"
  echo "$etc" > "$dir/c/$name/etc-kina"
  echo stopped > "$dir/c/$name/state"; echo "$name" ;;
# `start` prints the ID (ContainerStart.swift:63-71); the attachment
# allocator rotates, so every start gets another address
# (AttachmentAllocator.swift:25).
start)
  n=$(cat "$dir/counter" 2>/dev/null || echo 1); n=$((n+1)); echo $n > "$dir/counter"
  echo "192.168.64.$n" > "$dir/c/$2/ip"; echo running > "$dir/c/$2/state"
  sed "s/@NODE@/$2/" "$dir/status.json" > "$dir/c/$2/status.json"; echo "$2" ;;
# `stop [--time N] ID` is idempotent and prints the ID
# (ContainersService.swift:625-631); the address goes with the attachment.
stop) for n in "$@"; do :; done; echo stopped > "$dir/c/$n/state"; echo "$n" ;;
delete)
  # A stopping container is refused, --force or not (apple/container 1.2.2
  # ContainersService.swift:865-869; ContainerDelete.swift prints each
  # error of its AggregateError).
  if [ "$(cat "$dir/c/$3/state")" = stopping ]; then
    echo "Error: invalidState: \"container $3 is stopping and can not be deleted\"" >&2; exit 1
  fi
  rm -rf "$dir/c/$3"; echo "$3" ;;
image)
  # Apple's image store: one `name<TAB>digest` line a name.
  case "$2" in
  inspect)
    # ImageInspect.swift:45-50 (an unknown name), :67 (pretty, sorted
    # keys); ImageResource.swift:46-56,113-124 (`id` is the digest's hex).
    d=$(awk -F'\t' -v n="$3" '$1 == n { print $2 }' "$dir/images" 2>/dev/null)
    if [ -n "$d" ]; then
      printf '[\n  {\n    "configuration" : {\n      "creationDate" : "2026-08-10T09:30:03Z",\n      "descriptor" : {\n        "digest" : "%s",\n        "mediaType" : "application\\/vnd.oci.image.index.v1+json",\n        "size" : 489\n      },\n      "name" : "%s"\n    },\n    "id" : "%s",\n    "variants" : [\n\n    ]\n  }\n]\n' "$d" "$3" "${d#sha256:}"
    else echo "Error: notFound: \"image not found: $3\"" >&2; exit 1; fi ;;
  load)
    cp "$4" "$dir/loaded.tar"
    idx=$(tar -xOf "$4" index.json | tr -d ' \n')
    # The name: Apple's own annotation, then containerd's, then OCI's,
    # else untagged@<digest> (containerization 0.40.1
    # LocalOCILayoutClient.swift:208-235). The digest stored is the
    # entry's, an index (ImageStore+Import.swift:66-67).
    ann() { echo "$idx" | grep -o "\"$1\":\"[^\"]*\"" | head -n 1 | cut -d'"' -f4; }
    d=$(echo "$idx" | grep -o '"digest":"[^"]*"' | head -n 1 | cut -d'"' -f4)
    name=$(ann com.apple.containerization.image.name)
    [ -n "$name" ] || name=$(ann io.containerd.image.name)
    [ -n "$name" ] || name=$(ann org.opencontainers.image.ref.name)
    [ -n "$name" ] || name="untagged@$d"
    # A load replaces the image of the same name (containerization
    # ImageStore.swift:113-116).
    { awk -F'\t' -v n="$name" '$1 != n' "$dir/images" 2>/dev/null; printf '%s\t%s\n' "$name" "$d"; } > "$dir/images.new"
    mv "$dir/images.new" "$dir/images" ;;
  esac ;;
inspect)
  # A node the test set stopping for N more looks, as one shutting down.
  if [ -f "$dir/c/$2/stops-after" ]; then
    left=$(($(cat "$dir/c/$2/stops-after") - 1)); echo $left > "$dir/c/$2/stops-after"
    [ $left -gt 0 ] || { echo stopped > "$dir/c/$2/state"; rm "$dir/c/$2/stops-after"; }
  fi
  printf '['; obj "$2"; printf ']\n' ;;
# `logs [--boot] ID`: the container's output, or with --boot the VM's boot
# log (ContainerLogs.swift; `--boot` since 0.1.0, Flags.swift).
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
  # Only a running container takes an exec (apple/container 1.2.2
  # ContainerExec.swift:50, ProcessUtils.swift:25-29). With --interactive
  # the process reads the CLI's standard input until it closes
  # (ProcessIO.swift:58-83), and the CLI exits with the process's status
  # (ContainerExec.swift:110,117).
  if [ "$(cat "$dir/c/$n/state")" != running ]; then
    echo "Error: invalidState: \"container $n is not running\"" >&2; exit 1
  fi
  case "$*" in
    "cat /run/kina/status.json") cat "$dir/c/$n/status.json" ;;
    # kina-init's own import (image_import); its answer line as render() words it.
    "kina-init images import -") cat > "$dir/c/$n/imported.tar"; echo "imported kina.local/test:tiny (sha256:0000000000000000000000000000000000000000000000000000000000000000), unpacked into overlayfs: 1 of 1 layer(s) applied" ;;
    "kina-init replace-spec")
      # The node's own kina-init (the real binary, run here) writing its
      # /etc/kina/node.json, which is the shared host directory: what it
      # stores reaches the host's file as a guest write through virtiofs
      # does. Its answer and the file's inode are kept for the test.
      [ -x '@KINA_INIT@' ] || { echo "Error: the stand-in runs @KINA_INIT@ as the node's kina-init: run scripts/build-kina-init" >&2; exit 1; }
      etc=$(cat "$dir/c/$n/etc-kina")
      '@KINA_INIT@' replace-spec --file "$etc/node.json" > "$dir/c/$n/replaced"; rc=$?
      cat "$dir/c/$n/replaced"
      [ $rc = 0 ] && stat -c %i "$etc/node.json" > "$dir/c/$n/spec-inode"
      exit $rc ;;
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

/// The bytes of the kernel the stand-in nodes are given: Apple's CLI is a
/// stand-in here, so nothing boots it.
const STAND_IN_KERNEL: &[u8] = b"a kernel image (never booted by the stand-in)";

/// A kernel directory as `kina kernel build` writes it, around
/// [`STAND_IN_KERNEL`].
fn built_kernel_dir(env: &Path) -> PathBuf {
    use kina_builder::digest::Sha256Digest;
    use kina_builder::kernel::{BUILT_KERNEL_SCHEMA, BuiltKernel, BuiltKernelMeta, KernelFormat};
    use kina_builder::platform::Arch;
    let (kernel, config) = (env.join("bzImage"), env.join("kernel.config"));
    let config_text = b"# CONFIG_MODULES is not set\nCONFIG_BPF_JIT=y\n";
    std::fs::write(&kernel, STAND_IN_KERNEL).unwrap();
    std::fs::write(&config, config_text).unwrap();
    let meta = BuiltKernelMeta {
        schema: BUILT_KERNEL_SCHEMA,
        recipe: "cilium-kpr".into(),
        arch: Arch::Amd64,
        release: "6.18.5".into(),
        format: KernelFormat::for_arch(Arch::Amd64),
        kernel_sha256: Sha256Digest::of(STAND_IN_KERNEL),
        config_sha256: Sha256Digest::of(config_text),
        profiles: vec!["cilium-kpr".into()],
        source_sha256: Sha256Digest::of(b"source"),
        base_config_sha256: Sha256Digest::of(b"base config"),
        toolchain: "gcc (Debian 14.2.0-19) 14.2.0".into(),
    };
    let dir = env.join("kernels/cilium-kpr-amd64");
    BuiltKernel::install(&dir, &meta, &kernel, &config, b"{}").unwrap();
    dir
}

/// The stand-in's directory and program (a test double for Apple's CLI).
fn stand_in(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("c")).unwrap();
    let source = dir.join("stand-in.sh");
    std::fs::write(
        &source,
        STAND_IN
            .replace("@DIR@", &dir.display().to_string())
            .replace("@KINA_INIT@", &host_kina_init().display().to_string()),
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

/// The kina-init `scripts/build-kina-init` builds for this host's
/// architecture, which the stand-in runs as the node's own (and says so
/// when it is missing).
fn host_kina_init() -> PathBuf {
    common::kina_init_path(&format!("{}-unknown-linux-gnu", std::env::consts::ARCH))
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

/// The last write of `node`'s spec file was the node's own `kina-init
/// replace-spec` (run through `container exec`), whose answered digest is
/// that of the file: the host wrote nothing under the running node after.
fn assert_node_wrote_its_spec(env: &Path, fake: &Path, cluster: &str, node: &str) {
    use std::os::unix::fs::MetadataExt;
    let path = env
        .join("data/clusters")
        .join(cluster)
        .join("nodes")
        .join(node)
        .join("etc-kina/node.json");
    let answered = std::fs::read_to_string(fake.join("c").join(node).join("replaced")).unwrap();
    assert_eq!(
        answered.trim(),
        kina_contract::spec_delivery::digest(&std::fs::read(&path).unwrap()),
        "{node}"
    );
    let inode = std::fs::read_to_string(fake.join("c").join(node).join("spec-inode")).unwrap();
    assert_eq!(
        inode.trim(),
        std::fs::metadata(&path).unwrap().ino().to_string(),
        "{node}: the spec file was replaced after the node's own write"
    );
}

/// The indices in `log` of `kina-init replace-spec` run in `node`.
fn replacements(log: &[Vec<String>], node: &str) -> Vec<usize> {
    log.iter()
        .enumerate()
        .filter(|(_, c)| c[..] == ["exec", "--interactive", node, "kina-init", "replace-spec"])
        .map(|(i, _)| i)
        .collect()
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
    // The nodes boot a kernel kina built (`kernel` in the Kina document):
    // its file is copied into kina's data directory and that path is
    // passed as `container create --kernel`.
    let kernel_dir = built_kernel_dir(env);
    let config = env.join("two-nodes.yaml");
    std::fs::write(
        &config,
        format!(
            "{TWO_NODES}---\nkind: Kina\napiVersion: kina.dev/v1alpha1\nkernel: {}\n",
            kernel_dir.display()
        ),
    )
    .unwrap();

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
        let kernel = create
            .iter()
            .position(|a| a == "--kernel")
            .map(|i| PathBuf::from(&create[i + 1]))
            .unwrap_or_else(|| panic!("no --kernel in: {line}"));
        assert!(
            kernel.starts_with(env.join("data/kernels")),
            "{}",
            kernel.display()
        );
        assert_eq!(std::fs::read(&kernel).unwrap(), STAND_IN_KERNEL);
    }
    // The image was not in Apple's store: exported from kina's and loaded,
    // before any node was created, and the export removed.
    let load = log
        .iter()
        .position(|c| c[..2] == ["image", "load"])
        .unwrap_or_else(|| panic!("no image load: {verbs:?}"));
    assert!(load < log.iter().position(|c| c[0] == "create").unwrap());
    // Apple holds it under its name as the build kina's store has.
    let digest = store_digest(env, "kina.local/node:base");
    assert_eq!(
        std::fs::read_to_string(fake.join("images")).unwrap().trim(),
        format!("kina.local/node:base\t{digest}")
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
    // Each node read its first spec from the share at boot; once it ran,
    // its spec was replaced only through exec: the control plane's when
    // its address was known, then both once the worker's was.
    let start_at = |node: &str| log.iter().position(|c| c[..] == ["start", node]).unwrap();
    let (cp_started, worker_started) = (start_at("duo-control-plane"), start_at("duo-worker"));
    let cp = replacements(&log, "duo-control-plane");
    let worker = replacements(&log, "duo-worker");
    assert_eq!(cp.len(), 2, "{verbs:?}");
    assert!(cp_started < cp[0] && cp[0] < worker_started && worker_started < cp[1]);
    assert_eq!(worker.len(), 1, "{verbs:?}");
    assert!(worker_started < worker[0]);
    for node in ["duo-control-plane", "duo-worker"] {
        assert_node_wrote_its_spec(env, &fake, "duo", node);
    }

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
    // Which build the nodes run, not only its name.
    for node in &nodes {
        assert_eq!(
            node["image"],
            serde_json::json!({"reference": "kina.local/node:base", "digest": digest})
        );
    }
    let table = run_ok(apple(env, &program).args(["get", "nodes", "--name", "duo"]));
    let table = String::from_utf8_lossy(&table.stdout);
    let short = format!("kina.local/node:base@{}", &digest[..19]);
    assert!(
        table.lines().next().unwrap().ends_with("IMAGE")
            && table.lines().skip(1).all(|l| l.ends_with(&short)),
        "{table}"
    );
    assert!(
        nodes
            .iter()
            .all(|n| n["phase"] == "ready" && n["running"] == true)
    );

    // --- load image-archive streams the archive into each node's kina-init import.
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
    // spec follows, replaced through exec in the running nodes.
    run_ok(apple(env, &program).args(["stop", "--name", "duo"]));
    let before = calls(&fake).len();
    run_ok(apple(env, &program).args(["start", "--name", "duo", "--wait", "1m"]));
    let log = calls(&fake);
    let last_start = log.iter().rposition(|c| c[0] == "start").unwrap();
    assert!(last_start > before);
    for node in ["duo-control-plane", "duo-worker"] {
        let after_start: Vec<usize> = replacements(&log, node)
            .into_iter()
            .filter(|i| *i > last_start)
            .collect();
        assert_eq!(after_start.len(), 1, "{node}: {log:?}");
        assert_node_wrote_its_spec(env, &fake, "duo", node);
    }
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

    // --- stop gives kina-init time for its ordered shutdown.
    let stops: Vec<Vec<String>> = calls(&fake)
        .into_iter()
        .filter(|c| c[0] == "stop")
        .collect();
    assert_eq!(
        stops,
        [
            ["stop", "--time", "30", "duo-control-plane"],
            ["stop", "--time", "30", "duo-worker"]
        ]
    );

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
    // OCI archive whose index Apple names by the full reference: Apple
    // reads `com.apple.containerization.image.name`, then
    // `io.containerd.image.name`, then `org.opencontainers.image.ref.name`
    // (containerization 0.40.1 LocalOCILayoutClient.swift:208-235).
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
    let apple_name = [
        "com.apple.containerization.image.name",
        "io.containerd.image.name",
        "org.opencontainers.image.ref.name",
    ]
    .iter()
    .find_map(|key| annotations[*key].as_str());
    assert_eq!(apple_name, Some("kina.local/node:base"), "{annotations}");
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());

    // --- an image Apple holds as the same build is not loaded again.
    let loads = |fake: &Path| {
        calls(fake)
            .iter()
            .filter(|c| c[..2] == ["image", "load"])
            .count()
    };
    let before = loads(&fake);
    run_ok(apple(env, &program).args([
        "up",
        "--name",
        "solo",
        "--platform",
        "amd64",
        "--wait",
        "1m",
    ]));
    assert_eq!(loads(&fake), before, "an unchanged image was loaded again");
    run_ok(apple(env, &program).args(["down", "--name", "solo"]));

    // --- one Apple holds as another build (the name's image before `kina
    // image build` made it anew) is loaded again, and the nodes run the
    // new build.
    std::fs::write(
        fake.join("images"),
        format!("kina.local/node:base\tsha256:{}\n", "0".repeat(64)),
    )
    .unwrap();
    run_ok(apple(env, &program).args([
        "up",
        "--name",
        "solo",
        "--platform",
        "amd64",
        "--wait",
        "1m",
    ]));
    assert_eq!(loads(&fake), before + 1, "a rebuilt image was not loaded");
    assert_eq!(
        std::fs::read_to_string(fake.join("images")).unwrap().trim(),
        format!("kina.local/node:base\t{digest}")
    );
    let out = run_ok(apple(env, &program).args(["get", "nodes", "--name", "solo", "--json"]));
    let nodes: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(nodes[0]["image"]["digest"], digest.as_str());
    run_ok(apple(env, &program).args(["down", "--name", "solo"]));
}

/// The digest of the index kina's store names `reference`.
fn store_digest(env: &Path, reference: &str) -> String {
    let out = run_ok(kina(env).args(["image", "inspect", reference, "--json"]));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let digest = summary["digest"].as_str().unwrap().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    digest
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

/// The stand-in holding the nodes of cluster `name` (`(node, role,
/// state)`), its network, and kina's record of it (`up` made it earlier);
/// no image is needed.
fn existing_cluster(
    env: &Path,
    fake: &Path,
    name: &str,
    nodes: &[(&str, &str, &str)],
    record: &str,
) {
    for (node, role, state) in nodes {
        let dir = fake.join("c").join(node);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cluster"), format!("{name}\n")).unwrap();
        std::fs::write(dir.join("role"), format!("{role}\n")).unwrap();
        std::fs::write(dir.join("state"), format!("{state}\n")).unwrap();
        std::fs::write(dir.join("ip"), "192.168.64.9\n").unwrap();
    }
    std::fs::write(fake.join("networks"), format!("default\nkina-{name}\n")).unwrap();
    let record_dir = env.join("data/clusters").join(name);
    std::fs::create_dir_all(&record_dir).unwrap();
    std::fs::write(record_dir.join("cluster.json"), record).unwrap();
}

#[test]
fn stand_in_apple_down_waits_out_a_stopping_node_and_removes_the_network_too() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path();
    let fake = env.join("apple");
    let program = stand_in(&fake);
    let record = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cluster-record-v1-apple.json"),
    )
    .unwrap();
    existing_cluster(
        env,
        &fake,
        "duo",
        &[
            ("duo-control-plane", "control-plane", "stopping"),
            ("duo-worker", "worker", "running"),
        ],
        &record,
    );
    // Still stopping for the next two looks (a `kina stop` under way).
    std::fs::write(fake.join("c/duo-control-plane/stops-after"), "3\n").unwrap();

    run_ok(apple(env, &program).args(["down", "--name", "duo"]));
    let log = calls(&fake);
    let deletes: Vec<&str> = log
        .iter()
        .filter(|c| c[..2] == ["delete", "--force"])
        .map(|c| c[2].as_str())
        .collect();
    assert_eq!(
        deletes
            .iter()
            .filter(|n| **n == "duo-control-plane")
            .count(),
        2,
        "refused while stopping, then deleted: {log:?}"
    );
    let network_delete = log
        .iter()
        .position(|c| c[..] == ["network", "delete", "kina-duo"])
        .unwrap_or_else(|| panic!("the network was left: {log:?}"));
    let last_node_delete = log
        .iter()
        .rposition(|c| c[..2] == ["delete", "--force"])
        .unwrap();
    assert!(network_delete > last_node_delete, "{log:?}");
    assert_eq!(std::fs::read_dir(fake.join("c")).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_to_string(fake.join("networks")).unwrap(),
        "default\n"
    );
    assert!(!env.join("data/clusters/duo").exists());
}

#[test]
fn stand_in_apple_bad_cluster_names_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path();
    let fake = env.join("apple");
    let program = stand_in(&fake);
    // `kina-dev-` is no Apple network name: refused by name, on the flag
    // and in the config alike, before the version check.
    let err = run_err(apple(env, &program).args(["up", "--name", "dev-", "--platform", "amd64"]));
    assert!(
        err.contains("`dev-` is not a cluster name")
            && err.contains("does not end with a letter or digit"),
        "{err}"
    );
    let config = env.join("dotted.yaml");
    std::fs::write(
        &config,
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nname: dev.\n",
    )
    .unwrap();
    let err = run_err(
        apple(env, &program)
            .args(["up", "--platform", "amd64", "--config"])
            .arg(&config),
    );
    assert!(err.contains("`dev.` is not a cluster name"), "{err}");
    let long = "a".repeat(49);
    let err = run_err(apple(env, &program).args(["up", "--name", &long, "--platform", "amd64"]));
    assert!(err.contains("49 characters long"), "{err}");
    assert!(calls(&fake).is_empty(), "{:?}", calls(&fake));
    assert!(!env.join("data/clusters").exists());
}

#[test]
fn stand_in_apple_start_refuses_a_published_port_taken_meanwhile_naming_it_and_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path();
    let fake = env.join("apple");
    let program = stand_in(&fake);
    let holder = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = holder.local_addr().unwrap().port();
    let record = format!(
        r#"{{"schema":2,"provider":"apple","name":"web","image":"kina.local/node:base",
"kubernetes_version":null,"stop_after":"containerd","api_server":null,"addressing":"at-start",
"nodes":[{{"name":"web-control-plane","role":"control-plane","address":"192.168.64.2",
"pod_cidr":"10.244.0.0/24","cpus":2,"memory_mib":2048,"port_mappings":[{{"protocol":"tcp",
"listenAddress":"127.0.0.1","hostPort":{port},"containerPort":80}}]}}]}}"#
    );
    existing_cluster(
        env,
        &fake,
        "web",
        &[("web-control-plane", "control-plane", "stopped")],
        &record,
    );
    let err = run_err(apple(env, &program).args(["start", "--name", "web"]));
    assert!(
        err.contains(&format!("host port {port}/tcp on 127.0.0.1"))
            && err.contains("node web-control-plane publishes")
            && err.contains("lsof"),
        "{err}"
    );
    assert!(
        calls(&fake).iter().all(|c| c[0] != "start"),
        "{:?}",
        calls(&fake)
    );
    // Once the port is free again, the node starts.
    drop(holder);
    run_ok(apple(env, &program).args(["start", "--name", "web", "--wait", "1m"]));
    assert!(
        calls(&fake)
            .iter()
            .any(|c| c[..] == ["start", "web-control-plane"])
    );
}

/// `kina doctor` on a Mac, rehearsed against the stand-in: it makes a
/// one-node cluster the way `up` does (version gate, image load round
/// trip, network, node), boots it to containerd-ready, deletes it with its
/// network, and says so; a cluster of its name is never touched.
#[test]
fn stand_in_apple_doctor_boots_a_node_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path();
    build_base_image(env, "amd64");
    let fake = env.join("apple");
    let program = stand_in(&fake);
    let out = run_ok(apple(env, &program).args(["doctor", "--platform", "amd64", "--wait", "1m"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("): a node booted to containerd-ready and was deleted"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("data directory:  {}", env.join("data").display())),
        "{stdout}"
    );
    let log = calls(&fake);
    let verbs: Vec<String> = log.iter().map(|c| c[..2.min(c.len())].join(" ")).collect();
    let at = |verb: &str| {
        verbs
            .iter()
            .position(|v| v == verb)
            .unwrap_or_else(|| panic!("no `{verb}`: {verbs:?}"))
    };
    assert!(at("system version") < at("image load"), "{verbs:?}");
    assert!(at("image load") < at("network create"), "{verbs:?}");
    assert!(at("network create") < at("create --name"), "{verbs:?}");
    assert!(at("delete --force") < at("network delete"), "{verbs:?}");
    assert!(
        log.iter()
            .any(|c| c[..] == ["network", "delete", "kina-kina-doctor"]),
        "{verbs:?}"
    );
    assert_eq!(std::fs::read_dir(fake.join("c")).unwrap().count(), 0);
    assert!(!env.join("data/clusters/kina-doctor").exists());

    // A cluster named as the doctor's is the user's: refused, untouched.
    std::fs::create_dir_all(env.join("data/clusters/kina-doctor")).unwrap();
    let err = run_err(apple(env, &program).args(["doctor", "--platform", "amd64"]));
    assert!(err.contains("kina down --name kina-doctor"), "{err}");
    assert!(env.join("data/clusters/kina-doctor").exists());
}
