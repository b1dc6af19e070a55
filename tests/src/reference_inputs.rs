//! Public files some tests check kina against (Apple's and Debian's kernel
//! configs, Debian's containerd 2.x), pinned like any upstream artifact: by URL and sha256, fetched
//! through kina's own download code into kina's download cache.
//!
//! Not copied into the repository: they are someone else's files, and a pin
//! says exactly which bytes the tests were written against. Where the
//! upstream host is not reachable, `KINA_URL_REWRITE` serves the URLs from a
//! local copy (`scripts/test` does so for `../shared/kernels`, through the
//! `serve-reference-inputs` program of this crate). A test that cannot get
//! an input fails naming the URL; it never skips.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use kina_builder::deb::reader::read_deb;
use kina_builder::digest::Sha256Digest;
use kina_builder::fetch::cache::Cache;
use kina_builder::fetch::http::{FetchItem, Fetcher};
use kina_builder::fetch::mirror::{DebianMirrors, UrlRewrites};
use kina_builder::fetch::progress::{Progress, ProgressMode};
use kina_builder::recipe::{DebianArchive, DebianSpec};

/// One pinned input: the name tests ask for (also its file name in a local
/// folder of reference inputs), its sha256, and where it comes from.
#[derive(Clone, Copy, Debug)]
pub struct ReferenceInput {
    pub name: &'static str,
    pub sha256: &'static str,
    pub origin: Origin,
}

