//! Real `.deb` files for tests, built by `dpkg-deb` itself.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use kina_builder::digest::Sha256Digest;

#[derive(Clone, Debug)]
enum Entry {
    File {
        path: String,
        contents: Vec<u8>,
        mode: u32,
    },
    Dir {
        path: String,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
}

/// Describes a binary package; [`DebBuilder::build`] runs
/// `dpkg-deb --build --root-owner-group`, so every file is owned by root as
/// in Debian's own packages.
#[derive(Clone, Debug)]
pub struct DebBuilder {
    name: String,
    version: String,
    arch: String,
    fields: Vec<(String, String)>,
    entries: Vec<Entry>,
    control_files: Vec<(String, Vec<u8>, u32)>,
    compression: Option<String>,
}

/// A `.deb` on disk and what a `Packages` stanza says about it.
#[derive(Clone, Debug)]
pub struct BuiltDeb {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub arch: String,
    /// The `DEBIAN/control` paragraph, ending in a newline.
    pub control: String,
    pub size: u64,
    pub sha256: Sha256Digest,
}

impl BuiltDeb {
    /// `<name>_<version without epoch>_<arch>.deb`, Debian's pool file name.
    pub fn file_name(&self) -> String {
        let version = self
            .version
            .split_once(':')
            .map_or(self.version.as_str(), |(_, v)| v);
        format!("{}_{}_{}.deb", self.name, version, self.arch)
    }

    /// `pool/main/<prefix>/<name>/<file>`, where dak puts it.
    pub fn pool_path(&self) -> String {
        let prefix = if self.name.starts_with("lib") && self.name.len() > 3 {
            &self.name[..4]
        } else {
            &self.name[..1]
        };
        format!("pool/main/{prefix}/{}/{}", self.name, self.file_name())
    }
}

impl DebBuilder {
    pub fn new(name: &str, version: &str, arch: &str) -> Self {
        Self {
            name: name.to_string(),
            version: version.to_string(),
            arch: arch.to_string(),
            fields: Vec::new(),
            entries: Vec::new(),
            control_files: Vec::new(),
            compression: None,
        }
    }

    /// A control field such as `Depends`, `Provides`, `Essential`,
    /// `Priority`, `Multi-Arch`; replaces an earlier value of the same field.
    pub fn field(mut self, name: &str, value: &str) -> Self {
        self.fields.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.fields.push((name.to_string(), value.to_string()));
        self
    }

    /// A regular file at absolute `path` in the package.
    pub fn file(mut self, path: &str, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.entries.push(Entry::File {
            path: path.to_string(),
            contents: contents.into(),
            mode,
        });
        self
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        self.entries.push(Entry::Dir {
            path: path.to_string(),
            mode,
        });
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.entries.push(Entry::Symlink {
            path: path.to_string(),
            target: target.to_string(),
        });
        self
    }

    /// A file in the control archive: `postinst`, `conffiles`, `triggers`…
    pub fn control_file(mut self, name: &str, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.control_files
            .push((name.to_string(), contents.into(), mode));
        self
    }

    /// `dpkg-deb -Z`: `xz` (dpkg's default), `gzip`, `zstd` or `none`.
    pub fn compression(mut self, kind: &str) -> Self {
        self.compression = Some(kind.to_string());
        self
    }

    /// The control paragraph this package will carry.
    pub fn control_text(&self) -> String {
        let mut text = format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\n",
            self.name, self.version, self.arch
        );
        let has = |f: &str| self.fields.iter().any(|(k, _)| k.eq_ignore_ascii_case(f));
        if !has("Maintainer") {
            text.push_str("Maintainer: kina tests <tests@kina.invalid>\n");
        }
        for (k, v) in &self.fields {
            if !k.eq_ignore_ascii_case("Description") {
                text.push_str(&format!("{k}: {v}\n"));
            }
        }
        let description = self
            .fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Description"))
            .map_or_else(|| format!("test package {}", self.name), |(_, v)| v.clone());
        text.push_str(&format!("Description: {description}\n"));
        text
    }

    /// Builds the package into `out_dir` (named as in Debian's pool).
    pub fn build(&self, out_dir: &Path) -> anyhow::Result<BuiltDeb> {
        let staging = tempfile::tempdir().context("creating a staging directory")?;
        let root = staging.path().join("root");
        let debian = root.join("DEBIAN");
        std::fs::create_dir_all(&debian)?;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))?;
        std::fs::set_permissions(&debian, std::fs::Permissions::from_mode(0o755))?;
        let control = self.control_text();
        std::fs::write(debian.join("control"), &control)?;
        for (name, contents, mode) in &self.control_files {
            let path = debian.join(name);
            std::fs::write(&path, contents)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))?;
        }
        for entry in &self.entries {
            match entry {
                Entry::File {
                    path,
                    contents,
                    mode,
                } => {
                    let dest = under(&root, path)?;
                    create_parent(&dest)?;
                    std::fs::write(&dest, contents)?;
                    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(*mode))?;
                }
                Entry::Dir { path, mode } => {
                    let dest = under(&root, path)?;
                    std::fs::create_dir_all(&dest)?;
                    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(*mode))?;
                }
                Entry::Symlink { path, target } => {
                    let dest = under(&root, path)?;
                    create_parent(&dest)?;
                    symlink(target, &dest)?;
                }
            }
        }
        std::fs::create_dir_all(out_dir)?;
        let built = BuiltDeb {
            path: PathBuf::new(),
            name: self.name.clone(),
            version: self.version.clone(),
            arch: self.arch.clone(),
            control,
            size: 0,
            sha256: Sha256Digest::of(b""),
        };
        let path = out_dir.join(built.file_name());
        let mut cmd = Command::new("dpkg-deb");
        cmd.arg("--build").arg("--root-owner-group");
        if let Some(kind) = &self.compression {
            cmd.arg(format!("-Z{kind}"));
        }
        cmd.arg(&root).arg(&path);
        let output = cmd
            .output()
            .context("running dpkg-deb (install the `dpkg` package)")?;
        if !output.status.success() {
            bail!(
                "dpkg-deb --build {} failed: {}",
                self.name,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let bytes = std::fs::read(&path)?;
        Ok(BuiltDeb {
            path,
            size: bytes.len() as u64,
            sha256: Sha256Digest::of(&bytes),
            ..built
        })
    }
}

fn under(root: &Path, path: &str) -> anyhow::Result<PathBuf> {
    let relative = path.trim_start_matches('/');
    if relative.is_empty() || relative.split('/').any(|c| c == "..") {
        bail!("package path `{path}` must be absolute and stay inside the package");
    }
    Ok(root.join(relative))
}

fn create_parent(path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    Ok(())
}
