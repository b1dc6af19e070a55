//! `kina up`: the node image (made or pulled first when the local store
//! lacks it), a plan, then kind's ordered steps over one context: claim
//! the record, prepare what the nodes share, make the nodes, wait for
//! them, merge the kubeconfig. A failure or Ctrl-C takes back what was
//! made in reverse order, unless `--retain` (see `sequence`); an image
//! made on the way is kept, as the store's other images are.

use std::future::Future;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::kubeconfig::{self, KubeconfigFiles};
use super::plan::{self, ClusterPlan, PlanInputs, Protocol};
use super::progress::Steps;
use super::record::{self, ClusterDir};
use super::sequence::{self, Cleanup, Failed, Sequence};
use super::wait::wait_for_boot;
use crate::cluster_config::ClusterConfig;
use crate::cluster_secrets::{self, ClusterSecrets};
use crate::dirs::KinaDirs;
use crate::provider::Provider;

/// What `up` was asked for.
pub struct UpRequest<'a> {
    pub name: String,
    pub config: &'a ClusterConfig,
    pub image: String,
    /// The image's Kubernetes release, when it carries one.
    pub kubernetes_version: Option<String>,
    /// Boot only up to this phase (checked by the caller).
    pub stop_after: Option<String>,
    /// Zero: do not wait for the nodes.
    pub wait: Duration,
    pub retain: bool,
    /// `None`: leave the user's kubeconfig alone (`--kubeconfig-skip`).
    pub kubeconfig: Option<KubeconfigFiles>,
    /// What relative `extraMounts` paths are relative to.
    pub cwd: PathBuf,
}

/// The node image `up` boots, and how it gets into the local store when
/// it is not there: `kina up` from nothing makes the default image first
/// (or pulls a registry's), as kind's first step ensures its node image.
#[allow(async_fn_in_trait)]
pub trait NodeImage {
    /// `None` when the local store has the image; else the progress line of
    /// getting it (`Building node image … 🖼️`).
    fn missing(&self) -> anyhow::Result<Option<String>>;

    /// Puts the image into the local store, showing its own progress.
    async fn obtain(&self) -> anyhow::Result<()>;

    /// The Kubernetes release the image carries, read from the store.
    fn kubernetes_version(&self) -> anyhow::Result<Option<String>>;
}

/// An image the caller found in the store, with its release.
struct InStore(Option<String>);

impl NodeImage for InStore {
    fn missing(&self) -> anyhow::Result<Option<String>> {
        Ok(None)
    }

    async fn obtain(&self) -> anyhow::Result<()> {
        Ok(())
    }

    fn kubernetes_version(&self) -> anyhow::Result<Option<String>> {
        Ok(self.0.clone())
    }
}

/// A host port nobody listens on now, for `hostPort: 0` and the API server.
pub fn free_port(protocol: Protocol, address: Ipv4Addr) -> anyhow::Result<u16> {
    let port = match protocol {
        Protocol::Tcp => TcpListener::bind((address, 0)).and_then(|l| l.local_addr()),
        Protocol::Udp => UdpSocket::bind((address, 0)).and_then(|s| s.local_addr()),
    }
    .with_context(|| format!("finding a free port on {address}"))?
    .port();
    Ok(port)
}

/// The steps of `up`, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpStep {
    /// The record, written first: an interrupted `up` leaves what `down`
    /// needs.
    Claim,
    Prepare,
    Create,
    Wait,
    Kubeconfig,
}

/// The context every step of `up` works on.
struct Up<'a, P: Provider> {
    provider: &'a P,
    record: ClusterDir,
    plan: ClusterPlan,
    config: &'a ClusterConfig,
    secrets: Option<ClusterSecrets>,
    wait: Duration,
    kubeconfig: Option<KubeconfigFiles>,
    progress: &'a Steps,
    /// The file the kubeconfig went to, once merged.
    merged: Option<PathBuf>,
}

