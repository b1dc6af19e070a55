//! The node's root disk: an ext4 image made from a node image's OCI layers.
//!
//! Like Apple's `container` (which turns an image into an ext4 block device
//! for its VM), the layers are applied once on the host and written with
//! e2fsprogs' `mke2fs -d`, which copies a directory tree, with owners, modes
//! and xattrs, into a new filesystem without mounting anything. The layers
//! are unpacked into a staging directory next to the output (this runs as
//! root, so ownership and setuid bits survive); the staging directory is
//! removed whatever happens and the disk appears at `out` only when complete.

mod extract;
mod layers;
mod shared_base;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use kina_builder::digest::Sha256Digest;
use kina_builder::oci_layout::entry_reference;
use kina_builder::platform::Arch;

pub(crate) use extract::read_from_disk;
pub use layers::resolve_in_root;
pub use shared_base::node_root_disk;

/// Sparse files cost only what is written; 8 GiB leaves room for the
/// Kubernetes images a node pulls.
pub const DEFAULT_DISK_SIZE: u64 = 8 << 30;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskExtras {
    /// The kernel release and its modules directory, installed at
    /// `/lib/modules/<release>` for the node's modprobe.
    pub kernel_modules: Option<(String, PathBuf)>,
    /// Files to add: absolute path in the node, contents, mode (owned by root).
    pub files: Vec<(PathBuf, Vec<u8>, u32)>,
    pub size_bytes: u64,
}

