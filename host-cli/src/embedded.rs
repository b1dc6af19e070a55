//! What the build put inside this `kina` (see `build.rs`): the commit it
//! was built from and, in a release build, the kina-init binaries for both
//! node architectures, so an installed `kina` makes node images without a
//! checkout. Where a recipe wants a kina-init "built from this workspace"
//! (`[kina_init] source = "local"`), this module decides which file the
//! builder reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kina_builder::digest::Sha256Digest;
use kina_builder::fetch::cache::Cache;
use kina_builder::platform::Arch;
use kina_builder::recipe::{KinaInitSpec, LoadedRecipe, expand_template};

use crate::dirs::KinaDirs;

mod build_info {
    include!(concat!(env!("OUT_DIR"), "/build_info.rs"));
}

/// The git commit this `kina` was built from (`unknown` outside a checkout).
pub const GIT_COMMIT: &str = build_info::GIT_COMMIT;

/// A kina-init binary compiled into `kina`, with the digest `build.rs`
/// took of it.
pub struct EmbeddedKinaInit {
    pub arch: Arch,
    bytes: &'static [u8],
    sha256: &'static str,
}

/// The kina-init this `kina` carries for `arch`, if it is a release build.
pub fn kina_init(arch: Arch) -> Option<EmbeddedKinaInit> {
    let (bytes, sha256) = match arch {
        Arch::Amd64 => build_info::KINA_INIT_AMD64,
        Arch::Arm64 => build_info::KINA_INIT_ARM64,
    }?;
    Some(EmbeddedKinaInit {
        arch,
        bytes,
        sha256,
    })
}

impl EmbeddedKinaInit {
    /// The digest recorded when it was compiled in.
    pub fn recorded_digest(&self) -> anyhow::Result<Sha256Digest> {
        self.sha256.parse().with_context(|| {
            format!(
                "the built-in kina-init for {} has a malformed digest",
                self.arch
            )
        })
    }

    /// Its bytes, checked against the recorded digest: a damaged binary is
    /// never put into an image.
    pub fn verified_bytes(&self) -> anyhow::Result<&'static [u8]> {
        let recorded = self.recorded_digest()?;
        let actual = Sha256Digest::of(self.bytes);
        if actual != recorded {
            bail!(
                "the kina-init for {} inside this kina hashes to {actual}, not the {recorded} it was built with: \
                 the kina binary is damaged; reinstall it",
                self.arch
            );
        }
        Ok(self.bytes)
    }

    /// A file holding it, for the builder, which reads kina-init from a
    /// path: kept in the download cache under its digest (verified on every
    /// use, rewritten when damaged or deleted).
    pub fn file(&self, dirs: &KinaDirs) -> anyhow::Result<PathBuf> {
        let digest = self.recorded_digest()?;
        let cache = Cache::open(dirs.cache()).context("opening the download cache")?;
        if let Some(path) = cache.get(&digest)? {
            return Ok(path);
        }
        let bytes = self.verified_bytes()?;
        let path = cache.blob_path(&digest);
        kina_builder::fsutil::write_atomic(&path, bytes).with_context(|| {
            format!(
                "writing the built-in kina-init for {} to {}",
                self.arch,
                path.display()
            )
        })?;
        Ok(path)
    }
}

/// Where a recipe's `source = "local"` kina-init for `arch` is in a checkout
/// (`None` for a recipe that pins a released kina-init).
pub fn local_path(loaded: &LoadedRecipe, arch: Arch) -> Option<PathBuf> {
    match &loaded.recipe.kina_init {
        KinaInitSpec::Local { path } => Some(loaded.dir().join(expand_template(
            path,
            kina_builder::KINA_VERSION,
            arch,
        ))),
        KinaInitSpec::Url { .. } => None,
    }
}

/// The kina-init file of each platform for a build of `loaded`, added to the
/// `--kina-init` paths given (which always win). For a `source = "local"`
/// recipe:
/// - a built-in recipe takes the kina-init inside this `kina`, else (a
///   development build) the workspace's `target/` build;
/// - a recipe file takes the path it names when that exists, else the
///   kina-init inside this `kina` (a recipe printed with `kina image recipe
///   show` and edited works with an installed `kina`).
///
/// With neither, the error says how to get one. A recipe that pins a
/// released kina-init is left to the builder, which downloads it.
pub fn kina_init_files(
    loaded: &LoadedRecipe,
    builtin: bool,
    platforms: &[Arch],
    mut given: BTreeMap<Arch, PathBuf>,
    dirs: &KinaDirs,
) -> anyhow::Result<BTreeMap<Arch, PathBuf>> {
    for &arch in platforms {
        if given.contains_key(&arch) {
            continue;
        }
        let Some(local) = local_path(loaded, arch) else {
            continue;
        };
        // A development `kina` built with CARGO_TARGET_DIR elsewhere takes
        // the kina-init `scripts/build-kina-init` put beside it, from the
        // same build, over a `./target` an earlier build may have left
        // stale (benches once built images with one).
        let local = match (builtin, beside_this_kina(arch)) {
            (true, Some(beside)) if beside.exists() => beside,
            _ => local,
        };
        let embedded = kina_init(arch);
        let chosen = match (builtin, embedded, local.exists()) {
            (true, Some(e), _) | (false, Some(e), false) => e.file(dirs)?,
            (_, _, true) => local,
            (_, None, false) => bail!(missing(loaded, arch, &local)),
        };
        given.insert(arch, chosen);
    }
    Ok(given)
}

