//! `dinonat train`: DINO self-supervised training (docs/training.md). The trainer runs the steps;
//! `dinonat_train::run_policy` decides the defaults, the collapse warnings, the k-NN schedule and
//! the deadline; `dinonat_eval::knn_splits` measures the teacher; this file prints.

/// Prints progress to stdout, or to stderr with --json (stdout then ends with the JSON object).
macro_rules! say {
    ($json:expr, $($t:tt)*) => {
        if $json { eprintln!($($t)*) } else { println!($($t)*) }
    };
}

mod config;
mod curves;
mod data_flags;
mod done;
mod eval_flags;
mod flags;
mod network_flags;
mod recipe;
mod recipe_flags;
mod report;
mod run;
mod steps;

use crate::args::train_flagged as flagged;
use dinonat_train::dist::{self, Collective};
use dinonat_train::run_policy::{run_seeds, Deadline};
use dinonat_train::trainer::Trainer;
pub use flags::TrainArgs;
pub use recipe::expand as expand_recipe;
use std::rc::Rc;

pub fn train(a: TrainArgs) -> Result<(), String> {
    if let Some(m) = a.max_minutes {
        Deadline::new(m).map_err(flagged)?;
    }
    if let Some(path) = &a.check_checkpoint {
        let t = Trainer::resume(path, None)
            .map_err(|e| format!("--check-checkpoint: {}", flagged(e)))?;
        println!(
            "checkpoint {}: step {} of {}, {} ok",
            path.display(),
            t.step,
            t.config.steps,
            t.config.arch
        );
        return Ok(());
    }
    if a.seeds == 0 {
        return Err("--seeds: must be at least 1".into());
    }
    // a world of one without a launcher; under mpirun / srun the MPI world (docs/distributed.md)
    let comm: Rc<dyn Collective> = Rc::from(dist::from_env().map_err(|e| e.to_string())?);
    let leader = comm.rank() == 0;
    if a.seeds == 1 {
        let out = run::train_run(&a, a.seed, &a.out, &comm)?;
        if a.json && leader {
            println!("{out}");
        }
        return Ok(());
    }
    if a.resume.is_some() {
        return Err("--seeds N > 1 starts N new runs: it cannot be combined with --resume".into());
    }
    let seeds = run_seeds(a.seed, a.seeds).ok_or("--seed: too large for --seeds")?;
    let mut runs = Vec::new();
    for &seed in &seeds {
        let dir = a.out.join(format!("seed-{seed}"));
        if leader {
            say!(a.json, "\n== run with --seed {seed} ({})", dir.display());
        }
        runs.push(run::train_run(&a, seed, &dir, &comm)?);
    }
    if !leader {
        return Ok(());
    }
    let summary = dinonat_eval::knn_splits::seed_summary(&seeds, &runs);
    say!(a.json, "\n{}", summary.table);
    if a.json {
        println!("{}", summary.json);
    }
    Ok(())
}
