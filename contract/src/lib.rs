//! What the host and a node agree on, defined once and shared by the `kina`
//! CLI and `kina-init`. Nothing here is Linux-only, so the macOS host build
//! compiles it too.

pub mod cidr;
pub mod containerd_config;
pub mod exec;
pub mod initramfs;
pub mod kernel;
pub mod kubeadm;
pub mod kubernetes_spec;
pub mod node_spec;
pub mod role;
pub mod spec_delivery;
pub mod status;