/// `TARGET_DIR/RUST_TARGET/release/kina-init` for a `kina` at
/// `TARGET_DIR/PROFILE/kina`, the layout cargo builds both in.
fn beside_this_kina(arch: Arch) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let target_dir = exe.parent()?.parent()?;
    Some(
        target_dir
            .join(arch.rust_target())
            .join("release")
            .join("kina-init"),
    )
}

/// What to do when no kina-init for `arch` is anywhere.
fn missing(loaded: &LoadedRecipe, arch: Arch, local: &Path) -> String {
    format!(
        "no kina-init for {arch} to build {} with: this kina carries none (a development build; \
         release archives carry both) and there is none at {}. Either build it in kina's \
         checkout with `scripts/build-kina-init {arch}`, pass --kina-init {arch}=PATH, or \
         install kina from a release archive",
        loaded.path.display(),
        local.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe_in(dir: &Path, kina_init: &str) -> LoadedRecipe {
        let text = format!(
            "schema = 1\nname = \"t\"\ntag = \"kina.local/node:t\"\narchitectures = [\"amd64\", \"arm64\"]\n\
             [debian]\nsources = [{{ archive = \"debian\", suites = [\"trixie\"], components = [\"main\"] }}]\n\
             keyring = [\"debian-archive-trixie-stable\"]\npackages = []\n\
             [runtime]\ndebian_packages = []\n{kina_init}"
        );
        LoadedRecipe::from_text_in(Path::new("t.toml"), &text, dir).unwrap()
    }

    #[test]
    fn given_paths_win_and_a_local_file_is_used_when_present() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = KinaDirs::at(tmp.path().join("data"), tmp.path().join("cache"));
        let loaded = recipe_in(
            tmp.path(),
            "[kina_init]\nsource = \"local\"\npath = \"bin/{rust_target}/kina-init\"\n",
        );
        let local = tmp.path().join("bin/x86_64-unknown-linux-gnu/kina-init");
        std::fs::create_dir_all(local.parent().unwrap()).unwrap();
        std::fs::write(&local, b"elf").unwrap();
        let given = BTreeMap::from([(Arch::Arm64, PathBuf::from("/given"))]);
        let chosen = kina_init_files(&loaded, false, &Arch::ALL, given, &dirs).unwrap();
        assert_eq!(chosen[&Arch::Arm64], PathBuf::from("/given"));
        // A recipe file's own kina-init comes before anything built in.
        assert_eq!(chosen[&Arch::Amd64], local);
    }

    #[test]
    fn without_any_kina_init_the_error_says_how_to_get_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = KinaDirs::at(tmp.path().join("data"), tmp.path().join("cache"));
        let loaded = recipe_in(
            tmp.path(),
            "[kina_init]\nsource = \"local\"\npath = \"none/{rust_target}\"\n",
        );
        for arch in Arch::ALL {
            let result = kina_init_files(&loaded, true, &[arch], BTreeMap::new(), &dirs);
            match kina_init(arch) {
                // A release build: the built-in binary, written once, verified.
                Some(e) => {
                    let path = result.unwrap()[&arch].clone();
                    let bytes = std::fs::read(&path).unwrap();
                    assert_eq!(Sha256Digest::of(&bytes), e.recorded_digest().unwrap());
                    std::fs::write(&path, b"damaged").unwrap();
                    assert_eq!(std::fs::read(e.file(&dirs).unwrap()).unwrap(), bytes);
                }
                None => {
                    let err = result.unwrap_err().to_string();
                    assert!(
                        err.contains(&format!("scripts/build-kina-init {arch}"))
                            && err.contains(&format!("--kina-init {arch}=PATH"))
                            && err.contains("release archive")
                            && err.contains("none/"),
                        "{err}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_pinned_release_kina_init_is_left_to_the_builder() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = KinaDirs::at(tmp.path().join("data"), tmp.path().join("cache"));
        let digest = "0".repeat(64);
        let loaded = recipe_in(
            tmp.path(),
            &format!(
                "[kina_init]\nsource = \"url\"\nurl = \"http://127.0.0.1/{{version}}/{{arch}}\"\nversion = \"1\"\n\
                 sha256 = {{ amd64 = \"{digest}\", arm64 = \"{digest}\" }}\n"
            ),
        );
        let chosen = kina_init_files(&loaded, true, &Arch::ALL, BTreeMap::new(), &dirs).unwrap();
        assert!(chosen.is_empty(), "{chosen:?}");
    }
}
