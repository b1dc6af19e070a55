//! Dependency resolution against the real Debian archive (the host's
//! configured apt mirror), with apt itself as the oracle. Signature and index
//! checks against the real archive are in tests/tests/debian_archive.rs.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use kina_builder::debian::archive::fetch_suite;
use kina_builder::debian::keyring::Keyring;
use kina_builder::debian::packages::{PackageRecord, parse_packages};
use kina_builder::debian::release::ValidUntilPolicy;
use kina_builder::debian::resolve::resolve_layered;
use kina_builder::fetch::mirror::HostApt;
use kina_builder::platform::Arch;
use kina_builder::recipe::{DebianArchive, LoadedRecipe};

fn host_mirrors() -> (String, String) {
    let host = HostApt::read(HostApt::default_dir());
    (
        host.debian
            .expect("the host's apt sources name a Debian mirror"),
        host.security
            .expect("the host's apt sources name a security mirror"),
    )
}

fn base_recipe() -> LoadedRecipe {
    LoadedRecipe::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes/base.toml")).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The recipe's universe for `arch`, read and verified by kina.
fn universe(arch: Arch) -> Vec<PackageRecord> {
    let recipe = base_recipe();
    let (debian, security) = host_mirrors();
    let keyring = Keyring::load(&recipe.recipe.debian.keyring, recipe.dir()).unwrap();
    let client = reqwest::Client::new();
    let mut records = Vec::new();
    for source in &recipe.recipe.debian.sources {
        let url = match source.archive {
            DebianArchive::Debian => &debian,
            DebianArchive::DebianSecurity => &security,
        };
        for suite in &source.suites {
            let index = runtime()
                .block_on(fetch_suite(
                    &client,
                    url,
                    suite,
                    &source.components,
                    &[arch],
                    &keyring,
                    ValidUntilPolicy::Warn,
                ))
                .unwrap_or_else(|e| panic!("{suite}: {e}"));
            for packages in &index.packages {
                records
                    .extend(parse_packages(&packages.text, source.archive, suite, arch).unwrap());
            }
        }
    }
    records
}

/// apt's own answer: `apt-get -s install --no-install-recommends ROOTS` in an
/// empty root configured with the same mirror and suites.
fn apt_simulation(arch: Arch, roots: &[String]) -> BTreeSet<String> {
    let (debian, security) = host_mirrors();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for sub in [
        "lists/partial",
        "cache/archives/partial",
        "etc/apt.conf.d",
        "etc/preferences.d",
    ] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    std::fs::write(
        d.join("sources.list"),
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {debian} trixie main\n\
             deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {debian} trixie-updates main\n\
             deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {security} trixie-security main\n"
        ),
    )
    .unwrap();
    std::fs::write(d.join("status"), "").unwrap();
    let opts = [
        format!(
            "-oDir::Etc::SourceList={}",
            d.join("sources.list").display()
        ),
        "-oDir::Etc::SourceParts=/dev/null".into(),
        format!("-oDir::Etc::Parts={}", d.join("etc/apt.conf.d").display()),
        format!(
            "-oDir::Etc::Preferences={}",
            d.join("etc/preferences").display()
        ),
        format!(
            "-oDir::Etc::PreferencesParts={}",
            d.join("etc/preferences.d").display()
        ),
        format!("-oDir::State::Lists={}", d.join("lists").display()),
        format!("-oDir::State::Status={}", d.join("status").display()),
        format!("-oDir::Cache={}", d.join("cache").display()),
        format!("-oAPT::Architecture={arch}"),
        format!("-oAPT::Architectures={arch}"),
        "-oDebug::NoLocking=1".into(),
        "-oAPT::Install-Recommends=false".into(),
        "-oAPT::Sandbox::User=root".into(),
    ];
    let update = Command::new("apt-get")
        .args(&opts)
        .arg("update")
        .arg("-q")
        .output()
        .unwrap();
    assert!(
        update.status.success(),
        "{}",
        String::from_utf8_lossy(&update.stderr)
    );
    let sim = Command::new("apt-get")
        .args(&opts)
        .args(["-s", "install", "--no-install-recommends"])
        .args(roots)
        .output()
        .unwrap();
    assert!(
        sim.status.success(),
        "{}",
        String::from_utf8_lossy(&sim.stderr)
    );
    String::from_utf8_lossy(&sim.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("Inst "))
        .map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next().unwrap();
            let version = words.next().unwrap().trim_start_matches('(');
            format!("{name} {version}")
        })
        .collect()
}

fn resolver_matches_apt(arch: Arch) {
    let recipe = base_recipe();
    let records = universe(arch);
    let resolution = resolve_layered(
        &records,
        arch,
        &recipe.recipe.debian.packages,
        &recipe.recipe.runtime.debian_packages,
    )
    .unwrap();
    let ours: BTreeSet<String> = resolution
        .base
        .iter()
        .chain(&resolution.extra)
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    // Give apt exactly the roots kina used: Essential and required candidates
    // plus the recipe's packages.
    let mut roots: BTreeSet<String> = resolution
        .base
        .iter()
        .filter(|p| p.essential || p.priority == "required")
        .map(|p| p.name.clone())
        .collect();
    roots.extend(recipe.recipe.debian.packages.iter().cloned());
    roots.extend(recipe.recipe.runtime.debian_packages.iter().cloned());
    let roots: Vec<String> = roots.into_iter().collect();
    let apt = apt_simulation(arch, &roots);
    let only_ours: Vec<_> = ours.difference(&apt).collect();
    let only_apt: Vec<_> = apt.difference(&ours).collect();
    assert!(
        only_ours.is_empty() && only_apt.is_empty(),
        "{arch}: kina and apt disagree\nonly kina: {only_ours:?}\nonly apt: {only_apt:?}"
    );
    assert!(
        ours.len() > 100,
        "{arch}: suspiciously small set ({})",
        ours.len()
    );
    assert!(resolution.extra.iter().any(|p| p.name == "containerd"));
    assert!(resolution.base.iter().any(|p| p.name == "iptables"));
}

#[test]
fn the_node_package_set_matches_apt_for_amd64() {
    resolver_matches_apt(Arch::Amd64);
}

#[test]
fn the_node_package_set_matches_apt_for_arm64() {
    resolver_matches_apt(Arch::Arm64);
}
