//! What a run is: every choice that changes the numbers, saved in each checkpoint as JSON so that
//! `--resume` rebuilds the same run.

use super::error::{Result, TrainError};
use crate::augment::MultiCropConfig;
use crate::data::{open_dataset, Dataset, Procedural};
use crate::dino::schedule::{Schedules, WarmupFractions};
use crate::dino::Centering;
use dinonat_model::{DinoHeadConfig, NatConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Backbone config name (`nat_pico`, `nat_nano`, ...; model::NatConfig::from_name).
    pub arch: String,
    /// K, the DINO head's output dimension.
    pub out_dim: usize,
    pub head_hidden_dim: usize,
    pub head_bottleneck_dim: usize,
    /// BatchNorm in the head's hidden layers (DINO's `use_bn_in_head`). Configs saved before
    /// this field: off.
    #[serde(default)]
    pub head_bn: bool,
    /// Image folder / IDX / CIFAR directory; None: the built-in procedural set.
    pub data: Option<PathBuf>,
    /// Size and image side of the procedural set.
    pub procedural_len: usize,
    pub procedural_size: usize,
    pub global_size: usize,
    pub local_size: usize,
    pub n_local: usize,
    pub batch_size: usize,
    /// Total optimiser steps of the run (the schedules span exactly these).
    pub steps: usize,
    pub seed: u64,
    /// lr before the batch scaling: peak lr = base_lr * batch / 256.
    pub base_lr: f64,
    pub warmups: WarmupFractions,
    /// τt after its warm-up from 0.04 (the paper: -> 0.07; the reference code's default and ours:
    /// 0.04 fixed, which kept the teacher off the uniform collapse in our short runs,
    /// docs/training.md). Configs saved before this field existed used 0.07.
    #[serde(default = "default_teacher_temp")]
    pub teacher_temp: f64,
    pub drop_path: f64,
    /// Teacher EMA momentum at step 0; cosine to 1 over the run (DINO: 0.996 for runs of 100+ ImageNet
    /// epochs; short runs need a faster teacher, docs/training.md). Configs saved before this field: 0.996.
    #[serde(default = "default_momentum_teacher")]
    pub momentum_teacher: f64,
    /// Teacher EMA momentum at the end of the run (DINO: 1; with the start value: constant).
    /// Configs saved before this field: 1.
    #[serde(default = "default_momentum_teacher_end")]
    pub momentum_teacher_end: f64,
    /// The lr at the end of the cosine as a fraction of the peak (1: constant after the warm-up);
    /// None: DINO's absolute 1e-6. Configs saved before this field: None.
    #[serde(default)]
    pub lr_end: Option<f64>,
    /// Hue jitter strength of the colour jitter (DINO: 0.1; at most 0.5, a full turn of the wheel).
    #[serde(default = "default_hue")]
    pub hue: f64,
    /// Grayscale probability of every view (DINO: 0.2).
    #[serde(default = "default_grayscale")]
    pub grayscale: f64,
    /// Inversion probability of every view (not in DINO: 0; docs/augmentation.md, "Inversion").
    /// Configs saved before this field: 0.
    #[serde(default)]
    pub invert: f64,
    /// Weight of the KoLeo term on the student's backbone features of each global view (DINOv2: 0.1;
    /// 0: off, DINO's loss alone; docs/dino-loss.md). Configs saved before this field: 0.
    #[serde(default)]
    pub koleo: f64,
    /// Weight of the DINO cross-entropy in the loss (1: DINO; 0: off, for the ablation of the main job,
    /// docs/training.md). Configs saved before this field: 1.
    #[serde(default = "default_dino_weight")]
    pub dino_weight: f64,
    /// How the teacher's targets are centred: DINO's running centre or DINOv2's Sinkhorn-Knopp.
    /// Configs saved before this field: the centre.
    #[serde(default)]
    pub centering: Centering,
    /// Per-tensor gradient clipping threshold (0: off).
    pub clip_grad: f64,
    pub checkpoint_every: usize,
    pub log_every: usize,
    pub out_dir: PathBuf,
    /// The training checkpoint this run starts from (`--init`; domain-adaptive DINO, e.g. an
    /// RGB-trained run continued on thermal frames): student, teacher (backbone and head) and
    /// centre are loaded at step 0; the optimiser and every schedule start afresh. None: weights
    /// from the seed. Configs saved before this field: None.
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// The precision of the training step's GEMMs, forward and backward (parameters, optimiser
    /// state and checkpoints stay f32). Configs saved before this field: f32.
    #[serde(default)]
    pub precision: Precision,
}

