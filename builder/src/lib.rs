//! kina's node-image builder: recipe → lock → verified downloads → in-memory
//! root filesystem → deterministic layers → OCI image layout or archive.
//!
//! No daemon and no host filesystem unpacking are involved anywhere: the same
//! build gives the same digests on Linux and macOS, as root or not.

pub mod assemble;
pub mod canonical_json;
pub mod civil_time;
pub mod deb;
pub mod debian;
pub mod digest;
pub mod digest_memo;
pub mod fetch;
pub mod fsutil;
pub mod kernel;
pub mod lock;
pub mod lockgen;
pub mod oci;
pub mod oci_layout;
pub mod platform;
pub mod recipe;
pub mod rootfs;
pub mod sbom;
pub mod store;
pub mod universe;

/// The version of kina recorded in image labels and lockfiles.
pub const KINA_VERSION: &str = env!("CARGO_PKG_VERSION");
