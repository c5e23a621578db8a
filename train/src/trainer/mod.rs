//! The DINO training loop (`dinonat train`; docs/training.md). One step reads like Algorithm 1 of
//! the paper (../shared/docs/dino.md):
//!
//!   crops -> teacher(global views), student(all views) -> loss -> backward -> clip per tensor ->
//!   drop the last layer's gradient while frozen -> AdamW -> teacher EMA -> centre update -> log.
//!
//! [`config`] says what a run is, [`network`] builds student and teacher, [`checkpoint`] saves and
//! restores everything a resumed run needs, [`log`] writes the per-step diagnostics.

pub mod checkpoint;
pub mod config;
pub mod log;
pub mod network;
pub mod overlap;
pub mod parallel;

use crate::batch::{BatchBuilder, MultiCropBatch, Prefetcher};
use crate::data::{BadSamples, ErrorPolicy};
use crate::dino::koleo::koleo_loss;
use crate::dino::{ema_update, DinoLoss, Schedules};
use crate::dist::{Collective, Single};
use config::TrainConfig;
use dinonat_engine::optim::{all_params, clip_grad_norms, AdamW};
use dinonat_engine::rng::mix64;
use dinonat_engine::{no_grad, Device, Rng, Tensor};
use dinonat_engine::{profile, DType};
use log::{CsvLog, StepLog};
use network::{batch_tensors, param_groups, DinoNetwork};
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// A training error; the message names the flag, file or shape at fault.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainError(pub String);

impl TrainError {
    /// An error of the parameter `param` (a `TrainConfig` field; the command line maps it to its flag).
    pub fn param(param: &str, e: impl fmt::Display) -> TrainError {
        TrainError(format!("{param}: {e}"))
    }
}
impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for TrainError {}

macro_rules! from_error {
    ($($t:ty),*) => {$(
        impl From<$t> for TrainError {
            fn from(e: $t) -> Self {
                TrainError(e.to_string())
            }
        }
    )*};
}
from_error!(
    dinonat_engine::EngineError,
    dinonat_engine::io::IoError,
    dinonat_model::ModelError,
    crate::data::DataError
);

pub type Result<T> = std::result::Result<T, TrainError>;

/// The file a run's checkpoint lives in.
pub fn checkpoint_path(out_dir: &Path) -> PathBuf {
    out_dir.join("checkpoint.safetensors")
}

pub struct Trainer {
    pub config: TrainConfig,
    pub schedules: Schedules,
    pub student: DinoNetwork,
    pub teacher: DinoNetwork,
    pub loss: DinoLoss,
    pub optimizer: AdamW,
    /// The next step to run (0-based).
    pub step: usize,
    pub steps_per_epoch: usize,
    builder: Arc<BatchBuilder>,
    /// The student's trained tensors (clipping walks them).
    params: Vec<(String, Tensor)>,
    /// The head's last layer (its gradient is dropped while frozen).
    last_layer: Vec<Tensor>,
    /// Where the time of the last [`Trainer::train_step`] went.
    pub last_timings: StepTimings,
    /// The data-parallel world ([`Single`] unless [`Trainer::set_collective`]).
    comm: Rc<dyn Collective>,
    /// Where the networks, the optimiser state and the centre live ([`Trainer::new_on`]).
    device: Device,
    /// Data parallel: the all-reduce overlaps the backward in buckets of this many bytes
    /// (trainer/overlap.rs); None: after the backward.
    overlap_bucket_bytes: Option<usize>,
    /// The order the gradients become final in, learnt in the first overlapped step (rank 0's).
    overlap_order: std::cell::RefCell<Option<Vec<usize>>>,
    /// On a GPU: the most device memory in use after a step so far, and the device's total
    /// (bytes; [`dinonat_engine::device_memory`]). None on the CPU.
    pub peak_device_memory: Option<(usize, usize)>,
}

/// Seconds spent in each part of one step (`dinonat bench train-step` reports them).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepTimings {
    /// Teacher and student forward passes and the loss.
    pub forward: f64,
    pub backward: f64,
    /// Clipping, dropping the frozen last layer's gradient, AdamW.
    pub optimizer: f64,
    /// Teacher EMA and centre update.
    pub ema: f64,
    /// Data parallel: the time the step waits for the gradients' average over the ranks after
    /// the backward (0 in a world of one; all of the all-reduce when not overlapped).
    pub all_reduce: f64,
    /// Data parallel: all the time in the all-reduce, overlapped with the backward or not.
    pub all_reduce_total: f64,
}

