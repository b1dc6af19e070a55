//! kind-style steps for cluster commands: a spinner with the elapsed time
//! while a step runs and ` ✓ step (12.3 s)` when it ends, on a terminal;
//! plain start and end lines otherwise (CI logs, pipes), so a log shows
//! what ran and how long it took without control characters.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Clone, Copy)]
pub struct Steps {
    terminal: bool,
    quiet: bool,
}

pub struct Step {
    title: String,
    started: Instant,
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Steps {
    pub fn new(quiet: bool) -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            quiet,
        }
    }

    pub fn say(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    pub fn start(&self, title: impl Into<String>) -> Step {
        let title = title.into();
        let bar = (self.terminal && !self.quiet).then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template(" {spinner} {msg} ({elapsed})") {
                bar.set_style(style);
            }
            bar.set_message(title.clone());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        if bar.is_none() && !self.quiet {
            eprintln!(" • {title} …");
        }
        Step {
            title,
            started: Instant::now(),
            bar,
            quiet: self.quiet,
        }
    }
}

impl Step {
    /// Shows where a long step is (`2/3 nodes at containerd`).
    pub fn detail(&self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{} · {text}", self.title));
        }
    }

    pub fn done(self) -> Duration {
        self.end("✓")
    }

    pub fn failed(self) -> Duration {
        self.end("✗")
    }

    fn end(self, mark: &str) -> Duration {
        let took = self.started.elapsed();
        let line = format!(" {mark} {} ({:.1} s)", self.title, took.as_secs_f64());
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if !self.quiet {
            eprintln!("{line}");
        }
        took
    }
}