impl<P: Provider> Up<'_, P> {
    fn runs_kubernetes(&self) -> bool {
        self.plan.kubernetes_version.is_some() && self.plan.stop_after.is_none()
    }

    /// The closing message.
    fn finish(&self) -> String {
        let name = &self.plan.name;
        let count = self.plan.nodes.len();
        if self.wait.is_zero() {
            return format!(
                "Cluster \"{name}\" is booting ({count} nodes); `kina status --name {name}` shows their phases{}",
                if self.plan.kubernetes_version.is_some() {
                    format!(
                        ", and `kina kubeconfig --name {name}` merges the kubeconfig once they are ready"
                    )
                } else {
                    String::new()
                }
            );
        }
        if !self.runs_kubernetes() {
            let why = match &self.plan.stop_after {
                Some(p) => format!("booted up to phase {p} (--stop-after)"),
                None => format!(
                    "ready; the image {} carries no Kubernetes, so the nodes run containerd and the pod network only",
                    self.plan.image
                ),
            };
            return format!(
                "Cluster \"{name}\": {count} node(s) {why}. `kina get nodes --name {name}` lists them."
            );
        }
        match &self.merged {
            Some(path) => format!(
                "Set kubectl context to \"{}\" in {}\nYou can now use your cluster with:\n\nkubectl cluster-info --context {}",
                kubeconfig::context_name(name),
                path.display(),
                kubeconfig::context_name(name)
            ),
            None => format!(
                "Cluster \"{name}\" is ready; `kina kubeconfig --name {name}` merges its kubeconfig"
            ),
        }
    }
}

impl<P: Provider> Sequence for Up<'_, P> {
    type Step = UpStep;

    fn name(&self) -> String {
        format!("Creating cluster \"{}\"", self.plan.name)
    }

    fn steps(&self) -> Vec<UpStep> {
        let mut steps = vec![UpStep::Claim, UpStep::Prepare, UpStep::Create];
        if !self.wait.is_zero() {
            steps.push(UpStep::Wait);
            if self.runs_kubernetes() && self.kubeconfig.is_some() {
                steps.push(UpStep::Kubeconfig);
            }
        }
        steps
    }

    fn title(&self, step: UpStep) -> Option<String> {
        Some(match step {
            UpStep::Claim => return None,
            UpStep::Prepare => self.provider.prepare_title(&self.plan),
            UpStep::Create => format!(
                "Preparing nodes {}",
                "📦 ".repeat(self.plan.nodes.len()).trim_end()
            ),
            UpStep::Wait => match (&self.plan.kubernetes_version, &self.plan.stop_after) {
                (Some(version), None) => format!("Starting Kubernetes {version} 🕹️"),
                (_, Some(phase)) => format!("Booting nodes up to phase {phase} 🥾"),
                (None, None) => "Booting nodes 🥾".to_string(),
            },
            UpStep::Kubeconfig => "Writing the kubeconfig 📜".to_string(),
        })
    }

    async fn run(&mut self, step: UpStep) -> anyhow::Result<()> {
        match step {
            UpStep::Claim => {
                self.record.claim(&self.plan.name)?;
                self.record.save(&self.plan)
            }
            UpStep::Prepare => self.provider.prepare(&mut self.plan).await,
            UpStep::Create => {
                let (provider, config, secrets) = (self.provider, self.config, &self.secrets);
                let specs = |plan: &ClusterPlan, i: usize| {
                    plan.node_spec(
                        i,
                        config,
                        secrets.as_ref(),
                        provider.node_interfaces(plan, i)?,
                    )
                };
                let created = provider.create(&mut self.plan, &specs).await;
                // Addresses the provider handed out are kept even when a
                // later node failed: `down` and `--retain` users need them.
                self.record.save(&self.plan)?;
                created
            }
            UpStep::Wait => {
                wait_for_boot(self.provider, &self.plan, self.wait, self.progress).await
            }
            UpStep::Kubeconfig => {
                let files = self
                    .kubeconfig
                    .as_ref()
                    .context("no kubeconfig files to write to")?;
                self.merged = Some(kubeconfig::merge(self.provider, &self.plan, files)?);
                Ok(())
            }
        }
    }

    async fn undo(&mut self, step: UpStep) -> anyhow::Result<()> {
        match step {
            UpStep::Claim => self.record.remove(),
            UpStep::Create => self.provider.delete(&self.plan).await.map(drop),
            UpStep::Kubeconfig => match &self.kubeconfig {
                Some(files) => kubeconfig::remove(&self.plan.name, files),
                None => Ok(()),
            },
            UpStep::Prepare | UpStep::Wait => Ok(()),
        }
    }
}

/// The image step: its own start and end lines rather than a spinner,
/// since the build or pull shows its progress bars while it runs. Not
/// undone: an image is the store's, kept for the next cluster.
async fn obtain_image(
    image: &impl NodeImage,
    title: &str,
    progress: &Steps,
    interrupt: &mut (impl Future<Output = ()> + Unpin),
) -> anyhow::Result<()> {
    progress.say(&format!(" • {title} …"));
    let started = Instant::now();
    let outcome = tokio::select! {
        result = image.obtain() => result,
        () = &mut *interrupt => Err(anyhow::anyhow!("interrupted")),
    };
    let mark = if outcome.is_ok() { "✓" } else { "✗" };
    progress.say(&format!(
        " {mark} {title} ({:.1} s)",
        started.elapsed().as_secs_f64()
    ));
    outcome
}

