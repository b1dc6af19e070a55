//! Download progress: bars with sizes and rates on a terminal, one line per
//! finished download otherwise, nothing with `--quiet`.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressStyle};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    Bars,
    Plain,
    Quiet,
}

impl ProgressMode {
    /// Bars when stderr is a terminal, plain lines when it is a log.
    pub fn detect(quiet: bool) -> Self {
        if quiet {
            ProgressMode::Quiet
        } else if std::io::stderr().is_terminal() {
            ProgressMode::Bars
        } else {
            ProgressMode::Plain
        }
    }
}

#[derive(Clone)]
pub struct Progress {
    mode: ProgressMode,
    multi: MultiProgress,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Self {
        Self {
            mode,
            multi: MultiProgress::new(),
        }
    }

    pub fn mode(&self) -> ProgressMode {
        self.mode
    }

    pub fn start(&self, label: &str, total: Option<u64>) -> Transfer {
        let bar = (self.mode == ProgressMode::Bars).then(|| {
            let bar = self.multi.add(ProgressBar::new(total.unwrap_or(0)));
            let template = if total.is_some() {
                "{msg:40!} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {wide_bar}"
            } else {
                "{msg:40!} {bytes:>10} {bytes_per_sec:>12}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar.set_message(label.to_string());
            bar
        });
        Transfer {
            mode: self.mode,
            bar,
            label: label.to_string(),
            started: Instant::now(),
            bytes: 0,
        }
    }

    /// A line that belongs with the progress output (not a log record).
    pub fn println(&self, line: &str) {
        match self.mode {
            ProgressMode::Quiet => {}
            ProgressMode::Bars => {
                let _ = self.multi.println(line);
            }
            ProgressMode::Plain => eprintln!("{line}"),
        }
    }
}

pub struct Transfer {
    mode: ProgressMode,
    bar: Option<ProgressBar>,
    label: String,
    started: Instant,
    bytes: u64,
}

impl Transfer {
    pub fn advance(&mut self, n: u64) {
        self.bytes += n;
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Bytes already present from an earlier, interrupted download.
    pub fn resumed_at(&mut self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(n);
        }
    }

    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.mode == ProgressMode::Plain {
            let secs = self.started.elapsed().as_secs_f64().max(0.001);
            eprintln!(
                "downloaded {} ({}, {}/s)",
                self.label,
                HumanBytes(self.bytes),
                HumanBytes((self.bytes as f64 / secs) as u64)
            );
        }
    }
}