/// What [`Trainer::run_with`]'s callback asks for after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Stop now, writing a checkpoint (e.g. `--max-minutes` reached).
    Stop,
}

impl Trainer {
    /// A fresh run on the CPU: student initialised from the seed, teacher an exact copy of it.
    pub fn new(config: TrainConfig) -> Result<Trainer> {
        Trainer::new_on(config, Device::Cpu)
    }

    /// A fresh run on `device`: the networks are initialised on the CPU from the seed (so every
    /// device starts from the same weights) and moved; the optimiser's state and the centre are
    /// created where the parameters are. Without a GPU, `Device::Cuda` is an error value.
    pub fn new_on(config: TrainConfig, device: Device) -> Result<Trainer> {
        let mut t = Trainer::new_on_cpu(config)?;
        if let Some(path) = t.config.init.clone() {
            t.load_init(&path)?;
        }
        t.move_to(device)?;
        Ok(t)
    }

    /// Loads student, teacher and centre from the training checkpoint `path` (`config.init`);
    /// the network it holds must be this run's (arch and head sizes), else an error naming both.
    fn load_init(&mut self, path: &Path) -> Result<()> {
        let ck = checkpoint::load(path)?;
        let network = |c: &TrainConfig| {
            format!(
                "{} with head {}-{}-{} -> K {}{}",
                c.arch,
                c.head_hidden_dim,
                c.head_hidden_dim,
                c.head_bottleneck_dim,
                c.out_dim,
                if c.head_bn { " (batch norm)" } else { "" }
            )
        };
        let (theirs, ours) = (network(&ck.config), network(&self.config));
        if theirs != ours {
            return Err(TrainError(format!(
                "init {}: its network is {theirs}, this run's is {ours}",
                path.display()
            )));
        }
        ck.restore_network(&self.student, "student", path)?;
        ck.restore_network(&self.teacher, "teacher", path)?;
        self.loss.center = ck.center(self.config.out_dim, path)?;
        Ok(())
    }

    fn new_on_cpu(config: TrainConfig) -> Result<Trainer> {
        config.validate()?;
        let backbone = config.backbone()?;
        let head = config.head(backbone.num_features());
        let student = DinoNetwork::new(&backbone, &head, DType::F32, config.seed)?;
        let mut teacher_backbone = backbone.clone();
        teacher_backbone.drop_path = 0.0;
        let teacher = DinoNetwork::new(&teacher_backbone, &head, DType::F32, config.seed)?;
        teacher.copy_from(&student)?;
        let dataset = config.dataset()?;
        let steps_per_epoch = dataset.len() / config.batch_size;
        if steps_per_epoch == 0 {
            return Err(TrainError::param(
                "batch_size",
                format!(
                    "{} is larger than the data set ({} images)",
                    config.batch_size,
                    dataset.len()
                ),
            ));
        }
        let builder = Arc::new(BatchBuilder::new(dataset, config.multi_crop(), config.seed));
        let optimizer = AdamW::new(param_groups(&student));
        let params = all_params(&optimizer.groups);
        let last_layer = last_layer(&student);
        Ok(Trainer {
            schedules: config.schedules(),
            loss: DinoLoss {
                centering: config.centering,
                ..DinoLoss::new(config.out_dim, config.ncrops())
            },
            config,
            student,
            teacher,
            optimizer,
            step: 0,
            steps_per_epoch,
            builder,
            params,
            last_layer,
            last_timings: StepTimings::default(),
            comm: Rc::new(Single),
            device: Device::Cpu,
            overlap_bucket_bytes: Some(overlap::DEFAULT_BUCKET_BYTES),
            overlap_order: Default::default(),
            peak_device_memory: None,
        })
    }

