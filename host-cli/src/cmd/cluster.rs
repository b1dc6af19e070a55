//! The cluster verbs: `up`, `down`, `list`, `get nodes`, `kubeconfig`,
//! `stop`, `start`, `status`, `load`, `export logs` (and kind's spellings of
//! them). Each resolves the cluster's record and drives its nodes through
//! the provider.

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use kina_builder::fetch::cache::Cache;
use kina_builder::kernel::KernelRecipe;
use kina_builder::platform::Arch;
use kina_builder::store::ImageStore;
use kina_contract::status::PHASES;
use kina_qemu::accel::AccelChoice;
use kina_qemu::node::{self, NodePaths};
use kina_qemu::vm::ForwardProtocol;

use crate::cli::{DownArgs, KubeconfigArgs, ProviderArg, UpArgs};
use crate::cluster::plan::{ClusterPlan, PlanInputs, ProviderKind, plan};
use crate::cluster::progress::Steps;
use crate::cluster::qemu::{
    InFlight, NodeInputs, create_nodes, destroy_nodes, ensure_kernel, wait_for,
};
use crate::cluster::{self, ClusterDir, Nodes, apple};
use crate::cluster_config::{ClusterConfig, Provider};
use crate::cluster_secrets::ClusterSecrets;
use crate::cmd::node::kernel_mirrors;
use crate::scratch::ScratchFile;
use crate::{cluster_secrets, kubeconfig};
use kina_apple::cli::ContainerCli;

/// The label a kina image carries its Kubernetes release in.
const KUBERNETES_LABEL: &str = "io.kina.kubernetes.version";
/// Where kubeadm leaves the admin kubeconfig on the control plane.
const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";

/// kind's `--wait` takes Go durations; `0` means do not wait.
pub fn parse_wait(text: &str) -> anyhow::Result<Duration> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text)
        .with_context(|| format!("--wait {text}: expected a duration such as 90s, 10m or 1h30m"))
}

fn host_arch(platform: Option<&str>) -> anyhow::Result<Arch> {
    match platform {
        Some(p) => p
            .trim_start_matches("linux/")
            .parse::<Arch>()
            .map_err(anyhow::Error::msg),
        None => Ok(match std::env::consts::ARCH {
            "aarch64" => Arch::Arm64,
            _ => Arch::Amd64,
        }),
    }
}

/// A host port nobody listens on now, for `hostPort: 0` and the API server.
fn free_port(protocol: ForwardProtocol, address: Ipv4Addr) -> anyhow::Result<u16> {
    let port = match protocol {
        ForwardProtocol::Tcp => TcpListener::bind((address, 0)).and_then(|l| l.local_addr()),
        ForwardProtocol::Udp => UdpSocket::bind((address, 0)).and_then(|s| s.local_addr()),
    }
    .with_context(|| format!("finding a free port on {address}"))?
    .port();
    Ok(port)
}

