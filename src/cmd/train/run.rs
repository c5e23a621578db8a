//! One training run of `dinonat train`: the trainer made or resumed, the k-NN controls before the
//! first step, the steps with their progress, warnings and scheduled k-NN, then the final table,
//! the curves and the run's JSON object.

use super::curves::Curves;
use super::flags::TrainArgs;
use super::report::{baselines, describe, knn_table};
use super::steps::train_steps;
use crate::args::train_flagged as flagged;
use dinonat_eval::knn_splits::EvalSplit;
use dinonat_train::data::ErrorPolicy;
use dinonat_train::dist::Collective;
use dinonat_train::run_policy::{check_training_seed, eval_image_size};
use dinonat_train::trainer::config::TrainConfig;
use dinonat_train::trainer::{Control, Trainer};
use std::path::Path;
use std::rc::Rc;

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
    let split = if a.eval.no_eval {
        None
    } else {
        let size = a
            .eval
            .eval_size
            .unwrap_or_else(|| eval_image_size(&t.config.arch));
        let builtin = t.config.data.is_none();
        EvalSplit::open(
            &a.eval.eval_train,
            &a.eval.eval_val,
            builtin,
            &a.eval.eval_builtin,
            size,
        )
        .map_err(flagged)?
    };
    if a.eval.eval_every > 0 && split.is_none() {
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
            let mut c = super::config::config(a)?;
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
    if t.config.data.is_none() && !a.eval.no_eval && a.eval.eval_train.is_none() {
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

/// The run directory never is, nor lies inside, a file or folder the run reads.
fn check_run_paths(c: &TrainConfig, a: &TrainArgs) -> Result<(), String> {
    let inputs = [
        ("--data", &c.data),
        ("--eval-train", &a.eval.eval_train),
        ("--eval-val", &a.eval.eval_val),
    ];
    let mut inputs: Vec<_> = (inputs.iter())
        .filter_map(|(f, p)| p.as_deref().map(|p| (*f, p)))
        .collect();
    inputs.extend(a.resume.as_deref().map(|p| ("--resume", p)));
    dinonat_train::guard::check_outputs(&[("--out", &c.out_dir)], &inputs)
}
