//! `kina kernel push REF`: built kernels, one per architecture, to a
//! registry as one multi-arch OCI artifact (`kina_builder::kernel::artifact`),
//! through the same registry client as `kina image push`.
//!
//! What to push, as oras and docker users would say it: `--kernel DIR` for
//! each `kina kernel build` output, or `--recipe NAME` for the newest build
//! of that recipe per architecture in the build cache; with neither, the
//! kernel the local kernel store holds under REF (or `--from`), as
//! `docker push` pushes a local image. The artifact is kept in the local
//! store under REF too, so this machine resolves REF without pulling it.

use anyhow::{Context, bail};
use kina_builder::kernel::BuiltKernel;

use super::blob_bars::{self, BlobBars};
use super::image_push::{options, print_summary};
use crate::cli::KernelPushArgs;
use crate::dirs::KinaDirs;
use crate::kernel_store::{self, KernelStore};

pub async fn run(args: KernelPushArgs, dirs: &KinaDirs, quiet: bool) -> anyhow::Result<()> {
    let mut opts = options(&args.registry)?;
    opts.chunk_size = Some(args.chunk_size);
    let store = KernelStore::open(dirs)?;
    let mut kernels = Vec::new();
    for dir in &args.kernels {
        let kernel = BuiltKernel::open(dir).with_context(|| {
            format!(
                "--kernel {}: not a built kernel directory (what `kina kernel build` writes: kernel, config, report.json, kernel.json)",
                dir.display()
            )
        })?;
        kernels.push(kernel);
    }
    if let Some(name) = &args.recipe {
        let built = kernel_store::built_kernels_of_recipe(dirs, name)?;
        if built.is_empty() {
            bail!(
                "--recipe {name}: the build cache ({}) has no kernel built from recipe `{name}`; build it with `kina kernel build --recipe {name}` or name directories with --kernel",
                kernel_store::build_cache_dir(dirs).display()
            );
        }
        kernels.extend(built);
    }
    let local = if kernels.is_empty() {
        let local = args.from.clone().unwrap_or_else(|| args.reference.clone());
        if store.find(&local)?.is_none() {
            bail!(
                "no kernel `{local}` in the local kernel store to push; name what to push with --kernel DIR (a `kina kernel build` output, once per architecture) or --recipe NAME (the build cache's newest builds of that recipe)"
            );
        }
        local
    } else {
        for k in &kernels {
            if !quiet {
                println!(
                    "kernel   {} {} {} ({})",
                    k.meta.arch,
                    k.meta.recipe,
                    k.meta.release,
                    k.dir.display()
                );
            }
        }
        store
            .add(&args.reference, &kernels)
            .with_context(|| format!("packing the kernels for {}", args.reference))?;
        args.reference.clone()
    };
    let bars = BlobBars::for_terminal(quiet);
    opts.progress = bars.as_ref().map(|b| b.byte_progress());
    let mut progress = blob_bars::reporter(bars, quiet, "pushed");
    let summary = store
        .push(&local, &args.reference, &opts, &mut progress)
        .await?;
    if !quiet {
        print_summary(&summary, "pushed");
    }
    if let Some(d) = summary.index_digest {
        println!("{}@{}", args.reference, d.oci());
    }
    Ok(())
}