#[derive(Clone, Copy, Debug)]
pub enum Origin {
    /// The file itself at this URL.
    Url(&'static str),
    /// A file inside a Debian binary package, fetched from the Debian mirror
    /// kina uses (`KINA_DEBIAN_MIRROR` / `KINA_DEBIAN_SECURITY_MIRROR`, else
    /// this machine's apt sources), so no mirror host is written here.
    DebianPackage {
        archive: DebianArchive,
        /// The package's `Filename:` in the archive's Packages index.
        filename: &'static str,
        /// The package's `SHA256:` in that (signed) index.
        sha256: &'static str,
        size: u64,
        /// The member of `data.tar`, without a leading `./`.
        member: &'static str,
    },
}

/// A kernel config of apple/containerization at the commit its kernel build
/// used when these tests were written.
macro_rules! apple_kernel_config {
    ($file:literal) => {
        concat!(
            "https://raw.githubusercontent.com/apple/containerization/b9c65e59b284c182c22d88b1f895a138b5fca1a9/kernel/",
            $file
        )
    };
}

/// Every reference input the tests use, in one place.
pub const REFERENCE_INPUTS: &[ReferenceInput] = &[
    ReferenceInput {
        name: "apple-containerization-arm64.config",
        sha256: "dedb03de6d686534efbca3a90bac304721e818bd96bc421b4d2213724a4e260b",
        origin: Origin::Url(apple_kernel_config!("config-arm64")),
    },
    ReferenceInput {
        name: "apple-containerization-x86_64.config",
        sha256: "683681bb8b46e70d0cd57a8213ef326de1161df25b37b8293f3747f309c314d8",
        origin: Origin::Url(apple_kernel_config!("config-x86_64")),
    },
    // Debian bookworm's cloud kernels, 6.1.192-2 (ABI 6.1.0-56).
    ReferenceInput {
        name: "debian-6.1.0-56-cloud-amd64.config",
        sha256: "6d45c8c827f41623fa380a0410c6acdca1604c64305459e068d987e65df87dcc",
        origin: Origin::DebianPackage {
            archive: DebianArchive::DebianSecurity,
            filename: "pool/updates/main/l/linux-signed-amd64/linux-image-6.1.0-56-cloud-amd64_6.1.192-2_amd64.deb",
            sha256: "e7d02b943971edcb8790e256c02cfab3bca6c3d37c1bf25392a57c71300615ee",
            size: 26_713_492,
            member: "boot/config-6.1.0-56-cloud-amd64",
        },
    },
    ReferenceInput {
        name: "debian-6.1.0-56-cloud-arm64.config",
        sha256: "558c005b1d045c6549e1cadcb102a35c762be8e2a483e6406ece70210d090b08",
        origin: Origin::DebianPackage {
            archive: DebianArchive::DebianSecurity,
            filename: "pool/updates/main/l/linux-signed-arm64/linux-image-6.1.0-56-cloud-arm64_6.1.192-2_arm64.deb",
            sha256: "481ab54a27246579aadeb372315c56de02f2fe0cba4e09b387946269fff2f415",
            size: 21_347_940,
            member: "boot/config-6.1.0-56-cloud-arm64",
        },
    },
    // containerd 1.7 as the base image installs it (trixie's, the .deb
    // recipes/base.lock pins), for reading its major version from the
    // binary without running it (kina-init `boot/go_buildinfo.rs`).
    ReferenceInput {
        name: "debian-containerd-1.7.24-amd64",
        sha256: "9912cdfff923738916167fcecdfb09a5c908b5e26aaabc5fa9268b37988dd0ba",
        origin: Origin::DebianPackage {
            archive: DebianArchive::Debian,
            filename: "pool/main/c/containerd/containerd_1.7.24~ds1-6+deb13u1_amd64.deb",
            sha256: "ed708deb96fe476a3bce4efa5c0538dfbcf717ab9a7c7944ba7260342c25899c",
            size: 32_784_720,
            member: "usr/bin/containerd",
        },
    },
    // containerd 2.x as Debian builds it (sid's 2.1.9+ds1-5; trixie and
    // its backports have 1.7 only), to check that the version 2 config
    // kina writes survives 2.x's migration. sid drops superseded versions
    // from the archive: when this one is gone the test fails naming it, and
    // the pin moves to sid's current containerd.
    ReferenceInput {
        name: "debian-containerd-2.1.9-amd64",
        sha256: "589a73d2025ea6f04f3a592d3e5c1db9f3be0600cedf45d313de9dc6a7c845a0",
        origin: Origin::DebianPackage {
            archive: DebianArchive::Debian,
            filename: "pool/main/c/containerd/containerd_2.1.9+ds1-5_amd64.deb",
            sha256: "2dda86ce7033fd612fc50e136679d8174ccad680eb29cd4611e0d2a1b84cf591",
            size: 29_547_080,
            member: "usr/bin/containerd",
        },
    },
];

/// What to do when an input cannot be fetched, for every failure message.
const HOW_TO_SERVE: &str = "to serve a local copy, set KINA_URL_REWRITE=UPSTREAM_PREFIX=http://HOST/PREFIX (comma-separated rules; scripts/test serves ../shared/kernels this way when that folder exists)";

/// The pinned input called `name`.
pub fn reference_input(name: &str) -> anyhow::Result<&'static ReferenceInput> {
    REFERENCE_INPUTS
        .iter()
        .find(|input| input.name == name)
        .ok_or_else(|| {
            let known: Vec<&str> = REFERENCE_INPUTS.iter().map(|i| i.name).collect();
            anyhow!("no reference input is called {name}; pinned are {known:?}")
        })
}

/// The verified content of the reference input `name`, from kina's download
/// cache, fetched (through `KINA_URL_REWRITE`) when not there yet.
pub fn fetch_reference_input(name: &str) -> anyhow::Result<Vec<u8>> {
    let input = reference_input(name)?;
    let root = Cache::default_root();
    let cache = Cache::open(&root)
        .with_context(|| format!("opening kina's download cache {}", root.display()))?;
    let rewrites = UrlRewrites::from_flags_and_env(&[]).context("parsing KINA_URL_REWRITE")?;
    let path = fetch_pinned(input, &cache, rewrites, debian_mirrors)?;
    std::fs::read(&path).with_context(|| format!("reading {} ({name})", path.display()))
}

