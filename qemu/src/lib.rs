//! The QEMU provider: how a Linux host runs a kina node as a VM.
//!
//! A node is a kernel, an ext4 root disk made from the node image's OCI
//! layers (the way Apple's `container` turns an image into a block device)
//! and, for Debian's cloud kernel (pinned and fetched by
//! `kina_builder::kernel`, like any other Debian input), a small initramfs
//! that loads the virtio modules that kernel needs to reach its root disk.
//! A kernel kina built has them built in and boots with none
//! (`node_kernel`).

pub mod accel;
pub mod disk;
pub mod exec;
pub mod initramfs;
pub mod node;
mod node_error;
pub mod node_kernel;
pub mod vm;
