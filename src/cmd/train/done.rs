//! What the steps of a `dinonat train` run gave: the speed lines and the run's JSON object.

use dinonat_train::trainer::log::StepLog;
use dinonat_train::trainer::Trainer;
use serde_json::json;

/// What the steps of a run gave.
pub struct Done {
    pub logs: Vec<StepLog>,
    pub secs: f64,
    pub all_reduce_s: f64,
    /// All of the all-reduce's time, overlapped or not.
    pub all_reduce_total_s: f64,
    pub warnings: usize,
}

impl Done {
    /// Prints the speed of the run and returns its JSON object (without the k-NN).
    pub fn json(&self, t: &Trainer, world: usize) -> serde_json::Value {
        let (logs, secs) = (&self.logs, self.secs);
        let ckpt = dinonat_train::trainer::checkpoint_path(&t.config.out_dir);
        let images: usize = logs.len() * t.config.batch_size;
        let per_step = self.all_reduce_s / logs.len().max(1) as f64;
        json!({
            "command": "train",
            "arch": t.config.arch,
            "steps": t.step,
            "total_steps": t.config.steps,
            "train_seconds": secs,
            "img_per_s": images as f64 / secs.max(1e-9),
            "final_loss": logs.last().map(|l| l.loss),
            "final_teacher_entropy": logs.last().map(|l| l.teacher_entropy),
            "checkpoint": ckpt.display().to_string(),
            "seed": t.config.seed,
            "dino_weight": t.config.dino_weight,
            "koleo": t.config.koleo,
            "precision": t.config.precision.name(),
            "device": format!("{:?}", t.device()).to_lowercase(),
            "peak_device_mib": t.peak_device_memory.map(|(used, _)| used >> 20),
            "init": t.config.init.as_ref().map(|p| p.display().to_string()),
            "collapse_warnings": self.warnings,
            "unreadable_files": t.bad_samples().errors().len(),
            "world_size": world,
            "all_reduce_seconds_per_step": per_step,
            "all_reduce_total_seconds_per_step": self.all_reduce_total_s / logs.len().max(1) as f64,
            "all_reduce_overlap_bucket_mb": t.overlap().map(|b| b as f64 * 1e-6),
        })
    }

    /// The speed line(s) after the steps.
    pub fn print(&self, t: &Trainer, world: usize, js: bool) {
        let (n, secs) = (self.logs.len(), self.secs);
        let ckpt = dinonat_train::trainer::checkpoint_path(&t.config.out_dir);
        say!(
            js,
            "done: {} steps in {:.1} s ({:.3} steps/s, {:.1} img/s); checkpoint {}",
            n,
            secs,
            n as f64 / secs.max(1e-9),
            (n * t.config.batch_size) as f64 / secs.max(1e-9),
            ckpt.display()
        );
        if let Some((used, total)) = t.peak_device_memory {
            say!(
                js,
                "peak device memory {} MiB of {} MiB (in use after a step: every process's allocations and the allocator's cache)",
                used >> 20,
                total >> 20
            );
        }
        if world > 1 {
            let params = t.optimizer.groups.iter().flat_map(|g| &g.params);
            let numel: usize = params.map(|(_, p)| p.numel()).sum();
            say!(
                js,
                "data parallel: gradient all-reduce {:.1} ms per step on average, {:.1} ms of it after the backward ({} ranks, {:.1} MB of f32 gradients, {})",
                1e3 * self.all_reduce_total_s / n.max(1) as f64,
                1e3 * self.all_reduce_s / n.max(1) as f64,
                world,
                4e-6 * numel as f64,
                match t.overlap() {
                    Some(b) => format!("overlapped with the backward in buckets of {} MB", b as f64 * 1e-6),
                    None => "after the backward".into(),
                }
            );
        }
    }
}