/// The cache path of `input`, fetched if needed; `mirrors` is asked only for
/// a Debian package not in the cache yet.
pub fn fetch_pinned(
    input: &ReferenceInput,
    cache: &Cache,
    rewrites: UrlRewrites,
    mirrors: impl FnOnce() -> anyhow::Result<DebianMirrors>,
) -> anyhow::Result<PathBuf> {
    let sha256: Sha256Digest = input
        .sha256
        .parse()
        .with_context(|| format!("the pinned sha256 of {}", input.name))?;
    if let Some(path) = cache.get(&sha256)? {
        return Ok(path);
    }
    let fetcher = Fetcher::new(cache.clone(), rewrites, Progress::new(ProgressMode::Plain))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime for downloads")?;
    match input.origin {
        Origin::Url(url) => {
            let item = FetchItem {
                url: url.to_string(),
                sha256,
                size: None,
                label: format!("reference input {}", input.name),
            };
            runtime.block_on(fetcher.fetch(&item)).map_err(|e| {
                anyhow!(e).context(format!(
                    "cannot get the reference input {} pinned at {url} (sha256 {sha256}); {HOW_TO_SERVE}",
                    input.name
                ))
            })
        }
        Origin::DebianPackage {
            archive,
            filename,
            sha256: deb_sha256,
            size,
            member,
        } => {
            let mirrors = mirrors()?;
            let url = format!("{}/{filename}", mirrors.url_for(archive));
            let item = FetchItem {
                url: url.clone(),
                sha256: deb_sha256
                    .parse()
                    .with_context(|| format!("the pinned sha256 of {filename}"))?,
                size: Some(size),
                label: filename.rsplit('/').next().unwrap_or(filename).to_string(),
            };
            let deb = runtime.block_on(fetcher.fetch(&item)).map_err(|e| {
                anyhow!(e).context(format!(
                    "cannot get the reference input {} from the Debian package at {url} (sha256 {deb_sha256}); choose a reachable mirror with KINA_DEBIAN_MIRROR / KINA_DEBIAN_SECURITY_MIRROR, or {HOW_TO_SERVE}",
                    input.name
                ))
            })?;
            extract_member(cache, &sha256, &deb, member)
                .with_context(|| format!("the reference input {} is {member} in {url}", input.name))
        }
    }
}

/// The Debian mirrors kina would use: the environment, else this machine's apt sources.
pub fn debian_mirrors() -> anyhow::Result<DebianMirrors> {
    let flag = std::env::var("KINA_DEBIAN_MIRROR").ok();
    let security_flag = std::env::var("KINA_DEBIAN_SECURITY_MIRROR").ok();
    let no_recipe = DebianSpec {
        mirror: None,
        security_mirror: None,
        sources: vec![],
        keyring: vec![],
        packages: vec![],
    };
    Ok(DebianMirrors::resolve(
        flag.as_deref(),
        security_flag.as_deref(),
        &no_recipe,
    )?)
}

/// Puts `member` of the package at `deb` into the cache under its pinned
/// digest; the cache refuses it unless the digest matches.
fn extract_member(
    cache: &Cache,
    sha256: &Sha256Digest,
    deb: &std::path::Path,
    member: &str,
) -> anyhow::Result<PathBuf> {
    // Tests running at once extract one at a time; the first one's entry serves the rest.
    let _lock = cache.lock(sha256)?;
    if let Some(path) = cache.get(sha256)? {
        return Ok(path);
    }
    let bytes = std::fs::read(deb).with_context(|| format!("reading {}", deb.display()))?;
    let package = read_deb(&bytes, &deb.display().to_string())?;
    let mut tar = tar::Archive::new(package.data_tar.as_slice());
    for entry in tar.entries().context("reading data.tar")? {
        let mut entry = entry.context("reading data.tar")?;
        let path = entry.path().context("a path in data.tar")?.into_owned();
        if path.to_string_lossy().trim_start_matches("./") != member {
            continue;
        }
        let mut content = Vec::new();
        entry
            .read_to_end(&mut content)
            .with_context(|| format!("reading {member} from data.tar"))?;
        let partial = cache.partial_path(sha256);
        std::fs::write(&partial, &content)
            .with_context(|| format!("writing {}", partial.display()))?;
        return match cache.commit_partial(sha256)? {
            Ok(path) => Ok(path),
            Err((actual, _)) => bail!("{member} has sha256 {actual}, but {sha256} is pinned"),
        };
    }
    bail!("the package has no {member}")
}
