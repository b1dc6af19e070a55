//! Fetching a locked kernel and unpacking what a VM boot needs (vmlinuz,
//! the modules tree) and the build config (for kernel profile checks).
//!
//! The .deb comes through the builder's verified, content-addressed download
//! cache (sha256 from the lock). vmlinuz and the modules tree are unpacked
//! into `<cache>/kernels/<deb sha256>/`, built in a temporary sibling and
//! renamed into place, so the directory exists only when complete and a
//! second fetch is a directory lookup with no network access.
//!
//! Debian's linux-image packages ship no modules.dep: their postinst runs
//! `depmod` (linux-image-*.postinst in the linux source package), so kina
//! runs the host's depmod on the unpacked tree the same way. Modules stay
//! compressed as shipped (trixie: .ko.xz).

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use crate::deb::reader::read_deb;
use crate::fetch::cache::Cache;
use crate::fetch::http::{FetchItem, Fetcher};
use crate::fetch::mirror::{DebianMirrors, UrlRewrites};
use crate::fetch::progress::{Progress, ProgressMode};
use crate::lockgen::deb_url;
use crate::platform::Arch;

use super::{KernelError, KernelLock, LockedKernel};

/// An unpacked kernel, ready for QEMU's `-kernel` and the initramfs builder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelArtifacts {
    pub arch: Arch,
    /// `uname -r`, e.g. `6.12.57+deb13-cloud-amd64`.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `<root>/lib/modules/<release>`, with depmod's indexes.
    pub modules_dir: PathBuf,
    pub root: PathBuf,
}

impl KernelArtifacts {
    /// `<root>/boot/config-<release>`: the kernel's build configuration, for
    /// `kina_contract::kernel::check` (which networks this kernel can run).
    pub fn config(&self) -> PathBuf {
        self.root
            .join("boot")
            .join(format!("config-{}", self.release))
    }

    /// Everything fetch_kernel unpacks is there (the directory only ever
    /// appears complete, but an older kina may have unpacked less).
    fn complete(&self) -> bool {
        self.vmlinuz.is_file()
            && self.config().is_file()
            && self.modules_dir.join("modules.dep").is_file()
    }

    fn at(root: PathBuf, arch: Arch, release: &str) -> Self {
        Self {
            arch,
            release: release.to_string(),
            vmlinuz: root.join("boot").join(format!("vmlinuz-{release}")),
            modules_dir: root.join("lib/modules").join(release),
            root,
        }
    }
}

