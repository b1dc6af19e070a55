//! Kernel `.config` files, plain or gzip-compressed (`/proc/config.gz`).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tristate {
    Builtin,
    Module,
    Unset,
}

#[derive(Clone, Debug, Default)]
pub struct KernelConfig {
    /// Only the options set to `y` or `m`: every other value reads as
    /// unset, so keeping the rest (two thirds of a distribution's config)
    /// would only cost the boot's kernel check, which parses it under
    /// emulation.
    values: HashMap<String, Tristate>,
    /// Where the config came from, for evidence labels.
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read kernel config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a kernel config: {problem}")]
    Invalid { path: String, problem: String },
}

impl KernelConfig {
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses plain or gzip text (by magic, so `/proc/config.gz` and a
    /// renamed copy both work).
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<Self, ConfigError> {
        let invalid = |problem: String| ConfigError::Invalid {
            path: source.to_string(),
            problem,
        };
        let text = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut text = String::new();
            flate2::read::GzDecoder::new(bytes)
                .read_to_string(&mut text)
                .map_err(|e| invalid(format!("bad gzip data: {e}")))?;
            text
        } else {
            String::from_utf8(bytes.to_vec()).map_err(|_| invalid("not UTF-8 text".into()))?
        };
        let mut values = HashMap::new();
        let mut options = 0usize;
        for line in text.lines() {
            let line = line.trim();
            // A later line for a symbol overrides an earlier one, as
            // Kconfig reads a config; anything but y or m clears it.
            if let Some(rest) = line.strip_prefix("# CONFIG_") {
                if let Some(name) = rest.strip_suffix(" is not set") {
                    options += 1;
                    values.remove(name);
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("CONFIG_")
                && let Some((name, value)) = rest.split_once('=')
            {
                options += 1;
                match value {
                    "y" => values.insert(name.to_string(), Tristate::Builtin),
                    "m" => values.insert(name.to_string(), Tristate::Module),
                    _ => values.remove(name),
                };
            }
        }
        if options == 0 {
            return Err(invalid("no CONFIG_ lines".into()));
        }
        Ok(Self {
            values,
            source: source.to_string(),
        })
    }

    /// `y` is built in, `m` a module; anything else (unset, `n`, or a
    /// string or number value) counts as unset, as kubeadm's validator does.
    pub fn get(&self, symbol: &str) -> Tristate {
        self.values.get(symbol).copied().unwrap_or(Tristate::Unset)
    }

    /// Apple's kernels (kata builds) have no module support at all: there is
    /// nothing to load, and kina-init must not try.
    pub fn modules_supported(&self) -> bool {
        self.get("MODULES") == Tristate::Builtin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "#\n# Linux/x86 6.1.0 Kernel Configuration\n#\nCONFIG_MODULES=y\nCONFIG_VETH=m\n# CONFIG_BPF_JIT is not set\nCONFIG_LOCALVERSION=\"-test\"\nCONFIG_NR_CPUS=64\n";

    #[test]
    fn tristates_are_read_like_kubeadm_reads_them() {
        let c = KernelConfig::from_bytes(SAMPLE.as_bytes(), "sample").unwrap();
        assert_eq!(c.get("MODULES"), Tristate::Builtin);
        assert_eq!(c.get("VETH"), Tristate::Module);
        assert_eq!(c.get("BPF_JIT"), Tristate::Unset);
        assert_eq!(c.get("NR_CPUS"), Tristate::Unset);
        assert_eq!(c.get("NEVER_HEARD_OF"), Tristate::Unset);
        assert!(c.modules_supported());
    }

    #[test]
    fn gzip_configs_are_read_by_their_magic() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(SAMPLE.as_bytes()).unwrap();
        let c = KernelConfig::from_bytes(&gz.finish().unwrap(), "/proc/config.gz").unwrap();
        assert_eq!(c.get("VETH"), Tristate::Module);
    }

    #[test]
    fn a_file_that_is_not_a_config_is_refused_by_name() {
        let err = KernelConfig::from_bytes(b"hello\n", "notes.txt")
            .unwrap_err()
            .to_string();
        assert!(err.contains("notes.txt"), "{err}");
    }
}
