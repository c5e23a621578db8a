//! `dinonat train`'s k-NN evaluation flags.

use clap::Args;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file in a run directory that keeps the run's k-NN flags, so that `--resume` continues its k-NN
/// schedule (and its final table) without repeating them.
pub const EVAL_FILE: &str = "eval.json";

/// The k-NN evaluation of the teacher before, during and after training.
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalFlags {
    /// k-NN of the teacher every N steps during training (0: only before and after).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub eval_every: usize,
    /// k-NN memory bank (class sub-folders); default with built-in data: the built-in train split.
    #[arg(long, value_name = "DIR", requires = "eval_val")]
    pub eval_train: Option<PathBuf>,
    /// k-NN queries (class sub-folders); default with built-in data: the built-in val split.
    #[arg(long, value_name = "DIR", requires = "eval_train")]
    pub eval_val: Option<PathBuf>,
    /// Images of the built-in k-NN split: train (seed 1) and val (seed 2), as `dinonat knn --builtin`.
    #[arg(long, value_names = ["TRAIN", "VAL"], num_args = 2, default_values_t = [2000usize, 500])]
    pub eval_builtin: Vec<usize>,
    /// k-NN evaluation transform size [default: 32 for *pico*, else 64] (as `dinonat knn`).
    #[arg(long, value_name = "N")]
    pub eval_size: Option<usize>,
    /// No k-NN evaluation at all (no table at the end).
    #[arg(long, conflicts_with_all = ["eval_every", "eval_train", "eval_val"])]
    pub no_eval: bool,
}

impl EvalFlags {
    /// Whether the command line gives any k-NN flag (a value other than its default).
    fn given(&self) -> bool {
        self.eval_every != 0
            || self.eval_train.is_some()
            || self.eval_val.is_some()
            || self.eval_builtin != [2000, 500]
            || self.eval_size.is_some()
            || self.no_eval
    }

    /// The run's k-NN flags: the command line's, or on a `--resume` that gives none, those the run was
    /// started with (`eval.json` beside the checkpoint; runs older than that file get none). Returns the
    /// file read, if any.
    pub fn of_run(&self, resume: Option<&Path>) -> Result<(EvalFlags, Option<PathBuf>), String> {
        let file = resume
            .filter(|_| !self.given())
            .map(|c| c.parent().unwrap_or(Path::new(".")).join(EVAL_FILE))
            .filter(|f| f.is_file());
        let Some(file) = file else {
            return Ok((self.clone(), None));
        };
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let flags = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a k-NN flag record: {e}", file.display()))?;
        Ok((flags, Some(file)))
    }

    /// Writes `dir/eval.json`.
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        let file = dir.join(EVAL_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(&file, text))
            .map_err(|e| format!("{}: {e}", file.display()))
    }
}
