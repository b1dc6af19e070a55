//! A signed Debian repository laid out like a Debian mirror, for tests of the
//! whole trust chain (InRelease signature → Packages digest → .deb digest).
//!
//! The key is generated per repository with rpgp and shaped like Debian's
//! archive keys: a certification-only primary key and a signing subkey.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use kina_builder::digest::Sha256Digest;
use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, EncryptionCaps, KeyType, SecretKeyParamsBuilder,
    SignedPublicKey, SignedSecretKey, SubkeyParamsBuilder,
};
use pgp::ser::Serialize;
use pgp::types::{KeyDetails, Password};

use crate::deb_builder::BuiltDeb;

/// A way to break the published repository, one per test of a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// The signature is over other text than the one shipped (a corrupt signature).
    CorruptSignature,
    /// Signed by a freshly generated key that is not in [`SignedRepo::keyring_path`].
    SignWithOtherKey,
    /// One byte of the signed Release text is changed after signing.
    AlterSignedText,
    /// The served `Packages.xz` (and its by-hash copy) of this arch differs
    /// from what the Release lists, at the same size.
    IndexHashMismatch { arch: String },
    /// The pool file of this package is deleted after publishing.
    RemovePackageFile { package: String },
}

/// How to publish the repository metadata.
#[derive(Clone, Debug)]
pub struct PublishOptions {
    /// Write `by-hash/SHA256/<hex>` copies and say `Acquire-By-Hash: yes`.
    pub by_hash: bool,
    /// The Release `Date`, unix seconds.
    pub date: u64,
    /// The Release `Valid-Until`, unix seconds.
    pub valid_until: Option<u64>,
    pub tamper: Option<Tamper>,
}

impl Default for PublishOptions {
    fn default() -> Self {
        Self {
            by_hash: false,
            // Sat, 09 Aug 2025 09:09:45 UTC: Debian 13.0's release date.
            date: 1_754_730_585,
            valid_until: None,
            tamper: None,
        }
    }
}

/// A repository in a temporary directory: serve [`SignedRepo::root`] with
/// [`crate::HttpServer`] and use its URL as the archive URL.
pub struct SignedRepo {
    dir: tempfile::TempDir,
    suite: String,
    arches: Vec<String>,
    debs: Vec<BuiltDeb>,
    key: SignedSecretKey,
    keyring_path: PathBuf,
}

/// Generates a key like Debian's archive keys: primary certifies, subkey signs.
pub fn generate_archive_key(user_id: &str) -> anyhow::Result<SignedSecretKey> {
    let mut subkey = SubkeyParamsBuilder::default();
    subkey
        .key_type(KeyType::Ed25519Legacy)
        .can_sign(true)
        .can_encrypt(EncryptionCaps::None)
        .can_authenticate(false);
    let mut params = SecretKeyParamsBuilder::default();
    params
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(false)
        .can_encrypt(EncryptionCaps::None)
        .primary_user_id(user_id.into())
        .subkeys(vec![subkey.build()?]);
    params
        .build()?
        .generate(rand::thread_rng())
        .map_err(|e| anyhow!("generating an OpenPGP key: {e}"))
}

impl SignedRepo {
    /// An empty repository for `suite` (component `main`) and the Debian
    /// architectures `arches` (`amd64`, `arm64`…).
    pub fn new(suite: &str, arches: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let key = generate_archive_key("kina test archive <archive@kina.invalid>")?;
        let public = SignedPublicKey::from(key.clone());
        let keyring_path = dir.path().join("archive-keyring.pgp");
        std::fs::write(&keyring_path, public.to_bytes()?)?;
        std::fs::create_dir_all(dir.path().join("archive"))?;
        Ok(Self {
            dir,
            suite: suite.to_string(),
            arches: arches.iter().map(|a| a.to_string()).collect(),
            debs: Vec::new(),
            key,
            keyring_path,
        })
    }

