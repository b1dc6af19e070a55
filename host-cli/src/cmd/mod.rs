//! One file per verb. Each takes its parsed arguments and returns an error
//! that already says which input failed and what to do.

mod image_build;
mod image_inspect;
mod image_list;
mod image_lock;
mod image_rm;
mod kernel_check;
mod kernel_lock;
mod node;
mod sources;

use clap::CommandFactory;

use crate::cli::{Cli, Command, ImageCommand, KernelCommand};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let quiet = cli.global.quiet;
    match cli.command {
        Command::Image(ImageCommand::Build(args)) => image_build::run(*args, quiet).await,
        Command::Image(ImageCommand::Lock(args)) => image_lock::run(args).await,
        Command::Image(ImageCommand::List { json }) => image_list::run(json),
        Command::Image(ImageCommand::Inspect { reference, json }) => {
            image_inspect::run(&reference, json)
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
