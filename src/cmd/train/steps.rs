//! The steps of a `dinonat train` run with what watches them: progress lines, collapse warnings,
//! the scheduled k-NN and the deadline (the policies are `dinonat_train::run_policy`'s).

use super::curves::Curves;
use super::done::Done;
use super::flags::TrainArgs;
use crate::args::train_flagged as flagged;
use dinonat_eval::knn_splits::EvalSplit;
use dinonat_train::run_policy::{knn_due, progress_due, CollapseWatch, Deadline};
use dinonat_train::trainer::{Control, TrainError, Trainer};
use std::time::Instant;

/// Runs the steps with progress lines, collapse warnings, the k-NN every `eval_every` steps on the
/// split and the deadline.
pub fn train_steps(
    a: &TrainArgs,
    t: &mut Trainer,
    (split, eval_every): (Option<&EvalSplit>, usize),
    curves: &mut Curves,
) -> Result<Done, String> {
    let js = a.json;
    let (total, every) = (t.config.steps, t.config.log_every);
    let mut watch = CollapseWatch::new(&t.config);
    let deadline = a
        .max_minutes
        .map(Deadline::new)
        .transpose()
        .map_err(flagged)?;
    let start = Instant::now();
    let mut bar = crate::progress::Progress::starting_at("train (steps)", t.step);
    let (mut all_reduce_s, mut all_reduce_total_s) = (0.0, 0.0);
    let result = t.run_with(a.stop_at, |tr, l| {
        all_reduce_s += tr.last_timings.all_reduce;
        all_reduce_total_s += tr.last_timings.all_reduce_total;
        curves.record(l);
        if progress_due(every, l.step, total) {
            let skipped = tr.bad_samples().errors().len();
            let note = if skipped > 0 {
                format!(" | {skipped} unreadable file(s) skipped")
            } else {
                String::new()
            };
            bar.suspend(|| say!(js, "{}{note}", l.progress_line(total)));
        }
        bar.update(l.step + 1, total, &format!("loss {:.4}", l.loss));
        if let Some(w) = watch.check(l.step, l.teacher_entropy) {
            bar.suspend(|| eprintln!("warning: {w}"));
        }
        if let Some(s) = split.filter(|_| knn_due(eval_every, l.step, total)) {
            let top1 = s
                .knn_backbone(&tr.teacher.backbone)
                .map_err(TrainError)?
                .reported();
            bar.suspend(|| say!(js, "step {}: k-NN top-1 {top1:.2}% (teacher)", l.step + 1));
            curves
                .knn_point(&tr.config.out_dir, l.step + 1, top1)
                .map_err(TrainError)?;
        }
        if let Some(d) = deadline.filter(|d| d.passed(l.step, total)) {
            say!(
                js,
                "--max-minutes {}: stopping after step {} with a checkpoint",
                d.minutes(),
                l.step + 1
            );
            return Ok(Control::Stop);
        }
        Ok(Control::Continue)
    });
    let logs = result.map_err(|e| failed(t, curves, e))?;
    let secs = start.elapsed().as_secs_f64();
    Ok(Done {
        logs,
        secs,
        all_reduce_s,
        all_reduce_total_s,
        warnings: watch.warnings,
    })
}

/// The error of a failed run, with the checkpoint that is kept and the files skipped.
pub fn failed(t: &Trainer, curves: &Curves, e: TrainError) -> String {
    let ckpt = dinonat_train::trainer::checkpoint_path(&t.config.out_dir);
    let kept = if ckpt.is_file() {
        format!("the last good checkpoint is kept: {}", ckpt.display())
    } else {
        "no checkpoint was written yet".to_string()
    };
    let _ = curves.write_pngs(&t.config.out_dir);
    let skipped = t
        .skipped_summary()
        .map(|s| format!("; {s}"))
        .unwrap_or_default();
    format!("{}; {kept}{skipped}", flagged(e))
}
