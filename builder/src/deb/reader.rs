//! `.deb` files: an `ar` archive of `debian-binary`, `control.tar.*` and
//! `data.tar.*` (deb(5)). The data stays in memory, decompressed, for the
//! unpacker to stream into the in-memory root filesystem.

use std::collections::BTreeMap;
use std::io::Read;

use crate::debian::control::{Paragraph, parse_single};

#[derive(Debug)]
pub struct DebPackage {
    pub control: Paragraph,
    /// Members of `control.tar` other than `control`: `md5sums`, `conffiles`,
    /// `preinst`, `postinst`, `triggers`, …
    pub control_files: BTreeMap<String, Vec<u8>>,
    /// The decompressed `data.tar`.
    pub data_tar: Vec<u8>,
}

impl DebPackage {
    pub fn name(&self) -> &str {
        self.control.get("Package").unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("{origin}: not a Debian package: {problem}")]
    Format { origin: String, problem: String },
    #[error("{origin}: member {member}: {problem}")]
    Member {
        origin: String,
        member: String,
        problem: String,
    },
}

/// The decompressed `control.tar` and `data.tar` of a `.deb`: what the
/// decoded-package cache (`deb::decoded`) keeps, so a warm build skips the
/// decompression, which is most of the CPU time of reading a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebMembers {
    pub control_tar: Vec<u8>,
    pub data_tar: Vec<u8>,
}

pub fn read_deb(bytes: &[u8], origin: &str) -> Result<DebPackage, DebError> {
    DebPackage::from_members(read_deb_members(bytes, origin)?, origin)
}

/// The `ar` container of a `.deb`, its format checked and its
/// `control.tar` and `data.tar` decompressed.
pub fn read_deb_members(bytes: &[u8], origin: &str) -> Result<DebMembers, DebError> {
    let format = |problem: String| DebError::Format {
        origin: origin.to_string(),
        problem,
    };
    let mut archive = ar::Archive::new(bytes);
    let mut version = None;
    let mut control_tar = None;
    let mut data_tar = None;
    while let Some(entry) = archive.next_entry() {
        let mut entry = entry.map_err(|e| format(e.to_string()))?;
        let name = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        let member = |problem: String| DebError::Member {
            origin: origin.to_string(),
            member: name.clone(),
            problem,
        };
        let mut raw = Vec::new();
        entry
            .read_to_end(&mut raw)
            .map_err(|e| member(e.to_string()))?;
        let declared = entry.header().size();
        if raw.len() as u64 != declared {
            return Err(member(format!(
                "truncated: its header says {declared} bytes, the file holds {}",
                raw.len()
            )));
        }
        if name == "debian-binary" {
            version = Some(String::from_utf8_lossy(&raw).trim().to_string());
        } else if let Some(ext) = name.strip_prefix("control.tar") {
            control_tar = Some(decompress(ext, raw).map_err(member)?);
        } else if let Some(ext) = name.strip_prefix("data.tar") {
            data_tar = Some(decompress(ext, raw).map_err(member)?);
        }
    }
    match version.as_deref() {
        Some(v) if v.starts_with("2.") => {}
        Some(v) => {
            return Err(format(format!(
                "debian-binary says format {v}, kina reads 2.x"
            )));
        }
        None => return Err(format("no debian-binary member".into())),
    }
    Ok(DebMembers {
        control_tar: control_tar.ok_or_else(|| format("no control.tar member".into()))?,
        data_tar: data_tar.ok_or_else(|| format("no data.tar member".into()))?,
    })
}

impl DebPackage {
    /// Parses the decompressed `control.tar`; `data.tar` is kept as it is.
    pub fn from_members(members: DebMembers, origin: &str) -> Result<Self, DebError> {
        let format = |problem: String| DebError::Format {
            origin: origin.to_string(),
            problem,
        };
        let DebMembers {
            control_tar,
            data_tar,
        } = members;
        let mut control = None;
        let mut control_files = BTreeMap::new();
        let mut tar = tar::Archive::new(control_tar.as_slice());
        let entries = tar
            .entries()
            .map_err(|e| format(format!("control.tar: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| format(format!("control.tar: {e}")))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry
                .path()
                .map_err(|e| format(format!("control.tar: {e}")))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            let mut contents = Vec::new();
            entry
                .read_to_end(&mut contents)
                .map_err(|e| format(format!("control.tar {path}: {e}")))?;
            if path == "control" {
                let text = String::from_utf8(contents)
                    .map_err(|_| format("control is not UTF-8".into()))?;
                control = Some(parse_single(&text).map_err(|e| format(format!("control: {e}")))?);
            } else {
                control_files.insert(path, contents);
            }
        }
        let control = control.ok_or_else(|| format("control.tar has no control file".into()))?;
        Ok(DebPackage {
            control,
            control_files,
            data_tar,
        })
    }
}

fn decompress(ext: &str, raw: Vec<u8>) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let result = match ext {
        "" => return Ok(raw),
        ".gz" => flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut out),
        ".xz" => liblzma::read::XzDecoder::new(raw.as_slice()).read_to_end(&mut out),
        ".zst" => zstd::stream::read::Decoder::new(raw.as_slice())
            .and_then(|mut d| d.read_to_end(&mut out)),
        other => return Err(format!("unsupported compression `{other}`")),
    };
    result.map_err(|e| format!("cannot decompress: {e}"))?;
    Ok(out)
}
