//! The node's root filesystem in memory, and the effects of maintainer scripts kina reproduces.

pub mod accounts;
pub mod alternatives;
pub mod ca_bundle;
pub mod dpkg_db;
pub mod path;
pub mod tree;
pub mod unpack;
