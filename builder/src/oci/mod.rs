//! OCI output: deterministic layers, image config, manifests, the multi-arch index, layouts and registries.

pub mod canonical;
pub mod distribution;
pub mod image;
pub mod layer;
pub mod layout;
pub mod registry;
