//! Downloads: a content-addressed cache and an HTTP fetcher that trusts only digests.

pub mod cache;
pub mod http;
pub mod mirror;
pub mod progress;