    /// Moves student, teacher, the optimiser's moments and the centre to `device` (the optimiser
    /// is rebuilt over the moved parameters and given the same state: moments, per-parameter
    /// steps). Called before training starts.
    fn move_to(&mut self, device: Device) -> Result<()> {
        if device == self.device {
            return Ok(());
        }
        let state = self.optimizer.state_tensors()?;
        self.student = self.student.to_device(device)?;
        self.teacher = self.teacher.to_device(device)?;
        let mut optimizer = AdamW::new(param_groups(&self.student));
        optimizer.load_state(|name| {
            state
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.clone())
        })?;
        self.optimizer = optimizer;
        self.params = all_params(&self.optimizer.groups);
        self.last_layer = last_layer(&self.student);
        self.device = device;
        Ok(())
    }

    /// Where the run computes.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Activation checkpointing per NAT level in the student (`Nat::checkpoint_levels`; the
    /// teacher keeps no graph anyway): less memory for about one more student forward per step,
    /// the same numbers bit for bit.
    pub fn set_checkpoint_levels(&mut self, on: bool) {
        self.student.backbone.checkpoint_levels = on;
    }

    /// Continues the run saved in `path` (its config, networks, centre, optimiser and step) on
    /// the CPU. `out_dir` replaces the run directory when given.
    pub fn resume(path: &Path, out_dir: Option<PathBuf>) -> Result<Trainer> {
        Trainer::resume_on(path, out_dir, Device::Cpu)
    }

    /// [`Trainer::resume`] on `device`: a checkpoint is the same file whichever device wrote
    /// it (tensors are saved from the host), so a run may move between CPU and GPU at a resume.
    pub fn resume_on(path: &Path, out_dir: Option<PathBuf>, device: Device) -> Result<Trainer> {
        let ck = checkpoint::load(path)?;
        let mut config = ck.config.clone();
        if let Some(d) = out_dir {
            config.out_dir = d;
        }
        let mut t = Trainer::new_on_cpu(config)?;
        ck.restore_network(&t.student, "student", path)?;
        ck.restore_network(&t.teacher, "teacher", path)?;
        t.loss.center = ck.center(t.config.out_dim, path)?;
        let last_layer_trained = !t.schedules.last_layer_frozen(ck.step.saturating_sub(1));
        ck.require_optimizer_state(&t.optimizer, last_layer_trained, path)?;
        t.optimizer
            .load_state(|name| ck.file.get(name).cloned())
            .map_err(|e| TrainError(format!("{}: {e}", path.display())))?;
        t.step = ck.step;
        t.move_to(device)?;
        Ok(t)
    }

    /// Trains data-parallel in `comm`'s world: `--batch-size` is the global batch, split evenly over
    /// the ranks (trainer/parallel.rs). Every rank must start from the same config and step.
    pub fn set_collective(&mut self, comm: Rc<dyn Collective>) -> Result<()> {
        let (n, b) = (comm.size(), self.config.batch_size);
        if !b.is_multiple_of(n) {
            return Err(TrainError::param(
                "batch_size",
                format!("{b} (the global batch) does not split evenly over {n} ranks"),
            ));
        }
        let json = serde_json::to_string(&TrainConfig {
            out_dir: PathBuf::new(),
            ..self.config.clone()
        })
        .map_err(|e| TrainError(format!("cannot serialise the config: {e}")))?;
        parallel::check_same_start(comm.as_ref(), &json, self.step)?;
        self.comm = comm;
        Ok(())
    }

    /// This process's rank and the world size (0 and 1 without a launcher).
    pub fn rank(&self) -> (usize, usize) {
        (self.comm.rank(), self.comm.size())
    }

    /// What an unreadable training file does: skipped with a warning (the default) or
    /// [`ErrorPolicy::Stop`] (`--strict`).
    pub fn set_error_policy(&mut self, policy: ErrorPolicy) -> Result<()> {
        Arc::get_mut(&mut self.builder)
            .ok_or_else(|| TrainError("the data policy is set before training starts".into()))?
            .policy = policy;
        Ok(())
    }

    /// The unreadable training files met so far, and how many reads they cost.
    pub fn bad_samples(&self) -> &BadSamples {
        &self.builder.bad
    }

    /// "N unreadable file(s) skipped (M reads), first: ..." or None when every file was read.
    pub fn skipped_summary(&self) -> Option<String> {
        let errors = self.bad_samples().errors();
        let first = errors.first()?;
        Some(format!(
            "{} unreadable file(s) skipped ({} reads); first: {first}",
            errors.len(),
            self.bad_samples().count()
        ))
    }

    /// One DINO iteration on `batch` (Algorithm 1), its GEMMs (forward and backward) at the run's
    /// precision (`TrainConfig::precision`).
    pub fn train_step(&mut self, batch: &MultiCropBatch) -> Result<StepLog> {
        let precision = self.config.precision;
        precision.scope(|| self.iteration(batch))
    }

    fn iteration(&mut self, batch: &MultiCropBatch) -> Result<StepLog> {
        let start = Instant::now();
        let step = self.step;
        let s = &self.schedules;
        let (lr, wd, momentum, teacher_temp) = (
            s.lr(step),
            s.weight_decay(step),
            s.teacher_momentum(step),
            s.teacher_temp(step),
        );
        let frozen = s.last_layer_frozen(step);
        let (crops, global) = batch_tensors(batch, self.device)?;
        profile::phase("forward");
        let mut clock = Instant::now();
        let device = self.device;
        let mut lap = || {
            // GPU kernels run asynchronously: wait for them so each phase is charged its own time
            if device != Device::Cpu {
                dinonat_engine::synchronize(device)?;
            }
            let t = clock.elapsed().as_secs_f64();
            clock = Instant::now();
            Ok::<f64, TrainError>(t)
        };
        // drop path's generator is a function of (seed, step): a resumed run draws the same masks,
        // and each rank of a data-parallel run draws its rows' numbers of the whole batch
        let mut rng = Rng::new(mix64(self.config.seed ^ mix64(step as u64 + 1)));
        let comm = self.comm.as_ref();
        let world = comm.size();
        if world > 1 {
            rng = rng.with_rows(parallel::row_window(comm, batch.indices.len() * world));
        }

        let teacher_out = {
            let _guard = no_grad();
            self.teacher.forward_crops(&[global], false, &mut rng)?
        };
        let features = self.student.features_crops(&crops, true, &mut rng)?;
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
                step + 1
            )));
        }
        let forward = lap()?;
        // the backward and the gradients' mean over the ranks, overlapped (trainer/overlap.rs)
        let (mut grads, reduce) = self.backward_averaged(out.loss, &mut lap)?;
        profile::phase("optimiser");
        if self.config.clip_grad > 0.0 {
            clip_grad_norms(&mut grads, &self.params, self.config.clip_grad)?;
        }
        if frozen {
            for p in &self.last_layer {
                grads.remove(p);
            }
        }
        self.optimizer.step(&grads, lr, wd)?;
        drop(grads);
        let optimizer = lap()?;
        profile::phase("EMA + centre");
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
        if world > 1 {
            parallel::update_global_center(comm, &mut self.loss, &teacher_out)?;
        } else {
            self.loss.update_center(&teacher_out)?;
        }
        self.last_timings = StepTimings {
            forward,
            backward: reduce.backward,
            optimizer,
            ema: lap()?,
            all_reduce: reduce.exposed,
            all_reduce_total: reduce.total,
        };
        if let Some((used, total)) = dinonat_engine::device_memory(self.device)? {
            let peak = self.peak_device_memory.map_or(0, |p| p.0).max(used);
            self.peak_device_memory = Some((peak, total));
        }
        profile::phase("other");

        let seconds = start.elapsed().as_secs_f64();
        let log = StepLog {
            step,
            epoch: step / self.steps_per_epoch,
            loss,
            teacher_entropy,
            kl,
            lr,
            weight_decay: wd,
            teacher_momentum: momentum,
            teacher_temp,
            last_layer_frozen: frozen,
            img_per_s: (batch.indices.len() * world) as f64 / seconds.max(1e-9),
            seconds,
        };
        self.step += 1;
        Ok(log)
    }

    /// Runs until `config.steps` (or `stop_at`, for tests and time-boxed sessions), writing the
    /// CSV log and checkpoints; `on_step` sees every step's numbers.
    pub fn run(
        &mut self,
        stop_at: Option<usize>,
        mut on_step: impl FnMut(&StepLog),
    ) -> Result<Vec<StepLog>> {
        self.run_with(stop_at, |_, log| {
            on_step(log);
            Ok(Control::Continue)
        })
    }

    /// [`Trainer::run`] with a callback that sees the trainer after each step (e.g. to evaluate the
    /// teacher) and may stop the run early (a checkpoint is written either way). A step whose loss
    /// is not finite is an error before any update, so the checkpoint on disk stays the last good one.
    pub fn run_with(
        &mut self,
        stop_at: Option<usize>,
        mut on_step: impl FnMut(&Trainer, &StepLog) -> Result<Control>,
    ) -> Result<Vec<StepLog>> {
        // rank 0 alone writes the run directory (data parallel: trainer/parallel.rs)
        let leader = self.comm.rank() == 0;
        let mut csv = if leader {
            Some(self.open_run_dir()?)
        } else {
            None
        };
        let end = stop_at.unwrap_or(self.config.steps).min(self.config.steps);
        let mut logs = Vec::new();
        let mut stop = false;
        while self.step < end && !stop {
            let epoch = self.step / self.steps_per_epoch;
            let first = self.step % self.steps_per_epoch;
            let count = (self.steps_per_epoch - first).min(end - self.step);
            let batches: Vec<Vec<usize>> =
                self.builder
                    .epoch_batches(epoch as u64, self.config.batch_size, true)
                    [first..first + count]
                    .iter()
                    .map(|b| parallel::shard(self.comm.as_ref(), b).to_vec())
                    .collect();
            let mut data_wait = Instant::now();
            for batch in Prefetcher::new(self.builder.clone(), epoch as u64, batches, 2) {
                let batch = batch?;
                let waited = data_wait.elapsed().as_secs_f64();
                let mut log = self.train_step(&batch)?;
                log.seconds += waited;
                log.img_per_s = self.config.batch_size as f64 / log.seconds.max(1e-9);
                if let Some(csv) = csv.as_mut() {
                    csv.line(&log.csv_row())?;
                }
                stop = on_step(self, &log)? == Control::Stop;
                if self.comm.size() > 1 {
                    stop = parallel::agree(self.comm.as_ref(), stop)?;
                }
                if leader
                    && self.config.checkpoint_every > 0
                    && self.step.is_multiple_of(self.config.checkpoint_every)
                {
                    self.save_checkpoint()?;
                }
                logs.push(log);
                if stop {
                    break;
                }
                data_wait = Instant::now();
            }
        }
        if leader {
            self.save_checkpoint()?;
        }
        Ok(logs)
    }

    /// Creates the run directory with its config.json, removes temporary files a killed run left,
    /// and opens log.csv at the current step.
    fn open_run_dir(&self) -> Result<CsvLog> {
        let out = self.config.out_dir.clone();
        std::fs::create_dir_all(&out).map_err(|e| {
            TrainError(format!(
                "{}: cannot create the run directory: {e}",
                out.display()
            ))
        })?;
        let config_json = serde_json::to_string_pretty(&self.config)
            .map_err(|e| TrainError(format!("cannot serialise the config: {e}")))?;
        std::fs::write(out.join("config.json"), config_json)
            .map_err(|e| TrainError(format!("{}: {e}", out.join("config.json").display())))?;
        let removed = checkpoint::remove_orphan_temps(&out);
        if removed > 0 {
            crate::data::warn(format!(
                "{}: removed {removed} temporary file(s) left by a killed run",
                out.display()
            ));
        }
        CsvLog::open_at(&out.join("log.csv"), self.step)
    }

    /// Batch `index` of epoch `epoch` in the run's data order, prepared on this thread (benchmarks
    /// time the data preparation apart from the step).
    pub fn prepare_batch(&self, epoch: u64, index: usize) -> Result<MultiCropBatch> {
        let batches = self
            .builder
            .epoch_batches(epoch, self.config.batch_size, true);
        let indices = batches
            .get(index % batches.len().max(1))
            .ok_or_else(|| TrainError(format!("epoch {epoch} has no batch {index}")))?;
        Ok(self.builder.build(epoch, indices)?)
    }

    /// Writes the run's checkpoint atomically; returns its path.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let path = checkpoint_path(&self.config.out_dir);
        checkpoint::save(
            &path,
            &self.config,
            self.step,
            &self.student,
            &self.teacher,
            &self.loss.center_values()?,
            &self.optimizer,
        )?;
        Ok(path)
    }
}

/// The head's last layer (its gradient is dropped while frozen).
fn last_layer(student: &DinoNetwork) -> Vec<Tensor> {
    student
        .head
        .params
        .trainable()
        .filter(|(n, _)| n.starts_with("last_layer."))
        .map(|(_, t)| t.clone())
        .collect()
}
