//! The root filesystem of one platform, built stage by stage; each stage's
//! difference from the previous one becomes one image layer.
//!
//! Stages only add or replace paths, so layers need no whiteouts, and the
//! lower stages do not depend on anything above them: a new Kubernetes patch
//! release reuses the `debian-base` and `runtime` layers byte for byte.

use crate::deb::decoded::DecodedDebs;
use crate::deb::reader::{DebPackage, read_deb_members};
use crate::digest::Sha256Digest;
use crate::lock::{LayerName, LockedArtifact, LockedPackage};
use crate::platform::Arch;
use crate::rootfs::dpkg_db::{InstalledPackage, write_dpkg_database};
use crate::rootfs::path::setup_merged_usr;
use crate::rootfs::tree::{Node, NodeKind, Tree};
use crate::rootfs::unpack::Unpacker;
use crate::rootfs::{accounts, alternatives, ca_bundle};

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::artifact::{ensure_parents, install_artifact};
use super::path_filter::{DPKG_CFG_PATH, FilterId, PathFilters};

/// Everything one platform's root filesystem is made from, already verified.
pub struct PlatformInputs {
    pub arch: Arch,
    pub debs: Vec<(LockedPackage, DebSource)>,
    /// Where decoded packages are looked up first and stored after decoding.
    pub decoded: Option<DecodedDebs>,
    pub artifacts: Vec<(LockedArtifact, Vec<u8>)>,
    /// The preloaded-images OCI layout, already laid out as a tree.
    pub images: Tree,
    pub kina_init: Vec<u8>,
    /// Files kina writes itself into the top layer (SBOM, build info).
    pub extra_files: Vec<(String, Vec<u8>)>,
    /// The recipe's `leave_out` groups, applied to every package.
    pub filters: PathFilters,
}

/// Where a package's contents come from.
pub enum DebSource {
    /// The `.deb` itself, already verified against the lock.
    Bytes(Vec<u8>),
    /// The `.deb`'s path in the download cache (verified when the build
    /// gathered its inputs), when the decoded-package cache holds an entry
    /// for it: the `.deb` is read again (and verified again) only if that
    /// entry turns out not to be usable.
    Cached(PathBuf),
}

impl From<Vec<u8>> for DebSource {
    fn from(bytes: Vec<u8>) -> Self {
        DebSource::Bytes(bytes)
    }
}

/// The layers of one platform and what the path filters left out of them.
pub struct BuiltLayers {
    pub layers: Vec<(LayerName, Tree)>,
    /// Per recipe group name: paths left out and the bytes of their files.
    pub left_out: BTreeMap<String, LeftOut>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeftOut {
    pub paths: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{layer} layer ({arch}): package {package}: {message}")]
    Package {
        layer: &'static str,
        arch: Arch,
        package: String,
        message: String,
    },
    #[error("{layer} layer ({arch}): {message}")]
    Effects {
        layer: &'static str,
        arch: Arch,
        message: String,
    },
    #[error("{layer} layer ({arch}): {source}")]
    Artifact {
        layer: &'static str,
        arch: Arch,
        source: super::artifact::ArtifactError,
    },
    #[error(
        "leave_out `{group}` names {pattern}, which no package of the {arch} image ships; remove it from the recipe or fix the path"
    )]
    NothingLeftOut {
        arch: Arch,
        group: String,
        pattern: String,
    },
    #[error(
        "{arch}: package {package} hard-links /{path} to /{target}, which leave_out `{group}` left out; leave both out or neither"
    )]
    BrokenHardlink {
        arch: Arch,
        package: String,
        path: String,
        target: String,
        group: String,
    },
    #[error("{layer} layer ({arch}) removed {path} from a lower layer; this is a kina bug")]
    Removed {
        layer: &'static str,
        arch: Arch,
        path: String,
    },
}

/// Where kina-init lives in every node image; the image entrypoint.
pub const KINA_INIT_PATH: &str = "usr/local/bin/kina-init";

/// A package read from its `.deb` (control and decompressed `data.tar`).
type Decoded<'a> = (&'a LockedPackage, String, Result<DebPackage, String>);

