//! The seam between kina's cluster verbs and whatever runs the nodes
//! (kind's `providers.Provider`, apple/containerization's
//! `VirtualMachineManager`). The cluster code (`crate::cluster`) calls only
//! [`Provider`]; [`AnyProvider`] picks the implementation for a cluster, as
//! youki's `AnyCgroupManager` does, so that choice is made in one place.
//!
//! A new provider (a remote Linux host, Lima, Firecracker) is one module
//! here implementing [`Provider`], a variant of [`ProviderKind`] and one of
//! [`AnyProvider`]; nothing in `cluster/` or `cmd/` changes.

pub mod apple;
pub mod qemu;
pub mod spec_delivery;

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use kina_contract::node_spec::NodeSpec;
use serde::{Deserialize, Serialize};

use crate::cluster::plan::{ClusterPlan, NodeInterfaces};
use crate::cluster_config::{ClusterConfig, FieldError};
use crate::dirs::KinaDirs;

/// Which provider runs a cluster's nodes: the one name for it on the
/// command line (`--provider`), in `cluster.json` and in messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// QEMU VMs (Linux hosts).
    #[default]
    Qemu,
    /// Apple's `container` (macOS on Apple silicon).
    Apple,
}

impl ProviderKind {
    /// Apple's `container` on macOS, QEMU elsewhere.
    pub fn host_default() -> Self {
        if cfg!(target_os = "macos") {
            ProviderKind::Apple
        } else {
            ProviderKind::Qemu
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ProviderKind::Qemu => "QEMU",
            ProviderKind::Apple => "Apple container",
        }
    }
}

/// Makes node `index`'s spec from the plan as it stands (peers at the
/// addresses known so far). Providers call it again when addresses change.
pub type SpecMaker<'a> = dyn Fn(&ClusterPlan, usize) -> anyhow::Result<NodeSpec> + 'a;

/// Everything the cluster verbs need from a provider. Methods that wait on
/// VMs are async so `up` can be interrupted between them; they are awaited
/// on the caller's task, never spawned, so no `Send` bound is asked of
/// their futures.
#[allow(async_fn_in_trait)]
pub trait Provider {
    fn kind(&self) -> ProviderKind;

    /// How the provider introduces itself in `up`'s first line (with its
    /// version where it has one).
    fn describe(&self) -> String {
        self.kind().label().to_string()
    }

    /// The config fields this provider cannot honour, each naming the field
    /// and why; `up` refuses the config when there is any.
    fn refusals(&self, config: &ClusterConfig) -> Vec<FieldError>;

    /// The provider's part of a new plan: how nodes are addressed and what
    /// it keeps about the cluster. `others` are the clusters that exist.
    fn shape(&self, plan: &mut ClusterPlan, others: &[ClusterPlan]) -> anyhow::Result<()>;

    /// The interfaces node `index`'s spec configures itself.
    fn node_interfaces(&self, plan: &ClusterPlan, index: usize) -> anyhow::Result<NodeInterfaces>;

    /// Fails when a node of `plan` would clash with something that exists
    /// outside any cluster record.
    fn check_free(&self, plan: &ClusterPlan) -> anyhow::Result<()>;

    /// The title of [`Provider::prepare`]'s step.
    fn prepare_title(&self, plan: &ClusterPlan) -> String;

    /// What every node shares, made before any node: QEMU's kernel, the
    /// node image in Apple's store. Sets `plan.image_digest` when the
    /// provider knows which build of the image the nodes will boot.
    async fn prepare(&self, plan: &mut ClusterPlan) -> anyhow::Result<()>;

    /// Makes and boots every node of `plan`, filling in addresses the
    /// provider hands out. On failure, what was made stays for
    /// [`Provider::delete`] (or `--retain`).
    async fn create(&self, plan: &mut ClusterPlan, specs: &SpecMaker<'_>) -> anyhow::Result<()>;

    /// Boots a stopped cluster's nodes again. Returns whether their
    /// addresses moved (the specs were then rewritten to follow).
    async fn start(&self, plan: &mut ClusterPlan) -> anyhow::Result<bool>;

    /// Shuts every node down in order; one line per node saying how.
    async fn stop(&self, plan: &ClusterPlan) -> anyhow::Result<Vec<String>>;

    /// Removes every node of the cluster and what the provider made for
    /// it, also after an interrupted `up` (creations still running are
    /// waited for first); the names of the nodes removed.
    async fn delete(&self, plan: &ClusterPlan) -> anyhow::Result<Vec<String>>;

    fn is_running(&self, node: &str) -> bool;

    /// Runs `argv` in `node` with `stdin`: its standard output, or an error
    /// carrying its standard error. Everything kina reads from or moves
    /// into a node goes through here.
    fn exec(
        &self,
        node: &str,
        argv: &[&str],
        stdin: &mut dyn Read,
        timeout: Duration,
    ) -> anyhow::Result<Vec<u8>>;

    /// Puts `spec` in force in the running node `node`, through
    /// [`Provider::exec`] and `kina-init replace-spec` (which refuses a
    /// spec for another node), and checks the digest the node answers;
    /// returns it. Every rewrite of a running node's spec goes through
    /// here, on every provider: none relies on a file the host shares with
    /// the node (`spec_delivery`).
    fn replace_spec(&self, node: &str, spec: &NodeSpec) -> anyhow::Result<String> {
        spec_delivery::replace(self, node, spec)
    }

    /// One look, while waiting, at whether `node` can still get anywhere:
    /// an error when it cannot (QEMU: its VM exited), `false` when it is
    /// not worth reading its status now (`last` then says why).
    fn check_alive(&self, node: &str, last: &mut String) -> anyhow::Result<bool>;

    /// Where a user looks when `node` fails (QEMU: its console log).
    fn where_to_look(&self, node: &str) -> Option<String>;

    /// The provider's own records and logs of `node` for `kina export
    /// logs`, written into `out`; what could not be had goes to `errors`.
    fn collect_logs(&self, node: &str, out: &Path, errors: &mut Vec<String>);
}

/// The provider of a cluster, chosen once by its kind.
pub enum AnyProvider {
    Qemu(qemu::QemuProvider),
    Apple(apple::AppleProvider),
}

impl AnyProvider {
    /// The provider that runs clusters of `kind`, for verbs on existing
    /// clusters.
    pub fn of(kind: ProviderKind, dirs: &KinaDirs) -> Self {
        match kind {
            ProviderKind::Qemu => AnyProvider::Qemu(qemu::QemuProvider::new(dirs.clone(), None)),
            ProviderKind::Apple => AnyProvider::Apple(apple::AppleProvider::new(dirs.clone())),
        }
    }

