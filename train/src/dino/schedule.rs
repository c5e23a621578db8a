//! DINO's schedules, evaluated per iteration (docs/optim.md).
//!
//! - lr: linear warm-up from 0 to `lr`, then cosine to `min_lr` (DINO: lr = 0.0005 * batch / 256,
//!   min 1e-6, warm-up 10 of 100+ epochs).
//! - weight decay: cosine 0.04 -> 0.4, no warm-up.
//! - teacher momentum: cosine 0.996 -> 1.
//! - teacher temperature τt: linear warm-up 0.04 -> 0.07, then constant (the reference steps it per
//!   epoch; here per iteration, which is the same curve sampled finer).
//! - the last layer's gradient is dropped during the first `freeze_last_layer_steps`.
//!
//! The reference counts warm-ups in epochs of ImageNet; [`Schedules::for_run`] scales them to the
//! length of the run (fractions of the total steps).

use serde::{Deserialize, Serialize};

/// DINO's `cosine_scheduler` at `step`: `warmup` values linearly spaced from `start_warmup` to `base`
/// (both ends included, as numpy's linspace), then `final + (base - final) (1 + cos(π i / n)) / 2`
/// for i = step - warmup over the n = total - warmup remaining steps. Steps past the end give the
/// last value.
pub fn cosine_schedule(
    base: f64,
    final_value: f64,
    total: usize,
    warmup: usize,
    start_warmup: f64,
    step: usize,
) -> f64 {
    let warmup = warmup.min(total);
    if step < warmup {
        if warmup == 1 {
            return start_warmup;
        }
        return start_warmup + (base - start_warmup) * step as f64 / (warmup - 1) as f64;
    }
    let n = total - warmup;
    if n == 0 {
        return base;
    }
    let i = (step - warmup).min(n - 1);
    final_value
        + 0.5 * (base - final_value) * (1.0 + (std::f64::consts::PI * i as f64 / n as f64).cos())
}

/// Every per-iteration hyper-parameter of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedules {
    pub total_steps: usize,
    /// Peak lr (already scaled by batch / 256).
    pub lr: f64,
    pub min_lr: f64,
    pub lr_warmup_steps: usize,
    pub weight_decay: f64,
    pub weight_decay_end: f64,
    pub momentum_teacher: f64,
    pub momentum_teacher_end: f64,
    pub warmup_teacher_temp: f64,
    pub teacher_temp: f64,
    pub teacher_temp_warmup_steps: usize,
    pub freeze_last_layer_steps: usize,
}

/// Warm-up lengths as fractions of the run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct WarmupFractions {
    pub lr: f64,
    pub teacher_temp: f64,
    pub freeze_last_layer: f64,
}

impl Default for WarmupFractions {
    /// lr 10 %, τt 30 %, last layer frozen 5 % of the steps.
    fn default() -> Self {
        WarmupFractions {
            lr: 0.1,
            teacher_temp: 0.3,
            freeze_last_layer: 0.05,
        }
    }
}

impl Schedules {
    /// DINO's values with warm-ups scaled to a run of `total_steps` and peak lr `lr`.
    pub fn for_run(total_steps: usize, lr: f64, warmups: WarmupFractions) -> Schedules {
        let frac = |f: f64| (f * total_steps as f64).round() as usize;
        Schedules {
            total_steps,
            lr,
            min_lr: 1e-6,
            lr_warmup_steps: frac(warmups.lr),
            weight_decay: 0.04,
            weight_decay_end: 0.4,
            momentum_teacher: 0.996,
            momentum_teacher_end: 1.0,
            warmup_teacher_temp: 0.04,
            teacher_temp: 0.07,
            teacher_temp_warmup_steps: frac(warmups.teacher_temp),
            freeze_last_layer_steps: frac(warmups.freeze_last_layer),
        }
    }

    pub fn lr(&self, step: usize) -> f64 {
        cosine_schedule(
            self.lr,
            self.min_lr,
            self.total_steps,
            self.lr_warmup_steps,
            0.0,
            step,
        )
    }

    pub fn weight_decay(&self, step: usize) -> f64 {
        cosine_schedule(
            self.weight_decay,
            self.weight_decay_end,
            self.total_steps,
            0,
            0.0,
            step,
        )
    }

    pub fn teacher_momentum(&self, step: usize) -> f64 {
        cosine_schedule(
            self.momentum_teacher,
            self.momentum_teacher_end,
            self.total_steps,
            0,
            0.0,
            step,
        )
    }

    /// Linear from `warmup_teacher_temp` to `teacher_temp` over the warm-up (linspace), then constant.
    pub fn teacher_temp(&self, step: usize) -> f64 {
        let w = self.teacher_temp_warmup_steps;
        if step >= w {
            self.teacher_temp
        } else if w == 1 {
            self.warmup_teacher_temp
        } else {
            self.warmup_teacher_temp
                + (self.teacher_temp - self.warmup_teacher_temp) * step as f64 / (w - 1) as f64
        }
    }

    pub fn last_layer_frozen(&self, step: usize) -> bool {
        step < self.freeze_last_layer_steps
    }

    /// One line for the log: what the warm-ups are in this run.
    pub fn describe(&self) -> String {
        format!(
            "{} steps; lr {:.3e} (warm-up {} steps, cosine to {:.0e}); wd {} -> {} cosine; teacher momentum {} -> {} cosine; \
             τt {} -> {} over {} steps; last layer frozen for {} steps",
            self.total_steps,
            self.lr,
            self.lr_warmup_steps,
            self.min_lr,
            self.weight_decay,
            self.weight_decay_end,
            self.momentum_teacher,
            self.momentum_teacher_end,
            self.warmup_teacher_temp,
            self.teacher_temp,
            self.teacher_temp_warmup_steps,
            self.freeze_last_layer_steps
        )
    }
}
