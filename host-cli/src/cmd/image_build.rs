//! `kina image build`: lock → image in the local store, optionally exported.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use kina_builder::assemble::{BuildOptions, build_to_store};
use kina_builder::fetch::cache::Cache;
use kina_builder::fetch::http::Fetcher;
use kina_builder::fetch::progress::{Progress, ProgressMode};
use kina_builder::oci::layer::Compression;
use kina_builder::platform::Arch;
use kina_builder::store::ImageStore;

use super::sources;
use crate::cli::{BuildArgs, CompressionArg};
use crate::dirs::KinaDirs;

pub async fn run(args: BuildArgs, dirs: &KinaDirs, quiet: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let chosen = sources::load_recipe(&args.source)?;
    let lock = chosen.lock()?;
    let lock_label = chosen.lock_label();
    let chosen_builtin = chosen.builtin().is_some();
    let recipe = chosen.loaded;

    let platforms: Vec<Arch> = if args.platform.is_empty() {
        recipe.recipe.architectures.clone()
    } else {
        let mut chosen = Vec::new();
        for p in &args.platform {
            let arch: Arch = p.parse()?;
            if !recipe.recipe.architectures.contains(&arch) {
                bail!(
                    "--platform {p}: recipe {} builds only {}",
                    recipe.path.display(),
                    recipe
                        .recipe
                        .architectures
                        .iter()
                        .map(|a| a.platform())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            if !chosen.contains(&arch) {
                chosen.push(arch);
            }
        }
        chosen.sort();
        chosen
    };
    let mut kina_init_overrides = BTreeMap::new();
    for flag in &args.kina_init {
        let (arch, path) = flag
            .split_once('=')
            .with_context(|| format!("--kina-init {flag}: expected ARCH=PATH"))?;
        kina_init_overrides.insert(arch.parse::<Arch>()?, PathBuf::from(path));
    }
    let kina_init_overrides = crate::embedded::kina_init_files(
        &recipe,
        chosen_builtin,
        &platforms,
        kina_init_overrides,
        dirs,
    )?;
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => Some(
            v.parse::<u64>()
                .with_context(|| format!("SOURCE_DATE_EPOCH={v} is not a number of seconds"))?,
        ),
        Err(_) => None,
    };
    let options = BuildOptions {
        platforms,
        reference: args
            .tag
            .clone()
            .unwrap_or_else(|| recipe.recipe.tag.clone()),
        compression: match args.compression {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
        },
        source_date_epoch,
        kina_init_overrides,
        mirrors: sources::mirrors(&args.source, &recipe)?,
        registry_mirrors: sources::registry_mirrors(&args.source)?,
    };
    let progress = Progress::new(ProgressMode::detect(quiet));
    let cache = Cache::open(dirs.cache())?;
    let fetcher = Fetcher::new(
        cache,
        sources::url_rewrites(&args.source)?,
        progress.clone(),
    )?;
    let store = ImageStore::open(dirs.images())?;

    let result = build_to_store(&recipe, &lock, &options, &fetcher, &store)
        .await
        .with_context(|| {
            format!(
                "building {} from {}",
                options.reference,
                lock_label.display()
            )
        })?;
    if let Some(built) = &result.built {
        for platform in &built.platforms {
            for (name, layer) in &platform.layers {
                progress.println(&format!(
                    "  {} {:<12} {} compressed, {} uncompressed",
                    platform.arch.platform(),
                    name.as_str(),
                    human(layer.size),
                    human(layer.uncompressed_size)
                ));
            }
        }
    }
    if let Some(output) = &args.output {
        store
            .export(&options.reference, output, result.epoch)
            .with_context(|| format!("writing {}", output.display()))?;
    }
    if !quiet {
        println!(
            "{} {} {} ({}){} in {:.1}s",
            if result.reused { "unchanged" } else { "built" },
            options.reference,
            result.index_digest.oci(),
            options
                .platforms
                .iter()
                .map(|a| a.platform())
                .collect::<Vec<_>>()
                .join(", "),
            args.output
                .as_ref()
                .map(|o| format!(", written to {}", o.display()))
                .unwrap_or_default(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
