//! kina-init: PID 1 of a kina node.
//!
//! This first version answers `--version` (the builder records it in the image
//! labels and SBOM); the boot phases arrive with the node-boot work.

use std::process::ExitCode;

const USAGE: &str = "usage: kina-init [--version | --help]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version" | "-V") => {
            println!("kina-init {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--help" | "-h") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("kina-init: unknown argument `{other}`\n{USAGE}");
            ExitCode::from(2)
        }
        None => {
            eprintln!(
                "kina-init: the node boot sequence is not part of this build; run `kina-init --version`\n{USAGE}"
            );
            ExitCode::from(1)
        }
    }
}
