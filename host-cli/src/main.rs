//! `kina`: local Kubernetes clusters on lightweight VMs.
//!
//! The binary is a thin layer over the `kina` library: it parses the command
//! line, sets up logging, runs the command and reports errors with their
//! whole cause chain.

use std::process::ExitCode;

use clap::Parser;
use kina::{cli, cmd};

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
