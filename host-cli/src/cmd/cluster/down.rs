//! `kina down` / `kina delete cluster(s)`: kind's semantics, where
//! deleting a cluster that does not exist is not an error.

use anyhow::Context;

use crate::cli::DownArgs;
use crate::cluster::kubeconfig::KubeconfigFiles;
use crate::cluster::lifecycle;
use crate::cluster::progress::Steps;
use crate::cluster::{ClusterDir, record};
use crate::dirs::KinaDirs;
use crate::provider::AnyProvider;

pub async fn run(args: DownArgs, dirs: &KinaDirs, quiet: bool) -> anyhow::Result<()> {
    named(&[args.cluster.resolve()], args.all, dirs, quiet).await
}

/// Deletes the clusters `names`, or every cluster with `all`.
pub async fn named(
    names: &[String],
    all: bool,
    dirs: &KinaDirs,
    quiet: bool,
) -> anyhow::Result<()> {
    let names = if all {
        record::names(dirs)
    } else {
        names.to_vec()
    };
    let kubeconfig = KubeconfigFiles::from_env();
    let progress = Steps::new(quiet);
    for name in names {
        // The name becomes a path that is removed: never `..` or empty.
        crate::cluster_config::check_cluster_name(&name).map_err(anyhow::Error::msg)?;
        let record = ClusterDir::new(dirs, &name);
        if !record.dir.exists() {
            progress.say(&format!("No cluster {name} to delete"));
            continue;
        }
        if !record.exists() {
            // Claimed by an `up` that stopped before writing its record:
            // nothing was made yet.
            std::fs::remove_dir_all(&record.dir)
                .with_context(|| format!("removing {}", record.dir.display()))?;
            continue;
        }
        let plan = match record.load(&name) {
            Ok(plan) => plan,
            Err(e) => {
                // Without a readable record the nodes are unknown: remove
                // the cluster's own directory and say what may be left.
                record.remove()?;
                eprintln!(
                    "{e:#}\nRemoved the record of cluster {name}. Nodes it had may remain: QEMU \
                     nodes named {name}-… in `kina node list` (`kina node rm` removes them), \
                     Apple containers labelled io.kina.cluster={name} in `container list --all`"
                );
                continue;
            }
        };
        progress.say(&format!("Deleting cluster \"{name}\" ..."));
        let provider = AnyProvider::of(plan.provider, dirs);
        lifecycle::down(&provider, dirs, &plan, &kubeconfig, &progress).await?;
        progress.say(&format!(
            "Deleted nodes: {:?}",
            plan.nodes.iter().map(|n| &n.name).collect::<Vec<_>>()
        ));
    }
    Ok(())
}
