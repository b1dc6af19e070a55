//! The node's initramfs: kina-init as `/init`, the first-stage modules
//! (uncompressed) and their load order, per `kina_contract::initramfs`.
//!
//! The archive is a gzip-compressed newc cpio, the format the kernel unpacks
//! (Documentation/driver-api/early-userspace/buffer-format.rst). It is written
//! here rather than with the `cpio` crate: newc is a 110-byte ASCII header,
//! the name and the data, each padded to 4 bytes; writing it directly keeps
//! every header field (inode numbers, mtime 0, device numbers) under our
//! control for byte-identical output, with no extra dependency.
//!
//! Modules are stored decompressed because the kernel's finit_module only
//! decompresses when built with CONFIG_MODULE_DECOMPRESS, and kina-init then
//! needs no decompressor of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use kina_builder::kernel::KernelArtifacts;
use kina_contract::initramfs::{FIRST_STAGE_MODULES, MODULE_LIST};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitramfsInfo {
    pub path: PathBuf,
    /// Size of the compressed archive in bytes.
    pub size: u64,
    /// The module load order as written to `MODULE_LIST`.
    pub modules: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: line {line} is not `module: dependencies`; rerun depmod for this kernel")]
    ModulesDep { path: PathBuf, line: usize },
    #[error(
        "module {module} is neither in {dir}/modules.dep nor built in (modules.builtin); this kernel cannot boot a kina node: pick a kernel with virtio support"
    )]
    UnknownModule { module: String, dir: PathBuf },
    #[error("{path}: modules.dep has a dependency cycle through {module}; rerun depmod")]
    Cycle { path: PathBuf, module: String },
    #[error("decompressing module {path}: {problem}")]
    Decompress { path: PathBuf, problem: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> InitramfsError + '_ {
    move |source| InitramfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Builds the initramfs at `out` (atomically: a temp file renamed into place).
/// The same kernel and kina-init bytes give the same output bytes.
pub fn build_initramfs(
    kernel: &KernelArtifacts,
    kina_init: &[u8],
    out: &Path,
) -> Result<InitramfsInfo, InitramfsError> {
    let order = module_load_order(&kernel.modules_dir)?;
    let release = &kernel.release;
    let mut entries = Entries::default();
    entries.file("init", 0o755, kina_init.to_vec());
    for dir in ["dev", "proc", "sys", "run", "newroot", "etc/kina"] {
        entries.dir(dir);
    }
    entries.dir(&format!("lib/modules/{release}"));
    entries.char_device("dev/console", 0o600, 5, 1);
    let mut list = Vec::new();
    for module in &order {
        let source = kernel.modules_dir.join(module);
        let plain = strip_compression(module);
        let bytes = read_module(&source)?;
        let inside = format!("lib/modules/{release}/{plain}");
        entries.file(&inside, 0o644, bytes);
        list.push(format!("/{inside}"));
    }
    let mut list_text = list.join("\n");
    list_text.push('\n');
    entries.file(
        MODULE_LIST.trim_start_matches('/'),
        0o644,
        list_text.into_bytes(),
    );

    let dir = out.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".initramfs-")
        .tempfile_in(dir)
        .map_err(io_err(dir))?;
    let mut gz = flate2::write::GzEncoder::new(
        std::io::BufWriter::new(tmp.as_file()),
        flate2::Compression::default(),
    );
    write_newc(&mut gz, &entries).map_err(io_err(tmp.path()))?;
    gz.finish()
        .and_then(|mut w| w.flush())
        .map_err(io_err(tmp.path()))?;
    tmp.as_file().sync_all().map_err(io_err(tmp.path()))?;
    tmp.persist(out).map_err(|e| InitramfsError::Io {
        path: out.to_path_buf(),
        source: e.error,
    })?;
    let size = std::fs::metadata(out).map_err(io_err(out))?.len();
    Ok(InitramfsInfo {
        path: out.to_path_buf(),
        size,
        modules: list,
    })
}

/// `kernel/drivers/block/virtio_blk.ko.xz` → `virtio_blk`, with `-` read as
/// `_` as kmod does (modules are named either way on command lines).
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

fn strip_compression(path: &str) -> &str {
    [".xz", ".gz", ".zst"]
        .iter()
        .find_map(|ext| path.strip_suffix(ext))
        .unwrap_or(path)
}

/// The first-stage modules and their dependencies, each after all of its
/// dependencies (a depth-first post-order over modules.dep, which is what
/// `modprobe` loads in turn), as paths relative to the modules directory.
fn module_load_order(modules_dir: &Path) -> Result<Vec<String>, InitramfsError> {
    let dep_path = modules_dir.join("modules.dep");
    let text = std::fs::read_to_string(&dep_path).map_err(io_err(&dep_path))?;
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (module, rest) = line.split_once(':').ok_or(InitramfsError::ModulesDep {
            path: dep_path.clone(),
            line: i + 1,
        })?;
        by_name.insert(module_name(module), module.to_string());
        deps.insert(
            module.to_string(),
            rest.split_whitespace().map(str::to_string).collect(),
        );
    }
    let builtin_path = modules_dir.join("modules.builtin");
    let builtin: BTreeSet<String> = match std::fs::read_to_string(&builtin_path) {
        Ok(text) => text.lines().map(module_name).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => return Err(io_err(&builtin_path)(e)),
    };

    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    for wanted in FIRST_STAGE_MODULES {
        let name = wanted.replace('-', "_");
        match by_name.get(&name) {
            Some(path) => visit(
                path,
                &deps,
                &mut done,
                &mut Vec::new(),
                &mut order,
                &dep_path,
            )?,
            None if builtin.contains(&name) => {}
            None => {
                return Err(InitramfsError::UnknownModule {
                    module: wanted.to_string(),
                    dir: modules_dir.to_path_buf(),
                });
            }
        }
    }
    Ok(order)
}

