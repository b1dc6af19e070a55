//! OCI output: deterministic layers, image config, manifests, the
//! multi-arch index and registries. The layout they are written into is
//! `crate::oci_layout`, a floor below: the image store is one too.

pub mod distribution;
pub mod image;
pub mod layer;
mod loopback;
pub mod parallel_gzip;
pub mod registry;
