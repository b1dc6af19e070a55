//! `kina image lock`: resolve a recipe into its lockfile.

use anyhow::{Context, bail};
use kina_builder::lock::lock_path_for;
use kina_builder::lockgen::{LockOptions, lock_recipe};

use super::sources;
use crate::cli::LockArgs;

pub async fn run(args: LockArgs) -> anyhow::Result<()> {
    let chosen = sources::load_recipe(&args.source)?;
    if let Some(builtin) = chosen.builtin() {
        bail!(
            "kina image lock needs --recipe FILE: the built-in recipe {name} comes locked. To change \
             it, print it with `kina image recipe show {name} > {name}.toml`, edit it, and lock \
             that file with `kina image lock --recipe {name}.toml`",
            name = builtin.name
        );
    }
    let recipe = chosen.loaded;
    let options = LockOptions {
        mirrors: sources::mirrors(&args.source, &recipe)?,
        valid_until: sources::valid_until(&args.source),
        registry_mirrors: sources::registry_mirrors(&args.source)?,
    };
    let client = kina_builder::fetch::http::http_client().context("setting up HTTP")?;
    let lock = lock_recipe(&recipe, &options, &client)
        .await
        .with_context(|| format!("locking {}", recipe.path.display()))?;
    let path = lock_path_for(&recipe.path);
    let changed = lock.write_if_changed(&path)?;
    let count = |arch| lock.packages_for(arch).count();
    let summary = recipe
        .recipe
        .architectures
        .iter()
        .map(|&a| format!("{a}: {} packages", count(a)))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "{} {} ({summary}, {} artifacts, {} images)",
        if changed { "wrote" } else { "unchanged" },
        path.display(),
        lock.artifacts.len(),
        lock.images.len()
    );
    Ok(())
}
