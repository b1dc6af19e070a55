//! `kina image push`: the local image, blob by blob, to a registry.

use kina_builder::oci::distribution::{self, Credentials, Options, Summary};
use kina_builder::store::ImageStore;

use super::blob_bars::{self, BlobBars};
use crate::cli::{PushArgs, RegistryArgs};
use crate::dirs::KinaDirs;

/// Registry options from the flags; the password comes from stdin only, so
/// it never sits in shell history or the process list.
pub fn options(args: &RegistryArgs) -> anyhow::Result<Options> {
    let credentials = match &args.username {
        Some(username) => {
            let mut password = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut password)
                .map_err(|e| anyhow::anyhow!("reading the password from stdin: {e}"))?;
            let password = password.trim_end_matches(['\n', '\r']).to_string();
            if password.is_empty() {
                anyhow::bail!(
                    "--password-stdin: stdin was empty; pipe the password in (e.g. `cat pw | kina image push -u {username} --password-stdin …`)"
                );
            }
            Some(Credentials {
                username: username.clone(),
                password,
            })
        }
        None => None,
    };
    Ok(Options {
        credentials,
        insecure: args.insecure,
        ca_file: args.ca_file.clone(),
        docker_config_dir: None,
        progress: None,
        chunk_size: None,
    })
}

pub fn print_summary(s: &Summary, verb: &str) {
    let h = super::image_build::human;
    let mut line = format!(
        "{verb} {} blobs ({}), skipped {} already present ({})",
        s.transferred.0,
        h(s.transferred.1),
        s.skipped.0,
        h(s.skipped.1)
    );
    if s.mounted.0 > 0 {
        line.push_str(&format!(", mounted {} ({})", s.mounted.0, h(s.mounted.1)));
    }
    println!("{line}");
}

pub async fn run(args: PushArgs, dirs: &KinaDirs, quiet: bool) -> anyhow::Result<()> {
    let mut opts = options(&args.registry)?;
    opts.chunk_size = Some(args.chunk_size);
    let store = ImageStore::open(dirs.images())?;
    let local = args.from.as_deref().unwrap_or(&args.reference);
    let bars = BlobBars::for_terminal(quiet);
    opts.progress = bars.as_ref().map(|b| b.byte_progress());
    let mut progress = blob_bars::reporter(bars, quiet, "pushed");
    let summary = distribution::push(&store, local, &args.reference, &opts, &mut progress).await?;
    if !quiet {
        print_summary(&summary, "pushed");
    }
    if let Some(d) = summary.index_digest {
        println!("{}@{}", args.reference, d.oci());
    }
    Ok(())
}
