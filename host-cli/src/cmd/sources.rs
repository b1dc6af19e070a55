//! Turning `SourceArgs` into what the builder needs: the recipe, mirrors,
//! URL rewrites and registry mirrors. Shared by `lock` and `build`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kina_builder::debian::release::ValidUntilPolicy;
use kina_builder::fetch::mirror::{DebianMirrors, UrlRewrites};
use kina_builder::oci::registry::RegistryMirrors;
use kina_builder::recipe::LoadedRecipe;

use crate::cli::SourceArgs;

/// The recipe a command works on: `--recipe`, else the node recipe of
/// `--kubernetes-version` (any patch of a minor selects that minor's recipe),
/// else `recipes/base.toml`.
pub fn recipe_path(args: &SourceArgs) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.recipe {
        return Ok(path.clone());
    }
    let dir = recipes_dir();
    let Some(version) = &args.kubernetes_version else {
        return Ok(dir.join("base.toml"));
    };
    let trimmed = version.trim_start_matches('v');
    let minor: Vec<&str> = trimmed.split('.').take(2).collect();
    if minor.len() != 2 || minor.iter().any(|p| p.parse::<u32>().is_err()) {
        bail!("--kubernetes-version {version}: expected a release such as v1.34 or 1.34.2");
    }
    let path = dir.join(format!("kubernetes-v{}.{}.toml", minor[0], minor[1]));
    if !path.exists() {
        let available: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.starts_with("kubernetes-v") && n.ends_with(".toml"))
                    .collect()
            })
            .unwrap_or_default();
        bail!(
            "no node recipe for Kubernetes {version} at {} (available: {}); pass --recipe FILE",
            path.display(),
            if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            }
        );
    }
    Ok(path)
}

fn recipes_dir() -> PathBuf {
    std::env::var_os("KINA_RECIPES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("recipes").to_path_buf())
}

pub fn load_recipe(args: &SourceArgs) -> anyhow::Result<LoadedRecipe> {
    let path = recipe_path(args)?;
    Ok(LoadedRecipe::load(&path)?)
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
