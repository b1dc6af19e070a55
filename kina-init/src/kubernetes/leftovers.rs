//! What a `kubeadm init` that failed or was cut short leaves on a control
//! plane, and clearing it so the next boot can init again.
//!
//! kubeadm init's preflight refuses to run over its own leftovers: static
//! pod manifests (`FileAvailable--etc-kubernetes-manifests-*.yaml`) and a
//! non-empty etcd data directory (`DirAvailable--var-lib-etcd`) are errors
//! (cmd/kubeadm/app/preflight/checks.go, `InitNodeChecks`). And kina-init
//! starts the kubelet as soon as kubeadm's kubelet files exist, so stale ones
//! would bring the old static pods back before kubeadm even runs. Without the
//! "init done" marker, kina-init therefore runs `kubeadm reset --force` when
//! any of these is found, then makes sure of what reset may leave:
//!
//! - reset's cleanup-node phase (cmd/kubeadm/app/cmd/phases/reset/
//!   cleanupnode.go) empties /etc/kubernetes/manifests, the pki directory and
//!   /var/lib/kubelet and deletes admin.conf, super-admin.conf, kubelet.conf,
//!   bootstrap-kubelet.conf, controller-manager.conf and scheduler.conf; but
//!   it empties /var/lib/kubelet only when it could unmount what is mounted
//!   under it, and gives up on any directory with a warning, not an error.
//! - reset's remove-etcd-member phase (removeetcdmember.go) empties the etcd
//!   data directory only when it can tell where it is: from the cluster's
//!   configuration (not reachable when init never finished), from the etcd
//!   manifest, or kubeadm's default when the manifest is gone. A manifest
//!   that is there but does not parse (init cut short while writing it) makes
//!   it assume an external etcd and leave the data.
//!
//! So after reset kina-init removes whichever of these is still there.

use std::path::{Path, PathBuf};

use super::kubelet::KubeletPaths;

/// Directories kubeadm init fills; non-empty means init ran here.
const DIRECTORIES: [&str; 2] = ["etc/kubernetes/manifests", "var/lib/etcd"];

/// The kubelet's files from kubeadm's kubelet-start phase, which kina-init
/// starts the kubelet from. `instance-config.yaml` is NodeLocalCRISocket's
/// (beta in 1.34, GA in 1.36).
const KUBELET_FILES: [&str; 3] = [
    "var/lib/kubelet/kubeadm-flags.env",
    "var/lib/kubelet/config.yaml",
    "var/lib/kubelet/instance-config.yaml",
];

/// The kubeconfigs init writes (reset's `filesToClean`).
const KUBECONFIGS: [&str; 6] = [
    "etc/kubernetes/admin.conf",
    "etc/kubernetes/super-admin.conf",
    "etc/kubernetes/kubelet.conf",
    "etc/kubernetes/bootstrap-kubelet.conf",
    "etc/kubernetes/controller-manager.conf",
    "etc/kubernetes/scheduler.conf",
];

fn non_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_some())
}

/// What an earlier `kubeadm init` left under `paths.root`, for the log;
/// empty when init never ran here.
pub fn found(paths: &KubeletPaths) -> Vec<PathBuf> {
    let root = &paths.root;
    let mut found: Vec<PathBuf> = DIRECTORIES
        .iter()
        .map(|d| root.join(d))
        .filter(|d| non_empty_dir(d))
        .collect();
    found.extend(
        KUBELET_FILES[..2]
            .iter()
            .map(|f| root.join(f))
            .filter(|f| f.exists()),
    );
    found
}

fn clear_dir(dir: &Path) -> Result<(), String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("reading {}: {e}", dir.display())),
    };
    for entry in entries {
        let path = entry
            .map_err(|e| format!("reading {}: {e}", dir.display()))?
            .path();
        let removed = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| format!("removing {}: {e}", path.display()))?;
    }
    Ok(())
}

fn remove_file(path: &Path) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing {}: {e}", path.display())),
    }
}

/// Removes what `kubeadm reset` left of an earlier init (see the module
/// comment). The directories themselves stay, as reset leaves them. Of
/// /var/lib/kubelet only what the kubelet starts from goes (its files from
/// kubeadm and its certificates): anything else there is per pod, and the
/// kubelet removes orphaned pods' directories itself.
pub fn clear(paths: &KubeletPaths) -> Result<(), String> {
    let root = &paths.root;
    for dir in DIRECTORIES {
        clear_dir(&root.join(dir))?;
    }
    clear_dir(&paths.pki_dir())?;
    // The kubelet's client and serving certificates from the failed init.
    clear_dir(&root.join("var/lib/kubelet/pki"))?;
    for file in KUBELET_FILES.iter().chain(&KUBECONFIGS) {
        remove_file(&root.join(file))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_are_found_and_cleared_and_a_clean_node_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let paths = KubeletPaths {
            root: dir.path().to_path_buf(),
        };
        let root = dir.path();
        for d in DIRECTORIES {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        assert!(found(&paths).is_empty());
        std::fs::create_dir_all(root.join("var/lib/etcd/member/snap")).unwrap();
        std::fs::write(root.join("var/lib/etcd/member/snap/db"), "x").unwrap();
        std::fs::create_dir_all(root.join("var/lib/kubelet")).unwrap();
        std::fs::write(root.join(KUBELET_FILES[0]), "KUBELET_KUBEADM_ARGS=\"\"").unwrap();
        std::fs::create_dir_all(paths.pki_dir()).unwrap();
        std::fs::write(paths.pki_dir().join("ca.crt"), "x").unwrap();
        std::fs::write(root.join(KUBECONFIGS[1]), "x").unwrap();
        assert_eq!(
            found(&paths),
            [root.join("var/lib/etcd"), root.join(KUBELET_FILES[0])]
        );
        clear(&paths).unwrap();
        assert!(found(&paths).is_empty());
        assert!(root.join("var/lib/etcd").is_dir());
        assert!(!paths.pki_dir().join("ca.crt").exists());
        assert!(!root.join(KUBECONFIGS[1]).exists());
    }
}
