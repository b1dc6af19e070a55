//! OCI output: deterministic layers, image config, manifests, the multi-arch index, layouts and registries.
