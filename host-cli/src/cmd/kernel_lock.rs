//! `kina kernel lock`: pin the kernel a kernel recipe names.

use anyhow::{Context, bail};
use kina_builder::debian::release::ValidUntilPolicy;
use kina_builder::kernel::{
    KernelLockOptions, KernelRecipe, kernel_lock_path, lock_kernel, write_kernel_lock,
};

use crate::cli::MirrorArgs;

pub async fn run(
    recipe: Option<&std::path::Path>,
    mirrors: &MirrorArgs,
    enforce_valid_until: bool,
) -> anyhow::Result<()> {
    let Some(recipe) = recipe else {
        bail!(
            "kina kernel lock needs --recipe FILE: the built-in kernel recipe comes locked. To \
             change it, print it with `kina kernel recipe > kernel.toml`, edit it, and lock that \
             file with `kina kernel lock --recipe kernel.toml`"
        );
    };
    let (loaded, _) = KernelRecipe::load(recipe)?;
    let options = KernelLockOptions {
        mirrors: super::node::kernel_mirrors(mirrors, &loaded)?,
        valid_until: if enforce_valid_until {
            ValidUntilPolicy::Enforce
        } else {
            ValidUntilPolicy::Warn
        },
    };
    let lock = lock_kernel(recipe, &options)
        .await
        .with_context(|| format!("locking {}", recipe.display()))?;
    let path = kernel_lock_path(recipe);
    let changed = write_kernel_lock(&lock, &path)?;
    println!(
        "{} {}",
        if changed { "wrote" } else { "unchanged" },
        path.display()
    );
    Ok(())
}
