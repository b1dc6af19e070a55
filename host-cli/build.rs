//! What a `kina` binary knows about its own build, for `kina version` and
//! for making node images without a checkout:
//!
//! - the kina-init binaries named by `KINA_EMBED_KINA_INIT_AMD64` and
//!   `KINA_EMBED_KINA_INIT_ARM64` (scripts/release sets both), copied into
//!   `OUT_DIR`, checked to be ELF binaries of their architecture, hashed, and
//!   compiled in; a build without them carries none and falls back to the
//!   workspace's `target/` at run time (`src/embedded.rs`);
//! - the git commit it was built from: `KINA_GIT_COMMIT` when set (a build
//!   from a source archive has no `.git`), else `git rev-parse HEAD` in the
//!   checkout, else `unknown`. Nothing here uses the network.

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// The node architectures, with the ELF `e_machine` each binary must have.
const ARCHES: [(&str, &str, u16); 2] = [
    ("amd64", "KINA_EMBED_KINA_INIT_AMD64", 0x3e),
    ("arm64", "KINA_EMBED_KINA_INIT_ARM64", 0xb7),
];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut code = String::new();
    for (arch, var, machine) in ARCHES {
        println!("cargo:rerun-if-env-changed={var}");
        let constant = arch.to_uppercase();
        match std::env::var_os(var).filter(|v| !v.is_empty()) {
            None => writeln!(
                code,
                "pub const KINA_INIT_{constant}: Option<(&[u8], &str)> = None;"
            )?,
            Some(path) => {
                let path = PathBuf::from(path);
                println!("cargo:rerun-if-changed={}", path.display());
                let bytes = std::fs::read(&path)
                    .map_err(|e| format!("{var}={}: cannot read it: {e}", path.display()))?;
                check_elf(&bytes, machine)
                    .map_err(|problem| format!("{var}={}: {problem}", path.display()))?;
                // A copy in OUT_DIR: what is hashed is what is compiled in,
                // even if the original changes while rustc runs.
                let copy = out_dir.join(format!("kina-init-{arch}"));
                std::fs::write(&copy, &bytes)?;
                let sha256 = hex::encode(Sha256::digest(&bytes));
                writeln!(
                    code,
                    "pub const KINA_INIT_{constant}: Option<(&[u8], &str)> = Some((include_bytes!({:?}), {sha256:?}));",
                    path_str(&copy)?
                )?;
            }
        }
    }
    writeln!(code, "pub const GIT_COMMIT: &str = {:?};", git_commit())?;
    std::fs::write(out_dir.join("build_info.rs"), code)?;
    Ok(())
}

/// A static ELF binary for `machine` (little-endian, 64-bit), as kina-init is.
fn check_elf(bytes: &[u8], machine: u16) -> Result<(), String> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return Err("not an ELF binary".into());
    }
    let found = u16::from_le_bytes([bytes[18], bytes[19]]);
    if found != machine {
        return Err(format!(
            "built for ELF machine {found:#x}, not {machine:#x}; the variables may be swapped"
        ));
    }
    Ok(())
}

fn path_str(path: &Path) -> Result<&str, String> {
    path.to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))
}

fn git_commit() -> String {
    println!("cargo:rerun-if-env-changed=KINA_GIT_COMMIT");
    if let Some(commit) = std::env::var("KINA_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
    {
        return commit;
    }
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(env_dir())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let Some(commit) = git(&["rev-parse", "HEAD"]) else {
        return "unknown".into();
    };
    // A new commit or checkout re-runs this: HEAD, and the branch it names.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
    }
    if let (Some(common), Some(branch)) = (
        git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]),
        git(&["symbolic-ref", "-q", "HEAD"]),
    ) {
        let reference = Path::new(&common).join(&branch);
        if reference.exists() {
            println!("cargo:rerun-if-changed={}", reference.display());
        } else {
            println!("cargo:rerun-if-changed={common}/packed-refs");
        }
    }
    commit
}

fn env_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}
