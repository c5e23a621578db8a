//! One training run of `dinonat train`: the trainer made or resumed, the k-NN controls before the
//! first step, the steps with their progress, warnings and scheduled k-NN, then the final table,
//! the curves and the run's JSON object.

use super::curves::Curves;
use super::flags::TrainArgs;
use super::report::{knn_table, Baselines};
use crate::args::train_flagged as flagged;
use dinonat_eval::knn_splits::EvalSplit;
use dinonat_train::data::ErrorPolicy;
use dinonat_train::dist::Collective;
use dinonat_train::run_policy::{check_training_seed, eval_image_size, knn_due};
use dinonat_train::run_policy::{CollapseWatch, Deadline};
use dinonat_train::trainer::config::TrainConfig;
use dinonat_train::trainer::log::StepLog;
use dinonat_train::trainer::{Control, TrainError, Trainer};
use serde_json::json;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

/// One training run with `seed` in `out` (or the resumed run); returns its JSON object.
pub fn train_run(
    a: &TrainArgs,
    seed: u64,
    out: &Path,
    comm: &Rc<dyn Collective>,
) -> Result<serde_json::Value, String> {
    let mut t = open_trainer(a, seed, out, comm)?;
    let rank = comm.rank();
    if rank != 0 {
        // a follower trains its shard; rank 0 evaluates, prints and writes the run directory
        t.run_with(a.stop_at, |_, _| Ok(Control::Continue))
            .map_err(|e| format!("rank {rank}: {}", flagged(e)))?;
        return Ok(serde_json::Value::Null);
    }
    describe(&t, comm.as_ref(), a.json);
    // k-NN split: --eval-train/--eval-val, else the built-in split when training on built-in data.
    let split = if a.no_eval {
        None
    } else {
        let size = a
            .eval_size
            .unwrap_or_else(|| eval_image_size(&t.config.arch));
        let builtin = t.config.data.is_none();
        EvalSplit::open(&a.eval_train, &a.eval_val, builtin, &a.eval_builtin, size)
            .map_err(flagged)?
    };
    if a.eval_every > 0 && split.is_none() {
        return Err(
            "--eval-every needs --eval-train DIR --eval-val DIR when training on --data".into(),
        );
    }
    let mut curves = Curves::default();
    let log_csv = t.config.out_dir.join("log.csv");
    for l in dinonat_train::trainer::log::read_log(&log_csv, t.step) {
        curves.record(&l); // the steps before a resume
    }
    let baselines = match &split {
        Some(s) => Some(baselines(&t, s, a.json, &mut curves)?),
        None => None,
    };
    let done = train_steps(a, &mut t, split.as_ref(), &mut curves)?;
    done.print(&t, comm.size(), a.json);
    let mut out = done.json(&t, comm.size());
    if let Some(s) = t.skipped_summary() {
        eprintln!("warning: {s}");
    }
    if let (Some(s), Some(base)) = (&split, baselines) {
        let trained = s.knn_backbone(&t.teacher.backbone)?;
        curves.knn.push((t.step as f64, trained.reported()));
        knn_table(&t, s, &trained, &base, a.json, &mut out);
    }
    match curves.write_pngs(&t.config.out_dir) {
        Ok(files) => say!(a.json, "curves: {}", files.join(", ")),
        Err(e) => eprintln!("warning: curves not drawn: {e}"),
    }
    Ok(out)
}