/// What `up` and `up --dry-run` refuse before anything else: a name no
/// provider can use, then the config fields this provider cannot honour.
pub fn check_creatable<P: Provider>(
    provider: &P,
    name: &str,
    config: &ClusterConfig,
) -> anyhow::Result<()> {
    crate::cluster_name::check(name).map_err(anyhow::Error::msg)?;
    let refusals = provider.refusals(config);
    if !refusals.is_empty() {
        let list: String = refusals.iter().map(|e| format!("\n  {e}")).collect();
        bail!(
            "the {} provider cannot create this cluster as configured:{list}",
            provider.kind().label()
        );
    }
    Ok(())
}

/// Creates the cluster `request` describes on `provider` from an image in
/// the local store whose release is `request.kubernetes_version`.
pub async fn up<P: Provider>(
    provider: &P,
    dirs: &KinaDirs,
    request: UpRequest<'_>,
    progress: &Steps,
    interrupt: &mut (impl Future<Output = ()> + Unpin),
) -> anyhow::Result<()> {
    let image = InStore(request.kubernetes_version.clone());
    up_with_image(provider, dirs, request, &image, progress, interrupt).await
}

/// Creates the cluster `request` describes on `provider`, first getting
/// `image` into the local store when it is not there. Refusals and the
/// checks of the config come first, before an image is made; the image's
/// release then settles the plan, the checks that nothing clashes follow,
/// and then the steps. `interrupt` completing counts as a failure
/// (Ctrl-C), with the same clean-up.
pub async fn up_with_image<P: Provider>(
    provider: &P,
    dirs: &KinaDirs,
    mut request: UpRequest<'_>,
    image: &impl NodeImage,
    progress: &Steps,
    interrupt: &mut (impl Future<Output = ()> + Unpin),
) -> anyhow::Result<()> {
    let name = request.name.clone();
    check_creatable(provider, &name, request.config)?;
    let record = ClusterDir::new(dirs, &name);
    if record.exists() {
        bail!("cluster {name} already exists; `kina down --name {name}` deletes it");
    }
    if let Some(title) = image.missing()? {
        // A config the plan refuses is refused before minutes of image
        // build, not after.
        plan::plan(&PlanInputs {
            provider: provider.kind(),
            config: request.config,
            name: &name,
            image: &request.image,
            kubernetes_version: None,
            stop_after: request.stop_after.as_deref(),
            cwd: &request.cwd,
            free_port: &free_port,
        })?;
        obtain_image(image, &title, progress, interrupt)
            .await
            .with_context(|| {
                format!(
                    "creating cluster {name} failed at its node image {}; nothing of the cluster was made",
                    request.image
                )
            })?;
    }
    request.kubernetes_version = image.kubernetes_version()?;
    let mut plan = plan::plan(&PlanInputs {
        provider: provider.kind(),
        config: request.config,
        name: &name,
        image: &request.image,
        kubernetes_version: request.kubernetes_version.as_deref(),
        stop_after: request.stop_after.as_deref(),
        cwd: &request.cwd,
        free_port: &free_port,
    })?;
    provider.shape(&mut plan, &record::all(dirs))?;
    provider.check_free(&plan)?;
    let secrets = match &request.kubernetes_version {
        Some(_) => Some(cluster_secrets::generate(&name)?),
        None => None,
    };
    progress.say(&format!(
        "Creating cluster \"{name}\" on {} ...",
        provider.describe()
    ));
    let mut up = Up {
        provider,
        record,
        plan,
        config: request.config,
        secrets,
        wait: request.wait,
        kubeconfig: request.kubeconfig,
        progress,
        merged: None,
    };
    match sequence::run(&mut up, progress, interrupt, request.retain).await {
        Ok(()) => {
            progress.say(&up.finish());
            Ok(())
        }
        Err(Failed { error, cleanup }) => Err(match cleanup {
            Cleanup::Retained => error.context(format!(
                "creating cluster {name} failed; its nodes are kept (--retain): `kina export logs --name {name}` collects their logs, `kina down --name {name}` removes them"
            )),
            Cleanup::Undone => error.context(format!(
                "creating cluster {name} failed; everything it made was removed (--retain keeps the nodes for debugging)"
            )),
            Cleanup::UndoFailed(undo) => error.context(format!(
                "creating cluster {name} failed; removing what it made failed too: {undo:#} (--retain keeps the nodes for debugging)"
            )),
        }),
    }
}
