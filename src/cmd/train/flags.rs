//! The flags of `dinonat train` and the run's `TrainConfig` they make; the defaults that depend
//! on the data are the train crate's (`dinonat_train::run_policy`).

use crate::args::{train_flagged, DeviceArg, PrecisionArgs};
use clap::{Args, ValueEnum};
use dinonat_train::dino::schedule::WarmupFractions;
use dinonat_train::dino::Centering;
use dinonat_train::run_policy::DataDependent;
use dinonat_train::trainer::checkpoint;
use dinonat_train::trainer::config::TrainConfig;
use std::path::PathBuf;

/// `--centering`: dinonat_train::dino::Centering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CenteringArg {
    Center,
    SinkhornKnopp,
}

/// Multi-crop presets: global x 2 + local x n.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Crops {
    /// 2 x 224 + 8 x 96 (DINO's default).
    Dino,
    /// 2 x 64 + 8 x 32.
    Small,
    /// 2 x 32 + 8 x 16 (the built-in set's defaults use 4 local crops).
    Tiny,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Backbone config (nat_pico, nat_nano, nat_mini, ...; dinat_ prefix, _full suffix)
    /// [default: nat_pico, or the --init checkpoint's].
    #[arg(long)]
    pub arch: Option<String>,
    /// K, the DINO head's output dimension [default: 1024, or the --init checkpoint's].
    #[arg(long)]
    pub out_dim: Option<usize>,
    /// Hidden width of the DINO head's MLP (DINO: 2048) [default: 512, or the --init checkpoint's].
    #[arg(long)]
    pub head_hidden: Option<usize>,
    /// Bottleneck width of the DINO head (DINO: 256) [default: 128, or the --init checkpoint's].
    #[arg(long)]
    pub head_bottleneck: Option<usize>,
    /// BatchNorm in the DINO head's hidden layers (DINO's use_bn_in_head; with --init, the
    /// checkpoint's).
    #[arg(long)]
    pub head_bn: bool,
    /// Image folder, IDX or CIFAR-10 directory; omitted: the built-in procedural data set.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Images in the procedural set.
    #[arg(long, default_value_t = 4096)]
    pub procedural_len: usize,
    /// Side of the procedural images in pixels.
    #[arg(long, default_value_t = 64)]
    pub procedural_size: usize,
    /// Crop preset; --global-size / --local-size / --local-crops override its parts.
    #[arg(long, value_enum, default_value = "tiny")]
    pub crops: Crops,
    #[arg(long)]
    pub global_size: Option<usize>,
    #[arg(long)]
    pub local_size: Option<usize>,
    /// Number of local crops.
    #[arg(long)]
    pub local_crops: Option<usize>,
    /// Images per step (the peak lr scales with it: --lr). Default: 64 on the built-in set, 32 with
    /// --data (RunDefaults).
    #[arg(long)]
    pub batch_size: Option<usize>,
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
    /// Base lr; the peak lr is lr * batch / 256 (DINO: 0.0005; the default 0.004 gives a peak of
    /// 1e-3 at batch 64 and DINO's batch-256 peak, 5e-4, at batch 32).
    #[arg(long, default_value_t = 0.004)]
    pub lr: f64,
    /// Fraction of the steps of linear lr warm-up.
    #[arg(long, default_value_t = 0.1)]
    pub lr_warmup: f64,
    /// Fraction of the steps of teacher-temperature warm-up (0.04 -> 0.07).
    #[arg(long, default_value_t = 0.3)]
    pub temp_warmup: f64,
    /// Fraction of the steps during which the last layer's gradient is dropped.
    #[arg(long, default_value_t = 0.05)]
    pub freeze_last_layer: f64,
    /// Teacher temperature after the warm-up from 0.04 (the paper: 0.07; 0.07 drifted towards a
    /// uniform teacher in short runs, docs/training.md).
    #[arg(long, default_value_t = 0.04)]
    pub teacher_temp: f64,
    /// Drop-path rate of the student (the teacher has none).
    #[arg(long, default_value_t = 0.1)]
    pub drop_path: f64,
    /// Teacher EMA momentum at step 0, cosine to --momentum-teacher-end over the run. Default: DINO's
    /// 0.996 with --data, 0.99 on the built-in set (RunDefaults).
    #[arg(long)]
    pub momentum_teacher: Option<f64>,
    /// Teacher EMA momentum at the last step (equal to --momentum-teacher: constant). Default: DINO's
    /// 1 with --data, 0.99 on the built-in set.
    #[arg(long)]
    pub momentum_teacher_end: Option<f64>,
    /// The lr at the end of the cosine, as a fraction of the peak lr (1: constant after the
    /// warm-up). Default: DINO's 1e-6 with --data, 1 on the built-in set.
    #[arg(long, value_name = "FRACTION")]
    pub lr_end: Option<f64>,
    /// Hue jitter strength (DINO: 0.1; at most 0.5).
    #[arg(long, default_value_t = 0.1)]
    pub hue: f64,
    /// Grayscale probability per view (DINO: 0.2).
    #[arg(long, default_value_t = 0.2)]
    pub grayscale: f64,
    /// Inversion probability per view, x -> 1 - x (not in DINO; 0: off). Asks for features blind to
    /// brightness levels and contrast signs, which differ between visible and thermal images
    /// (docs/augmentation.md).
    #[arg(long, default_value_t = 0.0)]
    pub invert: f64,
    /// Weight of the KoLeo spreading term on the student's features of each global view, added to
    /// the DINO loss (DINOv2: 0.1; 0: off). Default: 0 (DINO's loss alone) with --data, 1.0 on the
    /// built-in set.
    #[arg(long)]
    pub koleo: Option<f64>,
    /// Weight of the DINO cross-entropy (1: DINO; 0: off, KoLeo alone: the ablation of
    /// docs/training.md).
    #[arg(long, default_value_t = 1.0, value_name = "W")]
    pub dino_weight: f64,
    /// How the teacher's targets are centred: DINO's running centre, or DINOv2's Sinkhorn-Knopp
    /// (every prototype gets the same mass over the batch; no centre).
    #[arg(long, value_enum, default_value = "center")]
    pub centering: CenteringArg,
    /// Per-tensor gradient-norm clip (0: off).
    #[arg(long, default_value_t = 3.0)]
    pub clip_grad: f64,
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

