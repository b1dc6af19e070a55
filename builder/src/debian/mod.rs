//! The Debian archive: signed releases, package indexes, versions, dependency resolution.

pub mod archive;
pub mod control;
pub mod keyring;
pub mod packages;
pub mod relation;
pub mod release;
pub mod resolve;
pub mod sources;
pub mod version;
