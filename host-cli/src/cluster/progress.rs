//! kind-style steps for cluster commands: a spinner with the elapsed time
//! while a step runs and ` ✓ step (12.3 s)` when it ends, on a terminal;
//! plain start and end lines otherwise (CI logs, pipes), so a log shows
//! what ran and how long it took without control characters.
//!
//! A [`Step`] that is dropped without [`Step::done`] ends as failed (kind's
//! `defer status.End(false)`), so an early return can never leave a step
//! spinning or unreported.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// The step being shown, for [`Steps::detail`].
type Current = Arc<Mutex<Option<(ProgressBar, String)>>>;

#[derive(Clone)]
pub struct Steps {
    terminal: bool,
    quiet: bool,
    current: Current,
}

pub struct Step {
    title: String,
    started: Instant,
    bar: Option<ProgressBar>,
    quiet: bool,
    ended: bool,
    current: Current,
}

impl Steps {
    pub fn new(quiet: bool) -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            quiet,
            current: Current::default(),
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
        if let (Some(bar), Ok(mut current)) = (&bar, self.current.lock()) {
            *current = Some((bar.clone(), title.clone()));
        }
        Step {
            title,
            started: Instant::now(),
            bar,
            quiet: self.quiet,
            ended: false,
            current: self.current.clone(),
        }
    }

    /// Shows where the running step is (`2/3 nodes`), on a terminal.
    pub fn detail(&self, text: &str) {
        if let Ok(current) = self.current.lock()
            && let Some((bar, title)) = current.as_ref()
        {
            bar.set_message(format!("{title} · {text}"));
        }
    }
}

impl Step {
    pub fn done(mut self) -> Duration {
        self.end("✓")
    }

    fn end(&mut self, mark: &str) -> Duration {
        self.ended = true;
        let took = self.started.elapsed();
        let line = format!(" {mark} {} ({:.1} s)", self.title, took.as_secs_f64());
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if let Ok(mut current) = self.current.lock() {
            *current = None;
        }
        if !self.quiet {
            eprintln!("{line}");
        }
        took
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if !self.ended {
            self.end("✗");
        }
    }
}