/// Builds every stage and returns the non-empty layers, bottom to top.
pub fn build_layers(inputs: &PlatformInputs, epoch: u64) -> Result<BuiltLayers, StageError> {
    // Decompressing the next packages' data.tar (xz, mostly) runs on its own
    // thread, ahead of the unpacking, which must go in order.
    let order: Vec<&(LockedPackage, DebSource)> = LayerName::ALL
        .iter()
        .flat_map(|layer| inputs.debs.iter().filter(move |(p, _)| p.layer == *layer))
        .collect();
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Decoded>(DECODE_AHEAD);
        scope.spawn(move || {
            for (locked, source) in order {
                let origin = format!(
                    "{} {} ({})",
                    locked.name, locked.version, locked.architecture
                );
                let deb = decode(locked, source, inputs.decoded.as_ref(), &origin);
                if sender.send((locked, origin, deb)).is_err() {
                    return; // the stages stopped on an error
                }
            }
        });
        build_stages(inputs, epoch, &receiver)
    })
}

/// The package `locked` from its decoded-cache entry, else from its `.deb`
/// (and then stored in the decoded cache for the next build).
fn decode(
    locked: &LockedPackage,
    source: &DebSource,
    decoded: Option<&DecodedDebs>,
    origin: &str,
) -> Result<DebPackage, String> {
    if let Some(cache) = decoded {
        match cache.get(&locked.sha256) {
            Ok(Some(members)) => {
                return DebPackage::from_members(members, origin).map_err(|e| e.to_string());
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("{e}; decoding {origin} from its .deb"),
        }
    }
    let read;
    let bytes = match source {
        DebSource::Bytes(bytes) => bytes.as_slice(),
        DebSource::Cached(path) => {
            read = std::fs::read(path)
                .map_err(|e| format!("reading the cached .deb {}: {e}", path.display()))?;
            let actual = Sha256Digest::of(&read);
            if actual != locked.sha256 {
                return Err(format!(
                    "the cached .deb {} has sha256 {actual}, not the {} the lock pins; run the build again, which fetches it anew",
                    path.display(),
                    locked.sha256
                ));
            }
            read.as_slice()
        }
    };
    let members = read_deb_members(bytes, origin).map_err(|e| e.to_string())?;
    if let Some(cache) = decoded
        && let Err(e) = cache.put(&locked.sha256, &members)
    {
        // The build goes on; the next one decodes the package again.
        tracing::warn!("{e}; {origin} was not cached decoded");
    }
    DebPackage::from_members(members, origin).map_err(|e| e.to_string())
}

/// Packages decoded ahead of the unpacker: enough to keep a core busy
/// without holding many decompressed archives at once.
const DECODE_AHEAD: usize = 3;

fn build_stages(
    inputs: &PlatformInputs,
    epoch: u64,
    decoded: &std::sync::mpsc::Receiver<Decoded>,
) -> Result<BuiltLayers, StageError> {
    let arch = inputs.arch;
    let mut rootfs = Tree::new();
    setup_merged_usr(&mut rootfs, arch, epoch);
    let mut unpacker = Unpacker::new(arch);
    let mut installed: Vec<InstalledPackage> = Vec::new();
    let mut layers = Vec::new();
    let mut leaving = LeaveOutState::default();

    for layer in LayerName::ALL {
        let has_work = layer == LayerName::DebianBase
            || layer == LayerName::KinaInit
            || inputs.debs.iter().any(|(p, _)| p.layer == layer)
            || inputs.artifacts.iter().any(|(a, _)| a.layer == layer)
            || (layer == LayerName::Images && !inputs.images.is_empty());
        if !has_work {
            // Nothing to add: no copy of the whole tree to diff against.
            continue;
        }
        let packages = inputs.debs.iter().filter(|(p, _)| p.layer == layer).count();
        // A stage that unpacks packages rewrites dpkg's database and other
        // files shared with lower stages, so its layer is a diff against a
        // copy of the tree. The others only add the paths they name: their
        // layer is those paths and the directories made for them, found
        // without copying every file of the tree.
        let lower = if packages > 0 || layer == LayerName::DebianBase {
            Lower::Copy(rootfs.clone())
        } else {
            Lower::Paths(rootfs.iter().map(|(p, _)| p.to_string()).collect())
        };
        let mut named: Vec<String> = Vec::new();
        let name = layer.as_str();
        let package_err = |package: &str, message: String| StageError::Package {
            layer: name,
            arch,
            package: package.to_string(),
            message,
        };
        let effects_err = |message: String| StageError::Effects {
            layer: name,
            arch,
            message,
        };

        let mut unpacked_any = false;
        for _ in 0..packages {
            let (locked, origin, deb) = decoded.recv().map_err(|_| StageError::Effects {
                layer: name,
                arch,
                message: "the package decoder stopped; this is a kina bug".into(),
            })?;
            let mut deb = deb.map_err(|e| package_err(&locked.name, e))?;
            let data_tar = bytes::Bytes::from(std::mem::take(&mut deb.data_tar));
            let files = unpacker
                .unpack_shared(&mut rootfs, &deb, data_tar, &origin)
                .map_err(|e| package_err(&locked.name, e.to_string()))?;
            let Lower::Copy(lower_tree) = &lower else {
                return Err(effects_err(
                    "packages in a stage without a copy; this is a kina bug".into(),
                ));
            };
            leave_out(
                &mut rootfs,
                lower_tree,
                &inputs.filters,
                &files,
                &mut leaving,
            )
            .map_err(|(path, target, group)| StageError::BrokenHardlink {
                arch,
                package: locked.name.clone(),
                path,
                target,
                group,
            })?;
            installed.push(InstalledPackage::new(&deb, files));
            unpacked_any = true;
        }
        if layer == LayerName::DebianBase && !inputs.filters.is_empty() {
            ensure_parents(&mut rootfs, DPKG_CFG_PATH, epoch);
            rootfs.insert(
                DPKG_CFG_PATH,
                Node::file(inputs.filters.dpkg_cfg().into_bytes(), 0o644).with_mtime(epoch),
            );
        }
        if unpacked_any {
            // The effects are recomputed over every package installed so far,
            // as dpkg's databases describe the whole system.
            if layer == LayerName::DebianBase {
                // Without base-passwd (a minimal test repository) there are
                // no account masters to copy; dpkg would leave none either.
                if rootfs.contains(accounts::PASSWD_MASTER) {
                    accounts::write_accounts(&mut rootfs, epoch)
                        .map_err(|e| effects_err(e.to_string()))?;
                }
                rootfs.insert(
                    "etc/machine-id",
                    Node::file(Vec::new(), 0o444).with_mtime(epoch),
                );
            }
            alternatives::apply_alternatives(&mut rootfs, &installed, epoch)
                .map_err(|e| effects_err(e.to_string()))?;
            ca_bundle::write_ca_bundle(&mut rootfs, epoch);
            write_dpkg_database(&mut rootfs, &installed, arch, epoch)
                .map_err(|e| effects_err(e.to_string()))?;
        }

        for (artifact, bytes) in inputs.artifacts.iter().filter(|(a, _)| a.layer == layer) {
            named.extend(
                install_artifact(&mut rootfs, artifact, bytes, epoch).map_err(|source| {
                    StageError::Artifact {
                        layer: name,
                        arch,
                        source,
                    }
                })?,
            );
        }

        match layer {
            LayerName::Images => {
                for (path, node) in inputs.images.iter() {
                    ensure_parents(&mut rootfs, path, epoch);
                    rootfs.insert(path, node.clone());
                    named.push(path.to_string());
                }
            }
            LayerName::KinaInit => {
                ensure_parents(&mut rootfs, KINA_INIT_PATH, epoch);
                rootfs.insert(
                    KINA_INIT_PATH,
                    Node::file(inputs.kina_init.clone(), 0o755).with_mtime(epoch),
                );
                named.push(KINA_INIT_PATH.to_string());
                for (path, contents) in &inputs.extra_files {
                    ensure_parents(&mut rootfs, path, epoch);
                    rootfs.insert(
                        path.clone(),
                        Node::file(contents.clone(), 0o644).with_mtime(epoch),
                    );
                    named.push(path.clone());
                }
            }
            _ => {}
        }

        let diff = match &lower {
            Lower::Copy(lower) => {
                if let Some(path) = rootfs.removed_since(lower).next() {
                    return Err(StageError::Removed {
                        layer: name,
                        arch,
                        path: path.to_string(),
                    });
                }
                rootfs.diff(lower)
            }
            Lower::Paths(before) => {
                let added = rootfs
                    .iter()
                    .map(|(p, _)| p)
                    .filter(|p| !before.contains(*p));
                let touched: BTreeSet<String> = added.map(str::to_string).chain(named).collect();
                layer_of(&rootfs, &touched)
            }
        };
        if !diff.is_empty() {
            layers.push((layer, diff));
        }
    }
    if let Some((group, pattern)) = inputs.filters.unused_required(&leaving.used).next() {
        return Err(StageError::NothingLeftOut {
            arch,
            group: group.to_string(),
            pattern: pattern.to_string(),
        });
    }
    Ok(BuiltLayers {
        layers,
        left_out: leaving.tally,
    })
}

/// What a stage's layer is computed against (see `build_stages`).
enum Lower {
    Copy(Tree),
    Paths(BTreeSet<String>),
}

/// The layer holding `paths` of `rootfs` with all their ancestors, as
/// `Tree::diff` gives them.
fn layer_of(rootfs: &Tree, paths: &BTreeSet<String>) -> Tree {
    let mut layer = Tree::new();
    for path in paths {
        let mut current = path.as_str();
        loop {
            if !layer.contains(current)
                && let Some(node) = rootfs.get(current)
            {
                layer.insert(current, node.clone());
            }
            match current.rsplit_once('/') {
                Some((parent, _)) => current = parent,
                None => break,
            }
        }
    }
    layer
}

#[derive(Default)]
struct LeaveOutState {
    used: BTreeSet<FilterId>,
    tally: BTreeMap<String, LeftOut>,
}

/// Takes out of `rootfs` the paths of one just-unpacked package (`files`,
/// in `.list` form) that the filters exclude, as dpkg skips them at unpack.
/// `files` itself is left whole: dpkg lists excluded paths in the package's
/// `.list`. A directory keeps its place while anything under it stays, and
/// a path a lower layer already holds is never taken out (layers carry no
/// whiteouts; the same filters would have left it out there). Fails with
/// (path, target, group) when a kept hard link would lose its target.
fn leave_out(
    rootfs: &mut Tree,
    lower: &Tree,
    filters: &PathFilters,
    files: &[String],
    state: &mut LeaveOutState,
) -> Result<(), (String, String, String)> {
    if filters.is_empty() {
        return Ok(());
    }
    let mut excluded: Vec<(&str, FilterId)> = Vec::new();
    for listed in files {
        let Some(path) = listed
            .strip_prefix('/')
            .filter(|p| !p.is_empty() && *p != ".")
        else {
            continue;
        };
        let Some(node) = rootfs.get(path) else {
            continue;
        };
        let keeps_children = matches!(node.kind, NodeKind::Dir | NodeKind::Symlink(_));
        if let Some(id) = filters.excluded_by(listed, keeps_children) {
            excluded.push((path, id));
        }
    }
    // Children before their directories.
    excluded.sort_by(|a, b| b.0.cmp(a.0));
    let mut removed = BTreeMap::new();
    for (path, id) in excluded {
        if lower.contains(path) || rootfs.children_of(path).next().is_some() {
            continue;
        }
        let Some(node) = rootfs.remove(path) else {
            continue;
        };
        state.used.insert(id);
        let group = filters.group(id).name.clone();
        let entry = state.tally.entry(group.clone()).or_default();
        entry.paths += 1;
        if let NodeKind::File(data) = &node.kind {
            entry.bytes += data.len() as u64;
        }
        removed.insert(path.to_string(), group);
    }
    for listed in files {
        let path = listed.trim_start_matches('/');
        if let Some(Node {
            kind: NodeKind::Hardlink(target),
            ..
        }) = rootfs.get(path)
            && let Some(group) = removed.get(target.as_str())
        {
            return Err((path.to_string(), target.clone(), group.clone()));
        }
    }
    Ok(())
}
