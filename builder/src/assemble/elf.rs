//! Checks that a binary is a Linux ELF executable for the node's architecture,
//! so an amd64 kina-init never ends up in an arm64 image (it would fail only at
//! boot, as PID 1, with "exec format error").

use crate::platform::Arch;

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// The architecture an ELF header declares, or a description of why `bytes`
/// is not a 64-bit little-endian ELF executable.
pub fn elf_arch(bytes: &[u8]) -> Result<Arch, String> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let e_type = u16::from_le_bytes([bytes[16], bytes[17]]);
    // ET_EXEC (static) or ET_DYN (static-pie).
    if e_type != 2 && e_type != 3 {
        return Err(format!("ELF type {e_type} is not an executable"));
    }
    match u16::from_le_bytes([bytes[18], bytes[19]]) {
        EM_X86_64 => Ok(Arch::Amd64),
        EM_AARCH64 => Ok(Arch::Arm64),
        other => Err(format!("ELF machine {other} is neither x86-64 nor aarch64")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[16..18].copy_from_slice(&3u16.to_le_bytes());
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h
    }

    #[test]
    fn recognises_both_node_architectures() {
        assert_eq!(elf_arch(&header(EM_X86_64)), Ok(Arch::Amd64));
        assert_eq!(elf_arch(&header(EM_AARCH64)), Ok(Arch::Arm64));
    }

    #[test]
    fn refuses_scripts_and_other_machines() {
        assert!(elf_arch(b"#!/bin/sh\necho hi\n").is_err());
        assert!(elf_arch(&header(40)).unwrap_err().contains("40"));
    }

    #[test]
    fn the_host_test_binary_is_recognised() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let expected = if cfg!(target_arch = "x86_64") {
            Arch::Amd64
        } else {
            Arch::Arm64
        };
        assert_eq!(elf_arch(&exe), Ok(expected));
    }
}