impl Default for DiskExtras {
    fn default() -> Self {
        Self {
            kernel_modules: None,
            files: Vec::new(),
            size_bytes: DEFAULT_DISK_SIZE,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskInfo {
    pub path: PathBuf,
    pub size_bytes: u64,
    /// The platform manifest the disk was made from.
    pub manifest_digest: Sha256Digest,
    pub layers: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("OCI layout {layout}: {problem}")]
    Layout { layout: PathBuf, problem: String },
    #[error("OCI layout {layout} has no image `{reference}` (it has: {references})")]
    NoSuchImage {
        layout: PathBuf,
        reference: String,
        references: String,
    },
    #[error("image in {layout} has no linux/{arch} manifest; build the image for {arch}")]
    NoPlatform { layout: PathBuf, arch: Arch },
    #[error(
        "layer {digest} in {layout}: content has sha256 {actual} ({actual_size} bytes) but the manifest says {digest} ({size} bytes); the store is corrupt: rebuild the image"
    )]
    LayerDigest {
        layout: PathBuf,
        digest: Sha256Digest,
        size: u64,
        actual: Sha256Digest,
        actual_size: u64,
    },
    #[error("layer {digest}: unsupported media type {media_type}")]
    MediaType {
        digest: Sha256Digest,
        media_type: String,
    },
    #[error(
        "layer {digest}, entry `{entry}`: {problem}; the image is broken or hostile: rebuild it from a trusted recipe"
    )]
    Entry {
        digest: Sha256Digest,
        entry: String,
        problem: String,
    },
    #[error(
        "building a root disk needs root (to keep the image's owners and setuid bits); run kina as root or with sudo"
    )]
    NotRoot,
    #[error("extra file {path}: {problem}")]
    Extra { path: PathBuf, problem: String },
    #[error(
        "cannot run mke2fs for {out}: {problem}; install e2fsprogs (apt-get install e2fsprogs)"
    )]
    MkfsMissing { out: PathBuf, problem: String },
    #[error(
        "mke2fs for {out} failed: {problem}; if the image's files do not fit in {size_mib} MiB, give the node a bigger disk (--disk-size)"
    )]
    Mkfs {
        out: PathBuf,
        size_mib: u64,
        problem: String,
    },
    /// The host's disk, not the node's, ran out: said apart from a corrupt
    /// layer or a too-small node disk, which the same ENOSPC would otherwise
    /// be reported as.
    #[error(
        "no space left on the host for node disk {out}: the filesystem holding {dir} {state}; free space there, or put kina's data on a bigger filesystem (KINA_DATA_DIR)"
    )]
    HostFull {
        out: PathBuf,
        dir: PathBuf,
        /// What was measured, e.g. "has 12 MiB free and the disk needs
        /// about 300 MiB".
        state: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DiskError + '_ {
    move |source| DiskError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Builds the root disk from image `reference` of a multi-image layout such
/// as kina's image store.
pub fn build_stored_root_disk(
    layout: &Path,
    reference: &str,
    arch: Arch,
    extras: &DiskExtras,
    out: &Path,
) -> Result<DiskInfo, DiskError> {
    if !running_as_root() {
        return Err(DiskError::NotRoot);
    }
    let (manifest_digest, layers) = platform_layers(layout, reference, arch)?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let full = |e| host_full_or(e, &dir, out);
    let staging = tempfile::Builder::new()
        .prefix(".kina-disk-staging-")
        .tempdir_in(&dir)
        .map_err(|e| full(io_err(&dir)(e)))?;
    let disk = tempfile::Builder::new()
        .prefix(".kina-disk-")
        .tempfile_in(&dir)
        .map_err(|e| full(io_err(&dir)(e)))?;
    // Sorted while the staging tree and the partial image are still there,
    // so a host they filled is measured full.
    build_in(layout, &layers, extras, staging.path(), &disk, &dir, out).map_err(full)?;
    disk.persist(out).map_err(|e| DiskError::Io {
        path: out.to_path_buf(),
        source: e.error,
    })?;
    drop(staging);
    Ok(DiskInfo {
        path: out.to_path_buf(),
        size_bytes: extras.size_bytes,
        manifest_digest,
        layers: layers.len(),
    })
}

/// Stages the layers and extras under `root` and makes the filesystem for
/// `out` in `disk`, a file in `dir` left empty until the staged files are
/// known to fit beside it.
fn build_in(
    layout: &Path,
    layers: &[LayerDescriptor],
    extras: &DiskExtras,
    root: &Path,
    disk: &tempfile::NamedTempFile,
    dir: &Path,
    out: &Path,
) -> Result<(), DiskError> {
    std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(io_err(root))?;
    for layer in layers {
        apply_verified_layer(layout, layer, root)?;
    }
    if let Some((release, modules)) = &extras.kernel_modules {
        install_modules(root, release, modules)?;
    }
    for (path, contents, mode) in &extras.files {
        install_file(root, path, contents, *mode)?;
    }
    ensure_room_for_disk(root, extras.size_bytes, dir, out)?;
    disk.as_file()
        .set_len(extras.size_bytes)
        .map_err(io_err(disk.path()))?;
    mke2fs(root, disk.path(), extras.size_bytes, out)
}

/// The strerror of ENOSPC, as both `std::io::Error` and e2fsprogs' com_err
/// print it; layer and extra-file errors carry it only as text.
const ENOSPC_TEXT: &str = "No space left on device";

/// Below this much free space (or a hundredth of the filesystem) a host
/// filesystem counts as full: what filled it is still there when this is
/// measured, so a full one has next to nothing left.
const NEARLY_FULL: u64 = 64 << 20;

/// A failure that the host's disk filling up caused is said to be that,
/// with what was left, measured while what filled it (the staging tree, the
/// partial image) is still there. ENOSPC from the kernel is taken as it is;
/// an error text is believed only when the host is indeed (nearly) full,
/// because layer entries and mke2fs messages quote names from the image,
/// and one can be called "No space left on device". mke2fs reports a
/// too-small node filesystem as a block allocation failure, not ENOSPC, and
/// a full host sometimes as a short write, hence any mke2fs failure on a
/// full host.
fn host_full_or(error: DiskError, dir: &Path, out: &Path) -> DiskError {
    let Some(host) = HostSpace::of(dir) else {
        return error;
    };
    let caused = match &error {
        DiskError::Io { source, .. } => source.kind() == std::io::ErrorKind::StorageFull,
        DiskError::Entry { problem, .. } | DiskError::Extra { problem, .. } => {
            problem.contains(ENOSPC_TEXT) && host.nearly_full()
        }
        DiskError::Mkfs { .. } => host.nearly_full(),
        _ => false,
    };
    if !caused {
        return error;
    }
    let state = if host.inodes_free == 0 {
        "has no free inodes left".to_string()
    } else {
        format!(
            "filled up while the disk was being made ({} MiB left)",
            host.free >> 20
        )
    };
    DiskError::HostFull {
        out: out.to_path_buf(),
        dir: dir.to_path_buf(),
        state,
    }
}

/// Refuses, before mke2fs writes anything, a disk the host cannot hold: the
/// staged files plus the new filesystem's metadata (its journal is 64 MiB
/// of an 8 GiB disk; a 64th of the size bounds journal and tables).
fn ensure_room_for_disk(root: &Path, size: u64, dir: &Path, out: &Path) -> Result<(), DiskError> {
    let Some(host) = HostSpace::of(dir) else {
        return Ok(());
    };
    let needed = allocated_bytes(root).map_err(io_err(root))? + size / 64;
    if needed > host.free {
        return Err(DiskError::HostFull {
            out: out.to_path_buf(),
            dir: dir.to_path_buf(),
            state: format!(
                "has {} MiB free and the disk needs about {} MiB",
                host.free >> 20,
                needed.div_ceil(1 << 20)
            ),
        });
    }
    Ok(())
}

/// The filesystem holding a directory, as statvfs sees it.
struct HostSpace {
    /// Free bytes, the blocks reserved for root included: disks are only
    /// built as root ([`DiskError::NotRoot`]), and root may use them.
    free: u64,
    total: u64,
    inodes_free: u64,
}

impl HostSpace {
    /// None when statvfs fails, which leaves an error as it was.
    #[allow(
        clippy::useless_conversion,
        reason = "fsblkcnt_t, fsfilcnt_t and c_ulong are u64 on 64-bit Linux but u32 on macOS and 32-bit targets"
    )]
    fn of(dir: &Path) -> Option<Self> {
        let stat = nix::sys::statvfs::statvfs(dir).ok()?;
        let unit = u64::from(stat.fragment_size());
        Some(Self {
            free: u64::from(stat.blocks_free()).saturating_mul(unit),
            total: u64::from(stat.blocks()).saturating_mul(unit),
            inodes_free: u64::from(stat.files_free()),
        })
    }

    fn nearly_full(&self) -> bool {
        self.free < NEARLY_FULL.max(self.total / 100) || self.inodes_free == 0
    }
}

