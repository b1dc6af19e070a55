//! One file per verb (the cluster verbs in `cluster/`). Each takes its parsed arguments and returns an error
//! that already says which input failed and what to do.

mod blob_bars;
pub mod cluster;
mod doctor;
mod export_logs;
mod image_build;
pub mod image_inspect;
mod image_list;
mod image_lock;
mod image_pull;
mod image_push;
mod image_recipe;
mod image_rm;
mod kernel_build;
mod kernel_check;
mod kernel_list;
mod kernel_lock;
mod kernel_pull;
mod kernel_push;
pub mod node;
mod sources;
mod version;

use clap::CommandFactory;

use crate::dirs::KinaDirs;

use crate::cli::{
    Cli, Command, CreateCommand, DeleteCommand, ExportCommand, GetCommand, ImageCommand,
    KernelCommand, LoadCommand,
};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let quiet = cli.global.quiet;
    let dirs = &KinaDirs::from_env();
    match cli.command {
        Command::Image(ImageCommand::Build(args)) => image_build::run(*args, dirs, quiet).await,
        Command::Image(ImageCommand::Lock(args)) => image_lock::run(args).await,
        Command::Image(ImageCommand::List { json }) => image_list::run(dirs, json),
        Command::Image(ImageCommand::Inspect { reference, json }) => {
            image_inspect::run(&reference, dirs, json)
        }
        Command::Image(ImageCommand::Push(args)) => image_push::run(args, dirs, quiet).await,
        Command::Image(ImageCommand::Pull(args)) => image_pull::run(args, dirs, quiet).await,
        Command::Image(ImageCommand::Load { reference }) => {
            let cli = kina_apple::cli::ContainerCli::from_env();
            cli.version()?;
            crate::provider::apple::load_image(&cli, dirs, &reference)?;
            if !quiet {
                eprintln!("loaded {reference} into Apple's image store");
            }
            Ok(())
        }
        Command::Image(ImageCommand::Recipe(command)) => image_recipe::run(command),
        Command::Image(ImageCommand::Rm { references, all }) => {
            image_rm::run(&references, all, dirs)
        }
        Command::Kernel(KernelCommand::Check(args)) => kernel_check::run(args, dirs, quiet).await,
        Command::Kernel(KernelCommand::Push(args)) => kernel_push::run(args, dirs, quiet).await,
        Command::Kernel(KernelCommand::Pull(args)) => kernel_pull::run(args, dirs, quiet).await,
        Command::Kernel(KernelCommand::List { json }) => kernel_list::run(dirs, json),
        Command::Kernel(KernelCommand::Lock {
            recipe,
            mirrors,
            enforce_valid_until,
        }) => kernel_lock::run(recipe.as_deref(), &mirrors, enforce_valid_until).await,
        Command::Kernel(KernelCommand::Build(args)) => kernel_build::run(*args, dirs, quiet).await,
        Command::Kernel(KernelCommand::Recipe { lock }) => image_recipe::print_kernel(lock),
        Command::Node(command) => node::run(command, dirs).await,
        Command::Up(args) | Command::Create(CreateCommand::Cluster(args)) => {
            cluster::up::run(*args, dirs, quiet).await
        }
        Command::Doctor(args) => doctor::run(*args, dirs, quiet).await,
        Command::Down(args) | Command::Delete(DeleteCommand::Cluster(args)) => {
            cluster::down::run(args, dirs, quiet).await
        }
        Command::Delete(DeleteCommand::Clusters { names, all }) => {
            cluster::down::named(&names, all, dirs, quiet).await
        }
        Command::List { json } | Command::Get(GetCommand::Clusters { json }) => {
            cluster::get::clusters(dirs, json)
        }
        Command::Get(GetCommand::Nodes { cluster: c, json }) => {
            cluster::get::nodes(dirs, &c.resolve(), json)
        }
        Command::Get(GetCommand::Kubeconfig(c)) => cluster::kubeconfig::print(dirs, &c.resolve()),
        Command::Kubeconfig(args) | Command::Export(ExportCommand::Kubeconfig(args)) => {
            cluster::kubeconfig::run(dirs, args)
        }
        Command::Export(ExportCommand::Logs { cluster: c, dir }) => {
            export_logs::run(dirs, &c.resolve(), dir)
        }
        Command::Load(LoadCommand::ImageArchive {
            cluster: c,
            archives,
            nodes,
        }) => cluster::load::archives(dirs, &c.resolve(), &archives, &nodes),
        Command::Load(LoadCommand::Image {
            cluster: c,
            references,
            nodes,
        }) => cluster::load::images(dirs, &c.resolve(), &references, &nodes),
        Command::Stop(c) => cluster::lifecycle::stop(dirs, &c.resolve(), quiet).await,
        Command::Start { cluster: c, wait } => {
            cluster::lifecycle::start(dirs, &c.resolve(), &wait, quiet).await
        }
        Command::Status { cluster: c, json } => cluster::get::status(dirs, &c.resolve(), json),
        Command::Version { json } => version::run(dirs, json),
        Command::Completion { shell } => {
            let mut command = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "kina", &mut script);
            use std::io::Write;
            match std::io::stdout().write_all(&script) {
                // A closed pipe (`| head`) is the reader's choice, not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => Ok(other?),
            }
        }
    }
}
