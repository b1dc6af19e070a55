//! kina's host side as a library: the command line (`cli`, `cmd`), clusters
//! over the provider seam (`cluster`, `provider`), kind's config
//! (`cluster_config`), the user's kubeconfig (`kubeconfig`) and kina's
//! directories (`dirs`). The `kina` binary (`main.rs`) only parses, sets up
//! logging and reports errors; tests drive the same code without spawning
//! it.

// The recipes and locks inside the binary, the defaults when no file is given.
pub mod builtin;
pub mod cli;
pub mod cluster;
pub mod cluster_config;
// The cluster-name rule every provider shares.
pub mod cluster_name;
// CA and bootstrap token for kubeadm, made before any node boots.
pub mod cluster_secrets;
pub mod cmd;
pub mod dirs;
// The commit and the kina-init binaries compiled into a release build.
pub mod embedded;
// Pulled kernels, and resolving a kernel reference into a bootable kernel.
pub mod kernel_store;
// Adds and removes `kina-<cluster>` in the user's kubeconfig.
pub mod kubeconfig;
// The kernel nodes boot: a Debian recipe's or one kina built.
pub mod node_kernel;
pub mod provider;
// Image archives under the data directory, swept after an interrupted kina.
pub mod scratch;
