//! The recipes and locks kina carries inside its binary, so `kina image
//! build` and `kina up` work from any directory: a path given on the command
//! line or in the cluster config overrides them. The kernel recipe and lock
//! are the builder's (`kina_builder::kernel`), the kernel profiles the
//! contract's (`kina_contract::kernel::ProfileSet::shipped`); this module
//! only gives them a default place where a file is needed.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kina_builder::kernel::{SHIPPED_LOCK, SHIPPED_RECIPE};
use kina_builder::lock::Lock;
use kina_builder::recipe::LoadedRecipe;

use crate::dirs::KinaDirs;

/// A node-image recipe and its lock, as the repository's `recipes/` holds them.
#[derive(Debug)]
pub struct BuiltinRecipe {
    /// The file name without `.toml`, as `kina image recipe show` takes it.
    pub name: &'static str,
    pub recipe: &'static str,
    pub lock: &'static str,
}

macro_rules! recipe {
    ($name:literal) => {
        BuiltinRecipe {
            name: $name,
            recipe: include_str!(concat!("../../recipes/", $name, ".toml")),
            lock: include_str!(concat!("../../recipes/", $name, ".lock")),
        }
    };
}

/// Every built-in recipe: the base image, then one node recipe per
/// Kubernetes minor.
pub const RECIPES: &[BuiltinRecipe] = &[
    recipe!("base"),
    recipe!("kubernetes-v1.34"),
    recipe!("kubernetes-v1.35"),
    recipe!("kubernetes-v1.36"),
];

/// The folder the built-in recipes came from at compile time. Their
/// relative paths resolve against it, as they would in the checkout: a
/// `source = "local"` kina-init is the workspace's `target/` build, and where
/// there is none the build says which `--kina-init ARCH=PATH` to pass.
const RECIPES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../recipes");

impl BuiltinRecipe {
    /// How messages name it: not a file, so they cannot send the user to one.
    pub fn label(&self) -> PathBuf {
        PathBuf::from(format!("built-in {}.toml", self.name))
    }

    pub fn lock_label(&self) -> PathBuf {
        PathBuf::from(format!("built-in {}.lock", self.name))
    }

    /// The recipe, parsed and validated, without touching the filesystem.
    pub fn load(&self) -> anyhow::Result<LoadedRecipe> {
        Ok(LoadedRecipe::from_text_in(
            &self.label(),
            self.recipe,
            Path::new(RECIPES_DIR),
        )?)
    }

    /// Its lock, checked to belong to exactly this recipe text.
    pub fn read_lock(&self, loaded: &LoadedRecipe) -> anyhow::Result<Lock> {
        let label = self.lock_label();
        Ok(Lock::parse(self.lock, &label)?.belonging_to(&label, &loaded.path, &loaded.sha256)?)
    }
}

/// A built-in recipe by name (`base`, `kubernetes-v1.36`; `.toml` optional).
pub fn recipe(name: &str) -> anyhow::Result<&'static BuiltinRecipe> {
    let name = name.strip_suffix(".toml").unwrap_or(name);
    RECIPES.iter().find(|r| r.name == name).with_context(|| {
        format!(
            "no built-in recipe {name}; the built-in ones are {} (`kina image recipe list`)",
            names()
        )
    })
}