/// The Kubernetes release an image carries for `arch`, from its label.
fn image_kubernetes(image: &str, arch: Arch) -> anyhow::Result<Option<String>> {
    let root = ImageStore::default_root();
    let store = ImageStore::open(&root).with_context(|| {
        format!(
            "opening the image store at {} (`kina image build` makes images)",
            root.display()
        )
    })?;
    let entry = store.find(image).with_context(|| {
        format!("{image} is not in the local image store (see `kina image list`; `kina image build` makes it)")
    })?;
    let summary = crate::cmd::image_inspect::summarize(&store, &entry)?;
    let platform = format!("linux/{arch}");
    let found = summary
        .platforms
        .iter()
        .find(|p| p.platform == platform)
        .with_context(|| {
            format!(
                "{image} has no {platform} variant (it has {}); build it with --platform {arch}",
                summary
                    .platforms
                    .iter()
                    .map(|p| p.platform.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    Ok(found.labels[KUBERNETES_LABEL].as_str().map(str::to_string))
}

fn provider(arg: Option<ProviderArg>) -> ProviderArg {
    arg.unwrap_or(if cfg!(target_os = "macos") {
        ProviderArg::Apple
    } else {
        ProviderArg::Qemu
    })
}

pub async fn up(args: UpArgs, quiet: bool) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => ClusterConfig::load(path)?,
        None => ClusterConfig::default(),
    };
    let name = args
        .cluster
        .name
        .clone()
        .unwrap_or_else(|| config.name().to_string());
    let (provider, provider_name) = match provider(args.provider) {
        ProviderArg::Qemu => (Provider::Qemu, "QEMU"),
        ProviderArg::Apple => (Provider::AppleContainer, "Apple container"),
    };
    let unsupported = config.unsupported_on(provider);
    if !unsupported.is_empty() {
        let list: String = unsupported.iter().map(|e| format!("\n  {e}")).collect();
        bail!("the {provider_name} provider cannot create this cluster as configured:{list}");
    }
    // Apple's CLI is checked before anything else is looked at: without a
    // `container` that can run nodes, nothing below matters.
    let apple_cli = match provider {
        Provider::AppleContainer => {
            let cli = ContainerCli::from_env();
            let supported = tokio::task::block_in_place(|| cli.version())?;
            Some((cli, supported))
        }
        Provider::Qemu => None,
    };
    if let Some(phase) = &args.stop_after
        && !PHASES.contains(&phase.as_str())
    {
        bail!(
            "--stop-after {phase}: not a boot phase (one of {})",
            PHASES.join(", ")
        );
    }
    let wait = parse_wait(&args.wait)?;
    let data = node::data_dir();
    let record = ClusterDir::new(&data, &name);
    if record.exists() {
        bail!("cluster {name} already exists; `kina down --name {name}` deletes it");
    }
    let images: Vec<&str> = config
        .cluster
        .nodes
        .iter()
        .filter_map(|n| n.image.as_deref())
        .collect();
    let image = match images.first() {
        Some(first) if images.iter().any(|i| i != first) => bail!(
            "nodes[].image: the nodes name different images ({}); kina boots every node of a \
             cluster from one image",
            images.join(", ")
        ),
        Some(first) => first.to_string(),
        None => args.image.clone(),
    };
    let arch = host_arch(args.platform.as_deref())?;
    let kubernetes = image_kubernetes(&image, arch)?;
    let ports_in_use: Vec<u16> = cluster::all(&data)
        .iter()
        .filter_map(|c| c.segment.as_ref().map(|s| s.port))
        .collect();
    let plan = plan(&PlanInputs {
        provider: match provider {
            Provider::Qemu => ProviderKind::Qemu,
            Provider::AppleContainer => ProviderKind::Apple,
        },
        config: &config,
        name: &name,
        image: &image,
        kubernetes_version: kubernetes.as_deref(),
        stop_after: args.stop_after.as_deref(),
        ports_in_use: &ports_in_use,
        segment_scope: &data.display().to_string(),
        free_port: &free_port,
    })?;
    for node in &plan.nodes {
        if NodePaths::new(&data, &node.name).dir.exists() {
            bail!(
                "a node named {} already exists (`kina node list`); remove it or choose another cluster name",
                node.name
            );
        }
    }
    let secrets = match &kubernetes {
        Some(_) => Some(cluster_secrets::generate(&name)?),
        None => None,
    };
    let steps = Steps::new(quiet);
    if let Some((cli, supported)) = apple_cli {
        let apple = AppleUp {
            cli,
            version: supported.cli,
            config: &config,
            secrets: secrets.as_ref(),
            wait,
            retain: args.retain,
            kubeconfig_skip: args.kubeconfig_skip,
        };
        return up_apple(&data, plan, &apple, &steps).await;
    }
    let specs = (0..plan.nodes.len())
        .map(|i| plan.node_spec(i, &config, secrets.as_ref()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let kernel_recipe = config.kina.kernel.clone().unwrap_or(args.kernel.clone());
    let (recipe, _) = KernelRecipe::load(&kernel_recipe)?;
    let accel: AccelChoice = args.accel.parse().map_err(anyhow::Error::msg)?;
    let inputs = NodeInputs {
        arch,
        kernel_recipe,
        mirrors: kernel_mirrors(&args.mirrors, &recipe)?,
        cache: Cache::open(Cache::default_root()).context("opening the download cache")?,
        accel,
        disk_size: args.disk_size << 30,
    };

    let mut interrupt = watch_interrupt()?;
    steps.say(&format!("Creating cluster \"{name}\" ..."));
    // Written first: an interrupted or failed `up` leaves a record `down` can use.
    record.claim(&name)?;
    if let Err(e) = record.save(&plan) {
        let _ = std::fs::remove_dir_all(&record.dir);
        return Err(e);
    }
    let in_flight = InFlight::default();
    let run = UpRun {
        data: &data,
        plan: &plan,
        inputs: &inputs,
        in_flight: &in_flight,
        steps: &steps,
        wait,
        kubeconfig_skip: args.kubeconfig_skip,
    };
    let work = bring_up(&run, specs);
    let outcome = tokio::select! {
        result = work => result,
        _ = interrupt.recv() => Err(anyhow::anyhow!("interrupted")),
    };
    conclude(outcome, args.retain, &data, &plan, &steps, Some(&in_flight)).await
}

/// How `up` ends: the closing message; or, after a failure or Ctrl-C,
/// everything made removed (unless `--retain`) and the error saying which.
/// Node creations still running (QEMU) are waited for first, so no VM can
/// start after the removal.
async fn conclude(
    outcome: anyhow::Result<String>,
    retain: bool,
    data: &Path,
    plan: &ClusterPlan,
    steps: &Steps,
    in_flight: Option<&InFlight>,
) -> anyhow::Result<()> {
    let name = &plan.name;
    let error = match outcome {
        Ok(message) => {
            steps.say(&message);
            return Ok(());
        }
        Err(error) => error,
    };
    if retain {
        return Err(error.context(format!(
            "creating cluster {name} failed; its nodes are kept (--retain): `kina export logs --name {name}` collects their logs, `kina down --name {name}` removes them"
        )));
    }
    steps.say(&format!(
        "Creating cluster \"{name}\" failed ({error}); removing what was made (this finishes even if interrupted again)"
    ));
    if let Some(in_flight) = in_flight
        && !in_flight.settle(Duration::from_secs(600)).await
    {
        steps.say("some nodes are still being made after 10 minutes; removing anyway");
    }
    let cleaned = match remove_cluster(data, plan) {
        Ok(()) => "everything it made was removed".to_string(),
        Err(e) => format!("removing what it made failed too: {e:#}"),
    };
    Err(error.context(format!(
        "creating cluster {name} failed; {cleaned} (--retain keeps the nodes for debugging)"
    )))
}

/// What the steps of `up` after the plan work with.
struct UpRun<'a> {
    data: &'a Path,
    plan: &'a ClusterPlan,
    inputs: &'a NodeInputs,
    in_flight: &'a InFlight,
    steps: &'a Steps,
    wait: Duration,
    kubeconfig_skip: bool,
}

/// The steps of `up` after the plan: kernel, nodes, boot, kubeconfig.
/// Returns the closing message.
async fn bring_up(
    run: &UpRun<'_>,
    specs: Vec<kina_contract::node_spec::NodeSpec>,
) -> anyhow::Result<String> {
    let UpRun {
        data,
        plan,
        inputs,
        in_flight,
        steps,
        wait,
        kubeconfig_skip,
    } = *run;
    let step = steps.start("Ensuring the node kernel 🐧");
    match ensure_kernel(inputs).await {
        Ok(_) => step.done(),
        Err(e) => {
            step.failed();
            return Err(e);
        }
    };
    let boxes = "📦 ".repeat(plan.nodes.len());
    let step = steps.start(format!("Preparing nodes {}", boxes.trim_end()));
    if let Err(e) = create_nodes(data, plan, specs, inputs, in_flight).await {
        step.failed();
        return Err(e);
    }
    step.done();
    let phase = plan.stop_after.as_deref().unwrap_or("ready");
    let name = &plan.name;
    if wait.is_zero() {
        return Ok(format!(
            "Cluster \"{name}\" is booting ({} nodes); `kina status --name {name}` shows their phases{}",
            plan.nodes.len(),
            if plan.kubernetes_version.is_some() {
                format!(
                    ", and `kina kubeconfig --name {name}` merges the kubeconfig once they are ready"
                )
            } else {
                String::new()
            }
        ));
    }
    let title = match (&plan.kubernetes_version, &plan.stop_after) {
        (Some(version), None) => format!("Starting Kubernetes {version} 🕹️"),
        (_, Some(phase)) => format!("Booting nodes up to phase {phase} 🥾"),
        (None, None) => "Booting nodes 🥾".to_string(),
    };
    let step = steps.start(title);
    let waited = wait_for(data, plan, phase, wait, |done, total| {
        step.detail(&format!("{done}/{total} nodes"))
    })
    .await;
    if let Err(e) = waited {
        step.failed();
        return Err(e);
    }
    step.done();
    finish(data, plan, steps, kubeconfig_skip)
}

/// The end of `up`, once every node is where it was asked to be: the
/// kubeconfig (for a Kubernetes cluster) and the closing message.
fn finish(
    data: &Path,
    plan: &ClusterPlan,
    steps: &Steps,
    kubeconfig_skip: bool,
) -> anyhow::Result<String> {
    let name = &plan.name;
    if plan.kubernetes_version.is_none() || plan.stop_after.is_some() {
        let why = match &plan.stop_after {
            Some(p) => format!("booted up to phase {p} (--stop-after)"),
            None => format!(
                "ready; the image {} carries no Kubernetes, so the nodes run containerd and the pod network only",
                plan.image
            ),
        };
        return Ok(format!(
            "Cluster \"{name}\": {} node(s) {why}. `kina get nodes --name {name}` lists them.",
            plan.nodes.len()
        ));
    }
    if kubeconfig_skip {
        return Ok(format!(
            "Cluster \"{name}\" is ready; `kina kubeconfig --name {name}` merges its kubeconfig"
        ));
    }
    let step = steps.start("Writing the kubeconfig 📜");
    match merge_kubeconfig(data, plan) {
        Ok(path) => {
            step.done();
            Ok(format!(
                "Set kubectl context to \"kina-{name}\" in {}\nYou can now use your cluster with:\n\nkubectl cluster-info --context kina-{name}",
                path.display()
            ))
        }
        Err(e) => {
            step.failed();
            Err(e)
        }
    }
}

/// Ctrl-C (SIGINT) from now on is reported, not fatal: the handler is
/// installed here, before anything is made, rather than when a
/// `ctrl_c()` future is first polled, which a step that blocks its thread
/// could delay past the point where there is something to clean up.
fn watch_interrupt() -> anyhow::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("watching for Ctrl-C")
}

/// What `up` on Apple's `container` needs besides the plan.
struct AppleUp<'a> {
    cli: ContainerCli,
    version: kina_apple::version::Version,
    config: &'a ClusterConfig,
    secrets: Option<&'a ClusterSecrets>,
    wait: Duration,
    retain: bool,
    kubeconfig_skip: bool,
}

/// `up` on Apple's `container`: version gate, network, nodes (control
/// plane first), addresses, specs, wait, kubeconfig. Failures and Ctrl-C
/// delete what was made unless `--retain`, as on QEMU.
async fn up_apple(
    data: &Path,
    mut plan: ClusterPlan,
    apple: &AppleUp<'_>,
    steps: &Steps,
) -> anyhow::Result<()> {
    let mut interrupt = watch_interrupt()?;
    let cli = &apple.cli;
    let name = plan.name.clone();
    let record = ClusterDir::new(data, &name);
    steps.say(&format!(
        "Creating cluster \"{name}\" on Apple container {} ...",
        apple.version
    ));
    record.claim(&name)?;
    if let Err(e) = record.save(&plan) {
        let _ = std::fs::remove_dir_all(&record.dir);
        return Err(e);
    }
    let work = async {
        let step = steps.start(format!("Ensuring node image {} 🖼", plan.image));
        let scratch = data.join("tmp");
        match tokio::task::block_in_place(|| apple::ensure_image(cli, &plan.image, &scratch)) {
            Ok(_) => step.done(),
            Err(e) => {
                step.failed();
                return Err(e);
            }
        };
        let step = steps.start(format!(
            "Starting nodes {}",
            "📦 ".repeat(plan.nodes.len()).trim_end()
        ));
        let made = tokio::task::block_in_place(|| {
            apple::create_and_start(cli, &mut plan, apple.config, apple.secrets, &record.dir)
        });
        if let Err(e) = made {
            step.failed();
            return Err(e);
        }
        step.done();
        record.save(&plan)?;
        if apple.wait.is_zero() {
            return Ok(format!(
                "Cluster \"{name}\" is booting; `kina status --name {name}` shows its nodes' phases{}",
                if plan.kubernetes_version.is_some() {
                    format!(
                        ", and `kina kubeconfig --name {name}` merges the kubeconfig once they are ready"
                    )
                } else {
                    String::new()
                }
            ));
        }
        let phase = plan.stop_after.clone().unwrap_or_else(|| "ready".into());
        let step = steps.start(format!("Booting nodes up to phase {phase} 🥾"));
        let waited = apple::wait_for(cli, &plan, &phase, apple.wait, |done, total| {
            step.detail(&format!("{done}/{total} nodes"))
        })
        .await;
        if let Err(e) = waited {
            step.failed();
            return Err(e);
        }
        step.done();
        finish(data, &plan, steps, apple.kubeconfig_skip)
    };
    let outcome = tokio::select! {
        result = work => result,
        _ = interrupt.recv() => Err(anyhow::anyhow!("interrupted")),
    };
    conclude(outcome, apple.retain, data, &plan, steps, None).await
}

/// Removes a cluster: its nodes (killed, not shut down: nothing on them
/// is kept), its kubeconfig entries and its record.
fn remove_cluster(data: &Path, plan: &ClusterPlan) -> anyhow::Result<()> {
    match Nodes::of(plan, data) {
        Nodes::Qemu { .. } => {
            destroy_nodes(data, plan)?;
        }
        Nodes::Apple { cli } => {
            apple::destroy(&cli, &plan.name)?;
        }
    }
    let context = format!("kina-{}", plan.name);
    for file in kubeconfig::search_path(std::env::var_os("KUBECONFIG").as_deref(), &home()) {
        kubeconfig::remove(&file, &context)?;
    }
    let dir = ClusterDir::new(data, &plan.name).dir;
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

pub fn down(args: DownArgs, quiet: bool) -> anyhow::Result<()> {
    down_named(&[args.cluster.resolve()], args.all, quiet)
}

/// Deletes the clusters `names`, or every cluster with `all`.
pub fn down_named(names: &[String], all: bool, quiet: bool) -> anyhow::Result<()> {
    let data = node::data_dir();
    let names = if all {
        cluster::names(&data)
    } else {
        names.to_vec()
    };
    for name in names {
        // The name becomes a path that is removed: never `..` or empty.
        crate::cluster_config::check_cluster_name(&name).map_err(anyhow::Error::msg)?;
        let record = ClusterDir::new(&data, &name);
        if !record.dir.exists() {
            // kind: deleting a cluster that does not exist is not an error.
            if !quiet {
                eprintln!("No cluster {name} to delete");
            }
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
                std::fs::remove_dir_all(&record.dir)
                    .with_context(|| format!("removing {}", record.dir.display()))?;
                eprintln!(
                    "{e:#}\nRemoved the record of cluster {name}. Nodes it had may remain: QEMU \
                     nodes named {name}-… in `kina node list` (`kina node rm` removes them), \
                     Apple containers labelled io.kina.cluster={name} in `container list --all`"
                );
                continue;
            }
        };
        if !quiet {
            eprintln!("Deleting cluster \"{name}\" ...");
        }
        remove_cluster(&data, &plan)?;
        if !quiet {
            eprintln!(
                "Deleted nodes: {:?}",
                plan.nodes.iter().map(|n| &n.name).collect::<Vec<_>>()
            );
        }
    }
    Ok(())
}

pub fn list(json: bool) -> anyhow::Result<()> {
    let data = node::data_dir();
    let names = cluster::names(&data);
    if json {
        println!("{}", serde_json::to_string_pretty(&names)?);
    } else if names.is_empty() {
        eprintln!("No kina clusters found.");
    } else {
        for name in names {
            println!("{name}");
        }
    }
    Ok(())
}

fn load_cluster(name: &str) -> anyhow::Result<(PathBuf, ClusterPlan)> {
    let data = node::data_dir();
    let plan = ClusterDir::new(&data, name).load(name)?;
    Ok((data, plan))
}

/// The last phase a node finished, or why it cannot say.
fn node_phase(nodes: &Nodes, name: &str) -> (bool, String) {
    if !nodes.running(name) {
        return (false, "stopped".into());
    }
    match nodes.status(name, Duration::from_secs(3)) {
        Ok(s) => {
            let phase = match s.failed() {
                Some(f) => format!("{} failed", f.name),
                None => s
                    .phases
                    .iter()
                    .rfind(|p| p.state == kina_contract::status::PhaseState::Ok)
                    .map(|p| p.name.clone())
                    .unwrap_or_else(|| "booting".into()),
            };
            (true, phase)
        }
        Err(_) => (true, "booting".into()),
    }
}

pub fn get_nodes(name: &str, json: bool) -> anyhow::Result<()> {
    let (data, plan) = load_cluster(name)?;
    let nodes = Nodes::of(&plan, &data);
    let rows: Vec<serde_json::Value> = plan
        .nodes
        .iter()
        .map(|n| {
            let (running, phase) = node_phase(&nodes, &n.name);
            serde_json::json!({
                "name": n.name,
                "role": match n.role {
                    kina_contract::node_spec::Role::ControlPlane => "control-plane",
                    kina_contract::node_spec::Role::Worker => "worker",
                },
                "running": running,
                "address": n.address.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
                "podCIDR": n.pod_cidr,
                "phase": phase,
            })
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<28} {:<14} {:<12} {:<16} PHASE",
        "NAME", "ROLE", "ADDRESS", "POD CIDR"
    );
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
        println!(
            "{:<28} {:<14} {:<12} {:<16} {}",
            s("name"),
            s("role"),
            s("address"),
            s("podCIDR"),
            s("phase")
        );
    }
    Ok(())
}

