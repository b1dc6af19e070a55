//! `kina up` / `kina create cluster`: the config, the image and the
//! provider are resolved here; `crate::cluster::up` does the rest.

use anyhow::{Context, bail};
use kina_builder::fetch::cache::Cache;
use kina_builder::platform::Arch;
use kina_builder::store::ImageStore;
use kina_contract::status::PhaseId;

use super::parse_wait;
use crate::cli::{BuildArgs, CompressionArg, PullArgs, RegistryArgs, SourceArgs, UpArgs};
use crate::cluster::dry_run::{DryRunRequest, dry_run, parse_kubernetes_version, render};
use crate::cluster::kubeconfig::KubeconfigFiles;
use crate::cluster::progress::Steps;
use crate::cluster::up::{NodeImage, UpRequest, up_with_image};
use crate::cluster_config::ClusterConfig;
use crate::cmd::node::node_arch;
use crate::dirs::KinaDirs;
use crate::provider::{AnyProvider, ProviderKind, qemu::NodeInputs};

/// The label a kina image carries its Kubernetes release in.
const KUBERNETES_LABEL: &str = "io.kina.kubernetes.version";

/// The Kubernetes release an image carries for `arch`, from its label.
fn image_kubernetes(dirs: &KinaDirs, image: &str, arch: Arch) -> anyhow::Result<Option<String>> {
    let root = dirs.images();
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

/// `up`'s node image: one of kina's built-in recipes' tags is built from
/// that recipe when the local store lacks it (`kina.local/node:base`, the
/// default, from the base recipe), any other reference is pulled from its
/// registry.
struct UpImage<'a> {
    dirs: &'a KinaDirs,
    reference: String,
    arch: Arch,
    mirrors: &'a crate::cli::MirrorArgs,
    quiet: bool,
}

impl UpImage<'_> {
    /// The built-in recipe whose tag `reference` is.
    fn builtin_recipe(&self) -> anyhow::Result<Option<&'static crate::builtin::BuiltinRecipe>> {
        for recipe in crate::builtin::RECIPES {
            if recipe.load()?.recipe.tag == self.reference {
                return Ok(Some(recipe));
            }
        }
        Ok(None)
    }
}

impl NodeImage for UpImage<'_> {
    fn missing(&self) -> anyhow::Result<Option<String>> {
        let root = self.dirs.images();
        if root.join("index.json").is_file() {
            let store = ImageStore::open(&root)
                .with_context(|| format!("opening the image store at {}", root.display()))?;
            if store.find(&self.reference).is_ok() {
                return Ok(None);
            }
        }
        Ok(Some(match self.builtin_recipe()? {
            Some(recipe) => format!(
                "Building node image {} ({}) from the built-in {} recipe 🖼️",
                self.reference,
                self.arch.platform(),
                recipe.name
            ),
            None if names_registry(&self.reference) => {
                format!("Pulling node image {} 🖼️", self.reference)
            }
            None => bail!(
                "{0} is not in the local image store (see `kina image list`; `kina image build` makes \
                 kina's own) and names no registry to pull it from: write REGISTRY/REPO:TAG",
                self.reference
            ),
        }))
    }

    async fn obtain(&self) -> anyhow::Result<()> {
        match self.builtin_recipe()? {
            Some(recipe) => {
                let args = BuildArgs {
                    source: SourceArgs {
                        recipe: None,
                        kubernetes_version: recipe
                            .name
                            .strip_prefix("kubernetes-v")
                            .map(str::to_string),
                        mirror: self.mirrors.mirror.clone(),
                        security_mirror: self.mirrors.security_mirror.clone(),
                        url_rewrites: Vec::new(),
                        registry_mirrors: Vec::new(),
                        enforce_valid_until: false,
                    },
                    // The node's platform only: half the work of both.
                    platform: vec![self.arch.platform()],
                    output: None,
                    tag: None,
                    compression: CompressionArg::Gzip,
                    kina_init: Vec::new(),
                };
                crate::cmd::image_build::run(args, self.dirs, self.quiet)
                    .await
                    .with_context(|| {
                        format!(
                            "building {} (`kina image build{}` makes it alone)",
                            self.reference,
                            args_hint(recipe)
                        )
                    })
            }
            None => {
                let args = PullArgs {
                    reference: self.reference.clone(),
                    registry: RegistryArgs {
                        insecure: false,
                        username: None,
                        password_stdin: false,
                        ca_file: None,
                    },
                };
                crate::cmd::image_pull::run(args, self.dirs, self.quiet)
                    .await
                    .with_context(|| {
                        format!(
                            "{0} is not in the local image store and pulling it failed; `kina image pull {0}` \
                             takes login and TLS flags, `kina image build` makes kina's own images",
                            self.reference
                        )
                    })
            }
        }
    }

    fn kubernetes_version(&self) -> anyhow::Result<Option<String>> {
        image_kubernetes(self.dirs, &self.reference, self.arch)
    }
}

