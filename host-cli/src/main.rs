//! `kina`: local Kubernetes clusters on lightweight VMs.
//!
//! The binary is a thin layer over `kina-builder`: it parses the command line,
//! sets up logging and progress, and reports errors with their whole cause
//! chain. One file per verb under `cmd/`.

mod cli;
mod cluster;
mod cluster_config;
// CA and bootstrap token for kubeadm, made before any node boots.
mod cluster_secrets;
mod cmd;
// Adds and removes `kina-<cluster>` in the user's kubeconfig.
mod kubeconfig;
// Image archives under the data directory, swept after an interrupted kina.
mod scratch;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kina: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut shown = err.to_string();
            eprintln!("ERROR: {shown}");
            for cause in err.chain().skip(1) {
                // Most messages already name their cause; print each once.
                let text = cause.to_string();
                if !shown.contains(&text) {
                    eprintln!("  caused by: {text}");
                    shown.push_str(&text);
                }
            }
            ExitCode::FAILURE
        }
    }
}

/// `-v` shows what kina does step by step; `-q` only errors. `RUST_LOG`
/// overrides both for debugging a single module.
fn init_logging(global: &cli::GlobalArgs) {
    let level = if global.quiet {
        "error"
    } else {
        match global.verbose {
            0 => "warn,kina=info,kina_builder=info",
            1 => "info,kina=debug,kina_builder=debug",
            _ => "debug",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}
