//! The one progress helper of long commands (training steps, extraction, k-NN, filter, embed,
//! benches): on a terminal an indicatif bar with the rate and ETA; when stderr is not a terminal,
//! a plain line every 10 % with the rate and ETA. Always stderr, so stdout stays one JSON object
//! under `--json`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

/// Progress of `what` towards a total; the rate and ETA count only the units done since it was
/// made (a resumed run's earlier steps are not in its rate).
pub struct Progress {
    what: String,
    terminal: bool,
    bar: Option<ProgressBar>,
    start: Instant,
    /// Units already done when this began.
    first: usize,
    /// The next `done` at which a plain line is due.
    next: usize,
}

impl Progress {
    /// Progress of `what`, `first` units already done.
    pub fn starting_at(what: impl Into<String>, first: usize) -> Progress {
        Progress {
            what: what.into(),
            terminal: std::io::stderr().is_terminal(),
            bar: None,
            start: Instant::now(),
            first,
            next: first,
        }
    }

    /// `done` of `total` units; `note` (e.g. the current loss) follows the rate and ETA.
    pub fn update(&mut self, done: usize, total: usize, note: &str) {
        if self.terminal {
            let (what, first) = (&self.what, self.first);
            let b = self.bar.get_or_insert_with(|| {
                let b =
                    ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
                let style = ProgressStyle::with_template(
                    "{prefix}: {bar:30} {pos}/{len} {per_sec} ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                b.set_style(style);
                b.set_prefix(what.clone());
                b.set_position(first as u64);
                b.reset_eta();
                b
            });
            b.set_message(note.to_string());
            b.set_position(done as u64);
            if done >= total && !b.is_finished() {
                // indicatif leaves the cursor after the finished bar: the next line starts below
                b.finish();
                eprintln!();
            }
        } else if done >= self.next || done >= total {
            let new = done.saturating_sub(self.first);
            let rate = new as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
            let eta = total.saturating_sub(done) as f64 / rate.max(1e-9);
            let note = if note.is_empty() {
                String::new()
            } else {
                format!(" {note}")
            };
            eprintln!(
                "{}: {done}/{total} ({rate:.1}/s, ETA {eta:.0} s){note}",
                self.what
            );
            self.next = done + total.div_ceil(10).max(1);
        }
    }

    /// Runs `f` (which prints) with the bar hidden, so lines do not run into it.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }
}

/// A `(done, total)` callback that reports `what`'s progress.
pub fn progress(what: impl Into<String>) -> impl FnMut(usize, usize) {
    let mut p = Progress::starting_at(what, 0);
    move |done, total| p.update(done, total, "")
}
