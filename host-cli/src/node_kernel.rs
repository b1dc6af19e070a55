//! The kernel nodes boot, from what `--kernel` or the `kind: Kina`
//! document's `kernel` names: one place that tells the forms apart and
//! turns each into what a provider boots ([`NodeKernel`]).
//!
//! The forms, tried in this order:
//! - nothing, or `debian-cloud`: the Debian kernel recipe built into kina;
//! - a directory holding `kernel.json`: a kernel kina built or pulled
//!   (`kina_builder::kernel::BuiltKernel`), its digests checked on opening;
//! - a file: a kernel recipe, pinned by the lock beside it — a Debian one
//!   is fetched, a `[build]` one must have been built (`kina kernel build`);
//! - the name of a kernel recipe built into kina that builds (`cilium-kpr`):
//!   its newest build in the build cache;
//! - a name starting with a registry host (`HOST.DOMAIN/`, `HOST:PORT/`,
//!   `localhost/`): a registry reference, pulled unless the kernel store
//!   already has it (`kina kernel pull`).
//!
//! `kina up` does not compile a kernel itself: a build takes minutes to an
//! hour, and kind likewise keeps `kind build node-image` a separate step;
//! the error says which command builds it.
//!
//! QEMU boots either kind; Apple's `container` boots only a built kernel's
//! image ([`apple_kernel_image`]), since Debian's kernel needs its modules.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kina_builder::kernel::{BuiltKernel, KernelRecipe};
use kina_builder::platform::Arch;
pub use kina_qemu::node_kernel::NodeKernel;

use crate::builtin::KERNEL_RECIPE_NAME;
use crate::cli::MirrorArgs;
use crate::dirs::KinaDirs;

/// The file a built kernel's directory is recognised by.
const BUILT_KERNEL_META: &str = "kernel.json";

/// What a kernel name is, before anything is fetched, built or pulled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelSource {
    /// The Debian kernel recipe built into kina.
    BuiltIn,
    /// A Debian kernel recipe file.
    DebianRecipe(PathBuf),
    /// A built kernel's directory.
    BuiltDir(PathBuf),
    /// A kernel recipe that builds (`[build]`), by its name: its build in
    /// the build cache.
    BuildRecipe(String),
    /// A kernel pushed to a registry (`kina kernel push`).
    Oci(String),
}

/// Tells what `given` names; `what` says where it came from (`--kernel`,
/// the Kina document's `kernel`), for errors.
pub fn classify(given: Option<&Path>, what: &str) -> anyhow::Result<KernelSource> {
    let Some(path) = given else {
        return Ok(KernelSource::BuiltIn);
    };
    if path.is_dir() {
        if path.join(BUILT_KERNEL_META).is_file() {
            return Ok(KernelSource::BuiltDir(path.to_path_buf()));
        }
        bail!(
            "{what} {}: a directory without {BUILT_KERNEL_META}, so not a kernel kina built; name \
             the directory `kina kernel build` printed, or a kernel recipe file",
            path.display()
        );
    }
    if path.is_file() {
        let (recipe, _) =
            KernelRecipe::load(path).with_context(|| format!("{what} {}", path.display()))?;
        if recipe.build.is_some() {
            return Ok(KernelSource::BuildRecipe(recipe.name));
        }
        return Ok(KernelSource::DebianRecipe(path.to_path_buf()));
    }
    if path == Path::new(KERNEL_RECIPE_NAME) {
        return Ok(KernelSource::BuiltIn);
    }
    if let Some((name, _, _)) = crate::builtin::KERNEL_BUILD_RECIPES
        .iter()
        .find(|(name, _, _)| path == Path::new(name))
    {
        return Ok(KernelSource::BuildRecipe((*name).to_string()));
    }
    if let Some(reference) = path
        .to_str()
        .filter(|r| crate::cmd::cluster::up::names_registry(r))
    {
        return Ok(KernelSource::Oci(reference.to_string()));
    }
    bail!(
        "{what} {}: no such file or directory; name a kernel recipe file, the directory of a \
         kernel kina built (`kina kernel build` prints it), a registry reference \
         (REGISTRY/REPO:TAG), or a recipe built into kina: `{KERNEL_RECIPE_NAME}`{}",
        path.display(),
        crate::builtin::KERNEL_BUILD_RECIPES
            .iter()
            .map(|(name, _, _)| format!(", `{name}`"))
            .collect::<String>()
    )
}

