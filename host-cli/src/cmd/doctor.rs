//! `kina doctor`: whether this machine can run kina clusters, found by
//! doing what `up` does rather than by guessing from versions alone. For
//! Apple's `container`, which cannot run where kina is developed, this is
//! the one command that shows on a Mac what only a Mac can confirm: the
//! version gate, the cluster network (macOS 26), the image load round trip
//! (`container image load`, then the digest Apple reports against kina's
//! store) and a node booting to containerd-ready with kina-init checking
//! Apple's kernel.

use crate::cli::{ClusterName, DoctorArgs, DownArgs, UpArgs};
use crate::dirs::KinaDirs;
use crate::provider::ProviderKind;

/// The phase a doctor's node stops after: the node is up, its network
/// and containerd run, and nothing needs Kubernetes.
const STOP_AFTER: &str = "containerd";

pub async fn run(args: DoctorArgs, dirs: &KinaDirs, quiet: bool) -> anyhow::Result<()> {
    let kind = args.provider.unwrap_or_else(ProviderKind::host_default);
    println!(
        "kina {} doctor, provider {}",
        env!("CARGO_PKG_VERSION"),
        kind.label()
    );
    println!("  data directory:  {}", dirs.data().display());
    println!("  cache directory: {}", dirs.cache().display());
    let name = args.name.clone();
    // A cluster of that name is the user's (or a doctor's left behind by
    // a crash): never deleted without being asked.
    if crate::cluster::ClusterDir::new(dirs, &name).dir.exists() {
        anyhow::bail!(
            "a cluster named {name} exists already; delete it with `kina down --name {name}` or \
             give the doctor another name with --name"
        );
    }
    let up = UpArgs {
        cluster: ClusterName {
            name: Some(name.clone()),
        },
        config: None,
        image: args.image,
        provider: Some(kind),
        wait: args.wait,
        retain: false,
        stop_after: Some(STOP_AFTER.to_string()),
        kernel: args.kernel,
        mirrors: args.mirrors,
        accel: args.accel,
        disk_size: 8,
        platform: args.platform,
        kubeconfig_skip: true,
        dry_run: false,
        kubernetes_version: None,
    };
    // `up` undoes what it made when it fails, so only a success leaves a
    // cluster to delete.
    let booted = super::cluster::up::run(up, dirs, quiet).await;
    let deleted = match &booted {
        Ok(()) => {
            let down = DownArgs {
                cluster: ClusterName {
                    name: Some(name.clone()),
                },
                all: false,
            };
            super::cluster::down::run(down, dirs, quiet).await
        }
        Err(_) => Ok(()),
    };
    match (booted, deleted) {
        (Ok(()), Ok(())) => {
            println!(
                "kina doctor ({}): a node booted to {STOP_AFTER}-ready and was deleted; this machine runs kina clusters",
                kind.label()
            );
            Ok(())
        }
        (Err(e), _) => Err(e.context(format!(
            "kina doctor: a one-node {} cluster could not be made (the error above says at which step)",
            kind.label()
        ))),
        (Ok(()), Err(e)) => Err(e.context(format!(
            "kina doctor: the node booted, but deleting cluster {name} failed; `kina down --name {name}` retries"
        ))),
    }
}
