//! The command line, as clap derives it. Flag names follow kind where kind has
//! the same concept (`--name`, `--image`, `--retain`), and docker/skopeo for
//! image concepts (`--platform`, `--tag`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "kina",
    version,
    about = "Local Kubernetes clusters on lightweight VMs"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Print only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More detail (-v: each step, -vv: everything).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a cluster (kind: `create cluster`).
    Up(Box<UpArgs>),
    /// Check that this machine runs kina clusters: the provider (Apple's
    /// version gate), kina's directories, and a one-node cluster `up` makes
    /// and boots to containerd-ready (Apple: network, image load, node),
    /// then deletes.
    Doctor(Box<DoctorArgs>),
    /// Delete a cluster and everything it owns (kind: `delete cluster`).
    Down(DownArgs),
    /// List clusters (kind: `get clusters`).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Merge the cluster's kubeconfig into the file kubectl uses (or print it).
    Kubeconfig(KubeconfigArgs),
    /// Shut every node of a cluster down (each in order: its services, then power off).
    Stop(ClusterName),
    /// Boot a stopped cluster's nodes again.
    Start {
        #[command(flatten)]
        cluster: ClusterName,
        /// Give up waiting for the nodes after this long (e.g. 90s, 10m).
        #[arg(long, default_value = "10m")]
        wait: String,
    },
    /// Each node's boot phases and Kubernetes state.
    Status {
        #[command(flatten)]
        cluster: ClusterName,
        #[arg(long)]
        json: bool,
    },
    /// kind's spelling of `up`.
    #[command(subcommand)]
    Create(CreateCommand),
    /// kind's spelling of `down`.
    #[command(subcommand)]
    Delete(DeleteCommand),
    /// List clusters, a cluster's nodes, or print its kubeconfig.
    #[command(subcommand)]
    Get(GetCommand),
    /// Export a cluster's kubeconfig or logs.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Load container images into every node's containerd.
    #[command(subcommand)]
    Load(LoadCommand),
    /// Build, lock and manage node images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Check kernels against kina's feature profiles; lock node kernels.
    #[command(subcommand)]
    Kernel(KernelCommand),
    /// Boot and manage single nodes as QEMU VMs (Linux hosts).
    #[command(subcommand)]
    Node(NodeCommand),
    /// kina's version and commit, the digests of the kina-init binaries and
    /// recipes built into it, and where it keeps its data and downloads.
    Version {
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build a node image from a recipe and its lockfile.
    Build(Box<BuildArgs>),
    /// Resolve a recipe into its lockfile (every .deb, artifact and image digest).
    Lock(LockArgs),
    /// List node images in the local image store.
    #[command(alias = "ls")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show an image's platforms, layers, sizes, components and SBOM summary.
    Inspect {
        /// Image reference in the local store (or a path to an OCI layout or archive).
        reference: String,
        #[arg(long)]
        json: bool,
    },
    /// Push a local image (index, platform manifests, configs, layers) to a registry.
    Push(PushArgs),
    /// Pull an image from a registry into the local store, verifying every digest.
    Pull(PullArgs),
    /// Hand a local image to Apple's `container image load` (macOS), so it can start nodes there.
    Load {
        /// Image reference in the local store.
        reference: String,
    },
    /// List or print the recipes built into kina (to edit one and pass it with --recipe).
    #[command(subcommand)]
    Recipe(RecipeCommand),
    /// Remove images from the local store.
    Rm {
        #[arg(required_unless_present = "all")]
        references: Vec<String>,
        /// Remove every image in the store.
        #[arg(long, conflicts_with = "references")]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RecipeCommand {
    /// Name the built-in recipes.
    #[command(alias = "ls")]
    List,
    /// Print a built-in recipe's TOML (or, with --lock, its lockfile).
    Show {
        /// A name from `kina image recipe list`.
        #[arg(default_value = "base")]
        name: String,
        /// Print the recipe's lockfile instead.
        #[arg(long)]
        lock: bool,
    },
}

/// How to reach and log in to a registry; shared by `push` and `pull`.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Allow plain http and unverifiable TLS certificates for this registry
    /// (loopback registries may use http without it).
    #[arg(long)]
    pub insecure: bool,
    /// Log in as this user; the password is read from stdin (--password-stdin).
    #[arg(long, short = 'u', requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password for --username from stdin.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Also trust the CA certificates in this PEM file.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Where to push: REGISTRY/REPOSITORY[:TAG] (e.g. 127.0.0.1:5000/kina/node:v1).
    pub reference: String,
    /// The local image to push (default: REFERENCE itself).
    #[arg(long, value_name = "LOCAL")]
    pub from: Option<String>,
    /// Upload blobs larger than SIZE in chunks of SIZE (bytes, or with Ki, Mi,
    /// Gi; a registry's stated minimum raises it); 0 sends every blob in one
    /// request. Chunks keep big layers under the request-size limits of
    /// proxies in front of a registry.
    #[arg(long, value_name = "SIZE", default_value = "64Mi", value_parser = parse_byte_size)]
    pub chunk_size: u64,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// What to pull: REGISTRY/REPOSITORY[:TAG|@DIGEST].
    pub reference: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Where inputs come from; shared by `lock` and `build`.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Recipe file, locked beside it (RECIPE.lock). Default: the base recipe
    /// built into kina, or its node recipe of --kubernetes-version (`kina
    /// image recipe show` prints them).
    #[arg(long, env = "KINA_RECIPE")]
    pub recipe: Option<PathBuf>,
    /// Use the built-in node recipe for this Kubernetes release (1.34, 1.35,
    /// 1.36; any patch, e.g. v1.36.2, picks its minor's).
    #[arg(long, conflicts_with = "recipe")]
    pub kubernetes_version: Option<String>,
    /// Base URL of the Debian archive (overrides the recipe and the host's apt sources).
    #[arg(long, env = "KINA_DEBIAN_MIRROR")]
    pub mirror: Option<String>,
    /// Base URL of the debian-security archive.
    #[arg(long, env = "KINA_DEBIAN_SECURITY_MIRROR")]
    pub security_mirror: Option<String>,
    /// Fetch URLs starting with PREFIX from REPLACEMENT instead (PREFIX=REPLACEMENT; repeatable).
    #[arg(long = "url-rewrite", value_name = "PREFIX=REPLACEMENT")]
    pub url_rewrites: Vec<String>,
    /// Pull images of REGISTRY from ENDPOINT instead (REGISTRY=ENDPOINT; repeatable).
    #[arg(long = "registry-mirror", value_name = "REGISTRY=ENDPOINT")]
    pub registry_mirrors: Vec<String>,
    /// Refuse a Debian Release whose Valid-Until has passed (default: warn).
    #[arg(long)]
    pub enforce_valid_until: bool,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Platforms to build (comma-separated); default: all of the recipe's.
    #[arg(long, value_delimiter = ',')]
    pub platform: Vec<String>,
    /// Write an OCI image layout directory, or an OCI archive if PATH ends in .tar,
    /// instead of adding the image to the local store.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Image reference (default: the recipe's tag).
    #[arg(long, short)]
    pub tag: Option<String>,
    /// Layer compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    pub compression: CompressionArg,
    /// Use this kina-init binary for a platform instead of the recipe's (ARCH=PATH; repeatable).
    #[arg(long = "kina-init", value_name = "ARCH=PATH")]
    pub kina_init: Vec<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Zstd,
}

