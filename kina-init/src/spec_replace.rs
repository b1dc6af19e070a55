//! `kina-init replace-spec`: the node's side of spec delivery
//! (`kina_contract::spec_delivery`). The host runs it through the exec
//! channel with a new spec on standard input; it is checked before anything
//! is touched, written beside the spec in force and renamed over it, so
//! kina-init (which re-reads the file, see `pid1::follow_peers`) sees the
//! old spec or the new one, never a mix, and a refused spec changes nothing.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use kina_contract::node_spec::{NodeSpec, NodeSpecError};
use kina_contract::spec_delivery::digest;

/// No spec comes near this (the largest, a control plane's with the
/// cluster's PKI, is a few tens of KiB); more input is refused unread
/// rather than held in memory.
pub const MAX_SPEC_BYTES: u64 = 4 << 20;

/// What the incoming spec is called in messages.
const INCOMING: &str = "on standard input";

/// Why a spec was not put in force; the spec in force is then unchanged.
#[derive(Debug)]
pub enum Refusal {
    /// Nothing, or more than [`MAX_SPEC_BYTES`], came on standard input.
    Size { bytes: u64 },
    /// Not a spec this kina-init reads: truncated, corrupt, of another
    /// schema version.
    Invalid(NodeSpecError),
    /// The spec in force cannot be read, so which node this is cannot be
    /// told.
    NoCurrent { path: PathBuf, error: String },
    /// A spec for another node or cluster.
    OtherNode {
        spec_node: String,
        spec_cluster: String,
        node: String,
        cluster: String,
    },
    /// Writing, syncing, renaming or reading back failed; `replaced` when
    /// the rename had been done.
    Io {
        what: &'static str,
        path: PathBuf,
        replaced: bool,
        source: io::Error,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Size { bytes: 0 } => write!(
                f,
                "no spec on standard input; the spec in force is unchanged (pipe the node spec's \
                 JSON in)"
            ),
            Refusal::Size { .. } => write!(
                f,
                "more than {MAX_SPEC_BYTES} bytes on standard input, larger than any node spec; \
                 the spec in force is unchanged"
            ),
            Refusal::Invalid(e) => write!(
                f,
                "{e}; the spec in force is unchanged (send the whole spec as `kina` writes it)"
            ),
            Refusal::NoCurrent { path, error } => write!(
                f,
                "cannot tell which node this is: the spec in force, {}, {error}; nothing was \
                 changed (recreate the node with this kina)",
                path.display()
            ),
            Refusal::OtherNode {
                spec_node,
                spec_cluster,
                node,
                cluster,
            } => write!(
                f,
                "the spec on standard input is for node {spec_node} of cluster {spec_cluster}, \
                 but this is node {node} of cluster {cluster}; the spec in force is unchanged \
                 (send each node its own spec)"
            ),
            Refusal::Io {
                what,
                path,
                replaced,
                source,
            } => write!(
                f,
                "{what} {}: {source}; {}",
                path.display(),
                if *replaced {
                    "the new spec is in place but could not be confirmed (send it again)"
                } else {
                    "the spec in force is unchanged"
                }
            ),
        }
    }
}

impl std::error::Error for Refusal {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Refusal::Invalid(e) => Some(e),
            Refusal::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Reads a spec from `input`, at most [`MAX_SPEC_BYTES`].
pub fn read_incoming(input: &mut dyn Read) -> Result<Vec<u8>, Refusal> {
    let mut bytes = Vec::new();
    input
        .take(MAX_SPEC_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| Refusal::Io {
            what: "reading the spec from",
            path: PathBuf::from("standard input"),
            replaced: false,
            source,
        })?;
    let len = bytes.len() as u64;
    if len == 0 || len > MAX_SPEC_BYTES {
        return Err(Refusal::Size { bytes: len });
    }
    Ok(bytes)
}

/// Puts `incoming` in force at `path` (the node's `NODE_SPEC_PATH`) when it
/// is a spec for the node and cluster the spec there names; returns the
/// [`digest`] of the file as stored, read back after the rename.
///
/// The bytes are stored as they came, not re-encoded, so the host can
/// compare the digest with that of what it sent. The new file is 0600 (it
/// carries the cluster's token and, on a control plane, the CA key), is
/// synced before the rename and the directory after it, so a power cut
/// leaves one spec or the other.
pub fn replace_spec(path: &Path, incoming: &[u8]) -> Result<String, Refusal> {
    let spec = NodeSpec::from_json(incoming, INCOMING).map_err(Refusal::Invalid)?;
    let current = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            NodeSpec::from_json(&bytes, &path.display().to_string()).map_err(|e| e.to_string())
        })
        .map_err(|error| Refusal::NoCurrent {
            path: path.to_path_buf(),
            error,
        })?;
    if spec.name != current.name || spec.cluster != current.cluster {
        return Err(Refusal::OtherNode {
            spec_node: spec.name,
            spec_cluster: spec.cluster,
            node: current.name,
            cluster: current.cluster,
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let io = |what: &'static str, replaced: bool| {
        let path = path.to_path_buf();
        move |source| Refusal::Io {
            what,
            path,
            replaced,
            source,
        }
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // tempfile makes it 0600 and removes it should anything below fail.
    let mut staged = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".new")
        .tempfile_in(dir)
        .map_err(io("creating a file beside", false))?;
    staged
        .write_all(incoming)
        .and_then(|()| staged.as_file().sync_all())
        .map_err(io("writing the new spec beside", false))?;
    staged
        .persist(path)
        .map_err(|e| e.error)
        .map_err(io("renaming the new spec over", false))?;
    sync_dir(dir).map_err(io("syncing the directory of", true))?;
    let stored = std::fs::read(path).map_err(io("reading back", true))?;
    Ok(digest(&stored))
}

/// Makes the rename durable. A directory that cannot be synced as such
/// (`EINVAL`, as fsync(2) allows) is left to the file system's own
/// ordering: the file itself was synced before the rename.
fn sync_dir(dir: &Path) -> io::Result<()> {
    match std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const SPEC: &str = r#"{"version":1,"name":"duo-worker","cluster":"duo","role":"worker","pod_cidr":"10.244.1.0/24","peers":[]}"#;

    #[test]
    fn a_spec_is_stored_as_sent_with_its_digest_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.json");
        std::fs::write(&path, SPEC).unwrap();
        let new = SPEC.replace(
            r#""peers":[]"#,
            r#""peers":[{"name":"duo-control-plane","address":"10.89.0.2","pod_cidr":"10.244.0.0/24"}]"#,
        );
        let answered = replace_spec(&path, new.as_bytes()).unwrap();
        assert_eq!(answered, digest(new.as_bytes()));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), new);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "a staged file is left: {left:?}");
    }

    #[test]
    fn nothing_or_too_much_input_is_refused() {
        let err = read_incoming(&mut io::empty()).unwrap_err();
        assert!(
            err.to_string().contains("no spec on standard input"),
            "{err}"
        );
        let mut huge = io::repeat(b' ').take(MAX_SPEC_BYTES + 10);
        let err = read_incoming(&mut huge).unwrap_err();
        assert!(matches!(err, Refusal::Size { .. }), "{err}");
        assert_eq!(
            read_incoming(&mut SPEC.as_bytes()).unwrap(),
            SPEC.as_bytes()
        );
    }

    #[test]
    fn without_a_spec_in_force_the_node_is_unknown_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.json");
        let err = replace_spec(&path, SPEC.as_bytes()).unwrap_err();
        assert!(matches!(err, Refusal::NoCurrent { .. }), "{err}");
        assert!(err.to_string().contains("cannot tell which node"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
