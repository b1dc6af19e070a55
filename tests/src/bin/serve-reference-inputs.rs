//! Serves a local folder of reference inputs (such as `../shared/kernels`)
//! on loopback for the tests' pinned upstream URLs.
//!
//!     serve-reference-inputs DIR
//!
//! Prints one line, the `KINA_URL_REWRITE` value that sends each pinned URL
//! whose file DIR holds to this server, then serves until killed. The files
//! are named as in [`kina_tests::REFERENCE_INPUTS`], not laid out like the
//! URLs, so each URL gets its own rule. Contents are not checked here: the
//! download code verifies every file against its pinned sha256.

use std::io::Write;

use anyhow::{Context, bail};
use kina_tests::{HttpServer, Origin, REFERENCE_INPUTS};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir] = args.as_slice() else {
        bail!("usage: serve-reference-inputs DIR");
    };
    let dir = std::path::Path::new(dir);
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let server = HttpServer::serve_dir(dir).context("starting the loopback server")?;
    let rules: Vec<String> = REFERENCE_INPUTS
        .iter()
        .filter_map(|input| match input.origin {
            Origin::Url(url) if dir.join(input.name).is_file() => {
                Some(format!("{url}={}/{}", server.url(), input.name))
            }
            _ => None,
        })
        .collect();
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", rules.join(",")).context("writing the rewrite rules")?;
    stdout.flush().context("writing the rewrite rules")?;
    loop {
        std::thread::park();
    }
}