#[derive(Debug, Subcommand)]
pub enum KernelCommand {
    /// Resolve a kernel recipe into its lockfile (RECIPE.lock beside it).
    Lock {
        /// Kernel recipe file (the built-in one comes locked: print it with
        /// `kina kernel recipe show`).
        #[arg(long, env = "KINA_KERNEL")]
        recipe: Option<PathBuf>,
        #[command(flatten)]
        mirrors: MirrorArgs,
        /// Refuse a Debian Release whose Valid-Until has passed (default: warn).
        #[arg(long)]
        enforce_valid_until: bool,
    },
    /// Check a kernel config file (plain or gzip), or a kina kernel's config,
    /// against feature profiles, the same engine a node runs with live
    /// probes (`kina-init check-kernel`).
    Check(KernelCheckArgs),
    /// Build a kernel from a recipe with [build]: verified Linux source,
    /// base config plus every option its profiles require, checked before
    /// compiling; cached, so a second build is a lookup (Linux only).
    Build(Box<KernelBuildArgs>),
    /// Print the kernel recipe built into kina (or, with --lock, its lockfile).
    Recipe {
        #[arg(long)]
        lock: bool,
    },
    /// Push built kernels (one per architecture) to a registry as one
    /// multi-arch OCI artifact.
    Push(KernelPushArgs),
    /// Pull a kernel artifact into the local kernel store, verifying every digest.
    Pull(PullArgs),
    /// List pulled kernels and the kernels in the build cache.
    #[command(alias = "ls")]
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct KernelCheckArgs {
    /// Kernel config: a `.config`, `/boot/config-*`, or a copy of `/proc/config.gz`.
    #[arg(long, required_unless_present = "kernel", conflicts_with = "kernel")]
    pub config: Option<PathBuf>,
    /// A kina kernel: REGISTRY/REPOSITORY[:TAG|@DIGEST] (pulled now unless
    /// `kina kernel list` shows it) or a built kernel directory; each
    /// architecture's config is checked.
    #[arg(long, value_name = "REF")]
    pub kernel: Option<String>,
    /// With --kernel: check only this architecture's kernel.
    #[arg(long, requires = "kernel")]
    pub arch: Option<String>,
    /// Profiles to check (repeatable); default: kubernetes-base and ptp, or
    /// with --kernel the profiles the kernel was built for.
    #[arg(long = "profile", value_name = "PROFILE")]
    pub profiles: Vec<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct KernelPushArgs {
    /// Where to push: REGISTRY/REPOSITORY[:TAG] (e.g. 127.0.0.1:5000/kina/kernel:6.17).
    pub reference: String,
    /// A built kernel directory (what `kina kernel build` writes); repeat
    /// it for each architecture.
    #[arg(long = "kernel", value_name = "DIR")]
    pub kernels: Vec<PathBuf>,
    /// The newest build of the kernel recipe NAME for each architecture in
    /// the build cache (`kina kernel list` shows them).
    #[arg(long, value_name = "NAME")]
    pub recipe: Option<String>,
    /// With no --kernel or --recipe: the kernel in the local kernel store
    /// to push (default: REFERENCE itself).
    #[arg(long, value_name = "LOCAL", conflicts_with_all = ["kernels", "recipe"])]
    pub from: Option<String>,
    /// Upload blobs larger than SIZE in chunks of SIZE (as `kina image push`).
    #[arg(long, value_name = "SIZE", default_value = "64Mi", value_parser = parse_byte_size)]
    pub chunk_size: u64,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct KernelBuildArgs {
    /// A kernel recipe file with [build] (its lockfile beside it), or the
    /// name of a built-in one (`cilium-kpr`).
    #[arg(long)]
    pub recipe: String,
    /// The architecture to build for (default: the host's).
    #[arg(long)]
    pub arch: Option<String>,
    /// Also write the built kernel directory here (kernel, config,
    /// report.json, kernel.json).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// A site kernel profile (TOML, the format of kernels/profiles) the
    /// recipe's profiles may name (repeatable).
    #[arg(long = "profile-file", value_name = "FILE")]
    pub profile_files: Vec<PathBuf>,
    /// Parallel compile jobs (default: the number of CPUs).
    #[arg(long)]
    pub jobs: Option<usize>,
    #[command(flatten)]
    pub mirrors: MirrorArgs,
    /// Fetch URLs starting with PREFIX from REPLACEMENT instead (PREFIX=REPLACEMENT; repeatable).
    #[arg(long = "url-rewrite", value_name = "PREFIX=REPLACEMENT")]
    pub url_rewrites: Vec<String>,
}

/// The Debian archive to fetch kernels from (default: the host's apt sources).
#[derive(Debug, Default, Args)]
pub struct MirrorArgs {
    /// Base URL of the Debian archive.
    #[arg(long, env = "KINA_DEBIAN_MIRROR")]
    pub mirror: Option<String>,
    /// Base URL of the debian-security archive.
    #[arg(long, env = "KINA_DEBIAN_SECURITY_MIRROR")]
    pub security_mirror: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Make a node from a stored image and boot it.
    Create(Box<NodeCreateArgs>),
    /// Boot a stopped node again.
    Start {
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Shut a node down in order (services, then power off).
    Stop { name: String },
    /// Stop and delete nodes and everything they own.
    #[command(alias = "delete")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// List nodes.
    #[command(alias = "ls")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// The node's boot phases, as kina-init records them.
    Status {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Run a command in the node over its exec channel (works without the
    /// node's network). Standard input is passed with -i.
    Exec {
        name: String,
        /// Pass standard input to the command.
        #[arg(short, long)]
        interactive: bool,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Print the node's console log.
    Logs { name: String },
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Wait until this boot phase is done (e.g. containerd, ready; `none` to return at once).
    #[arg(long, default_value = "ready")]
    pub wait: String,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct NodeCreateArgs {
    pub name: String,
    /// Node image in the local store (see `kina image list`).
    #[arg(long)]
    pub image: String,
    /// Node architecture: amd64 or arm64 (default: the host's).
    #[arg(long)]
    pub platform: Option<String>,
    /// The node's kernel: a kernel kina built (its directory, as `kina
    /// kernel build` prints it), or a Debian kernel recipe file (its
    /// lockfile beside it pins the kernel), or `debian-cloud`.
    /// Default: the Debian recipe built into kina (`kina kernel recipe`).
    #[arg(long, env = "KINA_KERNEL")]
    pub kernel: Option<PathBuf>,
    #[command(flatten)]
    pub mirrors: MirrorArgs,
    /// auto (KVM when a boot probe passes), kvm or tcg.
    #[arg(long, default_value = "auto", env = "KINA_ACCEL")]
    pub accel: String,
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// Memory in MiB.
    #[arg(long, default_value_t = 2048)]
    pub memory: u32,
    /// Root disk size in GiB (sparse).
    #[arg(long, default_value_t = 8)]
    pub disk_size: u64,
    /// The node's pod CIDR.
    #[arg(long, default_value = "10.244.0.0/24")]
    pub pod_cidr: String,
    /// Kernel profiles the node must pass (repeatable; default kubernetes-base and ptp).
    #[arg(long = "profile", value_name = "PROFILE")]
    pub profiles: Vec<String>,
    /// A site kernel profile (TOML, the format of kernels/profiles) for the
    /// node to know; require it with --profile NAME (repeatable).
    #[arg(long = "profile-file", value_name = "FILE")]
    pub profile_files: Vec<PathBuf>,
    /// Forward 127.0.0.1:HOST to the node's PORT (HOST:PORT; repeatable).
    #[arg(long = "forward", value_name = "HOST:PORT")]
    pub forwards: Vec<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// The cluster a command is about.
#[derive(Debug, Clone, Args)]
pub struct ClusterName {
    /// Cluster name (default: the config's name, else `kina`).
    #[arg(long, short = 'n', env = "KINA_CLUSTER_NAME", value_parser = cluster_name)]
    pub name: Option<String>,
}

fn cluster_name(text: &str) -> Result<String, String> {
    crate::cluster_config::check_cluster_name(text).map(|()| text.to_string())
}

impl ClusterName {
    pub fn resolve(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| crate::cluster_config::DEFAULT_CLUSTER_NAME.to_string())
    }
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub cluster: ClusterName,
    /// kind's v1alpha4 Cluster config, optionally followed by a `kind: Kina`
    /// document (`-` reads standard input).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Node image, for nodes whose config names none. When the local store
    /// lacks it, a tag of a built-in recipe (the default, or e.g.
    /// kina.local/node:v1.36.4) is built first and any other reference
    /// (REGISTRY/REPO:TAG or @DIGEST) is pulled.
    #[arg(long, default_value = DEFAULT_NODE_IMAGE)]
    pub image: String,
    /// Where nodes run (default: apple on macOS, qemu elsewhere).
    #[arg(long, value_enum, env = "KINA_PROVIDER")]
    pub provider: Option<crate::provider::ProviderKind>,
    /// How long to wait for every node to be ready (e.g. 90s, 10m, 0 to not wait).
    #[arg(long, default_value = "15m")]
    pub wait: String,
    /// Keep the nodes of a failed `up` for debugging (`kina export logs`).
    #[arg(long)]
    pub retain: bool,
    /// Boot the nodes only up to this phase (e.g. network, containerd), for debugging.
    #[arg(long, value_name = "PHASE")]
    pub stop_after: Option<String>,
    /// The nodes' kernel: a kernel kina built (its directory, as `kina
    /// kernel build` prints it; QEMU and Apple), or a Debian kernel recipe
    /// file (QEMU; its lockfile beside it pins the kernel).
    /// Default: the config's `kernel`, else the Debian recipe built into
    /// kina on QEMU and Apple's default kernel on Apple.
    #[arg(long, env = "KINA_KERNEL")]
    pub kernel: Option<PathBuf>,
    #[command(flatten)]
    pub mirrors: MirrorArgs,
    /// auto (KVM when a boot probe passes), kvm or tcg (QEMU).
    #[arg(long, default_value = "auto", env = "KINA_ACCEL")]
    pub accel: String,
    /// Root disk size per node in GiB (sparse; QEMU).
    #[arg(long, default_value_t = 8)]
    pub disk_size: u64,
    /// Node architecture: amd64 or arm64 (default: the host's).
    #[arg(long)]
    pub platform: Option<String>,
    /// Do not merge the kubeconfig into the kubectl's file.
    #[arg(long)]
    pub kubeconfig_skip: bool,
    /// Print, for each node, the kubeadm configuration kina-init would
    /// write (after every patch) and the kubelet flags, and create nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: the Kubernetes release to show it for (1.NN or
    /// v1.NN.P); default: the image's.
    #[arg(long, requires = "dry_run", value_name = "VERSION")]
    pub kubernetes_version: Option<String>,
}

/// The image `kina up` uses when neither --image nor the config names one:
/// the one `kina image build` makes without arguments.
pub const DEFAULT_NODE_IMAGE: &str = "kina.local/node:base";

/// `kina doctor`: the flags of `up` that choose how a node is made.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Name of the throwaway cluster.
    #[arg(long, short = 'n', default_value = "kina-doctor", value_parser = cluster_name)]
    pub name: String,
    /// The node image to boot (built or pulled first, as `up` does, when
    /// the local image store lacks it).
    #[arg(long, default_value = DEFAULT_NODE_IMAGE)]
    pub image: String,
    /// Which provider to check (default: Apple's `container` on macOS, QEMU elsewhere).
    #[arg(long, value_enum, env = "KINA_PROVIDER")]
    pub provider: Option<crate::provider::ProviderKind>,
    /// Give up waiting for the node after this long.
    #[arg(long, default_value = "10m")]
    pub wait: String,
    /// Kernel recipe file for QEMU nodes (its lockfile beside it).
    /// Default: the one built into kina (`kina kernel recipe`).
    #[arg(long, env = "KINA_KERNEL")]
    pub kernel: Option<PathBuf>,
    #[command(flatten)]
    pub mirrors: MirrorArgs,
    /// QEMU accelerator: auto, kvm or tcg.
    #[arg(long, default_value = "auto", env = "KINA_ACCEL")]
    pub accel: String,
    /// Node platform (default: the host's).
    #[arg(long)]
    pub platform: Option<String>,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub cluster: ClusterName,
    /// Delete every cluster.
    #[arg(long, short = 'A', conflicts_with = "name")]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    #[command(flatten)]
    pub cluster: ClusterName,
    /// Print the kubeconfig instead of merging it.
    #[arg(long)]
    pub print: bool,
}

#[derive(Debug, Subcommand)]
pub enum CreateCommand {
    /// Create a cluster.
    Cluster(Box<UpArgs>),
}

#[derive(Debug, Subcommand)]
pub enum DeleteCommand {
    /// Delete a cluster.
    Cluster(DownArgs),
    /// Delete the named clusters, or every cluster with --all.
    Clusters {
        #[arg(required_unless_present = "all", value_parser = cluster_name)]
        names: Vec<String>,
        #[arg(long, short = 'A', conflicts_with = "names")]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// List clusters.
    Clusters {
        #[arg(long)]
        json: bool,
    },
    /// List a cluster's nodes.
    Nodes {
        #[command(flatten)]
        cluster: ClusterName,
        #[arg(long)]
        json: bool,
    },
    /// Print a cluster's kubeconfig.
    Kubeconfig(ClusterName),
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Merge the cluster's kubeconfig into the file kubectl uses.
    Kubeconfig(KubeconfigArgs),
    /// Collect every node's logs and status into DIR (default: a new temporary directory).
    Logs {
        #[command(flatten)]
        cluster: ClusterName,
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LoadCommand {
    /// Load OCI or docker image archives (tar) into every node.
    ImageArchive {
        #[command(flatten)]
        cluster: ClusterName,
        #[arg(required = true)]
        archives: Vec<PathBuf>,
        /// Only these nodes (comma-separated).
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
    },
    /// Load images from kina's local image store into every node.
    Image {
        #[command(flatten)]
        cluster: ClusterName,
        #[arg(required = true)]
        references: Vec<String>,
        /// Only these nodes (comma-separated).
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
    },
}

/// A byte count: digits, optionally followed by Ki, Mi or Gi.
fn parse_byte_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, shift) = [("Gi", 30), ("Mi", 20), ("Ki", 10)]
        .iter()
        .find_map(|(suffix, shift)| t.strip_suffix(suffix).map(|d| (d, *shift)))
        .unwrap_or((t, 0));
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{text}` is not a size: write bytes (1048576) or a number with Ki, Mi or Gi (64Mi)"
        ));
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_take_binary_suffixes_and_refuse_the_rest() {
        assert_eq!(parse_byte_size("64Mi"), Ok(64 << 20));
        assert_eq!(parse_byte_size("0"), Ok(0));
        assert_eq!(parse_byte_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_byte_size("2Gi"), Ok(2 << 30));
        for bad in ["", "Mi", "64MB", "-1", "1.5Gi"] {
            let e = parse_byte_size(bad).unwrap_err();
            assert!(e.contains("not a size"), "{bad}: {e}");
        }
        assert!(parse_byte_size("99999999999999999999Gi").is_err());
    }
}
