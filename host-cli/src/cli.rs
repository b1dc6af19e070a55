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
    /// Build, lock and manage node images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Check kernels against kina's feature profiles.
    #[command(subcommand)]
    Kernel(KernelCommand),
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
    /// Remove images from the local store.
    Rm {
        #[arg(required_unless_present = "all")]
        references: Vec<String>,
        /// Remove every image in the store.
        #[arg(long, conflicts_with = "references")]
        all: bool,
    },
}

/// Where inputs come from; shared by `lock` and `build`.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Recipe file. Defaults to recipes/base.toml, or
    /// recipes/kubernetes-v1.NN.toml with --kubernetes-version.
    #[arg(long, env = "KINA_RECIPE")]
    pub recipe: Option<PathBuf>,
    /// Pick the node recipe for this Kubernetes release (e.g. v1.34 or 1.34.2).
    #[arg(long)]
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
    /// Check a kernel config file (plain or gzip) against feature profiles,
    /// the same engine a node runs with live probes (`kina-init check-kernel`).
    Check {
        /// Kernel config: a `.config`, `/boot/config-*`, or a copy of `/proc/config.gz`.
        #[arg(long)]
        config: PathBuf,
        /// Profiles to check (repeatable); default: kubernetes-base and ptp.
        #[arg(long = "profile", value_name = "PROFILE")]
        profiles: Vec<String>,
        #[arg(long)]
        json: bool,
    },
}
