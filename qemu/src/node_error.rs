//! What can go wrong with a node, each case keeping its cause: the error
//! type of `node`, apart so that the node's lifecycle reads on its own.

use std::path::PathBuf;

use kina_contract::status::STATUS_PATH;

use crate::exec;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("node {name} already exists at {dir}; remove it first (`kina node rm {name}`)")]
    Exists { name: String, dir: PathBuf },
    #[error("no node {name} (looked in {dir})")]
    NotFound { name: String, dir: PathBuf },
    #[error("node {name} is already running")]
    AlreadyRunning { name: String },
    #[error(
        "node {name}: {image} is not in the image store at {store} (see `kina image list`; `kina image build` makes it)"
    )]
    ImageNotStored {
        name: String,
        image: String,
        store: PathBuf,
    },
    /// A step of making or starting a node (kernel, root disk, initramfs,
    /// accelerator, start) failed; `phase` names the step.
    #[error("node {name}: {phase}: {source}")]
    Step {
        name: String,
        phase: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("node {name}: {STATUS_PATH} is not readable yet ({source}): {stderr}")]
    Status {
        name: String,
        #[source]
        source: serde_json::Error,
        stderr: String,
    },
    #[error("node {name}: removing {dir}: {source}")]
    Remove {
        name: String,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("node {name}: {0}", name = .1)]
    Exec(#[source] exec::ExecError, String),
    #[error(
        "node {name}: phase {phase} failed: {message}\n  what to do: {hint}\n  console: {console}"
    )]
    BootFailed {
        name: String,
        phase: String,
        message: String,
        hint: String,
        console: PathBuf,
    },
    #[error(
        "node {name} did not reach phase {phase} within {secs} s (last: {last}); console: {console}"
    )]
    Timeout {
        name: String,
        phase: String,
        secs: u64,
        last: String,
        console: PathBuf,
    },
    #[error("node {name}: the VM exited (console: {console}):\n{tail}")]
    VmExited {
        name: String,
        console: PathBuf,
        tail: String,
    },
}