/// The kernel a node of `arch` boots for what `given` names. A Debian
/// kernel is fetched later, by the provider (its mirrors are chosen here,
/// from `mirrors` and the recipe's suite); a built kernel is opened now.
pub fn resolve(
    given: Option<&Path>,
    what: &str,
    dirs: &KinaDirs,
    arch: Arch,
    mirrors: &MirrorArgs,
) -> anyhow::Result<NodeKernel> {
    let debian = |recipe: PathBuf| -> anyhow::Result<NodeKernel> {
        let (loaded, _) =
            KernelRecipe::load(&recipe).with_context(|| format!("{what} {}", recipe.display()))?;
        Ok(NodeKernel::Debian {
            mirrors: crate::cmd::node::kernel_mirrors(mirrors, &loaded)?,
            recipe,
        })
    };
    match classify(given, what)? {
        KernelSource::BuiltIn => debian(crate::builtin::kernel_recipe_file(dirs)?),
        KernelSource::DebianRecipe(recipe) => debian(recipe),
        KernelSource::BuiltDir(dir) => {
            let built =
                BuiltKernel::open(&dir).with_context(|| format!("{what} {}", dir.display()))?;
            kina_qemu::node_kernel::check_arch(&built, arch)
                .map_err(|e| anyhow::anyhow!("{what} {}: {e}", dir.display()))?;
            Ok(NodeKernel::Built(built))
        }
        KernelSource::BuildRecipe(name) => {
            let built = crate::kernel_store::built_kernels_of_recipe(dirs, &name)?
                .into_iter()
                .find(|k| k.meta.arch == arch)
                .with_context(|| {
                    format!(
                        "{what} {name}: no {arch} build of kernel recipe {name} in {}; build it \
                         first (`kina kernel build --recipe {name} --arch {arch}`, Linux) or pull \
                         a published one and name its reference",
                        crate::kernel_store::build_cache_dir(dirs).display()
                    )
                })?;
            Ok(NodeKernel::Built(built))
        }
        KernelSource::Oci(reference) => {
            let store = crate::kernel_store::KernelStore::open(dirs)?;
            // `resolve` is called from the synchronous parts of `up` and
            // `node create`, which run on tokio's multi-threaded runtime.
            let built = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(store.resolve(
                    &reference,
                    arch,
                    &kina_builder::oci::distribution::Options::default(),
                ))
            })
            .with_context(|| format!("{what} {reference}"))?;
            Ok(NodeKernel::Built(built))
        }
    }
}

/// The built kernel Apple's `container` can boot; Debian's kernel is
/// refused, naming what to do instead.
pub fn built_for_apple(kernel: &NodeKernel) -> anyhow::Result<&BuiltKernel> {
    match kernel {
        NodeKernel::Built(built) => Ok(built),
        NodeKernel::Debian { recipe, .. } => bail!(
            "kernel {}: a Debian kernel recipe boots QEMU nodes only (its drivers are modules, \
             loaded from kina's initramfs); for Apple's `container`, name a kernel kina built \
             (`kina kernel build` on Linux, or `kina kernel pull`), or a kernel image in \
             `kernelImage`",
            recipe.display()
        ),
    }
}

