//! The trainer's state and how a run starts: fresh, from `--init`, or resumed from a checkpoint;
//! on which device and in which data-parallel world.

use super::checkpoint;
use super::config::TrainConfig;
use super::error::{Result, TrainError};
use super::network::{param_groups, DinoNetwork};
use super::parallel;
use crate::batch::BatchBuilder;
use crate::data::{BadSamples, ErrorPolicy};
use crate::dino::{DinoLoss, Schedules};
use crate::dist::{Collective, Single};
use dinonat_engine::optim::{all_params, AdamW};
use dinonat_engine::{DType, Device, Tensor};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

/// The data-parallel all-reduce's bucket by default (trainer/overlap.rs): 25 MB, about PyTorch
/// DDP's default (`bucket_cap_mb` 25, in MiB).
pub const DEFAULT_BUCKET_BYTES: usize = 25_000_000;

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
    pub(super) builder: Arc<BatchBuilder>,
    /// The student's trained tensors (clipping walks them).
    pub(super) params: Vec<(String, Tensor)>,
    /// The head's last layer (its gradient is dropped while frozen).
    pub(super) last_layer: Vec<Tensor>,
    /// Where the time of the last [`Trainer::train_step`] went.
    pub last_timings: StepTimings,
    /// The data-parallel world ([`Single`] unless [`Trainer::set_collective`]).
    pub(super) comm: Rc<dyn Collective>,
    /// Where the networks, the optimiser state and the centre live ([`Trainer::new_on`]).
    pub(super) device: Device,
    /// Data parallel: the all-reduce overlaps the backward in buckets of this many bytes
    /// (trainer/overlap.rs); None: after the backward.
    pub(super) overlap_bucket_bytes: Option<usize>,
    /// The order the gradients become final in, learnt in the first overlapped step (rank 0's).
    pub(super) overlap_order: std::cell::RefCell<Option<Vec<usize>>>,
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
            overlap_bucket_bytes: Some(DEFAULT_BUCKET_BYTES),
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