/// The GEMM precision of a run: the step runs inside [`dinonat_engine::gemm_precision_scope`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// FP32 FMA (the reference).
    #[default]
    F32,
    /// bf16 inputs, f32 accumulation.
    Bf16,
    /// TF32 tensor cores (CUDA only).
    Tf32,
}

impl Precision {
    /// The engine's GEMM precision.
    pub fn gemm(self) -> dinonat_engine::GemmPrecision {
        match self {
            Precision::F32 => dinonat_engine::GemmPrecision::Fp32Simt,
            Precision::Bf16 => dinonat_engine::GemmPrecision::Bf16,
            Precision::Tf32 => dinonat_engine::GemmPrecision::Tf32,
        }
    }

    /// `f32`, `bf16` or `tf32`, as the run's JSON and config write it.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Tf32 => "tf32",
        }
    }

    /// Runs `work` with the GEMMs of this thread at this precision.
    pub fn scope<R>(self, work: impl FnOnce() -> R) -> R {
        let _scope = dinonat_engine::gemm_precision_scope(self.gemm());
        work()
    }
}

fn default_teacher_temp() -> f64 {
    0.07
}

fn default_momentum_teacher() -> f64 {
    0.996
}

fn default_momentum_teacher_end() -> f64 {
    1.0
}

fn default_dino_weight() -> f64 {
    1.0
}

fn default_hue() -> f64 {
    0.1
}

fn default_grayscale() -> f64 {
    0.2
}

impl Default for TrainConfig {
    /// nat_pico on 2 x 32 + 6 x 16 crops (the CLI's preset uses 8 locals) of the procedural set, K = 1024: trains in minutes on 2 cores.
    fn default() -> Self {
        TrainConfig {
            arch: "nat_pico".into(),
            out_dim: 1024,
            head_hidden_dim: 512,
            head_bottleneck_dim: 128,
            head_bn: false,
            data: None,
            procedural_len: 4096,
            procedural_size: 64,
            global_size: 32,
            local_size: 16,
            n_local: 6,
            batch_size: 32,
            steps: 300,
            seed: 0,
            base_lr: 0.0005,
            warmups: WarmupFractions::default(),
            teacher_temp: 0.04,
            drop_path: 0.1,
            momentum_teacher: default_momentum_teacher(),
            momentum_teacher_end: default_momentum_teacher_end(),
            lr_end: None,
            hue: default_hue(),
            grayscale: default_grayscale(),
            invert: 0.0,
            koleo: 0.0,
            dino_weight: default_dino_weight(),
            centering: Centering::Center,
            clip_grad: 3.0,
            checkpoint_every: 100,
            log_every: 10,
            out_dir: PathBuf::from("runs/dino"),
            init: None,
            precision: Precision::F32,
        }
    }
}

impl TrainConfig {
    /// Peak lr = base_lr * batch / 256 (DINO's linear scaling rule).
    pub fn peak_lr(&self) -> f64 {
        self.base_lr * self.batch_size as f64 / 256.0
    }

    /// Every per-iteration schedule of the run (warm-ups scaled to its length).
    pub fn schedules(&self) -> Schedules {
        let s = Schedules::for_run(self.steps, self.peak_lr(), self.warmups);
        Schedules {
            min_lr: self.lr_end.map_or(s.min_lr, |f| f * s.lr),
            teacher_temp: self.teacher_temp,
            momentum_teacher: self.momentum_teacher,
            momentum_teacher_end: self.momentum_teacher_end,
            ..s
        }
    }

    /// Student views per image.
    pub fn ncrops(&self) -> usize {
        2 + self.n_local
    }

    pub fn multi_crop(&self) -> MultiCropConfig {
        let mut m = MultiCropConfig::scaled(self.global_size, self.local_size, self.n_local);
        m.jitter.hue = self.hue as f32;
        m.p_grayscale = self.grayscale;
        m.p_invert = self.invert;
        m
    }

