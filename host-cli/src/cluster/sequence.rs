//! Cluster verbs as ordered steps over one context (kind's
//! `create/actions`): each step named and timed as one line of progress,
//! and, when one fails or Ctrl-C arrives, what the steps made taken back
//! in reverse order, unless the user asked to keep it (`--retain`). The
//! order, the progress, the interruption and the undoing live here once;
//! each verb only says what its steps are and do.

use std::future::Future;

use super::progress::Steps;

/// A verb's steps and the context they share.
#[allow(async_fn_in_trait)]
pub trait Sequence {
    type Step: Copy + std::fmt::Debug;

    /// What the whole sequence does, for its failure messages
    /// (`Creating cluster "kina"`).
    fn name(&self) -> String;

    /// The steps, in order.
    fn steps(&self) -> Vec<Self::Step>;

    /// The progress line of `step`; `None` runs it without one.
    fn title(&self, step: Self::Step) -> Option<String>;

    async fn run(&mut self, step: Self::Step) -> anyhow::Result<()>;

    /// Takes back what `step` made. A step that fails is undone too, since
    /// it may have made part of what it makes (some nodes of a cluster),
    /// so an undo must cope with work half done.
    async fn undo(&mut self, step: Self::Step) -> anyhow::Result<()> {
        let _ = step;
        Ok(())
    }
}

/// What became of the steps' work after a failure.
#[derive(Debug)]
pub enum Cleanup {
    /// Kept, as asked (`--retain`).
    Retained,
    /// Every step that ran was undone.
    Undone,
    /// Undoing failed too; the first error.
    UndoFailed(anyhow::Error),
}

/// A sequence that did not finish.
#[derive(Debug)]
pub struct Failed {
    pub error: anyhow::Error,
    pub cleanup: Cleanup,
}

/// Runs `seq`'s steps in order until one fails or `interrupt` completes,
/// then, unless `retain`, undoes the failed step and those before it in
/// reverse. Undoing is not interruptible: it finishes even if Ctrl-C
/// comes again (the caller holds the signal, so it is not fatal).
pub async fn run<S: Sequence>(
    seq: &mut S,
    progress: &Steps,
    interrupt: &mut (impl Future<Output = ()> + Unpin),
    retain: bool,
) -> Result<(), Failed> {
    let mut ran = Vec::new();
    for step in seq.steps() {
        let shown = seq.title(step).map(|title| progress.start(title));
        ran.push(step);
        let outcome = tokio::select! {
            result = seq.run(step) => result,
            () = &mut *interrupt => Err(anyhow::anyhow!("interrupted")),
        };
        match outcome {
            Ok(()) => {
                if let Some(shown) = shown {
                    shown.done();
                }
            }
            Err(error) => {
                // The step's line ends as failed before anything else is said.
                drop(shown);
                if retain {
                    return Err(Failed {
                        error,
                        cleanup: Cleanup::Retained,
                    });
                }
                progress.say(&format!(
                    "{} failed ({error}); removing what was made (this finishes even if interrupted again)",
                    seq.name()
                ));
                let mut first_undo_error = None;
                for step in ran.into_iter().rev() {
                    if let Err(e) = seq.undo(step).await {
                        first_undo_error.get_or_insert(e.context(format!("undoing {step:?}")));
                    }
                }
                let cleanup = match first_undo_error {
                    Some(e) => Cleanup::UndoFailed(e),
                    None => Cleanup::Undone,
                };
                return Err(Failed { error, cleanup });
            }
        }
    }
    Ok(())
}
