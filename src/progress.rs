//! The one progress helper of long commands (extraction, k-NN, filter, embed): on a terminal an
//! indicatif bar with the rate and ETA; when stderr is not a terminal, a plain line every 10 % with
//! the rate and ETA. Always stderr, so stdout stays one JSON object under `--json`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

/// A `(done, total)` callback that reports `what`'s progress.
pub fn progress(what: impl Into<String>) -> impl FnMut(usize, usize) {
    let what = what.into();
    let terminal = std::io::stderr().is_terminal();
    let mut bar: Option<ProgressBar> = None;
    let (start, mut next) = (Instant::now(), 0usize);
    move |done, total| {
        if terminal {
            let b = bar.get_or_insert_with(|| {
                let b =
                    ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
                let style =
                    ProgressStyle::with_template("{msg}: {bar:30} {pos}/{len} {per_sec} ETA {eta}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar());
                b.set_style(style);
                b.set_message(what.clone());
                b
            });
            b.set_position(done as u64);
            if done >= total {
                b.finish();
            }
        } else if done >= next || done >= total {
            let rate = done as f64 / start.elapsed().as_secs_f64().max(1e-9);
            let eta = total.saturating_sub(done) as f64 / rate.max(1e-9);
            eprintln!("{what}: {done}/{total} ({rate:.1}/s, ETA {eta:.0} s)");
            next = done + total.div_ceil(10).max(1);
        }
    }
}
