//! Target platforms of a node image.
//!
//! Debian, OCI, Rust and Kubernetes each spell architectures their own way; this
//! is the one place that maps between them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A node architecture. kina builds Linux images only, so the OS is implied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

    /// Debian's architecture name; also the one Kubernetes and OCI use.
    pub fn debian(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// Rust's target triple for a static Linux binary of this architecture.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-unknown-linux-gnu",
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// `linux/amd64`-style platform string, as `--platform` takes it.
    pub fn platform(self) -> String {
        format!("linux/{}", self.debian())
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.debian())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unsupported platform `{0}`: kina builds linux/amd64 and linux/arm64")]
pub struct PlatformParseError(String);

impl FromStr for Arch {
    type Err = PlatformParseError;

    /// Accepts `amd64`, `linux/amd64`, `x86_64`, `arm64`, `linux/arm64`, `aarch64`
    /// (and `linux/arm64/v8`), because users copy platforms from docker, uname and Debian.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let arch = s.strip_prefix("linux/").unwrap_or(s);
        match arch {
            "amd64" | "x86_64" => Ok(Arch::Amd64),
            "arm64" | "aarch64" | "arm64/v8" => Ok(Arch::Arm64),
            _ => Err(PlatformParseError(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_spellings_users_copy_from_other_tools() {
        for s in ["amd64", "linux/amd64", "x86_64"] {
            assert_eq!(s.parse::<Arch>().unwrap(), Arch::Amd64);
        }
        for s in ["arm64", "linux/arm64", "linux/arm64/v8", "aarch64"] {
            assert_eq!(s.parse::<Arch>().unwrap(), Arch::Arm64);
        }
        let err = "linux/riscv64".parse::<Arch>().unwrap_err().to_string();
        assert!(err.contains("linux/riscv64"), "{err}");
    }
}