fn visit(
    module: &str,
    deps: &BTreeMap<String, Vec<String>>,
    done: &mut BTreeSet<String>,
    stack: &mut Vec<String>,
    order: &mut Vec<String>,
    dep_path: &Path,
) -> Result<(), InitramfsError> {
    if done.contains(module) {
        return Ok(());
    }
    if stack.iter().any(|m| m == module) {
        return Err(InitramfsError::Cycle {
            path: dep_path.to_path_buf(),
            module: module.to_string(),
        });
    }
    stack.push(module.to_string());
    for dep in deps.get(module).into_iter().flatten() {
        visit(dep, deps, done, stack, order, dep_path)?;
    }
    stack.pop();
    done.insert(module.to_string());
    order.push(module.to_string());
    Ok(())
}

fn read_module(path: &Path) -> Result<Vec<u8>, InitramfsError> {
    let raw = std::fs::read(path).map_err(io_err(path))?;
    let name = path.to_string_lossy();
    let mut out = Vec::new();
    let result = if name.ends_with(".ko.xz") {
        liblzma::read::XzDecoder::new(raw.as_slice()).read_to_end(&mut out)
    } else if name.ends_with(".ko.gz") {
        flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut out)
    } else if name.ends_with(".ko.zst") {
        zstd::stream::read::Decoder::new(raw.as_slice()).and_then(|mut d| d.read_to_end(&mut out))
    } else {
        return Ok(raw);
    };
    result.map_err(|e| InitramfsError::Decompress {
        path: path.to_path_buf(),
        problem: e.to_string(),
    })?;
    Ok(out)
}

enum Kind {
    Dir,
    File(Vec<u8>),
    CharDevice { major: u32, minor: u32 },
}

struct Entry {
    mode: u32,
    kind: Kind,
}

/// Archive members by path; a BTreeMap so parents precede children and the
/// order never depends on insertion.
#[derive(Default)]
struct Entries(BTreeMap<String, Entry>);

impl Entries {
    fn parents(&mut self, path: &str) {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            self.0.entry(prefix.clone()).or_insert(Entry {
                mode: 0o755,
                kind: Kind::Dir,
            });
        }
    }

    fn dir(&mut self, path: &str) {
        self.parents(path);
        self.0.insert(
            path.to_string(),
            Entry {
                mode: 0o755,
                kind: Kind::Dir,
            },
        );
    }

    fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) {
        self.parents(path);
        self.0.insert(
            path.to_string(),
            Entry {
                mode,
                kind: Kind::File(data),
            },
        );
    }

    fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.parents(path);
        self.0.insert(
            path.to_string(),
            Entry {
                mode,
                kind: Kind::CharDevice { major, minor },
            },
        );
    }
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// newc: magic `070701`, thirteen 8-digit hex fields, the NUL-terminated name
/// padded so the data starts on a 4-byte boundary, the data padded likewise,
/// and a `TRAILER!!!` entry. Owners are root, mtimes 0, inodes numbered in
/// path order from 1.
fn write_newc(w: &mut impl Write, entries: &Entries) -> std::io::Result<()> {
    let mut offset = 0u64;
    for (ino, (name, entry)) in (1u32..).zip(&entries.0) {
        let (mode, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match &entry.kind {
            Kind::Dir => (S_IFDIR | entry.mode, 2, &[], (0, 0)),
            Kind::File(data) => (S_IFREG | entry.mode, 1, data, (0, 0)),
            Kind::CharDevice { major, minor } => (S_IFCHR | entry.mode, 1, &[], (*major, *minor)),
        };
        offset += header(w, name, ino, mode, nlink, data, rdev, offset)?;
    }
    offset += header(w, "TRAILER!!!", 0, 0, 1, &[], (0, 0), offset)?;
    // The kernel accepts any length; tools pad archives to 512 bytes.
    let pad = (512 - offset % 512) % 512;
    w.write_all(&vec![0u8; usize::try_from(pad).unwrap_or(0)])
}

#[allow(clippy::too_many_arguments)]
fn header(
    w: &mut impl Write,
    name: &str,
    ino: u32,
    mode: u32,
    nlink: u32,
    data: &[u8],
    (rdev_major, rdev_minor): (u32, u32),
    offset: u64,
) -> std::io::Result<u64> {
    let size = u32::try_from(data.len())
        .map_err(|_| std::io::Error::other(format!("{name} is larger than newc allows (4 GiB)")))?;
    let name_len = name.len() + 1;
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        0,
        size,
        0,
        0,
        rdev_major,
        rdev_minor,
        name_len as u32,
        0,
    ];
    let mut head = String::from("070701");
    for f in fields {
        head.push_str(&format!("{f:08x}"));
    }
    w.write_all(head.as_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    let mut written = offset + 110 + name_len as u64;
    let pad = (4 - written % 4) % 4;
    w.write_all(&[0u8; 3][..pad as usize])?;
    written += pad;
    w.write_all(data)?;
    written += data.len() as u64;
    let pad = (4 - written % 4) % 4;
    w.write_all(&[0u8; 3][..pad as usize])?;
    written += pad;
    Ok(written - offset)
}