/// The network of the run: the flags', each defaulting to the --init checkpoint's when there is
/// one; a flag that contradicts the checkpoint is an error naming both.
struct Network {
    arch: String,
    out_dim: usize,
    head_hidden: usize,
    head_bottleneck: usize,
    head_bn: bool,
}

fn network(a: &TrainArgs) -> Result<Network, String> {
    let Some(path) = &a.init else {
        return Ok(Network {
            arch: a.arch.clone().unwrap_or_else(|| "nat_pico".into()),
            out_dim: a.out_dim.unwrap_or(1024),
            head_hidden: a.head_hidden.unwrap_or(512),
            head_bottleneck: a.head_bottleneck.unwrap_or(128),
            head_bn: a.head_bn,
        });
    };
    let theirs = checkpoint::load(path)
        .map_err(|e| format!("--init: {e}"))?
        .config;
    fn pick<T: PartialEq + std::fmt::Display>(
        flag: &str,
        given: Option<T>,
        theirs: T,
        path: &std::path::Path,
    ) -> Result<T, String> {
        match given {
            Some(g) if g != theirs => Err(format!(
                "{flag} {g}: the --init checkpoint {} has {theirs}",
                path.display()
            )),
            _ => Ok(theirs),
        }
    }
    if a.head_bn && !theirs.head_bn {
        return Err(format!(
            "--head-bn: the --init checkpoint {} has no batch norm in its head",
            path.display()
        ));
    }
    Ok(Network {
        arch: pick("--arch", a.arch.clone(), theirs.arch, path)?,
        out_dim: pick("--out-dim", a.out_dim, theirs.out_dim, path)?,
        head_hidden: pick("--head-hidden", a.head_hidden, theirs.head_hidden_dim, path)?,
        head_bottleneck: pick(
            "--head-bottleneck",
            a.head_bottleneck,
            theirs.head_bottleneck_dim,
            path,
        )?,
        head_bn: theirs.head_bn,
    })
}

