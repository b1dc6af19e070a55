//! Kernel feature profiles and the engine that checks a kernel against them.
//!
//! One engine for both places kina asks the question: on the host against a
//! config file (`kina kernel check --config`), and inside a node with runtime
//! probes (`kina-init check-kernel`), where a probe that succeeds proves
//! presence, a definite absence error proves absence, and a permission error
//! falls back to the kernel config, labelled as such.

pub mod config;
pub mod engine;
pub mod profile;
pub mod report;

pub use config::{KernelConfig, Tristate};
pub use engine::{ProbeOutcome, ProbeRunner, check};
pub use profile::{LOCAL_PROFILES_DIR, OptionSpec, Probe, Profile, ProfileSet};
pub use report::{OptionResult, Presence, ProfileReport, Report};