    /// The directory to serve: it holds `dists/` and `pool/`.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("archive")
    }

    /// The public key as a binary OpenPGP keyring file (outside [`Self::root`]).
    pub fn keyring_path(&self) -> &Path {
        &self.keyring_path
    }

    /// The public key, ASCII-armored.
    pub fn armored_public_key(&self) -> anyhow::Result<String> {
        Ok(SignedPublicKey::from(self.key.clone()).to_armored_string(ArmorOptions::default())?)
    }

    /// Fingerprint (lowercase hex) of the signing subkey.
    pub fn signing_fingerprint(&self) -> anyhow::Result<String> {
        let sub = self
            .key
            .secret_subkeys
            .first()
            .context("generated key has no subkey")?;
        Ok(hex_of(sub.key.fingerprint().as_bytes()))
    }

    /// Fingerprint (lowercase hex) of the primary key.
    pub fn primary_fingerprint(&self) -> String {
        hex_of(self.key.primary_key.fingerprint().as_bytes())
    }

    pub fn suite(&self) -> &str {
        &self.suite
    }

    /// Copies `deb` into the pool; `Architecture: all` packages are listed
    /// for every architecture, as trixie does.
    pub fn add(&mut self, deb: &BuiltDeb) -> anyhow::Result<()> {
        let dest = self.root().join(deb.pool_path());
        std::fs::create_dir_all(dest.parent().context("pool path has a parent")?)?;
        std::fs::copy(&deb.path, &dest)
            .with_context(|| format!("copying {} into the pool", deb.path.display()))?;
        self.debs.push(deb.clone());
        Ok(())
    }

    /// The `Packages` text for `arch`.
    pub fn packages_text(&self, arch: &str) -> String {
        let mut text = String::new();
        for deb in self
            .debs
            .iter()
            .filter(|d| d.arch == arch || d.arch == "all")
        {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&deb.control);
            text.push_str(&format!(
                "Filename: {}\nSize: {}\nSHA256: {}\n",
                deb.pool_path(),
                deb.size,
                deb.sha256.hex()
            ));
        }
        text
    }

    /// Writes `dists/<suite>/`: Packages, Packages.xz and Packages.gz per
    /// architecture, Release, and the signed InRelease; then applies `tamper`.
    pub fn publish(&self, options: &PublishOptions) -> anyhow::Result<()> {
        let dists = self.root().join("dists").join(&self.suite);
        if dists.exists() {
            std::fs::remove_dir_all(&dists)?;
        }
        let mut entries = Vec::new();
        for arch in &self.arches {
            let dir = format!("main/binary-{arch}");
            std::fs::create_dir_all(dists.join(&dir))?;
            let plain = self.packages_text(arch).into_bytes();
            for (name, bytes) in [
                ("Packages", plain.clone()),
                ("Packages.xz", xz(&plain)?),
                ("Packages.gz", gzip(&plain)?),
            ] {
                let digest = Sha256Digest::of(&bytes);
                std::fs::write(dists.join(&dir).join(name), &bytes)?;
                if options.by_hash {
                    let by_hash = dists.join(&dir).join("by-hash/SHA256");
                    std::fs::create_dir_all(&by_hash)?;
                    std::fs::write(by_hash.join(digest.hex()), &bytes)?;
                }
                entries.push((format!("{dir}/{name}"), digest, bytes.len()));
            }
        }
        let release = self.release_text(options, &entries);
        std::fs::write(dists.join("Release"), &release)?;
        std::fs::write(dists.join("InRelease"), self.inrelease(&release, options)?)?;
        self.apply_tamper(options, &dists, &entries)
    }

    fn release_text(
        &self,
        options: &PublishOptions,
        entries: &[(String, Sha256Digest, usize)],
    ) -> String {
        let mut text = format!(
            "Origin: kina-test\nLabel: kina-test\nSuite: {suite}\nCodename: {suite}\nDate: {date}\n",
            suite = self.suite,
            date = rfc2822_date(options.date)
        );
        if let Some(until) = options.valid_until {
            text.push_str(&format!("Valid-Until: {}\n", rfc2822_date(until)));
        }
        if options.by_hash {
            text.push_str("Acquire-By-Hash: yes\n");
        }
        text.push_str("No-Support-for-Architecture-all: Packages\n");
        text.push_str(&format!(
            "Architectures: all {}\nComponents: main\nDescription: kina test repository\nSHA256:\n",
            self.arches.join(" ")
        ));
        for (path, digest, size) in entries {
            text.push_str(&format!(" {} {size:>8} {path}\n", digest.hex()));
        }
        text
    }

    fn inrelease(&self, release: &str, options: &PublishOptions) -> anyhow::Result<String> {
        let other;
        let key = if options.tamper == Some(Tamper::SignWithOtherKey) {
            other = generate_archive_key("untrusted <untrusted@kina.invalid>")?;
            &other
        } else {
            &self.key
        };
        let subkey = &key
            .secret_subkeys
            .first()
            .context("generated key has no subkey")?
            .key;
        let sign = |text: &str| {
            CleartextSignedMessage::sign(rand::thread_rng(), text, subkey, &Password::empty())
                .map_err(|e| anyhow!("signing InRelease: {e}"))
        };
        let message = match options.tamper {
            Some(Tamper::CorruptSignature) => {
                let forged = sign(&release.replacen("Origin", "Origim", 1))?;
                let signatures = forged.signatures().to_vec();
                CleartextSignedMessage::new_many(release, |_| Ok(signatures))
                    .map_err(|e| anyhow!("assembling InRelease: {e}"))?
            }
            _ => sign(release)?,
        };
        let mut text = message.to_armored_string(ArmorOptions::default())?;
        if options.tamper == Some(Tamper::AlterSignedText) {
            text = text.replacen("Label: kina-test", "Label: kina-tesT", 1);
        }
        Ok(text)
    }

    fn apply_tamper(
        &self,
        options: &PublishOptions,
        dists: &Path,
        entries: &[(String, Sha256Digest, usize)],
    ) -> anyhow::Result<()> {
        match &options.tamper {
            Some(Tamper::IndexHashMismatch { arch }) => {
                let path = format!("main/binary-{arch}/Packages.xz");
                let Some((_, digest, _)) = entries.iter().find(|(p, _, _)| *p == path) else {
                    bail!("no {path} to tamper with: the repository has no arch {arch}");
                };
                let mut targets = vec![dists.join(&path)];
                if options.by_hash {
                    targets.push(
                        dists
                            .join(format!("main/binary-{arch}/by-hash/SHA256"))
                            .join(digest.hex()),
                    );
                }
                for target in targets {
                    let mut bytes = std::fs::read(&target)?;
                    let last = bytes.len() - 1;
                    bytes[last] ^= 0xff;
                    std::fs::write(&target, bytes)?;
                }
            }
            Some(Tamper::RemovePackageFile { package }) => {
                let deb = self
                    .debs
                    .iter()
                    .find(|d| d.name == *package)
                    .with_context(|| format!("no package {package} in the repository"))?;
                std::fs::remove_file(self.root().join(deb.pool_path()))?;
            }
            _ => {}
        }
        Ok(())
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn xz(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), 6);
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

fn gzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

/// Formats unix seconds the way Debian's archive tools write Release dates.
pub fn rfc2822_date(secs: u64) -> String {
    kina_builder::civil_time::rfc2822(secs)
}

#[cfg(test)]
mod tests {
    use super::rfc2822_date;

    #[test]
    fn dates_format_like_debian_release_files() {
        // `date -u -d @1754730585 -R` = Sat, 09 Aug 2025 09:09:45 +0000
        assert_eq!(rfc2822_date(1_754_730_585), "Sat, 09 Aug 2025 09:09:45 UTC");
        assert_eq!(rfc2822_date(951_825_600), "Tue, 29 Feb 2000 12:00:00 UTC");
        assert_eq!(rfc2822_date(0), "Thu, 01 Jan 1970 00:00:00 UTC");
    }
}
