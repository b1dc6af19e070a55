//! What the QEMU provider's initramfs holds, for kina-init's first stage.
//!
//! Debian's cloud kernels build virtio_blk, virtio_pci and virtio_net as
//! modules, so the kernel cannot reach its root disk alone. Instead of a
//! second init (busybox, initramfs-tools), the initramfs carries kina-init
//! itself as `/init` plus those modules, uncompressed, and a list giving
//! their load order (dependencies first, from the kernel's modules.dep).
//! kina-init loads them, mounts the root named by `root=` on the kernel
//! command line and switches to it.

/// The load-order list: one path per line, absolute inside the initramfs.
pub const MODULE_LIST: &str = "/etc/kina/initramfs-modules";

/// The modules the first stage needs: the root disk, the node's network
/// interface and the exec channel (virtio-serial). Their dependencies come
/// from modules.dep.
pub const FIRST_STAGE_MODULES: [&str; 4] =
    ["virtio_pci", "virtio_blk", "virtio_net", "virtio_console"];

/// The virtio-serial port name of the exec channel (see `exec`).
pub const EXEC_PORT_NAME: &str = "io.kina.exec";

/// On the kernel command line: the first stage only says [`PROBE_OK`] and
/// powers off. The host's accelerator probe boots with it, because KVM can
/// exist yet hang a guest kernel.
pub const PROBE_ARG: &str = "kina.probe";
pub const PROBE_OK: &str = "accelerator probe: the kernel boots";