/// Whether `reference` starts with a registry host (`HOST.DOMAIN/…`,
/// `HOST:PORT/…`, `localhost/…`), the rule docker and containerd use to
/// tell a registry from a repository path: only such a reference is pulled,
/// so a mistyped local name is not sent to a default registry.
pub(crate) fn names_registry(reference: &str) -> bool {
    match reference.split_once('/') {
        // `./dir` and `../dir` are paths, whatever the rule says of dots.
        Some((host, _)) if host.starts_with('.') => false,
        Some((host, _)) => host.contains(['.', ':']) || host == "localhost",
        None => false,
    }
}

/// The flags of `kina image build` that pick `recipe`.
fn args_hint(recipe: &crate::builtin::BuiltinRecipe) -> String {
    match recipe.name.strip_prefix("kubernetes-v") {
        Some(version) => format!(" --kubernetes-version {version}"),
        None => String::new(),
    }
}

/// The one image every node boots: the config's, else `--image`.
fn cluster_image(config: &ClusterConfig, flag: &str) -> anyhow::Result<String> {
    let images: Vec<&str> = config
        .cluster
        .nodes
        .iter()
        .filter_map(|n| n.image.as_deref())
        .collect();
    match images.first() {
        Some(first) if images.iter().any(|i| i != first) => bail!(
            "nodes[].image: the nodes name different images ({}); kina boots every node of a \
             cluster from one image",
            images.join(", ")
        ),
        Some(first) => Ok(first.to_string()),
        None => Ok(flag.to_string()),
    }
}

/// The kernel the Kina document's `kernel`, else `--kernel`, names, and
/// which of the two named it (for errors).
fn named_kernel<'a>(
    args: &'a UpArgs,
    config: &'a ClusterConfig,
) -> (Option<&'a std::path::Path>, &'static str) {
    match (&config.kina.kernel, &args.kernel) {
        (Some(kernel), _) => (Some(kernel.as_path()), "the Kina document's kernel"),
        (None, given) => (given.as_deref(), "--kernel"),
    }
}

/// What the QEMU provider needs for new nodes, from `up`'s flags.
fn qemu_inputs(
    args: &UpArgs,
    config: &ClusterConfig,
    dirs: &KinaDirs,
    arch: Arch,
) -> anyhow::Result<NodeInputs> {
    let (given, what) = named_kernel(args, config);
    Ok(NodeInputs {
        arch,
        kernel: crate::node_kernel::resolve(given, what, dirs, arch, &args.mirrors)?,
        cache: Cache::open(dirs.cache()).context("opening the download cache")?,
        accel: args.accel.parse()?,
        disk_size: args.disk_size << 30,
    })
}

/// Ctrl-C (SIGINT) from now on is reported, not fatal: the handler is
/// installed here, before anything is made, rather than when a
/// `ctrl_c()` future is first polled, which a step that blocks its thread
/// could delay past the point where there is something to clean up.
fn watch_interrupt() -> anyhow::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("watching for Ctrl-C")
}