/// What the files under `root` occupy on disk (hard links counted once),
/// which is what mke2fs will write again into the image.
fn allocated_bytes(root: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(&path)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            total = total.saturating_add(meta.blocks().saturating_mul(512));
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok(total)
}

/// /proc/self belongs to the process's effective uid (proc(5)); this avoids
/// an unsafe geteuid call and a new nix feature.
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[derive(Debug)]
struct LayerDescriptor {
    media_type: String,
    digest: Sha256Digest,
    size: u64,
}

fn read_json(layout: &Path, path: &Path) -> Result<serde_json::Value, DiskError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|e| DiskError::Layout {
        layout: layout.to_path_buf(),
        problem: format!("{}: {e}", path.display()),
    })
}

fn blob_path(layout: &Path, digest: &Sha256Digest) -> PathBuf {
    layout.join("blobs/sha256").join(digest.hex())
}

fn digest_of(layout: &Path, value: &serde_json::Value) -> Result<Sha256Digest, DiskError> {
    value["digest"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| DiskError::Layout {
            layout: layout.to_path_buf(),
            problem: format!("descriptor without a sha256 digest: {value}"),
        })
}

/// index.json → (image index →) the `arch` manifest → its layers.
fn platform_layers(
    layout: &Path,
    reference: &str,
    arch: Arch,
) -> Result<(Sha256Digest, Vec<LayerDescriptor>), DiskError> {
    let index = read_json(layout, &layout.join("index.json"))?;
    let entries: Vec<&serde_json::Value> = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let names = || {
        entries
            .iter()
            .filter_map(|e| entry_reference(e))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let entry = entries
        .iter()
        .find(|e| entry_reference(e) == Some(reference))
        .ok_or_else(|| DiskError::NoSuchImage {
            layout: layout.to_path_buf(),
            reference: reference.to_string(),
            references: names(),
        })?;
    let mut digest = digest_of(layout, entry)?;
    let mut doc = read_json(layout, &blob_path(layout, &digest))?;
    if let Some(manifests) = doc["manifests"].as_array() {
        let chosen = manifests
            .iter()
            .find(|m| {
                m["platform"]["os"].as_str() == Some("linux")
                    && m["platform"]["architecture"].as_str() == Some(arch.debian())
            })
            .ok_or_else(|| DiskError::NoPlatform {
                layout: layout.to_path_buf(),
                arch,
            })?;
        digest = digest_of(layout, chosen)?;
        doc = read_json(layout, &blob_path(layout, &digest))?;
    }
    let mut layers = Vec::new();
    for layer in doc["layers"].as_array().into_iter().flatten() {
        layers.push(LayerDescriptor {
            media_type: layer["mediaType"].as_str().unwrap_or_default().to_string(),
            digest: digest_of(layout, layer)?,
            size: layer["size"].as_u64().unwrap_or(0),
        });
    }
    Ok((digest, layers))
}

/// Hashes the blob before a byte of it is unpacked, then applies it.
fn apply_verified_layer(
    layout: &Path,
    layer: &LayerDescriptor,
    root: &Path,
) -> Result<(), DiskError> {
    let path = blob_path(layout, &layer.digest);
    let file = std::fs::File::open(&path).map_err(io_err(&path))?;
    let (actual, actual_size) =
        Sha256Digest::of_reader(std::io::BufReader::new(file)).map_err(io_err(&path))?;
    if actual != layer.digest || actual_size != layer.size {
        return Err(DiskError::LayerDigest {
            layout: layout.to_path_buf(),
            digest: layer.digest,
            size: layer.size,
            actual,
            actual_size,
        });
    }
    let file = std::io::BufReader::new(std::fs::File::open(&path).map_err(io_err(&path))?);
    let media = layer.media_type.as_str();
    let stream: Box<dyn Read> = if media.ends_with("tar+gzip") || media.ends_with("tar.gzip") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else if media.ends_with("tar+zstd") {
        Box::new(zstd::stream::read::Decoder::new(file).map_err(io_err(&path))?)
    } else if media.ends_with(".tar") || media.ends_with("diff.tar") {
        Box::new(file)
    } else {
        return Err(DiskError::MediaType {
            digest: layer.digest,
            media_type: layer.media_type.clone(),
        });
    };
    layers::apply_layer(root, stream).map_err(|(entry, problem)| DiskError::Entry {
        digest: layer.digest,
        entry,
        problem,
    })
}

fn extra_err(path: &Path) -> impl Fn(String) -> DiskError + '_ {
    move |problem| DiskError::Extra {
        path: path.to_path_buf(),
        problem,
    }
}