/// The trainer of the run: resumed from --resume, else a new run of the flags' config with `seed`
/// in `out`; its paths checked and its collective set.
fn open_trainer(
    a: &TrainArgs,
    seed: u64,
    out: &Path,
    comm: &Rc<dyn Collective>,
) -> Result<Trainer, String> {
    let mut t = match &a.resume {
        Some(path) => {
            let out = (out != Path::new("runs/dino")).then(|| out.to_path_buf());
            Trainer::resume_on(path, out, a.device.device()).map_err(|e| {
                format!(
                    "--resume: {}",
                    dinonat_report::args::device_error(&flagged(e))
                )
            })?
        }
        None => {
            let mut c = super::flags::config(a)?;
            c.seed = seed;
            c.out_dir = out.to_path_buf();
            Trainer::new_on(c, a.device.device())
                .map_err(|e| dinonat_report::args::device_error(&flagged(e)))?
        }
    };
    t.set_checkpoint_levels(a.checkpoint_levels);
    if !(a.bucket_mb.is_finite() && a.bucket_mb > 0.0) {
        return Err(format!(
            "--bucket-mb {}: needs a positive size",
            a.bucket_mb
        ));
    }
    t.set_overlap((!a.no_overlap).then_some((a.bucket_mb * 1e6) as usize));
    if t.config.data.is_none() && !a.no_eval && a.eval_train.is_none() {
        check_training_seed(t.config.seed).map_err(flagged)?;
    }
    check_run_paths(&t.config, a)?;
    if a.strict {
        t.set_error_policy(ErrorPolicy::Stop)
            .map_err(|e| e.to_string())?;
    }
    t.set_collective(comm.clone()).map_err(flagged)?;
    Ok(t)
}

/// The run's header: the network, data, crops and schedules.
fn describe(t: &Trainer, comm: &dyn Collective, js: bool) {
    let world = comm.size();
    if world > 1 {
        say!(
            js,
            "data parallel: {world} ranks ({}), global batch {} = {world} x {} per rank; the lr follows the global batch (peak = --lr x {} / 256); KoLeo per rank",
            comm.name(),
            t.config.batch_size,
            t.config.batch_size / world,
            t.config.batch_size
        );
    }
    let c = &t.config;
    say!(
        js,
        "dino: {} + head {}-{}-{} -> K {} | {} params | data {} | crops 2 x {} + {} x {} | batch {} | {} steps/epoch",
        c.arch,
        c.head_hidden_dim,
        c.head_hidden_dim,
        c.head_bottleneck_dim,
        c.out_dim,
        t.student.backbone.params.num_trainable_elements()
            + t.student.head.params.num_trainable_elements(),
        c.data
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| format!("procedural ({} x {} px)", c.procedural_len, c.procedural_size)),
        c.global_size,
        c.n_local,
        c.local_size,
        c.batch_size,
        t.steps_per_epoch,
    );
    say!(js, "schedules: {}", t.schedules.describe());
    say!(
        js,
        "drop path {} (student), clip {} per tensor, threads {}, out {}{}",
        c.drop_path,
        c.clip_grad,
        rayon::current_num_threads(),
        c.out_dir.display(),
        if t.step > 0 {
            format!(", resuming at step {}", t.step)
        } else {
            String::new()
        }
    );
}

/// The k-NN of raw pixels and of the run's random-init network, printed; at step 0 the latter is
/// the first point of the k-NN curve.
fn baselines(
    t: &Trainer,
    s: &EvalSplit,
    js: bool,
    curves: &mut Curves,
) -> Result<Baselines, String> {
    let pixels = s.knn_pixels()?;
    let random = s.knn_random_init(&t.config).map_err(flagged)?;
    say!(
        js,
        "k-NN (k 20, T 0.07) on {}: raw pixels {:.2}%, random init {:.2}%",
        s.describe(),
        pixels.reported(),
        random.reported()
    );
    if t.step == 0 {
        curves.knn.push((0.0, random.reported()));
    }
    Ok(Baselines { pixels, random })
}

/// What the steps of a run gave.
struct Done {
    logs: Vec<StepLog>,
    secs: f64,
    all_reduce_s: f64,
    /// All of the all-reduce's time, overlapped or not.
    all_reduce_total_s: f64,
    warnings: usize,
}

