//! The flags of `dinonat train`, grouped: the network ([`NetworkFlags`]), data and crops
//! ([`DataFlags`]), the recipe ([`ScheduleFlags`], [`AugmentFlags`], [`LossFlags`]), the k-NN
//! evaluation ([`EvalFlags`]); the run's own flags are here. config.rs makes the `TrainConfig`.

use super::data_flags::DataFlags;
use super::eval_flags::EvalFlags;
use super::network_flags::NetworkFlags;
use super::recipe::Recipe;
use super::recipe_flags::{AugmentFlags, LossFlags, ScheduleFlags};
use crate::args::{DeviceArg, PrecisionArgs};
use clap::Args;
use std::path::PathBuf;

/// The flags of `dinonat train`, in groups (each group's flags keep their place in --help).
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// A named recipe: its flags are set unless given on the command line (which wins); with
    /// --data DIR holding train/ and val/ the k-NN runs on DIR's splits (docs/training.md,
    /// "Recipes").
    #[arg(long, value_enum, conflicts_with = "resume")]
    pub recipe: Option<Recipe>,
    #[command(flatten)]
    pub network: NetworkFlags,
    #[command(flatten)]
    pub data: DataFlags,
    /// Total optimiser steps (the schedules span them); default: --epochs worth, else 500 on the
    /// built-in set and 600 with --data.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Epochs over the data set (sets --steps when --steps is not given).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Training seed (weights, data order, augmentation; on the built-in set also its images). Seeds
    /// 1-4 generate the built-in k-NN splits and are refused there.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train this many runs, with seeds --seed, --seed + 10, --seed + 20, ... (each in OUT/seed-S),
    /// and end with the mean +- std of their k-NN (docs/training.md, "Held-out protocol").
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub seeds: usize,
    #[command(flatten)]
    pub schedule: ScheduleFlags,
    #[command(flatten)]
    pub augment: AugmentFlags,
    #[command(flatten)]
    pub loss: LossFlags,
    /// Checkpoint every N steps (and at the end); 0: only at the end.
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: usize,
    /// Progress line every N steps.
    #[arg(long, default_value_t = 10)]
    pub log_every: usize,
    /// Run directory: log.csv, config.json, checkpoint.safetensors.
    #[arg(long, default_value = "runs/dino")]
    pub out: PathBuf,
    /// Continue from this checkpoint (its config is used; --out may move the run).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Stop (with a checkpoint) before this step, e.g. to split a run into sessions.
    #[arg(long)]
    pub stop_at: Option<usize>,
    /// Stop (with a checkpoint) after this much wall time; the schedules still span --steps.
    #[arg(long, value_name = "MINUTES")]
    pub max_minutes: Option<f64>,
    #[command(flatten)]
    pub eval: EvalFlags,
    /// Progress to stderr; the last line on stdout is one JSON object with the results.
    #[arg(long)]
    pub json: bool,
    /// Stop at the first unreadable training file (default: skip it with a warning, and count it
    /// in the progress lines and the summary).
    #[arg(long)]
    pub strict: bool,
    /// Only load this checkpoint completely (config, both networks, centre, optimiser state),
    /// print its step and exit: non-zero when anything is missing or mis-shaped.
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    pub check_checkpoint: Option<PathBuf>,
    /// With --resume the checkpoint's precision is used.
    #[command(flatten)]
    pub precision: PrecisionArgs,
    /// Where the run computes: cpu, or cuda (student, teacher, head, centre and AdamW state on the
    /// GPU; docs/training.md, "On a GPU"). Checkpoints are the same file on both, so --resume may
    /// move a run between them.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// Start a new run from another run's training checkpoint: its student, teacher (backbone and
    /// head) and centre, with a fresh optimiser and every schedule from step 0 (domain-adaptive
    /// DINO, e.g. an RGB-trained run continued on thermal frames; docs/training.md).
    #[arg(long, value_name = "CHECKPOINT", conflicts_with = "resume")]
    pub init: Option<PathBuf>,
    /// Activation checkpointing: each NAT level of the student keeps only its input for the
    /// backward and runs again there (less memory, about one more student forward per step, the
    /// same numbers bit for bit).
    #[arg(long)]
    pub checkpoint_levels: bool,
    /// Data parallel: all-reduce the gradients after the whole backward instead of overlapping it
    /// with the backward in buckets (the same numbers bit for bit; docs/distributed.md).
    #[arg(long)]
    pub no_overlap: bool,
    /// Data parallel: the size of a gradient bucket of the overlapped all-reduce, in MB (PyTorch
    /// DDP's default).
    #[arg(long, value_name = "MB", default_value_t = 25.0)]
    pub bucket_mb: f64,
}