    /// The student's backbone config (drop path as configured).
    pub fn backbone(&self) -> Result<NatConfig> {
        let mut c = NatConfig::from_name(&self.arch).map_err(|e| TrainError::param("arch", e))?;
        c.drop_path = self.drop_path;
        c.num_classes = 0;
        Ok(c)
    }

    pub fn head(&self, in_dim: usize) -> DinoHeadConfig {
        DinoHeadConfig {
            hidden_dim: self.head_hidden_dim,
            bottleneck_dim: self.head_bottleneck_dim,
            use_bn: self.head_bn,
            ..DinoHeadConfig::new(in_dim, self.out_dim)
        }
    }

    /// Every value checked before anything is built, group by group in a fixed order; the message
    /// names the parameter (the field).
    pub fn validate(&self) -> Result<()> {
        self.validate_sizes()?;
        self.validate_input_memory()?;
        self.validate_rates()?;
        self.validate_loss_weights()?;
        self.validate_schedule_ends()?;
        self.validate_colour()?;
        self.validate_clip_and_warmups()?;
        self.backbone()?
            .validate()
            .map_err(|e| TrainError::param("arch", e))?;
        Ok(())
    }

    /// Counts and sizes: positive, and under the caps that keep memory bounded.
    fn validate_sizes(&self) -> Result<()> {
        let positive = [
            ("out_dim", self.out_dim),
            ("head_hidden_dim", self.head_hidden_dim),
            ("head_bottleneck_dim", self.head_bottleneck_dim),
            ("batch_size", self.batch_size),
            ("steps", self.steps),
            ("global_size", self.global_size),
            ("local_size", self.local_size),
            ("procedural_len", self.procedural_len),
            ("procedural_size", self.procedural_size),
        ];
        for (flag, v) in positive {
            if v == 0 {
                return Err(TrainError::param(flag, "must be positive"));
            }
        }
        use crate::guard::{at_most, MAX_BUILTIN_IMAGES, MAX_IMAGE_SIDE};
        let caps = [
            ("global_size", self.global_size, MAX_IMAGE_SIDE, "pixels"),
            ("local_size", self.local_size, MAX_IMAGE_SIDE, "pixels"),
            (
                "procedural_size",
                self.procedural_size,
                MAX_IMAGE_SIDE,
                "pixels",
            ),
            (
                "procedural_len",
                self.procedural_len,
                MAX_BUILTIN_IMAGES,
                "images",
            ),
            ("n_local", self.n_local, 64, "local crops"),
            ("batch_size", self.batch_size, 1 << 16, "images"),
            ("out_dim", self.out_dim, 1 << 20, "prototypes"),
            ("head_hidden_dim", self.head_hidden_dim, 1 << 16, "units"),
            (
                "head_bottleneck_dim",
                self.head_bottleneck_dim,
                1 << 16,
                "units",
            ),
            ("steps", self.steps, 1 << 32, "steps"),
        ];
        for (flag, v, max, what) in caps {
            at_most(flag, v, max, what).map_err(TrainError)?;
        }
        Ok(())
    }

    /// The crops of one step fit the input cap.
    fn validate_input_memory(&self) -> Result<()> {
        // The crops of one step, as f32: batch x (2 global + n local views) x 3 x side^2.
        let views = 2 * self.global_size * self.global_size
            + self.n_local * self.local_size * self.local_size;
        let floats = self.batch_size as u64 * views as u64 * 3;
        if floats > 1 << 28 {
            return Err(TrainError(format!(
                "batch_size {} with crops 2 x {} + {} x {} px needs {} MB of input per step, over the cap of 1024 MB: use a smaller batch or crops",
                self.batch_size,
                self.global_size,
                self.n_local,
                self.local_size,
                (floats * 4) >> 20
            )));
        }
        Ok(())
    }

    /// The learning rate, the teacher's temperature and drop path.
    fn validate_rates(&self) -> Result<()> {
        if !(self.base_lr.is_finite() && self.base_lr > 0.0) {
            return Err(TrainError::param(
                "base_lr",
                format!("{} must be positive", self.base_lr),
            ));
        }
        if !(self.teacher_temp.is_finite() && self.teacher_temp > 0.0) {
            return Err(TrainError::param(
                "teacher_temp",
                format!("{} must be positive", self.teacher_temp),
            ));
        }
        if !(0.0..1.0).contains(&self.drop_path) {
            return Err(TrainError::param(
                "drop_path",
                format!("{} must be in [0, 1)", self.drop_path),
            ));
        }
        Ok(())
    }

