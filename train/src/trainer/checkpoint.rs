//! Training checkpoints: one safetensors file, written atomically (temporary file, fsync, rename;
//! engine::io), holding everything `--resume` needs to continue bit for bit:
//!   student.{backbone,head}.*, teacher.{backbone,head}.*   the two networks (f32)
//!   center                                                 DINO's centre c (f64)
//!   adamw.{m,v,step}.*                                     the optimiser state (m, v: f32, F64 in older files)
//! and in the metadata: `format`, `step` (the next step to run) and `config` (TrainConfig as JSON).
//! The data order and augmentations are functions of (seed, epoch, index) and drop path's
//! generator of (seed, step), so the step is the whole RNG/data position.

use super::config::TrainConfig;
use super::error::{Result, TrainError};
use super::network::{named_tensors, store, DinoNetwork, PARTS};
use dinonat_engine::io::{load_safetensors, save_safetensors, TensorFile};
use dinonat_engine::optim::AdamW;
use dinonat_engine::Tensor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The file a run's checkpoint lives in.
pub fn checkpoint_path(out_dir: &Path) -> PathBuf {
    out_dir.join("checkpoint.safetensors")
}

pub const FORMAT: &str = "dinonat-dino-checkpoint";

/// What a checkpoint holds besides the tensors of the networks.
pub struct Checkpoint {
    pub file: TensorFile,
    pub config: TrainConfig,
    pub step: usize,
}

pub fn save(
    path: &Path,
    config: &TrainConfig,
    step: usize,
    student: &DinoNetwork,
    teacher: &DinoNetwork,
    center: &[f64],
    optimizer: &AdamW,
) -> Result<()> {
    let mut tensors = named_tensors(student, "student");
    tensors.extend(named_tensors(teacher, "teacher"));
    tensors.push((
        "center".into(),
        Tensor::from_slice(center, &[center.len()])?,
    ));
    tensors.extend(optimizer.state_tensors()?);
    let config_json = serde_json::to_string(config)
        .map_err(|e| TrainError(format!("cannot serialise the config: {e}")))?;
    let meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("step".to_string(), step.to_string()),
        ("config".to_string(), config_json),
    ]);
    Ok(save_safetensors(path, &tensors, Some(&meta))?)
}

/// Reads a checkpoint and its metadata; errors name the file and what is wrong.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let file = load_safetensors(path)?;
    let bad = |m: String| TrainError(format!("{}: {m}", path.display()));
    if file.metadata.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(bad(format!(
            "not a DinoNAT training checkpoint (format is not '{FORMAT}')"
        )));
    }
    let step = file
        .metadata
        .get("step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no valid 'step' in the metadata".into()))?;
    let config: TrainConfig = file
        .metadata
        .get("config")
        .ok_or_else(|| bad("no 'config' in the metadata".into()))
        .and_then(|s| serde_json::from_str(s).map_err(|e| bad(format!("bad 'config': {e}"))))?;
    if step > config.steps {
        return Err(bad(format!(
            "step {step} is beyond the run's {} steps",
            config.steps
        )));
    }
    for (name, t) in &file.tensors {
        if let Some(x) = t.to_vec_f64().iter().find(|x| !x.is_finite()) {
            return Err(bad(format!(
                "tensor '{name}' holds {x}: weights must be finite"
            )));
        }
    }
    Ok(Checkpoint { file, config, step })
}

impl Checkpoint {
    fn tensor(&self, name: &str, path: &Path) -> Result<&Tensor> {
        self.file
            .get(name)
            .ok_or_else(|| TrainError(format!("{}: tensor '{name}' missing", path.display())))
    }

    /// Copies `<prefix>.backbone.*` and `<prefix>.head.*` into `net`; every entry must be present
    /// with its shape.
    pub fn restore_network(&self, net: &DinoNetwork, prefix: &str, path: &Path) -> Result<()> {
        for part in PARTS {
            let store = store(net, part);
            for name in store.names() {
                let key = format!("{prefix}.{part}.{name}");
                let t = self.tensor(&key, path)?;
                store
                    .assign(name, t)
                    .map_err(|e| TrainError(format!("{}: tensor '{key}': {e}", path.display())))?;
            }
        }
        Ok(())
    }

    /// Fails unless the optimiser state (AdamW's m, v and step) of every trained tensor is present:
    /// a checkpoint after step 0 without it cannot continue the run as it was. The head's last
    /// layer has no state while it is frozen (`last_layer_trained` false).
    pub fn require_optimizer_state(
        &self,
        optimizer: &AdamW,
        last_layer_trained: bool,
        path: &Path,
    ) -> Result<()> {
        if self.step == 0 {
            return Ok(());
        }
        let mut missing = Vec::new();
        for group in &optimizer.groups {
            for (name, _) in &group.params {
                if name.contains("last_layer.") && !last_layer_trained {
                    continue;
                }
                for kind in ["m", "v", "step"] {
                    let key = format!("adamw.{kind}.{name}");
                    if self.file.get(&key).is_none() {
                        missing.push(key);
                    }
                }
            }
        }
        match missing.first() {
            None => Ok(()),
            Some(first) => Err(TrainError(format!(
                "{}: optimiser state missing at step {} ({} tensor(s), first '{first}'): the run cannot resume as it was",
                path.display(),
                self.step,
                missing.len()
            ))),
        }
    }

    pub fn center(&self, out_dim: usize, path: &Path) -> Result<Vec<f64>> {
        let c = self.tensor("center", path)?;
        if c.shape() != [out_dim] {
            return Err(TrainError(format!(
                "{}: 'center' has shape {:?}, expected [{out_dim}]",
                path.display(),
                c.shape()
            )));
        }
        Ok(c.to_vec_f64())
    }
}

/// Removes the temporary files (`.<name>.tmp<PID>`, engine::io::write_atomic) that runs killed
/// mid-write left in `dir`; a file of a process still alive is kept. Returns how many were removed.
pub fn remove_orphan_temps(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(".tmp"))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}