/// The run's config: the flags, the crop preset, and `run_policy`'s defaults for the data.
pub fn config(a: &TrainArgs) -> Result<TrainConfig, String> {
    let (g, l, n) = match a.crops {
        Crops::Dino => (224, 96, 8),
        Crops::Small => (64, 32, 8),
        Crops::Tiny => (32, 16, 8),
    };
    let net = network(a)?;
    let mut c = TrainConfig {
        arch: net.arch,
        out_dim: net.out_dim,
        head_hidden_dim: net.head_hidden,
        head_bottleneck_dim: net.head_bottleneck,
        head_bn: net.head_bn,
        data: a.data.clone(),
        procedural_len: a.procedural_len,
        procedural_size: a.procedural_size,
        global_size: a.global_size.unwrap_or(g),
        local_size: a.local_size.unwrap_or(l),
        seed: a.seed,
        base_lr: a.lr,
        warmups: WarmupFractions {
            lr: a.lr_warmup,
            teacher_temp: a.temp_warmup,
            freeze_last_layer: a.freeze_last_layer,
        },
        teacher_temp: a.teacher_temp,
        drop_path: a.drop_path,
        dino_weight: a.dino_weight,
        centering: match a.centering {
            CenteringArg::Center => Centering::Center,
            CenteringArg::SinkhornKnopp => Centering::SinkhornKnopp,
        },
        hue: a.hue,
        grayscale: a.grayscale,
        invert: a.invert,
        clip_grad: a.clip_grad,
        checkpoint_every: a.checkpoint_every,
        log_every: a.log_every.max(1),
        out_dir: a.out.clone(),
        init: a.init.clone(),
        precision: a.precision.resolve(Some(a.device))?,
        ..TrainConfig::default()
    };
    let given = DataDependent {
        batch_size: a.batch_size,
        steps: a.steps,
        epochs: a.epochs,
        n_local: a.local_crops,
        lr_end: a.lr_end,
        momentum_teacher: a.momentum_teacher,
        momentum_teacher_end: a.momentum_teacher_end,
        koleo: a.koleo,
    };
    given.apply(&mut c, n).map_err(train_flagged)?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: TrainArgs,
    }

    fn parse(args: &[&str]) -> TrainConfig {
        config(&Cli::parse_from(std::iter::once("train").chain(args.iter().copied())).a).unwrap()
    }

    type Knobs = (usize, usize, usize, f64, Option<f64>, f64, f64);

    fn knobs(c: &TrainConfig) -> Knobs {
        let (b, s, n, k, l) = (c.batch_size, c.steps, c.n_local, c.koleo, c.lr_end);
        (b, s, n, k, l, c.momentum_teacher, c.momentum_teacher_end)
    }

    /// The built-in set gets the values of runs of minutes; --data gets DINO's; flags win over both.
    #[test]
    fn defaults_depend_on_the_data_and_flags_win() {
        assert_eq!(knobs(&parse(&[])), (64, 500, 4, 1.0, Some(1.0), 0.99, 0.99));
        assert_eq!(
            knobs(&parse(&["--data", "/nonexistent"])),
            (32, 600, 8, 0.0, None, 0.996, 1.0)
        );
        let flags = [
            "--batch-size",
            "16",
            "--steps",
            "7",
            "--local-crops",
            "2",
            "--koleo",
            "0.5",
            "--lr-end",
            "0.1",
            "--momentum-teacher",
            "0.98",
            "--momentum-teacher-end",
            "0.985",
        ];
        let want = (16, 7, 2, 0.5, Some(0.1), 0.98, 0.985);
        assert_eq!(knobs(&parse(&flags)), want);
        let with_data: Vec<&str> = ["--data", "/nonexistent"]
            .iter()
            .chain(&flags)
            .copied()
            .collect();
        assert_eq!(knobs(&parse(&with_data)), want);
    }

    /// --precision parses (default f32), reaches TrainConfig::precision, and a wrong value is
    /// an error naming the flag.
    #[test]
    fn precision_flag_reaches_the_config() {
        use dinonat_train::trainer::config::Precision;
        assert_eq!(parse(&[]).precision, Precision::F32);
        assert_eq!(parse(&["--precision", "f32"]).precision, Precision::F32);
        assert_eq!(parse(&["--precision", "bf16"]).precision, Precision::Bf16);
        let wrong = Cli::try_parse_from(["train", "--precision", "fp8"]);
        let e = wrong.err().expect("fp8 is no precision").to_string();
        assert!(e.contains("--precision"), "{e}");
        let cpu = Cli::parse_from(["train", "--precision", "tf32"]);
        let e = config(&cpu.a).unwrap_err();
        assert!(
            e.contains("--precision tf32") && e.contains("--device cuda"),
            "{e}"
        );
    }
}
