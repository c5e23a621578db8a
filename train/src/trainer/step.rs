//! One DINO iteration (Algorithm 1 of ../shared/docs/dino.md), in the order it runs:
//!
//!   schedules -> data -> forward + loss -> backward -> all-reduce -> optimiser -> EMA + centre -> log
//!
//! [`Trainer::iteration`] names each step; each step is one method below it.

use super::error::{Result, TrainError};
use super::log::StepLog;
use super::network::batch_tensors;
use super::parallel;
use super::state::{StepTimings, Trainer};
use crate::batch::MultiCropBatch;
use crate::dino::koleo::koleo_loss;
use crate::dino::{ema_update, LossOutput};
use dinonat_engine::optim::clip_grad_norms;
use dinonat_engine::rng::mix64;
use dinonat_engine::{no_grad, profile, Device, Gradients, Rng, Tensor};
use std::time::Instant;

/// The schedules' values at one step.
#[derive(Clone, Copy, Debug)]
struct Scheduled {
    lr: f64,
    weight_decay: f64,
    teacher_momentum: f64,
    teacher_temp: f64,
    last_layer_frozen: bool,
}

/// The step's forward pass: the loss to differentiate, the teacher's output (the centre update
/// reads it) and the loss's diagnostics averaged over the ranks: [loss, teacher entropy, KL].
struct Forward {
    out: LossOutput,
    /// The student's features and head output, held until the step ends so that the graph is
    /// freed after the optimiser and the EMA, not between the backward and the optimiser: freed
    /// there, the step ran 4-9 % slower (`bench train-step`, interleaved A/B against 410337b's
    /// parent on an Emerald Rapids Xeon; twice the memset time in the profile; the
    /// allocator's reuse of the freed blocks is the likely cause, not established).
    graph: [Tensor; 2],
    teacher_out: Tensor,
    means: [f64; 3],
}

/// Times one phase after another: each lap is the time since the previous one.
struct PhaseClock {
    clock: Instant,
    device: Device,
}

impl PhaseClock {
    fn start(device: Device) -> PhaseClock {
        PhaseClock {
            clock: Instant::now(),
            device,
        }
    }

    fn lap(&mut self) -> Result<f64> {
        // GPU kernels run asynchronously: wait for them so each phase is charged its own time
        if self.device != Device::Cpu {
            dinonat_engine::synchronize(self.device)?;
        }
        let t = self.clock.elapsed().as_secs_f64();
        self.clock = Instant::now();
        Ok(t)
    }
}

impl Trainer {
    /// One DINO iteration on `batch` (Algorithm 1), its GEMMs (forward and backward) at the run's
    /// precision (`TrainConfig::precision`).
    pub fn train_step(&mut self, batch: &MultiCropBatch) -> Result<StepLog> {
        let precision = self.config.precision;
        precision.scope(|| self.iteration(batch))
    }

    fn iteration(&mut self, batch: &MultiCropBatch) -> Result<StepLog> {
        let start = Instant::now();
        let s = self.scheduled(self.step);
        let (crops, global) = batch_tensors(batch, self.device)?;
        profile::phase("forward");
        let mut clock = PhaseClock::start(self.device);
        let Forward {
            out,
            graph,
            teacher_out,
            means,
        } = self.forward_loss(batch, &crops, global, s.teacher_temp)?;
        let forward = clock.lap()?;
        // the backward and the gradients' mean over the ranks, overlapped (trainer/overlap.rs)
        let (grads, reduce) = self.backward_averaged(out.loss, &mut || clock.lap())?;
        profile::phase("optimiser");
        self.optimizer_step(grads, &s)?;
        let optimizer = clock.lap()?;
        profile::phase("EMA + centre");
        self.update_teacher(&teacher_out, s.teacher_momentum)?;
        self.last_timings = StepTimings {
            forward,
            backward: reduce.backward,
            optimizer,
            ema: clock.lap()?,
            all_reduce: reduce.exposed,
            all_reduce_total: reduce.total,
        };
        drop(graph);
        self.record_device_memory()?;
        profile::phase("other");
        let log = self.step_log(batch, &s, means, start.elapsed().as_secs_f64());
        self.step += 1;
        Ok(log)
    }

    fn scheduled(&self, step: usize) -> Scheduled {
        let s = &self.schedules;
        Scheduled {
            lr: s.lr(step),
            weight_decay: s.weight_decay(step),
            teacher_momentum: s.teacher_momentum(step),
            teacher_temp: s.teacher_temp(step),
            last_layer_frozen: s.last_layer_frozen(step),
        }
    }

    /// Drop path's generator: a function of (seed, step), so a resumed run draws the same masks,
    /// and each rank of a data-parallel run draws its rows' numbers of the whole batch.
    fn drop_path_rng(&self, batch: &MultiCropBatch) -> Rng {
        let rng = Rng::new(mix64(self.config.seed ^ mix64(self.step as u64 + 1)));
        let comm = self.comm.as_ref();
        let world = comm.size();
        if world > 1 {
            rng.with_rows(parallel::row_window(comm, batch.indices.len() * world))
        } else {
            rng
        }
    }

