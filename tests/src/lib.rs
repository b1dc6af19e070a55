//! Fixtures for kina's integration tests: real components on loopback.
//!
//! - [`HttpServer`]: serves a directory over HTTP on 127.0.0.1, counts
//!   requests per path, answers `Range` requests, and can fail or cut off
//!   responses on demand.
//! - [`DebBuilder`]: builds real `.deb` files with `dpkg-deb`.
//! - [`SignedRepo`]: a Debian repository signed with a freshly generated
//!   OpenPGP key, with knobs to tamper with it.
//! - [`host_mirror`]: the Debian mirror of this machine's apt configuration.
//! - [`reference_inputs`]: public files tests check kina against, pinned by
//!   URL and sha256 and fetched through kina's download code.

mod deb_builder;
#[cfg(test)]
mod fixture_tests;
mod host_mirror;
mod http_server;
pub mod reference_inputs;
mod signed_repo;

pub use deb_builder::{BuiltDeb, DebBuilder};
pub use host_mirror::{HostMirrors, host_mirrors};
pub use http_server::HttpServer;
pub use reference_inputs::{
    Origin, REFERENCE_INPUTS, ReferenceInput, fetch_reference_input, reference_input,
};
pub use signed_repo::{PublishOptions, SignedRepo, Tamper, rfc2822_date};
