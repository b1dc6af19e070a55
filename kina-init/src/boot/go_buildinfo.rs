//! containerd's major version without running containerd: a 54 MB Go
//! program takes about 300 ms to start under TCG only to print its version,
//! and the configuration needs only the major (containerd 2.x's CRI takes
//! `bin_dirs`, 1.x `bin_dir`). Every Go binary since Go 1.18 records the
//! import path of its main package in its `.go.buildinfo` section (Go
//! `src/debug/buildinfo/buildinfo.go`), and containerd's major is in that
//! path the way Go's semantic import versioning puts it there:
//! `HOST/containerd/containerd/v2/cmd/containerd` for 2.x,
//! `HOST/containerd/containerd/cmd/containerd` for 1.x (Debian's
//! 1.7, built in GOPATH mode, records the path and no module line).
//!
//! The ELF side is the `object` crate's, reading the section headers and
//! that one section lazily (a few KB of the file). Go's buildinfo layout
//! has no Rust reader, so it is read here: a 32-byte header (the magic
//! `\xff Go buildinf:`, pointer size, flags with bit 2 set when the strings
//! follow inline, as every Go since 1.18 writes them), then two
//! uvarint-length strings: the Go version and the module information,
//! 16-byte sentinels around tab-separated lines (`path\t<main package>`).

use std::path::Path;

use object::{Object, ObjectSection, ReadCache};

const MAGIC: &[u8] = b"\xff Go buildinf:";
const FLAGS_VERSION_INLINE: u8 = 0x2;

/// The main package's import path recorded in the Go binary at `path`.
pub fn main_package(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let cache = ReadCache::new(file);
    let elf = object::File::parse(&cache)
        .map_err(|e| format!("{} is not an ELF file: {e}", path.display()))?;
    let section = elf
        .section_by_name(".go.buildinfo")
        .ok_or_else(|| format!("{} has no .go.buildinfo section", path.display()))?;
    let data = section
        .data()
        .map_err(|e| format!("reading .go.buildinfo of {}: {e}", path.display()))?;
    main_package_of(data).ok_or_else(|| {
        format!(
            "the .go.buildinfo of {} holds no main package path in the inline form",
            path.display()
        )
    })
}

/// The `path` line of a `.go.buildinfo` section's module information.
fn main_package_of(section: &[u8]) -> Option<String> {
    if !section.starts_with(MAGIC) || section.get(15)? & FLAGS_VERSION_INLINE == 0 {
        return None;
    }
    let mut rest = section.get(32..)?;
    let _go_version = read_string(&mut rest)?;
    let info = read_string(&mut rest)?;
    // 16-byte sentinels bracket the text, which ends in a newline (Go's
    // `debug/buildinfo` drops them the same way).
    let n = info.len();
    if n < 33 || info[n - 17] != b'\n' {
        return None;
    }
    info[16..n - 16].split(|&b| b == b'\n').find_map(|line| {
        let path = line.strip_prefix(b"path\t")?;
        String::from_utf8(path.to_vec()).ok()
    })
}

fn read_string<'a>(data: &mut &'a [u8]) -> Option<&'a [u8]> {
    let mut length: u64 = 0;
    let mut shift = 0;
    loop {
        let (&byte, rest) = data.split_first()?;
        *data = rest;
        length |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let length = usize::try_from(length).ok()?;
    let (string, rest) = (data.get(..length)?, data.get(length..)?);
    *data = rest;
    Some(string)
}

/// containerd's major version from its main package's import path
/// (`HOST/containerd/containerd[/vN]/…`, the host being where the
/// repository lives): a `vN` element after the module root, else 1 when the
/// path goes on to `cmd/`; `None` for a program that is not containerd's.
pub fn containerd_major_of_package(package: &str) -> Option<u32> {
    let parts: Vec<&str> = package.split('/').collect();
    if parts.get(1..3) != Some(&["containerd", "containerd"][..]) {
        return None;
    }
    match parts.get(3).copied() {
        None | Some("cmd") => Some(1),
        Some(element) => {
            let digits = element.strip_prefix('v')?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A section as Go 1.18+ lays it out, with `info` as the module
    /// information (its 16-byte sentinels included, as Go writes them).
    fn section(info: &str) -> Vec<u8> {
        let mut s = MAGIC.to_vec();
        s.push(8); // pointer size
        s.push(FLAGS_VERSION_INLINE);
        s.resize(32, 0);
        let mut put = |bytes: &[u8]| {
            let mut n = bytes.len();
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 {
                    s.push(byte);
                    break;
                }
                s.push(byte | 0x80);
            }
            s.extend_from_slice(bytes);
        };
        put(b"go1.24.4");
        let mut wrapped = vec![0x30u8; 16];
        wrapped.extend_from_slice(info.as_bytes());
        wrapped.extend_from_slice(&[0xf9; 16]);
        put(&wrapped);
        s
    }

    #[test]
    fn the_main_package_is_read_from_the_inline_module_information() {
        // Lines as bookworm's containerd 1.6.20 records them (GOPATH mode),
        // with a stand-in host; tests/containerd_buildinfo.rs reads real binaries.
        let debian = section(
            "path\texample.org/containerd/containerd/cmd/containerd\nbuild\t-compiler=gc\nbuild\tCGO_ENABLED=1\n",
        );
        assert_eq!(
            main_package_of(&debian).as_deref(),
            Some("example.org/containerd/containerd/cmd/containerd")
        );
        // A module build, with a long module list (a multi-byte length).
        let deps: String = (0..200)
            .map(|i| format!("dep\texample.org/m{i}\tv1.0.0\th1:abc=\n"))
            .collect();
        let upstream = section(&format!(
            "path\texample.org/containerd/containerd/v2/cmd/containerd\nmod\texample.org/containerd/containerd/v2\tv2.3.4\t\n{deps}"
        ));
        assert_eq!(
            main_package_of(&upstream).as_deref(),
            Some("example.org/containerd/containerd/v2/cmd/containerd")
        );
        let mut old = upstream.clone();
        old[15] = 0; // Go before 1.18: pointers, not inline strings
        assert_eq!(main_package_of(&old), None);
        assert_eq!(main_package_of(&upstream[..40]), None);
        assert_eq!(main_package_of(b"not buildinfo at all, not at all"), None);
    }

    #[test]
    fn the_major_is_the_import_paths_version_element() {
        let major = containerd_major_of_package;
        assert_eq!(
            major("example.org/containerd/containerd/cmd/containerd"),
            Some(1)
        );
        assert_eq!(
            major("example.org/containerd/containerd/v2/cmd/containerd"),
            Some(2)
        );
        assert_eq!(
            major("example.org/containerd/containerd/v3/cmd/containerd"),
            Some(3)
        );
        assert_eq!(
            major("example.org/containerd/containerd/vx/cmd/containerd"),
            None
        );
        assert_eq!(major("example.org/containerd/containerd2/cmd/x"), None);
        assert_eq!(major("example.org/other/tool/v2/cmd/tool"), None);
    }

    #[test]
    fn a_real_go_binary_is_read_when_the_host_has_one() {
        // The machine's own ELF files: a non-Go one has no section.
        let err = main_package(Path::new("/bin/sh")).unwrap_err();
        assert!(err.contains(".go.buildinfo"), "{err}");
        let err = main_package(Path::new("/nonexistent/containerd")).unwrap_err();
        assert!(err.contains("/nonexistent/containerd"), "{err}");
    }
}
