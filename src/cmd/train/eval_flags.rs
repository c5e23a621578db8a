//! `dinonat train`'s k-NN evaluation flags.

use clap::Args;
use std::path::PathBuf;

/// The k-NN evaluation of the teacher before, during and after training.
#[derive(Args, Debug)]
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
