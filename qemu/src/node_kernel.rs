//! The kernel a QEMU node boots: Debian's cloud kernel of a recipe, with
//! kina's initramfs to load the virtio modules it needs and its modules on
//! the node's disk; or a kernel kina built (`kina_builder::kernel::BuiltKernel`,
//! built or pulled), with everything built in, booted with no initramfs and
//! kina-init as `init=`.
//!
//! The node's record says which ([`NodeBoot`]), since a restart must boot
//! the same way without the inputs `create` had.

use std::path::PathBuf;

use kina_builder::fetch::cache::Cache;
use kina_builder::fetch::mirror::DebianMirrors;
use kina_builder::kernel::{
    BuiltKernel, KernelArtifacts, KernelLock, fetch_kernel, kernel_lock_path,
};
use kina_builder::platform::Arch;
use serde::{Deserialize, Serialize};

/// What `kina node create` / `kina up` asked the node to boot.
#[derive(Clone, Debug)]
pub enum NodeKernel {
    /// A Debian kernel recipe, pinned by the lock beside it, and where to
    /// fetch that kernel from.
    Debian {
        recipe: PathBuf,
        mirrors: DebianMirrors,
    },
    /// A kernel kina built, already opened (its digests checked).
    Built(BuiltKernel),
}

impl NodeKernel {
    /// One line for messages: the recipe file or the built kernel's recipe,
    /// release and directory.
    pub fn describe(&self) -> String {
        match self {
            NodeKernel::Debian { recipe, .. } => format!("kernel recipe {}", recipe.display()),
            NodeKernel::Built(built) => format!(
                "kina-built kernel {} ({}, {})",
                built.meta.recipe,
                built.meta.release,
                built.dir.display()
            ),
        }
    }
}

/// How a node's kernel reaches kina-init, as its record keeps it. Records
/// written before built kernels existed have no such field: they booted
/// with an initramfs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum NodeBoot {
    /// Debian's kernel with kina's initramfs (its first stage loads the
    /// virtio modules and switches to the disk).
    #[default]
    Initramfs,
    /// A kernel with everything built in: no initramfs, no modules, the
    /// kernel mounts the disk and starts kina-init as `init=`.
    Direct {
        /// The built kernel's recipe name and boot image digest, to tell
        /// which kernel a node runs.
        recipe: String,
        kernel_sha256: String,
    },
}

impl NodeBoot {
    pub fn is_direct(&self) -> bool {
        matches!(self, NodeBoot::Direct { .. })
    }
}

/// The kernel's files, ready for the node's disk and VM.
pub(crate) struct KernelFiles {
    /// `uname -r`: the name of `/boot/config-<release>` on the disk.
    pub release: String,
    /// The boot image QEMU's `-kernel` takes.
    pub image: PathBuf,
    /// Its `.config`, written to the disk for kina-init's kernel check.
    pub config: PathBuf,
    /// Debian's kernel: its modules go on the disk and into the initramfs.
    pub debian: Option<KernelArtifacts>,
    pub boot: NodeBoot,
}

/// Fetches Debian's kernel into the cache (or finds it there); a built
/// kernel is taken as it is, once its architecture matches the node's.
pub(crate) async fn kernel_files(
    kernel: &NodeKernel,
    arch: Arch,
    cache: &Cache,
) -> Result<KernelFiles, Box<dyn std::error::Error + Send + Sync>> {
    match kernel {
        NodeKernel::Debian { recipe, mirrors } => {
            let lock = KernelLock::read(&kernel_lock_path(recipe), recipe)?;
            let fetched = fetch_kernel(&lock, arch, cache, mirrors).await?;
            Ok(KernelFiles {
                release: fetched.release.clone(),
                image: fetched.vmlinuz.clone(),
                config: fetched.config(),
                debian: Some(fetched),
                boot: NodeBoot::Initramfs,
            })
        }
        NodeKernel::Built(built) => {
            check_arch(built, arch)?;
            Ok(KernelFiles {
                release: built.meta.release.clone(),
                image: built.kernel_path(),
                config: built.config_path(),
                debian: None,
                boot: NodeBoot::Direct {
                    recipe: built.meta.recipe.clone(),
                    kernel_sha256: built.meta.kernel_sha256.to_string(),
                },
            })
        }
    }
}

/// A built kernel boots only nodes of its own architecture.
pub fn check_arch(built: &BuiltKernel, arch: Arch) -> Result<(), String> {
    if built.meta.arch == arch {
        return Ok(());
    }
    Err(format!(
        "the kernel in {} is built for {}, the node is {arch}: build or pull one for {arch} \
         (`kina kernel build --arch {arch}`)",
        built.dir.display(),
        built.meta.arch
    ))
}