/// The cluster's admin kubeconfig from its control plane, pointed at the
/// host's forward of the API server.
fn kubeconfig_entry(data: &Path, plan: &ClusterPlan) -> anyhow::Result<kubeconfig::Entry> {
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
    let admin = Nodes::of(plan, data)
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

fn merge_kubeconfig(data: &Path, plan: &ClusterPlan) -> anyhow::Result<PathBuf> {
    let entry = kubeconfig_entry(data, plan)?;
    let path = kubeconfig::target_file_for(
        std::env::var_os("KUBECONFIG").as_deref(),
        &home(),
        &entry.context,
    )?;
    kubeconfig::merge(&path, &entry, true)?;
    Ok(path)
}

pub fn kubeconfig(args: KubeconfigArgs) -> anyhow::Result<()> {
    let (data, plan) = load_cluster(&args.cluster.resolve())?;
    if args.print {
        return print_kubeconfig(&data, &plan);
    }
    let path = merge_kubeconfig(&data, &plan)?;
    eprintln!(
        "Set kubectl context to \"kina-{}\" in {}",
        plan.name,
        path.display()
    );
    Ok(())
}

pub fn get_kubeconfig(name: &str) -> anyhow::Result<()> {
    let (data, plan) = load_cluster(name)?;
    print_kubeconfig(&data, &plan)
}

fn print_kubeconfig(data: &Path, plan: &ClusterPlan) -> anyhow::Result<()> {
    let entry = kubeconfig_entry(data, plan)?;
    let text = kubeconfig::render(&entry)?;
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

pub fn stop(name: &str) -> anyhow::Result<()> {
    let (data, plan) = load_cluster(name)?;
    if let Nodes::Apple { cli } = Nodes::of(&plan, &data) {
        for n in &plan.nodes {
            cli.stop(&n.name)?;
            eprintln!("{}: stopped", n.name);
        }
        return Ok(());
    }
    let results: Vec<(String, Result<&'static str, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = plan
            .nodes
            .iter()
            .map(|n| {
                let paths = NodePaths::new(&data, &n.name);
                let name = n.name.clone();
                scope.spawn(move || (name, node::stop(&paths, Duration::from_secs(60))))
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    for (node, result) in results {
        match result {
            Ok(how) => eprintln!("{node}: {how}"),
            Err(e) => bail!("stopping {node}: {e}"),
        }
    }
    Ok(())
}

/// Boots a stopped cluster again. QEMU nodes keep their segment addresses
/// across restarts (they are the plan's), so the node specs stay true.
/// Apple nodes may come back at other addresses: they are read again and
/// every spec is rewritten, which kina-init follows (routes, /etc/hosts).
pub async fn start(name: &str, wait: &str, quiet: bool) -> anyhow::Result<()> {
    let wait = parse_wait(wait)?;
    let (data, mut plan) = load_cluster(name)?;
    let steps = Steps::new(quiet);
    let step = steps.start(format!("Starting {} node(s)", plan.nodes.len()));
    if let Nodes::Apple { cli } = Nodes::of(&plan, &data) {
        let record = ClusterDir::new(&data, name);
        let started = tokio::task::block_in_place(|| -> anyhow::Result<bool> {
            // The control plane first, as at `up`: workers find it at once.
            let mut order: Vec<&cluster::plan::PlannedNode> = plan.nodes.iter().collect();
            order.sort_by_key(|n| n.role != kina_contract::node_spec::Role::ControlPlane);
            for n in order {
                if !apple::is_running(&cli, &n.name) {
                    cli.start(&n.name)?;
                }
            }
            apple::follow_addresses(&cli, &mut plan, &record.dir)
        });
        let moved = match started {
            Ok(moved) => moved,
            Err(e) => {
                step.failed();
                return Err(e);
            }
        };
        record.save(&plan)?;
        if moved {
            step.detail("addresses changed; node specs rewritten");
        }
        let phase = plan.stop_after.clone().unwrap_or_else(|| "ready".into());
        let waited = apple::wait_for(&cli, &plan, &phase, wait, |done, total| {
            step.detail(&format!("{done}/{total} nodes"))
        })
        .await;
        return match waited {
            Ok(()) => {
                step.done();
                Ok(())
            }
            Err(e) => {
                step.failed();
                Err(e)
            }
        };
    }
    for n in &plan.nodes {
        let (paths, record) = node::load(&data, &n.name)?;
        if node::running_pid(&paths).is_none() {
            node::start(&paths, &record).map_err(anyhow::Error::msg)?;
        }
    }
    let phase = plan.stop_after.as_deref().unwrap_or("ready");
    let waited = wait_for(&data, &plan, phase, wait, |done, total| {
        step.detail(&format!("{done}/{total} nodes"))
    })
    .await;
    match waited {
        Ok(_) => {
            step.done();
            Ok(())
        }
        Err(e) => {
            step.failed();
            Err(e)
        }
    }
}

pub fn status(name: &str, json: bool) -> anyhow::Result<()> {
    let (data, plan) = load_cluster(name)?;
    let nodes = Nodes::of(&plan, &data);
    let mut rows = Vec::new();
    for n in &plan.nodes {
        let status = nodes
            .running(&n.name)
            .then(|| nodes.status(&n.name, Duration::from_secs(10)));
        if json {
            rows.push(serde_json::json!({
                "name": n.name,
                "running": status.is_some(),
                "status": status.as_ref().and_then(|s| s.as_ref().ok()),
                "error": status.as_ref().and_then(|s| s.as_ref().err()).map(|e| format!("{e:#}")),
            }));
            continue;
        }
        println!("== {}", n.name);
        match status {
            None => println!("stopped"),
            Some(Ok(s)) => print!("{}", s.render()),
            Some(Err(e)) => println!("no status yet: {e:#}"),
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}

/// The nodes `--nodes` names (all when empty), refusing names not in the
/// cluster.
fn chosen_nodes<'a>(plan: &'a ClusterPlan, only: &[String]) -> anyhow::Result<Vec<&'a str>> {
    for wanted in only {
        if !plan.nodes.iter().any(|n| &n.name == wanted) {
            bail!(
                "--nodes {wanted}: not a node of cluster {} (its nodes: {})",
                plan.name,
                plan.nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(plan
        .nodes
        .iter()
        .filter(|n| only.is_empty() || only.contains(&n.name))
        .map(|n| n.name.as_str())
        .collect())
}

/// Checks that `path` is an image archive ctr can import (an OCI layout or
/// a `docker save` tar) before any node sees it.
fn check_archive(path: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("opening image archive {}", path.display()))?;
    let mut archive = tar::Archive::new(file);
    let entries = archive
        .entries()
        .with_context(|| format!("{} is not a tar archive", path.display()))?;
    for entry in entries {
        let entry =
            entry.with_context(|| format!("{} is not a readable tar archive", path.display()))?;
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().trim_start_matches("./").to_string());
        if let Ok(name) = name
            && (name == "index.json" || name == "manifest.json")
        {
            return Ok(());
        }
    }
    bail!(
        "{} is not an image archive: it has neither index.json (OCI) nor manifest.json (docker save)",
        path.display()
    )
}

pub fn load_archives(name: &str, archives: &[PathBuf], only: &[String]) -> anyhow::Result<()> {
    let (data, plan) = load_cluster(name)?;
    let chosen = chosen_nodes(&plan, only)?;
    let nodes = Nodes::of(&plan, &data);
    for archive in archives {
        check_archive(archive)?;
    }
    for archive in archives {
        for node_name in &chosen {
            let mut file = std::fs::File::open(archive)
                .with_context(|| format!("opening image archive {}", archive.display()))?;
            let out = nodes
                .exec(
                    node_name,
                    &[
                        "ctr",
                        "--namespace",
                        "k8s.io",
                        "images",
                        "import",
                        "--digests",
                        "-",
                    ],
                    &mut file,
                    Duration::from_secs(600),
                )
                .with_context(|| format!("loading {} into {node_name}", archive.display()))?;
            for line in String::from_utf8_lossy(&out).lines() {
                eprintln!("{node_name}: {line}");
            }
        }
    }
    Ok(())
}

pub fn load_images(name: &str, references: &[String], only: &[String]) -> anyhow::Result<()> {
    // The cluster and its nodes first: a wrong name costs no export.
    let (_, plan) = load_cluster(name)?;
    chosen_nodes(&plan, only)?;
    let data = node::data_dir();
    let store = ImageStore::open(ImageStore::default_root()).context("opening the image store")?;
    let scratch = data.join("tmp");
    let mut archives = Vec::new();
    for (i, reference) in references.iter().enumerate() {
        let archive = ScratchFile::in_dir(&scratch, "load", i)?;
        store
            .export(reference, archive.path(), 0)
            .with_context(|| format!("exporting {reference} from the image store"))?;
        archives.push(archive);
    }
    let paths: Vec<PathBuf> = archives.iter().map(|a| a.path().to_path_buf()).collect();
    load_archives(name, &paths, only)
}
