//! One training run of `dinonat train`: the trainer made or resumed, the k-NN controls before the
//! first step, the steps with their progress, warnings and scheduled k-NN, then the final table,
//! the curves and the run's JSON object.

use super::curves::Curves;
use super::eval_flags::EvalFlags;
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
    let (eval, eval_file) = a.eval.of_run(a.resume.as_deref())?;
    let mut t = open_trainer(a, &eval, seed, out, comm)?;
    let rank = comm.rank();
    if rank != 0 {
        // a follower trains its shard; rank 0 evaluates, prints and writes the run directory
        t.run_with(a.stop_at, |_, _| Ok(Control::Continue))
            .map_err(|e| format!("rank {rank}: {}", flagged(e)))?;
        return Ok(serde_json::Value::Null);
    }
    describe(&t, comm.as_ref(), a.json);
    if let Some(f) = eval_file {
        say!(a.json, "k-NN flags of the run from {}", f.display());
    }
    eval.save(&t.config.out_dir)?;
    // k-NN split: --eval-train/--eval-val, else the built-in split when training on built-in data.
    let split = if eval.no_eval {
        None
    } else {
        let size = eval
            .eval_size
            .unwrap_or_else(|| eval_image_size(&t.config.arch));
        let builtin = t.config.data.is_none();
        EvalSplit::open(
            &eval.eval_train,
            &eval.eval_val,
            builtin,
            &eval.eval_builtin,
            size,
        )
        .map_err(flagged)?
    };
    if eval.eval_every > 0 && split.is_none() {
        return Err(
            "--eval-every needs --eval-train DIR --eval-val DIR when training on --data".into(),
        );
    }
    let mut curves = Curves::resumed(&t.config.out_dir, t.step)?; // the steps before a resume
    let baselines = match &split {
        Some(s) => Some(baselines(&t, s, a.json, &mut curves)?),
        None => None,
    };
    let done = train_steps(a, &mut t, (split.as_ref(), eval.eval_every), &mut curves)?;
    done.print(&t, comm.size(), a.json);
    let mut out = done.json(&t, comm.size());
    if let Some(s) = t.skipped_summary() {
        eprintln!("warning: {s}");
    }
    if let (Some(s), Some(base)) = (&split, baselines) {
        let trained = s.knn_backbone(&t.teacher.backbone)?;
        curves.knn_point(&t.config.out_dir, t.step, trained.reported())?;
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
    eval: &EvalFlags,
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
    if t.config.data.is_none() && !eval.no_eval && eval.eval_train.is_none() {
        check_training_seed(t.config.seed).map_err(flagged)?;
    }
    check_run_paths(&t.config, eval, a.resume.as_deref())?;
    if a.strict {
        t.set_error_policy(ErrorPolicy::Stop)
            .map_err(|e| e.to_string())?;
    }
    t.set_collective(comm.clone()).map_err(flagged)?;
    Ok(t)
}

/// The run directory never is, nor lies inside, a file or folder the run reads.
fn check_run_paths(c: &TrainConfig, eval: &EvalFlags, resume: Option<&Path>) -> Result<(), String> {
    let inputs = [
        ("--data", &c.data),
        ("--eval-train", &eval.eval_train),
        ("--eval-val", &eval.eval_val),
    ];
    let mut inputs: Vec<_> = (inputs.iter())
        .filter_map(|(f, p)| p.as_deref().map(|p| (*f, p)))
        .collect();
    inputs.extend(resume.map(|p| ("--resume", p)));
    dinonat_train::guard::check_outputs(&[("--out", &c.out_dir)], &inputs)
}