    /// The provider for a new cluster. Apple's CLI is checked first:
    /// without a `container` that can run nodes nothing else matters.
    pub fn for_up(
        kind: ProviderKind,
        dirs: &KinaDirs,
        qemu_nodes: impl FnOnce() -> anyhow::Result<qemu::NodeInputs>,
        apple_kernel: impl FnOnce() -> anyhow::Result<Option<crate::node_kernel::NodeKernel>>,
    ) -> anyhow::Result<Self> {
        Ok(match kind {
            ProviderKind::Qemu => {
                AnyProvider::Qemu(qemu::QemuProvider::new(dirs.clone(), Some(qemu_nodes()?)))
            }
            ProviderKind::Apple => AnyProvider::Apple(
                apple::AppleProvider::checked(dirs.clone())?.with_kernel(apple_kernel()?),
            ),
        })
    }
}

/// Forwards each call to the chosen provider.
macro_rules! each {
    ($self:ident, $p:ident => $call:expr) => {
        match $self {
            AnyProvider::Qemu($p) => $call,
            AnyProvider::Apple($p) => $call,
        }
    };
}

impl Provider for AnyProvider {
    fn kind(&self) -> ProviderKind {
        each!(self, p => p.kind())
    }
    fn describe(&self) -> String {
        each!(self, p => p.describe())
    }
    fn refusals(&self, config: &ClusterConfig) -> Vec<FieldError> {
        each!(self, p => p.refusals(config))
    }
    fn shape(&self, plan: &mut ClusterPlan, others: &[ClusterPlan]) -> anyhow::Result<()> {
        each!(self, p => p.shape(plan, others))
    }
    fn node_interfaces(&self, plan: &ClusterPlan, index: usize) -> anyhow::Result<NodeInterfaces> {
        each!(self, p => p.node_interfaces(plan, index))
    }
    fn check_free(&self, plan: &ClusterPlan) -> anyhow::Result<()> {
        each!(self, p => p.check_free(plan))
    }
    fn prepare_title(&self, plan: &ClusterPlan) -> String {
        each!(self, p => p.prepare_title(plan))
    }
    async fn prepare(&self, plan: &mut ClusterPlan) -> anyhow::Result<()> {
        each!(self, p => p.prepare(plan).await)
    }
    async fn create(&self, plan: &mut ClusterPlan, specs: &SpecMaker<'_>) -> anyhow::Result<()> {
        each!(self, p => p.create(plan, specs).await)
    }
    async fn start(&self, plan: &mut ClusterPlan) -> anyhow::Result<bool> {
        each!(self, p => p.start(plan).await)
    }
    async fn stop(&self, plan: &ClusterPlan) -> anyhow::Result<Vec<String>> {
        each!(self, p => p.stop(plan).await)
    }
    async fn delete(&self, plan: &ClusterPlan) -> anyhow::Result<Vec<String>> {
        each!(self, p => p.delete(plan).await)
    }
    fn is_running(&self, node: &str) -> bool {
        each!(self, p => p.is_running(node))
    }
    fn exec(
        &self,
        node: &str,
        argv: &[&str],
        stdin: &mut dyn Read,
        timeout: Duration,
    ) -> anyhow::Result<Vec<u8>> {
        each!(self, p => p.exec(node, argv, stdin, timeout))
    }
    fn check_alive(&self, node: &str, last: &mut String) -> anyhow::Result<bool> {
        each!(self, p => p.check_alive(node, last))
    }
    fn where_to_look(&self, node: &str) -> Option<String> {
        each!(self, p => p.where_to_look(node))
    }
    fn collect_logs(&self, node: &str, out: &Path, errors: &mut Vec<String>) {
        each!(self, p => p.collect_logs(node, out, errors))
    }
}
