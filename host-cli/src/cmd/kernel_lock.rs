//! `kina kernel lock`: pin the kernel a kernel recipe names.

use anyhow::Context;
use kina_builder::debian::release::ValidUntilPolicy;
use kina_builder::kernel::{
    KernelLockOptions, KernelRecipe, kernel_lock_path, lock_kernel, write_kernel_lock,
};

use crate::cli::MirrorArgs;

pub async fn run(
    recipe: &std::path::Path,
    mirrors: &MirrorArgs,
    enforce_valid_until: bool,
) -> anyhow::Result<()> {
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