/// Runs the steps with progress lines, collapse warnings, the scheduled k-NN and the deadline.
fn train_steps(
    a: &TrainArgs,
    t: &mut Trainer,
    split: Option<&EvalSplit>,
    curves: &mut Curves,
) -> Result<Done, String> {
    let js = a.json;
    let (total, every) = (t.config.steps, t.config.log_every.max(1));
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
        if (l.step + 1) % every == 0 || l.step + 1 == total || l.step == 0 {
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
        if let Some(s) = split.filter(|_| knn_due(a.eval_every, l.step, total)) {
            let top1 = s
                .knn_backbone(&tr.teacher.backbone)
                .map_err(TrainError)?
                .reported();
            bar.suspend(|| say!(js, "step {}: k-NN top-1 {top1:.2}% (teacher)", l.step + 1));
            curves.knn.push(((l.step + 1) as f64, top1));
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
fn failed(t: &Trainer, curves: &Curves, e: TrainError) -> String {
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

impl Done {
    /// Prints the speed of the run and returns its JSON object (without the k-NN).
    fn json(&self, t: &Trainer, world: usize) -> serde_json::Value {
        let (logs, secs) = (&self.logs, self.secs);
        let ckpt = dinonat_train::trainer::checkpoint_path(&t.config.out_dir);
        let images: usize = logs.len() * t.config.batch_size;
        let per_step = self.all_reduce_s / logs.len().max(1) as f64;
        json!({
            "command": "train",
            "arch": t.config.arch,
            "steps": t.step,
            "total_steps": t.config.steps,
            "train_seconds": secs,
            "img_per_s": images as f64 / secs.max(1e-9),
            "final_loss": logs.last().map(|l| l.loss),
            "final_teacher_entropy": logs.last().map(|l| l.teacher_entropy),
            "checkpoint": ckpt.display().to_string(),
            "seed": t.config.seed,
            "dino_weight": t.config.dino_weight,
            "koleo": t.config.koleo,
            "precision": t.config.precision.name(),
            "device": format!("{:?}", t.device()).to_lowercase(),
            "peak_device_mib": t.peak_device_memory.map(|(used, _)| used >> 20),
            "init": t.config.init.as_ref().map(|p| p.display().to_string()),
            "collapse_warnings": self.warnings,
            "unreadable_files": t.bad_samples().errors().len(),
            "world_size": world,
            "all_reduce_seconds_per_step": per_step,
            "all_reduce_total_seconds_per_step": self.all_reduce_total_s / logs.len().max(1) as f64,
            "all_reduce_overlap_bucket_mb": t.overlap().map(|b| b as f64 * 1e-6),
        })
    }

    /// The speed line(s) after the steps.
    fn print(&self, t: &Trainer, world: usize, js: bool) {
        let (n, secs) = (self.logs.len(), self.secs);
        let ckpt = dinonat_train::trainer::checkpoint_path(&t.config.out_dir);
        say!(
            js,
            "done: {} steps in {:.1} s ({:.3} steps/s, {:.1} img/s); checkpoint {}",
            n,
            secs,
            n as f64 / secs.max(1e-9),
            (n * t.config.batch_size) as f64 / secs.max(1e-9),
            ckpt.display()
        );
        if let Some((used, total)) = t.peak_device_memory {
            say!(
                js,
                "peak device memory {} MiB of {} MiB (in use after a step: every process's allocations and the allocator's cache)",
                used >> 20,
                total >> 20
            );
        }
        if world > 1 {
            let params = t.optimizer.groups.iter().flat_map(|g| &g.params);
            let numel: usize = params.map(|(_, p)| p.numel()).sum();
            say!(
                js,
                "data parallel: gradient all-reduce {:.1} ms per step on average, {:.1} ms of it after the backward ({} ranks, {:.1} MB of f32 gradients, {})",
                1e3 * self.all_reduce_total_s / n.max(1) as f64,
                1e3 * self.all_reduce_s / n.max(1) as f64,
                world,
                4e-6 * numel as f64,
                match t.overlap() {
                    Some(b) => format!("overlapped with the backward in buckets of {} MB", b as f64 * 1e-6),
                    None => "after the backward".into(),
                }
            );
        }
    }
}

/// The run directory never is, nor lies inside, a file or folder the run reads.
fn check_run_paths(c: &TrainConfig, a: &TrainArgs) -> Result<(), String> {
    let inputs = [
        ("--data", &c.data),
        ("--eval-train", &a.eval_train),
        ("--eval-val", &a.eval_val),
    ];
    let mut inputs: Vec<_> = (inputs.iter())
        .filter_map(|(f, p)| p.as_deref().map(|p| (*f, p)))
        .collect();
    inputs.extend(a.resume.as_deref().map(|p| ("--resume", p)));
    dinonat_train::guard::check_outputs(&[("--out", &c.out_dir)], &inputs)
}
