//! The identity phase: hostname from the node spec, a machine-id generated
//! once and kept across restarts (kubelet and CNI plugins key on it), and
//! /etc/hosts entries for the node and its peers.

use std::path::{Path, PathBuf};

use kina_contract::node_spec::Peer;
use kina_contract::status::PhaseId;

use super::{BootContext, Phase, PhaseFailure};

pub struct IdentityPhase {
    /// `/` in a node, a scratch directory in tests.
    pub root: PathBuf,
    /// Whether to call sethostname(2); the UTS namespace is the node's own
    /// under both providers.
    pub set_kernel_hostname: bool,
}

const HOSTS_MARKER: &str = "# kina";

fn new_machine_id() -> Result<String, String> {
    // The kernel's random UUID, as systemd-machine-id-setup does without systemd.
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map_err(|e| format!("reading /proc/sys/kernel/random/uuid: {e}"))?;
    let id: String = uuid.trim().chars().filter(|c| *c != '-').collect();
    if id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(format!("unexpected uuid `{}`", uuid.trim()))
    }
}

impl Phase for IdentityPhase {
    fn id(&self) -> PhaseId {
        PhaseId::Identity
    }

    fn run(&mut self, ctx: &mut BootContext) -> Result<String, PhaseFailure> {
        let fail = |message: String| PhaseFailure {
            message,
            hint: "the node's /etc must be writable".into(),
        };
        let name = ctx.spec.name.clone();
        let etc = self.root.join("etc");
        std::fs::create_dir_all(&etc)
            .map_err(|e| fail(format!("creating {}: {e}", etc.display())))?;

        // machine-id: the image ships it empty; the first boot fills it.
        let id_path = etc.join("machine-id");
        let current = std::fs::read_to_string(&id_path).unwrap_or_default();
        let (machine_id, generated) = if current.trim().len() == 32 {
            (current.trim().to_string(), false)
        } else {
            let id = new_machine_id().map_err(fail)?;
            std::fs::write(&id_path, format!("{id}\n"))
                .map_err(|e| fail(format!("writing {}: {e}", id_path.display())))?;
            (id, true)
        };

        std::fs::write(etc.join("hostname"), format!("{name}\n"))
            .map_err(|e| fail(format!("writing /etc/hostname: {e}")))?;
        if self.set_kernel_hostname {
            nix::unistd::sethostname(&name).map_err(|e| PhaseFailure {
                message: format!("sethostname({name}): {}", e.desc()),
                hint: "kina-init needs CAP_SYS_ADMIN in its UTS namespace (Apple container: --cap-add ALL)".into(),
            })?;
        }

        write_hosts(&etc.join("hosts"), &name, &ctx.spec.peers).map_err(fail)?;

        Ok(format!(
            "hostname {name}, machine-id {}{}, {} peer(s) in /etc/hosts",
            &machine_id[..8],
            if generated { " (new)" } else { "" },
            ctx.spec.peers.len()
        ))
    }
}

/// Writes kina's block of /etc/hosts: the node's own name and its peers'
/// addresses. Apple's runtime pre-writes the file, so the block is appended
/// (and replaced on the next call), never the whole file. Called at boot and
/// again when the host rewrites the spec with peers' new addresses.
pub fn write_hosts(hosts_path: &Path, name: &str, peers: &[Peer]) -> Result<(), String> {
    let existing = std::fs::read_to_string(hosts_path).unwrap_or_default();
    let mut kept: Vec<&str> = Vec::new();
    let mut in_block = false;
    for line in existing.lines() {
        if line == HOSTS_MARKER {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            kept.push(line);
        }
    }
    let mut hosts = kept.join("\n");
    if !hosts.is_empty() {
        hosts.push('\n');
    }
    if !hosts
        .lines()
        .any(|l| l.split_whitespace().skip(1).any(|n| n == "localhost"))
    {
        hosts.push_str("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    }
    hosts.push_str(HOSTS_MARKER);
    hosts.push('\n');
    hosts.push_str(&format!("127.0.1.1\t{name}\n"));
    for peer in peers {
        hosts.push_str(&format!("{}\t{}\n", peer.address, peer.name));
    }
    hosts.push_str(HOSTS_MARKER);
    hosts.push('\n');
    std::fs::write(hosts_path, hosts).map_err(|e| format!("writing {}: {e}", hosts_path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::tests_support::ctx;
    use kina_contract::node_spec::Peer;

    fn phase(root: &std::path::Path) -> IdentityPhase {
        IdentityPhase {
            root: root.into(),
            set_kernel_hostname: false,
        }
    }

    #[test]
    fn the_machine_id_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/machine-id"), "").unwrap();
        let first = phase(dir.path()).run(&mut ctx()).unwrap();
        assert!(first.contains("(new)"), "{first}");
        let id = std::fs::read_to_string(dir.path().join("etc/machine-id")).unwrap();
        assert_eq!(id.trim().len(), 32);
        let second = phase(dir.path()).run(&mut ctx()).unwrap();
        assert!(!second.contains("(new)"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/machine-id")).unwrap(),
            id
        );
    }

    #[test]
    fn pre_written_hosts_are_kept_and_kinas_block_is_replaced_not_repeated() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/hosts"),
            "127.0.0.1 localhost\n192.168.64.9 written-by-apple\n",
        )
        .unwrap();
        let mut c = ctx();
        c.spec.peers.push(Peer {
            name: "kina-control-plane".into(),
            address: "192.168.64.2".into(),
            pod_cidr: "10.244.0.0/24".into(),
        });
        phase(dir.path()).run(&mut c).unwrap();
        phase(dir.path()).run(&mut c).unwrap();
        let hosts = std::fs::read_to_string(dir.path().join("etc/hosts")).unwrap();
        assert!(
            hosts.starts_with("127.0.0.1 localhost\n192.168.64.9 written-by-apple\n"),
            "{hosts}"
        );
        assert_eq!(
            hosts.matches("192.168.64.2\tkina-control-plane").count(),
            1,
            "{hosts}"
        );
        assert_eq!(hosts.matches("127.0.1.1\tn1").count(), 1, "{hosts}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/hostname")).unwrap(),
            "n1\n"
        );
    }
}