/// The built-in node recipe of a Kubernetes release: any patch of a minor
/// (`1.36`, `v1.36.2`) picks that minor's.
pub fn node_recipe(version: &str) -> anyhow::Result<&'static BuiltinRecipe> {
    let trimmed = version.trim_start_matches('v');
    let minor: Vec<&str> = trimmed.split('.').take(2).collect();
    if minor.len() != 2 || minor.iter().any(|p| p.parse::<u32>().is_err()) {
        bail!("--kubernetes-version {version}: expected a release such as 1.36 or v1.36.2");
    }
    let name = format!("kubernetes-v{}.{}", minor[0], minor[1]);
    RECIPES.iter().find(|r| r.name == name).with_context(|| {
        format!(
            "--kubernetes-version {version}: kina has no built-in node recipe for it (built in: {}); \
             write one and pass --recipe FILE",
            RECIPES
                .iter()
                .filter_map(|r| r.name.strip_prefix("kubernetes-v"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

fn names() -> String {
    RECIPES
        .iter()
        .map(|r| r.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The built-in kernel recipe's file name, as `kina kernel recipe show` prints it.
pub const KERNEL_RECIPE_NAME: &str = "debian-cloud";

/// The built-in kernel recipe and lock as files, for the node code that
/// reads a kernel recipe from a path: written under the data directory
/// (only when they differ, atomically, so parallel `kina` runs agree) and
/// named in every message about the kernel.
pub fn kernel_recipe_file(dirs: &KinaDirs) -> anyhow::Result<PathBuf> {
    let dir = dirs.data().join("built-in").join("kernels");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let recipe = dir.join(format!("{KERNEL_RECIPE_NAME}.toml"));
    for (path, text) in [
        (recipe.clone(), SHIPPED_RECIPE),
        (recipe.with_extension("lock"), SHIPPED_LOCK),
    ] {
        if std::fs::read(&path).ok().as_deref() != Some(text.as_bytes()) {
            kina_builder::fsutil::write_atomic(&path, text.as_bytes()).with_context(|| {
                format!("writing the built-in kernel recipe to {}", path.display())
            })?;
        }
    }
    Ok(recipe)
}

/// Built-in kernel recipes that `kina kernel build --recipe NAME` compiles,
/// with their locks: (name, recipe, lock).
pub const KERNEL_BUILD_RECIPES: &[(&str, &str, &str)] = &[(
    "cilium-kpr",
    include_str!("../../kernels/cilium-kpr.toml"),
    include_str!("../../kernels/cilium-kpr.lock"),
)];

/// The kernel recipe a node boots with: the one given, else the built-in.
pub fn kernel_recipe_or_builtin(given: Option<&Path>, dirs: &KinaDirs) -> anyhow::Result<PathBuf> {
    match given {
        Some(path) => Ok(path.to_path_buf()),
        None => kernel_recipe_file(dirs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kina_builder::kernel::{KernelLock, KernelRecipe};

    /// Everything here is parsed from the binary's own text: the test runs
    /// from any working directory, and a recipe edited without relocking
    /// fails it.
    #[test]
    fn every_built_in_recipe_loads_with_its_lock_without_touching_the_filesystem() {
        for r in RECIPES {
            let loaded = r.load().unwrap();
            assert_eq!(loaded.recipe.name, r.name, "{}", r.name);
            let lock = r.read_lock(&loaded).unwrap();
            assert_eq!(lock.recipe_sha256, loaded.sha256, "{}", r.name);
            assert!(loaded.dir().ends_with("recipes"), "{:?}", loaded.dir());
        }
        KernelRecipe::parse(SHIPPED_RECIPE.as_bytes(), Path::new("built-in")).unwrap();
        KernelLock::shipped().unwrap();
    }

    #[test]
    fn a_kubernetes_version_picks_its_minors_recipe_and_others_list_the_built_in_ones() {
        for (version, name) in [
            ("1.34", "kubernetes-v1.34"),
            ("v1.35.2", "kubernetes-v1.35"),
            ("1.36", "kubernetes-v1.36"),
        ] {
            assert_eq!(node_recipe(version).unwrap().name, name);
        }
        let err = node_recipe("1.30").unwrap_err().to_string();
        assert!(
            err.contains("1.34, 1.35, 1.36") && err.contains("--recipe"),
            "{err}"
        );
        let err = node_recipe("latest").unwrap_err().to_string();
        assert!(err.contains("expected a release"), "{err}");
        assert_eq!(recipe("base.toml").unwrap().name, "base");
        let err = recipe("nope").unwrap_err().to_string();
        assert!(err.contains("base, kubernetes-v1.34"), "{err}");
    }

    #[test]
    fn the_kernel_recipe_file_holds_the_built_in_text_and_is_rewritten_when_edited() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = KinaDirs::at(tmp.path().join("data"), tmp.path().join("cache"));
        let path = kernel_recipe_or_builtin(None, &dirs).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), SHIPPED_RECIPE);
        std::fs::write(path.with_extension("lock"), "edited").unwrap();
        kernel_recipe_file(&dirs).unwrap();
        assert_eq!(
            std::fs::read_to_string(path.with_extension("lock")).unwrap(),
            SHIPPED_LOCK
        );
        KernelRecipe::load(&path).unwrap();
        KernelLock::read(&path.with_extension("lock"), &path)
            .unwrap()
            .for_arch(kina_builder::platform::Arch::Amd64)
            .unwrap();
        let given = Path::new("/elsewhere/k.toml");
        assert_eq!(kernel_recipe_or_builtin(Some(given), &dirs).unwrap(), given);
    }
}
