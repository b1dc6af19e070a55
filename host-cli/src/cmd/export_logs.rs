//! `kina export logs [DIR]`: everything a bug report needs, per node, in a
//! layout that can be attached as is:
//!
//! ```text
//! DIR/kina-version.txt      kina's version and the host's kernel
//! DIR/cluster.json          the cluster record (no secrets)
//! DIR/errors.txt            what could not be collected, and why
//! and what the provider keeps of each node, e.g.
//! DIR/<node>/vm.json        QEMU: kina's record of the VM
//! DIR/<node>/console.log    QEMU: the serial console, kernel and kina-init lines
//! DIR/<node>/qemu.log       QEMU: QEMU's own messages
//! DIR/<node>/inspect.json   Apple: `container inspect` as printed
//! DIR/<node>/stdio.log      Apple: `container logs` (kina-init's lines)
//! DIR/<node>/boot.log       Apple: `container logs --boot` (the kernel's)
//! DIR/<node>/status.json    kina-init's phases and Kubernetes state
//! DIR/<node>/kernel-report.json   the live kernel check
//! DIR/<node>/kina/*.log     /var/log/kina: containerd, kubelet, kubeadm
//! DIR/<node>/{dmesg,ip-addr,ip-route,images}.txt
//! ```
//!
//! A stopped node still gives its console and records; what needs the
//! running node is listed in errors.txt instead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::cluster::ClusterDir;
use crate::dirs::KinaDirs;
use crate::provider::{AnyProvider, Provider};

/// Commands whose output is collected from a running node.
const COMMANDS: &[(&str, &[&str])] = &[
    ("status.json", &["cat", kina_contract::status::STATUS_PATH]),
    (
        "kernel-report.json",
        &["kina-init", "check-kernel", "--json"],
    ),
    ("dmesg.txt", &["dmesg"]),
    ("ip-addr.txt", &["ip", "address"]),
    ("ip-route.txt", &["ip", "route"]),
    // What the kubelet sees, through the CRI (nodes carry no ctr).
    ("images.txt", &["kina-init", "cri", "images"]),
];
/// kina-init's log directory on a node.
const NODE_LOG_DIR: &str = "/var/log/kina";

pub fn run(dirs: &KinaDirs, name: &str, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let record = ClusterDir::new(dirs, name);
    let plan = record.load(name)?;
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!(
            "kina-logs-{name}-{}",
            time::OffsetDateTime::now_utc().unix_timestamp()
        )),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut errors = Vec::new();
    let write = |path: PathBuf, bytes: &[u8]| {
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    write(
        dir.join("kina-version.txt"),
        format!(
            "kina {}\nhost kernel: {}\n",
            env!("CARGO_PKG_VERSION"),
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
        )
        .as_bytes(),
    )?;
    std::fs::copy(record.record(), dir.join("cluster.json"))
        .with_context(|| format!("copying {}", record.record().display()))?;
    let provider = AnyProvider::of(plan.provider, dirs);
    for n in &plan.nodes {
        let out = dir.join(&n.name);
        std::fs::create_dir_all(out.join("kina"))
            .with_context(|| format!("creating {}", out.display()))?;
        provider.collect_logs(&n.name, &out, &mut errors);
        if !provider.is_running(&n.name) {
            errors.push(format!(
                "{}: not running; only its console and records were collected",
                n.name
            ));
            continue;
        }
        collect_running(&provider, &n.name, &out, &mut errors)?;
    }
    write(dir.join("errors.txt"), errors.join("\n").as_bytes())?;
    println!("{}", dir.display());
    Ok(())
}

fn collect_running(
    nodes: &impl Provider,
    node_name: &str,
    out: &Path,
    errors: &mut Vec<String>,
) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(60);
    for (file, argv) in COMMANDS {
        match nodes.exec(node_name, argv, &mut std::io::empty(), timeout) {
            Ok(bytes) => std::fs::write(out.join(file), bytes)
                .with_context(|| format!("writing {}", out.join(file).display()))?,
            Err(e) => errors.push(format!("{node_name}/{file}: {e:#}")),
        }
    }
    let listing = match nodes.exec(
        node_name,
        &["ls", "-1", NODE_LOG_DIR],
        &mut std::io::empty(),
        timeout,
    ) {
        Ok(l) => l,
        Err(e) => {
            errors.push(format!("{node_name}/kina: {e:#}"));
            return Ok(());
        }
    };
    for name in String::from_utf8_lossy(&listing).lines() {
        // Only plain file names: nothing the node lists may climb out of
        // the node's directory.
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            continue;
        }
        let source = format!("{NODE_LOG_DIR}/{name}");
        match nodes.exec(node_name, &["cat", &source], &mut std::io::empty(), timeout) {
            Ok(bytes) => std::fs::write(out.join("kina").join(name), bytes)
                .with_context(|| format!("writing {node_name}/kina/{name}"))?,
            Err(e) => errors.push(format!("{node_name}/kina/{name}: {e:#}")),
        }
    }
    Ok(())
}
