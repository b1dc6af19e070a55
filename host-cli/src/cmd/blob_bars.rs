//! Live per-blob progress bars for `kina image push` and `pull` on a
//! terminal: each blob in flight has a bar with its size and rate, and
//! leaves its one-line report above the bars when it is done. Off a
//! terminal (logs, pipes, tests) only the report lines are printed.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kina_builder::digest::Sha256Digest;
use kina_builder::oci::distribution::{BlobReport, ByteProgress, Outcome};

pub struct BlobBars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Sha256Digest, ProgressBar>>,
}

impl BlobBars {
    /// Bars when standard error is a terminal and output is wanted.
    pub fn for_terminal(quiet: bool) -> Option<Arc<Self>> {
        (!quiet && std::io::stderr().is_terminal()).then(|| {
            Arc::new(Self {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: Mutex::new(HashMap::new()),
            })
        })
    }

    /// The callback the distribution client calls as bytes stream.
    pub fn byte_progress(self: &Arc<Self>) -> ByteProgress {
        let bars = Arc::clone(self);
        ByteProgress(Arc::new(move |digest, done, total| {
            bars.advance(digest, done, total)
        }))
    }

    fn advance(&self, digest: &Sha256Digest, done: u64, total: u64) {
        let mut bars = self.bars.lock().unwrap_or_else(PoisonError::into_inner);
        let bar = bars.entry(*digest).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new(total));
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            let hex = digest.hex();
            bar.set_message(hex.chars().take(12).collect::<String>());
            bar
        });
        if total > 0 {
            bar.set_length(total);
        }
        bar.set_position(done);
    }

    /// Ends `digest`'s bar (if it had one) and prints `report` above the
    /// bars that remain.
    pub fn finish(&self, digest: &Sha256Digest, report: impl FnOnce()) {
        let bar = self
            .bars
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(digest);
        if let Some(bar) = bar {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        self.multi.suspend(report);
    }
}

/// The per-blob report for push (`verb` "pushed") and pull ("pulled"):
/// nothing when quiet, else the blob's line, above the bars on a terminal.
pub fn reporter(
    bars: Option<Arc<BlobBars>>,
    quiet: bool,
    verb: &'static str,
) -> impl FnMut(&BlobReport) + Send {
    move |r| {
        if quiet {
            return;
        }
        match &bars {
            Some(bars) => bars.finish(&r.digest, || print_blob(r, verb)),
            None => print_blob(r, verb),
        }
    }
}

/// One line per blob, as it completes.
fn print_blob(r: &BlobReport, verb: &str) {
    let what = match r.outcome {
        Outcome::Transferred => verb,
        Outcome::Skipped => "skipped (present)",
        Outcome::Mounted => "mounted",
    };
    let rate = match r.outcome {
        Outcome::Transferred if r.elapsed.as_secs_f64() > 0.0 => format!(
            " ({}/s)",
            super::image_build::human((r.size as f64 / r.elapsed.as_secs_f64()) as u64)
        ),
        _ => String::new(),
    };
    println!(
        "{:<8} {} {:>10}  {what}{rate}",
        r.kind,
        r.digest.oci(),
        super::image_build::human(r.size)
    );
}
