//! A cluster's entry in the user's kubeconfig: read from the control
//! plane's admin.conf (through the provider's exec), pointed at the host's
//! forward of the API server, merged and removed as kind does.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use super::plan::ClusterPlan;
use crate::kubeconfig::{self, Entry};
use crate::provider::Provider;

/// Where kubeadm leaves the admin kubeconfig on the control plane.
const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";

/// The user's kubeconfig files, as kubectl finds them: `$KUBECONFIG`, else
/// `~/.kube/config`.
#[derive(Clone, Debug)]
pub struct KubeconfigFiles {
    pub env: Option<OsString>,
    pub home: PathBuf,
}

impl KubeconfigFiles {
    pub fn from_env() -> Self {
        Self {
            env: std::env::var_os("KUBECONFIG"),
            home: std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/")),
        }
    }
}

/// The kubectl context kina names a cluster's entry.
pub fn context_name(cluster: &str) -> String {
    format!("kina-{cluster}")
}

/// The cluster's admin kubeconfig from its control plane, pointed at the
/// host's forward of the API server.
pub fn entry<P: Provider>(provider: &P, plan: &ClusterPlan) -> anyhow::Result<Entry> {
    let name = &plan.name;
    let api = match (&plan.kubernetes_version, &plan.api_server) {
        (Some(_), Some(api)) => api,
        _ => bail!(
            "cluster {name} runs no Kubernetes (its image {} carries none), so it has no kubeconfig",
            plan.image
        ),
    };
    let control_plane = plan
        .control_plane()
        .context("the cluster record has no control-plane node")?;
    let admin = provider
        .exec(
            &control_plane.name,
            &["cat", ADMIN_CONF],
            &mut std::io::empty(),
            Duration::from_secs(30),
        )
        .with_context(|| {
            format!("reading {ADMIN_CONF} (has kubeadm init finished? `kina status --name {name}`)")
        })?;
    Ok(kubeconfig::from_admin_conf(
        &String::from_utf8_lossy(&admin),
        name,
        &api.url(),
    )?)
}

/// Merges the cluster's entry into the file kubectl would write it to;
/// returns that file.
pub fn merge<P: Provider>(
    provider: &P,
    plan: &ClusterPlan,
    files: &KubeconfigFiles,
) -> anyhow::Result<PathBuf> {
    let entry = entry(provider, plan)?;
    let path = kubeconfig::target_file_for(files.env.as_deref(), &files.home, &entry.context)?;
    kubeconfig::merge(&path, &entry, true)?;
    Ok(path)
}

/// Removes the cluster's entry from every file kubectl reads.
pub fn remove(cluster: &str, files: &KubeconfigFiles) -> anyhow::Result<()> {
    let context = context_name(cluster);
    for file in kubeconfig::search_path(files.env.as_deref(), &files.home) {
        kubeconfig::remove(&file, &context)?;
    }
    Ok(())
}
