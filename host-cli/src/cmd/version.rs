//! `kina version`: which kina this is, down to what it carries inside, so
//! a bug report or a rebuilt image can be matched to the exact binary: the
//! version and commit, the digest of each kina-init binary and built-in
//! recipe, lock and kernel recipe, and the directories kina keeps its data
//! and downloads in.

use kina_builder::digest::Sha256Digest;
use kina_builder::kernel::{SHIPPED_LOCK, SHIPPED_RECIPE};
use kina_builder::platform::Arch;
use serde::Serialize;

use crate::builtin::{KERNEL_RECIPE_NAME, RECIPES};
use crate::dirs::KinaDirs;
use crate::embedded;

#[derive(Serialize)]
struct Version {
    version: &'static str,
    commit: &'static str,
    /// By platform (`linux/amd64`): the digest of the kina-init inside, or
    /// null for a build that carries none.
    kina_init: Vec<KinaInit>,
    /// Built-in files by name (`base.toml`, `kernels/debian-cloud.lock`).
    builtin: Vec<BuiltinFile>,
    data_dir: String,
    cache_dir: String,
}

#[derive(Serialize)]
struct KinaInit {
    platform: String,
    sha256: Option<String>,
}

#[derive(Serialize)]
struct BuiltinFile {
    name: String,
    sha256: String,
}

fn collect(dirs: &KinaDirs) -> anyhow::Result<Version> {
    let mut kina_init = Vec::new();
    for arch in Arch::ALL {
        let sha256 = match embedded::kina_init(arch) {
            Some(e) => Some(e.recorded_digest()?.oci()),
            None => None,
        };
        kina_init.push(KinaInit {
            platform: arch.platform(),
            sha256,
        });
    }
    let file = |name: String, text: &str| BuiltinFile {
        name,
        sha256: Sha256Digest::of(text.as_bytes()).oci(),
    };
    let mut builtin = Vec::new();
    for r in RECIPES {
        builtin.push(file(format!("{}.toml", r.name), r.recipe));
        builtin.push(file(format!("{}.lock", r.name), r.lock));
    }
    builtin.push(file(
        format!("kernels/{KERNEL_RECIPE_NAME}.toml"),
        SHIPPED_RECIPE,
    ));
    builtin.push(file(
        format!("kernels/{KERNEL_RECIPE_NAME}.lock"),
        SHIPPED_LOCK,
    ));
    Ok(Version {
        version: env!("CARGO_PKG_VERSION"),
        commit: embedded::GIT_COMMIT,
        kina_init,
        builtin,
        data_dir: dirs.data().display().to_string(),
        cache_dir: dirs.cache().display().to_string(),
    })
}

pub fn run(dirs: &KinaDirs, json: bool) -> anyhow::Result<()> {
    let v = collect(dirs)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("kina {} (commit {})", v.version, v.commit);
    for k in &v.kina_init {
        match &k.sha256 {
            Some(digest) => println!("kina-init {}: {digest}", k.platform),
            None => println!(
                "kina-init {}: none inside (a development build: image builds use the checkout's \
                 target/ build or --kina-init)",
                k.platform
            ),
        }
    }
    for f in &v.builtin {
        println!("built-in {}: {}", f.name, f.sha256);
    }
    println!("data directory: {}", v.data_dir);
    println!("cache directory: {}", v.cache_dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_file_is_listed_with_the_digest_of_its_text() {
        let dirs = KinaDirs::at("/d", "/c");
        let v = collect(&dirs).unwrap();
        assert_eq!(v.builtin.len(), RECIPES.len() * 2 + 2);
        let base = v.builtin.iter().find(|f| f.name == "base.toml").unwrap();
        let text = include_str!("../../../recipes/base.toml");
        assert_eq!(base.sha256, Sha256Digest::of(text.as_bytes()).oci());
        assert_eq!(v.kina_init.len(), 2);
        assert_eq!((v.data_dir.as_str(), v.cache_dir.as_str()), ("/d", "/c"));
        assert!(!v.commit.is_empty());
    }
}
