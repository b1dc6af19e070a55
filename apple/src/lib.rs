//! The Apple `container` provider: how a macOS host runs a kina node.
//!
//! On macOS every node is one `container` VM (Apple's `container` CLI boots
//! one lightweight VM per container). This crate holds the parts of that
//! provider that do not need a Mac: checking the installed version,
//! building `container` argument vectors, and reading what `container list`
//! and `container inspect` print. Only [`cli`] spawns a process (the
//! `container` program); the rest compiles and is tested on Linux too, with
//! JSON documents written from the Codable types in apple/container's
//! source, not captured output, and [`cli`] is tested there against a
//! stand-in `container` script.
//!
//! Facts below were checked against apple/container at its tags 0.8.0 to
//! 1.2.2 (`Sources/Services/ContainerAPIService/Client/{Flags,Parser,Utility}.swift`,
//! `Sources/ContainerCommands/**`, `Sources/ContainerResource/**`).

pub mod cli;
pub mod exec;
pub mod image;
pub mod inspect;
pub mod run_args;
pub mod version;

/// The name of Apple's CLI, as installed to `/usr/local/bin` by its package.
pub const CONTAINER_BINARY: &str = "container";

/// Label that marks a node (and a cluster's network) as part of a cluster.
pub const LABEL_CLUSTER: &str = "io.kina.cluster";
/// Label holding a node's role (`control-plane` or `worker`).
pub const LABEL_ROLE: &str = "io.kina.role";

/// What a JSON value is, for errors about a document of the wrong shape.
fn kind_of(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
