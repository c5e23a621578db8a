//! A run: steps over the epochs' batches, the CSV log, checkpoints, and the callback that may stop it.

use super::checkpoint::{self, checkpoint_path};
use super::error::{Result, TrainError};
use super::log::{CsvLog, StepLog};
use super::parallel;
use super::state::{Control, Trainer};
use crate::batch::{MultiCropBatch, Prefetcher};
use std::path::PathBuf;
use std::time::Instant;

impl Trainer {
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
