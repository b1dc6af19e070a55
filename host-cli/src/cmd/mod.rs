//! One file per verb. Each takes its parsed arguments and returns an error
//! that already says which input failed and what to do.

mod blob_bars;
mod cluster;
mod export_logs;
mod image_build;
pub mod image_inspect;
mod image_list;
mod image_lock;
mod image_pull;
mod image_push;
mod image_rm;
mod kernel_check;
mod kernel_lock;
pub mod node;
mod sources;

use clap::CommandFactory;

use crate::cli::{
    Cli, Command, CreateCommand, DeleteCommand, ExportCommand, GetCommand, ImageCommand,
    KernelCommand, LoadCommand,
};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let quiet = cli.global.quiet;
    match cli.command {
        Command::Image(ImageCommand::Build(args)) => image_build::run(*args, quiet).await,
        Command::Image(ImageCommand::Lock(args)) => image_lock::run(args).await,
        Command::Image(ImageCommand::List { json }) => image_list::run(json),
        Command::Image(ImageCommand::Inspect { reference, json }) => {
            image_inspect::run(&reference, json)
        }
        Command::Image(ImageCommand::Push(args)) => image_push::run(args, quiet).await,
        Command::Image(ImageCommand::Pull(args)) => image_pull::run(args, quiet).await,
        Command::Image(ImageCommand::Load { reference }) => {
            let cli = kina_apple::cli::ContainerCli::from_env();
            cli.version()?;
            let scratch = kina_qemu::node::data_dir().join("tmp");
            crate::cluster::apple::load_image(&cli, &reference, &scratch)?;
            if !quiet {
                eprintln!("loaded {reference} into Apple's image store");
            }
            Ok(())
        }
        Command::Image(ImageCommand::Rm { references, all }) => image_rm::run(&references, all),
        Command::Kernel(KernelCommand::Check {
            config,
            profiles,
            json,
        }) => kernel_check::run(&config, &profiles, json),
        Command::Kernel(KernelCommand::Lock {
            recipe,
            mirrors,
            enforce_valid_until,
        }) => kernel_lock::run(&recipe, &mirrors, enforce_valid_until).await,
        Command::Node(command) => node::run(command).await,
        Command::Up(args) | Command::Create(CreateCommand::Cluster(args)) => {
            cluster::up(*args, quiet).await
        }
        Command::Down(args) | Command::Delete(DeleteCommand::Cluster(args)) => {
            cluster::down(args, quiet)
        }
        Command::Delete(DeleteCommand::Clusters { names, all }) => {
            cluster::down_named(&names, all, quiet)
        }
        Command::List { json } | Command::Get(GetCommand::Clusters { json }) => cluster::list(json),
        Command::Get(GetCommand::Nodes { cluster: c, json }) => {
            cluster::get_nodes(&c.resolve(), json)
        }
        Command::Get(GetCommand::Kubeconfig(c)) => cluster::get_kubeconfig(&c.resolve()),
        Command::Kubeconfig(args) | Command::Export(ExportCommand::Kubeconfig(args)) => {
            cluster::kubeconfig(args)
        }
        Command::Export(ExportCommand::Logs { cluster: c, dir }) => {
            export_logs::run(&c.resolve(), dir)
        }
        Command::Load(LoadCommand::ImageArchive {
            cluster: c,
            archives,
            nodes,
        }) => cluster::load_archives(&c.resolve(), &archives, &nodes),
        Command::Load(LoadCommand::Image {
            cluster: c,
            references,
            nodes,
        }) => cluster::load_images(&c.resolve(), &references, &nodes),
        Command::Stop(c) => cluster::stop(&c.resolve()),
        Command::Start { cluster: c, wait } => cluster::start(&c.resolve(), &wait, quiet).await,
        Command::Status { cluster: c, json } => cluster::status(&c.resolve(), json),
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