    /// The weights of the DINO and KoLeo terms.
    fn validate_loss_weights(&self) -> Result<()> {
        if !(self.koleo.is_finite() && self.koleo >= 0.0) {
            return Err(TrainError::param(
                "koleo",
                format!("{} must be a non-negative weight", self.koleo),
            ));
        }
        if !(self.dino_weight.is_finite() && self.dino_weight >= 0.0) {
            return Err(TrainError::param(
                "dino_weight",
                format!("{} must be a non-negative weight", self.dino_weight),
            ));
        }
        if self.dino_weight == 0.0 && self.koleo == 0.0 {
            return Err(TrainError::param(
                "dino_weight",
                "0 with koleo 0 leaves no loss to train".to_string(),
            ));
        }
        if self.koleo > 0.0 && self.batch_size < 2 {
            return Err(TrainError::param(
                "koleo",
                format!(
                    "needs batch_size >= 2 (nearest neighbours within a batch), got {}",
                    self.batch_size
                ),
            ));
        }
        Ok(())
    }

    /// The teacher momentum's start and end, the learning rate's end.
    fn validate_schedule_ends(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.momentum_teacher) {
            return Err(TrainError::param(
                "momentum_teacher",
                format!("{} must be in [0, 1)", self.momentum_teacher),
            ));
        }
        if !(self.momentum_teacher..=1.0).contains(&self.momentum_teacher_end) {
            return Err(TrainError::param(
                "momentum_teacher_end",
                format!(
                    "{} must be in [momentum_teacher, 1] = [{}, 1]",
                    self.momentum_teacher_end, self.momentum_teacher
                ),
            ));
        }
        if let Some(f) = self.lr_end {
            if !(0.0..=1.0).contains(&f) {
                return Err(TrainError::param(
                    "lr_end",
                    format!("{f} must be a fraction of the peak lr in [0, 1]"),
                ));
            }
        }
        Ok(())
    }

    /// The colour augmentation's strengths and probabilities.
    fn validate_colour(&self) -> Result<()> {
        if !(0.0..=0.5).contains(&self.hue) {
            return Err(TrainError::param(
                "hue",
                format!("{} must be in [0, 0.5]", self.hue),
            ));
        }
        if !(0.0..=1.0).contains(&self.grayscale) {
            return Err(TrainError::param(
                "grayscale",
                format!("{} must be a probability in [0, 1]", self.grayscale),
            ));
        }
        if !(0.0..=1.0).contains(&self.invert) {
            return Err(TrainError::param(
                "invert",
                format!("{} must be a probability in [0, 1]", self.invert),
            ));
        }
        Ok(())
    }

    /// Gradient clipping and the schedules' warm-up fractions.
    fn validate_clip_and_warmups(&self) -> Result<()> {
        if self.clip_grad.is_nan() || self.clip_grad < 0.0 {
            return Err(TrainError::param("clip_grad", "must be >= 0"));
        }
        let w = self.warmups;
        for (flag, f) in [
            ("lr_warmup", w.lr),
            ("temp_warmup", w.teacher_temp),
            ("freeze_last_layer", w.freeze_last_layer),
        ] {
            if !(0.0..=1.0).contains(&f) {
                return Err(TrainError::param(
                    flag,
                    format!("{f} must be a fraction in [0, 1]"),
                ));
            }
        }
        Ok(())
    }

    /// The training images.
    pub fn dataset(&self) -> Result<Arc<dyn Dataset>> {
        match &self.data {
            Some(path) => {
                let d = open_dataset(path, true).map_err(|e| TrainError::param("data", e))?;
                if d.is_empty() {
                    return Err(TrainError::param(
                        "data",
                        format!("{} holds no images", path.display()),
                    ));
                }
                Ok(Arc::from(d))
            }
            None => Ok(Arc::new(Procedural::new(
                self.seed,
                self.procedural_len,
                self.procedural_size,
            ))),
        }
    }
}