/// The Kubernetes release `--dry-run` shows: `--kubernetes-version`, else
/// the image's label when the image is in the local store (the store is
/// only read: a dry run creates nothing, not even an empty store).
fn dry_run_version(
    args: &UpArgs,
    dirs: &KinaDirs,
    image: &str,
    arch: Arch,
) -> anyhow::Result<(kina_contract::kubeadm::KubeVersion, String)> {
    if let Some(text) = &args.kubernetes_version {
        let (version, exact) = parse_kubernetes_version(text)?;
        let source = if exact {
            "--kubernetes-version".to_string()
        } else {
            format!(
                "--kubernetes-version {text}; a node writes its image's exact release where this shows {version}"
            )
        };
        return Ok((version, source));
    }
    let hint = "pass --kubernetes-version 1.NN to see the configuration for a Kubernetes release";
    if !dirs.images().join("oci-layout").is_file() {
        bail!(
            "there is no local image store at {} to read {image}'s Kubernetes release from; {hint}",
            dirs.images().display()
        );
    }
    let label = image_kubernetes(dirs, image, arch)
        .with_context(|| format!("reading {image}'s Kubernetes release; {hint}"))?;
    let Some(label) = label else {
        bail!("{image} carries no Kubernetes (a base image: its nodes run no kubeadm); {hint}");
    };
    let version = kina_contract::kubeadm::KubeVersion::parse(&label)
        .map_err(|e| anyhow::anyhow!("{image}'s label {KUBERNETES_LABEL}: {e}; {hint}"))?;
    Ok((version, format!("{image}'s {KUBERNETES_LABEL} label")))
}

/// `up --dry-run`: prints what kubeadm would get on each node.
fn run_dry(
    args: &UpArgs,
    config: &ClusterConfig,
    name: String,
    dirs: &KinaDirs,
) -> anyhow::Result<()> {
    let kind = args.provider.unwrap_or_else(ProviderKind::host_default);
    let arch = node_arch(args.platform.as_deref())?;
    let image = cluster_image(config, &args.image)?;
    let (kubernetes_version, version_source) = dry_run_version(args, dirs, &image, arch)?;
    // `of`, not `for_up`: nothing is asked of Apple's CLI and no kernel is
    // looked for.
    let provider = AnyProvider::of(kind, dirs);
    let request = DryRunRequest {
        name,
        config,
        image,
        kubernetes_version,
        version_source,
        cwd: std::env::current_dir().context("reading the current directory")?,
    };
    print!("{}", render(&dry_run(&provider, dirs, &request)?));
    Ok(())
}

pub async fn run(args: UpArgs, dirs: &KinaDirs, quiet: bool) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => ClusterConfig::load(path)?,
        None => ClusterConfig::default(),
    };
    let name = args
        .cluster
        .name
        .clone()
        .unwrap_or_else(|| config.name().to_string());
    if args.dry_run {
        return run_dry(&args, &config, name, dirs);
    }
    // Before any provider is asked anything: a name one provider cannot use
    // is refused on all of them.
    crate::cluster_name::check(&name).map_err(anyhow::Error::msg)?;
    let kind = args.provider.unwrap_or_else(ProviderKind::host_default);
    let arch = node_arch(args.platform.as_deref())?;
    let provider = AnyProvider::for_up(
        kind,
        dirs,
        || qemu_inputs(&args, &config, dirs, arch),
        // Apple boots its own default kernel unless one is named.
        || match named_kernel(&args, &config) {
            (None, _) => Ok(None),
            (given, what) => {
                let kernel = crate::node_kernel::resolve(given, what, dirs, arch, &args.mirrors)?;
                crate::node_kernel::built_for_apple(&kernel)?;
                Ok(Some(kernel))
            }
        },
    )?;
    if let Some(phase) = &args.stop_after {
        phase.parse::<PhaseId>().context("--stop-after")?;
    }
    let wait = parse_wait(&args.wait)?;
    let image = cluster_image(&config, &args.image)?;
    let node_image = UpImage {
        dirs,
        reference: image.clone(),
        arch,
        mirrors: &args.mirrors,
        quiet,
    };
    let request = UpRequest {
        name,
        config: &config,
        image,
        kubernetes_version: None,
        stop_after: args.stop_after.clone(),
        wait,
        retain: args.retain,
        kubeconfig: (!args.kubeconfig_skip).then(KubeconfigFiles::from_env),
        cwd: std::env::current_dir().context("reading the current directory")?,
    };
    let mut signal = watch_interrupt()?;
    let mut interrupt = std::pin::pin!(async move {
        signal.recv().await;
    });
    up_with_image(
        &provider,
        dirs,
        request,
        &node_image,
        &Steps::new(quiet),
        &mut interrupt,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_references_that_name_a_registry_are_pulled() {
        for pulled in [
            "127.0.0.1:5000/kina/node:v1",
            "localhost/node:base",
            "registry.example/kina/node@sha256:00",
        ] {
            assert!(names_registry(pulled), "{pulled}");
        }
        for local in ["ghost", "kina/node:base", "node:v1"] {
            assert!(!names_registry(local), "{local}");
        }
    }
}
