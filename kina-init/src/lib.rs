//! kina-init's logic as a library: the binary is a thin dispatcher, and tests
//! exercise the same code on the build host.

#[cfg(target_os = "linux")]
pub mod boot;
#[cfg(target_os = "linux")]
pub mod children;
#[cfg(target_os = "linux")]
pub mod containerd_socket;
#[cfg(target_os = "linux")]
pub mod cri;
#[cfg(target_os = "linux")]
pub mod exec_server;
#[cfg(target_os = "linux")]
pub mod first_stage;
#[cfg(target_os = "linux")]
pub mod image_import;
#[cfg(target_os = "linux")]
pub mod kernel_probe;
#[cfg(target_os = "linux")]
pub mod kubernetes;
#[cfg(target_os = "linux")]
pub mod pid1;
#[cfg(target_os = "linux")]
pub mod pod_check;
#[cfg(target_os = "linux")]
pub mod sequence;
pub mod spec_replace;
#[cfg(target_os = "linux")]
pub mod supervise;