/// The kernel of `lock` for `arch`, downloading and unpacking it unless the
/// cache already holds it.
pub async fn fetch_kernel(
    lock: &KernelLock,
    arch: Arch,
    cache: &Cache,
    mirrors: &DebianMirrors,
) -> Result<KernelArtifacts, KernelError> {
    let locked = lock.for_arch(arch)?.clone();
    let kernels_dir = cache.root().join("kernels");
    let root = kernels_dir.join(locked.sha256.hex());
    let artifacts = KernelArtifacts::at(root.clone(), arch, &locked.kernel_release);
    if artifacts.complete() {
        return Ok(artifacts);
    }
    // A directory from a kina that unpacked less (no config, say): redo it.
    if root.exists() {
        std::fs::remove_dir_all(&root).map_err(io_err(&root))?;
    }
    let fetcher = Fetcher::new(
        cache.clone(),
        UrlRewrites::default(),
        Progress::new(ProgressMode::detect(false)),
    )?;
    let item = FetchItem {
        url: deb_url(mirrors, locked.archive, &locked.filename),
        sha256: locked.sha256,
        size: Some(locked.size),
        label: format!("{} {} ({arch})", locked.package, locked.version),
    };
    let deb_path = fetcher.fetch(&item).await?;
    tokio::task::spawn_blocking(move || unpack_kernel(&deb_path, &locked, &kernels_dir, &root))
        .await
        .map_err(|e| KernelError::Join(e.to_string()))??;
    Ok(artifacts)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KernelError + '_ {
    move |source| KernelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn unpack_kernel(
    deb_path: &Path,
    locked: &LockedKernel,
    kernels_dir: &Path,
    root: &Path,
) -> Result<(), KernelError> {
    std::fs::create_dir_all(kernels_dir).map_err(io_err(kernels_dir))?;
    let bytes = std::fs::read(deb_path).map_err(io_err(deb_path))?;
    let deb = read_deb(
        &bytes,
        &format!("{} ({})", locked.package, deb_path.display()),
    )?;
    // Dropped (and removed) on every early return: nothing partial survives.
    let staging = tempfile::Builder::new()
        .prefix(".unpacking-")
        .tempdir_in(kernels_dir)
        .map_err(io_err(kernels_dir))?;
    let release = &locked.kernel_release;
    let modules_prefix = format!("lib/modules/{release}/");
    let mut vmlinuz_names = Vec::new();
    let mut have_modules = false;
    let unpack_err = |entry: &str, problem: String| KernelError::Unpack {
        package: locked.package.clone(),
        entry: entry.to_string(),
        problem,
    };
    let mut archive = tar::Archive::new(deb.data_tar.as_slice());
    let entries = archive
        .entries()
        .map_err(|e| unpack_err("data.tar", e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| unpack_err("data.tar", e.to_string()))?;
        let raw = entry
            .path()
            .map_err(|e| unpack_err("data.tar", e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let path = raw.trim_start_matches("./");
        // usrmerge: newer packages may ship the tree under usr/lib/modules.
        let path = path.strip_prefix("usr/").unwrap_or(path);
        let kind = entry.header().entry_type();
        let target = if let Some(name) = path.strip_prefix("boot/vmlinuz-") {
            if kind.is_file() {
                vmlinuz_names.push(name.to_string());
            }
            if name != release.as_str() {
                continue;
            }
            format!("boot/vmlinuz-{release}")
        } else if path == format!("boot/config-{release}") {
            path.to_string()
        } else if path.starts_with(&modules_prefix) || path == modules_prefix.trim_end_matches('/')
        {
            have_modules = true;
            path.trim_end_matches('/').to_string()
        } else {
            continue;
        };
        if Path::new(&target)
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(unpack_err(&raw, "path leaves the package root".into()));
        }
        let dest = staging.path().join(&target);
        if kind.is_dir() {
            std::fs::create_dir_all(&dest).map_err(io_err(&dest))?;
        } else if kind.is_file() {
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            let mut contents = Vec::new();
            entry
                .read_to_end(&mut contents)
                .map_err(|e| unpack_err(&raw, e.to_string()))?;
            std::fs::write(&dest, &contents).map_err(io_err(&dest))?;
        }
        // Symlinks (build/source in some kernels) point at headers a VM never
        // needs; skipping them also rules out links escaping the cache.
    }
    if !vmlinuz_names.iter().any(|n| n == release) {
        return Err(KernelError::ReleaseMismatch {
            package: locked.package.clone(),
            expected: release.clone(),
            found: vmlinuz_names.join(", "),
        });
    }
    if !have_modules {
        return Err(KernelError::NoModules {
            package: locked.package.clone(),
            release: release.clone(),
        });
    }
    run_depmod(staging.path(), release)?;
    let staged = staging.keep();
    match std::fs::rename(&staged, root) {
        Ok(()) => Ok(()),
        // Another process unpacked the same kernel meanwhile: keep theirs.
        Err(_) if root.join("lib/modules").join(release).is_dir() => {
            let _ = std::fs::remove_dir_all(&staged);
            Ok(())
        }
        Err(source) => {
            let _ = std::fs::remove_dir_all(&staged);
            Err(KernelError::Io {
                path: root.to_path_buf(),
                source,
            })
        }
    }
}

/// `depmod -b <root> <release>`, with `usr/lib/modules` linked to
/// `lib/modules` so a depmod built for either module directory (kmod's
/// `--with-module-directory`) finds the tree.
fn run_depmod(root: &Path, release: &str) -> Result<(), KernelError> {
    let depmod_err = |problem: String| KernelError::Depmod {
        release: release.to_string(),
        dir: root.to_path_buf(),
        problem,
    };
    let usr_lib = root.join("usr/lib");
    std::fs::create_dir_all(&usr_lib).map_err(io_err(&usr_lib))?;
    let link = usr_lib.join("modules");
    std::os::unix::fs::symlink("../../lib/modules", &link).map_err(io_err(&link))?;
    let output = Command::new(depmod_binary())
        .arg("-b")
        .arg(root)
        .arg(release)
        .output()
        .map_err(|e| depmod_err(e.to_string()))?;
    if !output.status.success() {
        return Err(depmod_err(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let dep = root.join("lib/modules").join(release).join("modules.dep");
    if !dep.is_file() {
        return Err(depmod_err(format!("it wrote no {}", dep.display())));
    }
    Ok(())
}

/// depmod lives in /sbin, which is not on every user's PATH.
fn depmod_binary() -> PathBuf {
    ["/usr/sbin/depmod", "/sbin/depmod"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("depmod"))
}