/// The kernel image Apple's `container run --kernel` boots for a built
/// kernel: a copy in kina's data directory named by its digest, so the
/// nodes keep booting the same file whatever happens to the cache or the
/// directory it came from. Debian's kernel cannot boot there (its virtio
/// drivers are modules and Apple boots no initramfs of kina's).
pub fn apple_kernel_image(kernel: &NodeKernel, dirs: &KinaDirs) -> anyhow::Result<PathBuf> {
    let built = built_for_apple(kernel)?;
    let dir = dirs.data().join("kernels");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let target = dir.join(format!(
        "{}-{}-{}",
        built.meta.recipe,
        built.meta.arch,
        built.meta.kernel_sha256.hex()
    ));
    if !target.is_file() {
        let bytes = std::fs::read(built.kernel_path())
            .with_context(|| format!("reading {}", built.kernel_path().display()))?;
        // Whole or not at all: parallel `kina up`s may write it side by side.
        kina_builder::fsutil::write_atomic(&target, &bytes)
            .with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kina_builder::digest::Sha256Digest;
    use kina_builder::kernel::{BUILT_KERNEL_SCHEMA, BuiltKernelMeta, KernelFormat};

    fn built(dir: &Path, arch: Arch) -> PathBuf {
        let (kernel, config) = (dir.join("Image"), dir.join(".config"));
        std::fs::write(&kernel, b"kernel bytes").unwrap();
        std::fs::write(&config, b"# CONFIG_MODULES is not set\n").unwrap();
        let meta = BuiltKernelMeta {
            schema: BUILT_KERNEL_SCHEMA,
            recipe: "cilium-kpr".into(),
            arch,
            release: "6.18.5".into(),
            format: KernelFormat::for_arch(arch),
            kernel_sha256: Sha256Digest::of(b"kernel bytes"),
            config_sha256: Sha256Digest::of(b"# CONFIG_MODULES is not set\n"),
            profiles: vec!["cilium-kpr".into()],
            source_sha256: Sha256Digest::of(b"source"),
            base_config_sha256: Sha256Digest::of(b"base"),
            toolchain: "gcc (Debian 14.2.0-19) 14.2.0".into(),
        };
        let out = dir.join("built");
        BuiltKernel::install(&out, &meta, &kernel, &config, b"{}").unwrap();
        out
    }

    #[test]
    fn each_form_of_kernel_name_is_told_apart() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = built(tmp.path(), Arch::Arm64);
        assert_eq!(classify(None, "--kernel").unwrap(), KernelSource::BuiltIn);
        assert_eq!(
            classify(Some(Path::new("debian-cloud")), "--kernel").unwrap(),
            KernelSource::BuiltIn
        );
        assert_eq!(
            classify(Some(dir.as_path()), "--kernel").unwrap(),
            KernelSource::BuiltDir(dir.clone())
        );
        let recipe = tmp.path().join("kernel.toml");
        std::fs::write(&recipe, kina_builder::kernel::SHIPPED_RECIPE).unwrap();
        assert_eq!(
            classify(Some(recipe.as_path()), "--kernel").unwrap(),
            KernelSource::DebianRecipe(recipe)
        );
        assert_eq!(
            classify(Some(Path::new("cilium-kpr")), "--kernel").unwrap(),
            KernelSource::BuildRecipe("cilium-kpr".into())
        );
        let build_recipe = tmp.path().join("mine.toml");
        std::fs::write(&build_recipe, crate::builtin::KERNEL_BUILD_RECIPES[0].1).unwrap();
        assert_eq!(
            classify(Some(build_recipe.as_path()), "--kernel").unwrap(),
            KernelSource::BuildRecipe("cilium-kpr".into())
        );
        assert_eq!(
            classify(Some(Path::new("localhost:5000/kina/kernel:v1")), "kernel").unwrap(),
            KernelSource::Oci("localhost:5000/kina/kernel:v1".into())
        );
        let err = classify(Some(tmp.path()), "kernel")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("kernel ") && err.contains("without kernel.json"),
            "{err}"
        );
        let missing = tmp.path().join("nope");
        let err = classify(Some(missing.as_path()), "--kernel")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&missing.display().to_string()) && err.contains("kina kernel build"),
            "{err}"
        );
    }

    #[test]
    fn a_built_kernel_is_opened_checked_and_must_match_the_node() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = built(tmp.path(), Arch::Arm64);
        let dirs = KinaDirs::at(tmp.path().join("data"), tmp.path().join("cache"));
        let mirrors = MirrorArgs::default();
        let kernel = resolve(
            Some(dir.as_path()),
            "--kernel",
            &dirs,
            Arch::Arm64,
            &mirrors,
        )
        .unwrap();
        assert!(matches!(&kernel, NodeKernel::Built(b) if b.meta.release == "6.18.5"));
        let err = resolve(
            Some(dir.as_path()),
            "--kernel",
            &dirs,
            Arch::Amd64,
            &mirrors,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("built for arm64, the node is amd64"), "{err}");
        // A changed boot image is refused by name before any node boots it.
        std::fs::write(dir.join("kernel"), b"other bytes").unwrap();
        let err = format!(
            "{:#}",
            resolve(
                Some(dir.as_path()),
                "--kernel",
                &dirs,
                Arch::Arm64,
                &mirrors
            )
            .unwrap_err()
        );
        assert!(err.contains("was changed"), "{err}");
    }

    #[test]
    fn apple_gets_a_copy_of_the_built_kernel_in_the_data_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = built(tmp.path(), Arch::Arm64);
        let dirs = KinaDirs::at(tmp.path().join("data"), tmp.path().join("cache"));
        let kernel = NodeKernel::Built(BuiltKernel::open(&dir).unwrap());
        let image = apple_kernel_image(&kernel, &dirs).unwrap();
        assert!(
            image.starts_with(tmp.path().join("data/kernels")),
            "{image:?}"
        );
        assert_eq!(std::fs::read(&image).unwrap(), b"kernel bytes");
        // Asking again finds the same file.
        assert_eq!(apple_kernel_image(&kernel, &dirs).unwrap(), image);
        let debian = NodeKernel::Debian {
            recipe: "kernels/debian-cloud.toml".into(),
            mirrors: kina_builder::fetch::mirror::DebianMirrors {
                debian: "http://127.0.0.1:1/debian".into(),
                security: "http://127.0.0.1:1/debian-security".into(),
            },
        };
        let err = apple_kernel_image(&debian, &dirs).unwrap_err().to_string();
        assert!(
            err.contains("QEMU nodes only") && err.contains("kernelImage"),
            "{err}"
        );
    }
}
