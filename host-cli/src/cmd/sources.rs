//! Turning `SourceArgs` into what the builder needs: the recipe, mirrors,
//! URL rewrites and registry mirrors. Shared by `lock` and `build`.
//! Without `--recipe` the recipe is one built into kina (`crate::builtin`).

use std::path::PathBuf;

use anyhow::Context;
use kina_builder::debian::release::ValidUntilPolicy;
use kina_builder::fetch::mirror::{DebianMirrors, UrlRewrites};
use kina_builder::lock::{Lock, lock_path_for};
use kina_builder::oci::registry::RegistryMirrors;
use kina_builder::recipe::LoadedRecipe;

use crate::builtin::{self, BuiltinRecipe};

use crate::cli::SourceArgs;

/// The recipe a command works on, and where its lock comes from.
pub struct ChosenRecipe {
    pub loaded: LoadedRecipe,
    /// `None`: a recipe file, locked beside it.
    builtin: Option<&'static BuiltinRecipe>,
}

impl ChosenRecipe {
    /// The lock beside a recipe file, or a built-in recipe's own.
    pub fn lock(&self) -> anyhow::Result<Lock> {
        match self.builtin {
            Some(b) => b.read_lock(&self.loaded),
            None => Ok(Lock::read_for(
                &lock_path_for(&self.loaded.path),
                &self.loaded.path,
                &self.loaded.sha256,
            )?),
        }
    }

    /// Where messages say the lock is.
    pub fn lock_label(&self) -> PathBuf {
        match self.builtin {
            Some(b) => b.lock_label(),
            None => lock_path_for(&self.loaded.path),
        }
    }

    pub fn builtin(&self) -> Option<&'static BuiltinRecipe> {
        self.builtin
    }
}

/// `--recipe`, else the recipe of `--kubernetes-version` (any patch of a
/// minor selects that minor's) or the base recipe, both built into kina.
pub fn load_recipe(args: &SourceArgs) -> anyhow::Result<ChosenRecipe> {
    if let Some(path) = &args.recipe {
        return Ok(ChosenRecipe {
            loaded: LoadedRecipe::load(path)?,
            builtin: None,
        });
    }
    let builtin = match &args.kubernetes_version {
        Some(version) => builtin::node_recipe(version)?,
        None => builtin::recipe("base")?,
    };
    Ok(ChosenRecipe {
        loaded: builtin.load()?,
        builtin: Some(builtin),
    })
}

pub fn mirrors(args: &SourceArgs, recipe: &LoadedRecipe) -> anyhow::Result<DebianMirrors> {
    DebianMirrors::resolve(
        args.mirror.as_deref(),
        args.security_mirror.as_deref(),
        &recipe.recipe.debian,
    )
    .context("choosing the Debian mirror")
}

pub fn url_rewrites(args: &SourceArgs) -> anyhow::Result<UrlRewrites> {
    UrlRewrites::from_flags_and_env(&args.url_rewrites)
        .context("parsing --url-rewrite / KINA_URL_REWRITE")
}

pub fn registry_mirrors(args: &SourceArgs) -> anyhow::Result<RegistryMirrors> {
    RegistryMirrors::parse(&args.registry_mirrors).context("parsing --registry-mirror")
}

pub fn valid_until(args: &SourceArgs) -> ValidUntilPolicy {
    if args.enforce_valid_until {
        ValidUntilPolicy::Enforce
    } else {
        ValidUntilPolicy::Warn
    }
}
