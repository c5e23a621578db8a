//! `dinonat train`'s recipe: schedules, augmentation strengths and the loss.

use clap::{Args, ValueEnum};

/// `--centering`: dinonat_train::dino::Centering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CenteringArg {
    Center,
    SinkhornKnopp,
}

/// The schedules: lr, teacher temperature and momentum, the frozen last layer, drop path.
#[derive(Args, Debug)]
pub struct ScheduleFlags {
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
}

/// The colour augmentation's strengths.
#[derive(Args, Debug)]
pub struct AugmentFlags {
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
}

/// The loss: DINO's weight, KoLeo's, the centring, and gradient clipping.
#[derive(Args, Debug)]
pub struct LossFlags {
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
}
