//! `kina image recipe list|show` and `kina kernel recipe`: print what is
//! built into kina, byte for byte, so a user can start an edited recipe
//! from it and pass the file with `--recipe` / `--kernel`.

use std::io::Write;

use kina_builder::kernel::{SHIPPED_LOCK, SHIPPED_RECIPE};

use crate::builtin::{self, RECIPES};
use crate::cli::RecipeCommand;

pub fn run(command: RecipeCommand) -> anyhow::Result<()> {
    match command {
        RecipeCommand::List => {
            for r in RECIPES {
                let description = r.load()?.recipe.description;
                println!("{:<20} {description}", r.name);
            }
            Ok(())
        }
        RecipeCommand::Show { name, lock } => {
            let r = builtin::recipe(&name)?;
            print_exact(if lock { r.lock } else { r.recipe })
        }
    }
}

pub fn print_kernel(lock: bool) -> anyhow::Result<()> {
    print_exact(if lock { SHIPPED_LOCK } else { SHIPPED_RECIPE })
}

/// The text as it is, with no newline added: a redirect to a file gives
/// the very bytes kina carries, whose digest the lock records.
fn print_exact(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