/// Resolves an absolute node path's parent inside `root` (through usrmerge
/// symlinks) and creates missing directories.
fn node_parent(root: &Path, path: &Path) -> Result<PathBuf, DiskError> {
    let err = extra_err(path);
    if !path.is_absolute() {
        return Err(err("not an absolute path".into()));
    }
    let rel = path.strip_prefix("/").unwrap_or(path);
    let components = layers::entry_components(rel).map_err(&err)?;
    let parents = components
        .split_last()
        .map(|(_, p)| p)
        .ok_or_else(|| err("names the root directory".into()))?;
    let parent = resolve_in_root(root, parents).map_err(&err)?;
    std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    Ok(parent)
}

fn install_file(root: &Path, path: &Path, contents: &[u8], mode: u32) -> Result<(), DiskError> {
    let parent = node_parent(root, path)?;
    let dest = parent.join(path.file_name().unwrap_or_default());
    if std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
        return Err(extra_err(path)("a directory of the image is there".into()));
    }
    let _ = std::fs::remove_file(&dest);
    std::fs::write(&dest, contents).map_err(io_err(&dest))?;
    std::os::unix::fs::lchown(&dest, Some(0), Some(0)).map_err(io_err(&dest))?;
    std::fs::set_permissions(
        &dest,
        std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
    )
    .map_err(io_err(&dest))
}

/// Copies the modules tree (files and directories; symlinks are skipped as
/// the kernel fetch never creates any inside it) to /lib/modules/<release>.
fn install_modules(root: &Path, release: &str, modules: &Path) -> Result<(), DiskError> {
    let target = Path::new("/lib/modules").join(release);
    let parent = node_parent(root, &target)?;
    copy_tree(modules, &parent.join(release))
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), DiskError> {
    std::fs::create_dir_all(to).map_err(io_err(to))?;
    std::fs::set_permissions(to, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(io_err(to))?;
    let mut children: Vec<_> = std::fs::read_dir(from)
        .map_err(io_err(from))?
        .collect::<Result<_, _>>()
        .map_err(io_err(from))?;
    children.sort_by_key(|e| e.file_name());
    for child in children {
        let kind = child.file_type().map_err(io_err(&child.path()))?;
        let dest = to.join(child.file_name());
        if kind.is_dir() {
            copy_tree(&child.path(), &dest)?;
        } else if kind.is_file() {
            std::fs::copy(child.path(), &dest).map_err(io_err(&dest))?;
            std::fs::set_permissions(&dest, std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .map_err(io_err(&dest))?;
        }
    }
    Ok(())
}

fn mke2fs(staging: &Path, image: &Path, size: u64, out: &Path) -> Result<(), DiskError> {
    let binary = ["/usr/sbin/mke2fs", "/sbin/mke2fs"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("mke2fs"));
    let output = Command::new(&binary)
        .args(["-q", "-t", "ext4", "-d"])
        .arg(staging)
        .args(["-L", "kina-root", "-E", "root_owner=0:0", "-F"])
        .arg(image)
        .arg(format!("{}k", size / 1024))
        .output()
        .map_err(|e| DiskError::MkfsMissing {
            out: out.to_path_buf(),
            problem: format!("{}: {e}", binary.display()),
        })?;
    if !output.status.success() {
        return Err(DiskError::Mkfs {
            out: out.to_path_buf(),
            size_mib: size >> 20,
            problem: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    Ok(())
}