    /// Teacher on the global views, student on all views, the DINO loss (weighted, plus KoLeo when
    /// asked); an error before any update when the loss is not finite.
    fn forward_loss(
        &mut self,
        batch: &MultiCropBatch,
        crops: &[Tensor],
        global: Tensor,
        teacher_temp: f64,
    ) -> Result<Forward> {
        let mut rng = self.drop_path_rng(batch);
        let comm = self.comm.as_ref();
        let world = comm.size();
        let teacher_out = {
            let _guard = no_grad();
            self.teacher.forward_crops(&[global], false, &mut rng)?
        };
        let features = self.student.features_crops(crops, true, &mut rng)?;
        let student_out = self.student.head.forward(&features)?;
        let mut out = if world > 1 && self.loss.centering == crate::dino::Centering::SinkhornKnopp {
            let pt =
                parallel::global_sinkhorn_targets(comm, &self.loss, &teacher_out, teacher_temp)?;
            self.loss.forward_with_targets(&student_out, &pt)?
        } else {
            self.loss
                .forward(&student_out, &teacher_out, teacher_temp)?
        };
        let [loss, teacher_entropy, kl] = if world > 1 {
            parallel::mean_over_ranks(comm, [out.loss.item()?, out.teacher_entropy, out.kl])?
        } else {
            [out.loss.item()?, out.teacher_entropy, out.kl]
        };
        if self.config.dino_weight != 1.0 {
            // the ablation's weight; at 1 the graph is DINO's, bit for bit
            out.loss = out.loss.mul_scalar(self.config.dino_weight)?;
        }
        if self.config.koleo > 0.0 {
            // KoLeo per global view (rows v*B .. (v+1)*B of the view-major features), averaged.
            let b = batch.indices.len();
            let mut spread = koleo_loss(&features.narrow(0, 0, b)?)?;
            spread = spread.add(&koleo_loss(&features.narrow(0, b, b)?)?)?;
            out.loss = out.loss.add(&spread.mul_scalar(0.5 * self.config.koleo)?)?;
        }
        if !(loss.is_finite() && teacher_entropy.is_finite() && kl.is_finite()) {
            return Err(TrainError(format!(
                "step {}: the loss is {loss} (teacher entropy {teacher_entropy}, KL {kl}): not finite; \
                 stopping before the update (lower base_lr, or keep clip_grad on)",
                self.step + 1
            )));
        }
        Ok(Forward {
            out,
            graph: [features, student_out],
            teacher_out,
            means: [loss, teacher_entropy, kl],
        })
    }

    /// Clipping per tensor, dropping the last layer's gradient while it is frozen, AdamW.
    fn optimizer_step(&mut self, mut grads: Gradients, s: &Scheduled) -> Result<()> {
        if self.config.clip_grad > 0.0 {
            clip_grad_norms(&mut grads, &self.params, self.config.clip_grad)?;
        }
        if s.last_layer_frozen {
            for p in &self.last_layer {
                grads.remove(p);
            }
        }
        self.optimizer.step(&grads, s.lr, s.weight_decay)?;
        Ok(())
    }

    /// The teacher follows the student (EMA of backbone and head) and the centre follows the
    /// teacher's outputs (over all ranks' rows in a data-parallel run).
    fn update_teacher(&mut self, teacher_out: &Tensor, momentum: f64) -> Result<()> {
        ema_update(
            &self.teacher.backbone.params,
            &self.student.backbone.params,
            momentum,
        )?;
        ema_update(
            &self.teacher.head.params,
            &self.student.head.params,
            momentum,
        )?;
        if self.comm.size() > 1 {
            parallel::update_global_center(self.comm.as_ref(), &mut self.loss, teacher_out)?;
        } else {
            self.loss.update_center(teacher_out)?;
        }
        Ok(())
    }

    /// On a GPU: the most device memory in use after a step so far.
    fn record_device_memory(&mut self) -> Result<()> {
        if let Some((used, total)) = dinonat_engine::device_memory(self.device)? {
            let peak = self.peak_device_memory.map_or(0, |p| p.0).max(used);
            self.peak_device_memory = Some((peak, total));
        }
        Ok(())
    }

    fn step_log(
        &self,
        batch: &MultiCropBatch,
        s: &Scheduled,
        [loss, teacher_entropy, kl]: [f64; 3],
        seconds: f64,
    ) -> StepLog {
        StepLog {
            step: self.step,
            epoch: self.step / self.steps_per_epoch,
            loss,
            teacher_entropy,
            kl,
            lr: s.lr,
            weight_decay: s.weight_decay,
            teacher_momentum: s.teacher_momentum,
            teacher_temp: s.teacher_temp,
            last_layer_frozen: s.last_layer_frozen,
            img_per_s: (batch.indices.len() * self.comm.size()) as f64 / seconds.max(1e-9),
            seconds,
        }
    }
}
