//! `dinonat train` (DINO self-supervised training, docs/training.md) and `dinonat export` (the
//! teacher's backbone of a training checkpoint as a backbone file).

use clap::{Args, ValueEnum};
use dinonat_train::dino::schedule::WarmupFractions;
use dinonat_train::trainer::config::TrainConfig;
use dinonat_train::trainer::{checkpoint, Trainer};
use std::path::PathBuf;
use std::time::Instant;

/// Multi-crop presets: global x 2 + local x n.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Crops {
    /// 2 x 224 + 8 x 96 (DINO's default).
    Dino,
    /// 2 x 64 + 8 x 32.
    Small,
    /// 2 x 32 + 8 x 16.
    Tiny,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Backbone config (nat_pico, nat_nano, nat_mini, ...; dinat_ prefix, _full suffix).
    #[arg(long, default_value = "nat_pico")]
    arch: String,
    /// K, the DINO head's output dimension.
    #[arg(long, default_value_t = 1024)]
    out_dim: usize,
    /// Hidden width of the DINO head's MLP (DINO: 2048).
    #[arg(long, default_value_t = 512)]
    head_hidden: usize,
    /// Bottleneck width of the DINO head (DINO: 256).
    #[arg(long, default_value_t = 128)]
    head_bottleneck: usize,
    /// Image folder, IDX or CIFAR-10 directory; omitted: the built-in procedural data set.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Images in the procedural set.
    #[arg(long, default_value_t = 4096)]
    procedural_len: usize,
    /// Side of the procedural images in pixels.
    #[arg(long, default_value_t = 64)]
    procedural_size: usize,
    /// Crop preset; --global-size / --local-size / --local-crops override its parts.
    #[arg(long, value_enum, default_value = "tiny")]
    crops: Crops,
    #[arg(long)]
    global_size: Option<usize>,
    #[arg(long)]
    local_size: Option<usize>,
    /// Number of local crops.
    #[arg(long)]
    local_crops: Option<usize>,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Total optimiser steps (the schedules span them); default: --epochs worth, else 300.
    #[arg(long)]
    steps: Option<usize>,
    /// Epochs over the data set (sets --steps when --steps is not given).
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Base lr; the peak lr is lr * batch / 256.
    #[arg(long, default_value_t = 0.0005)]
    lr: f64,
    /// Fraction of the steps of linear lr warm-up.
    #[arg(long, default_value_t = 0.1)]
    lr_warmup: f64,
    /// Fraction of the steps of teacher-temperature warm-up (0.04 -> 0.07).
    #[arg(long, default_value_t = 0.3)]
    temp_warmup: f64,
    /// Fraction of the steps during which the last layer's gradient is dropped.
    #[arg(long, default_value_t = 0.05)]
    freeze_last_layer: f64,
    /// Teacher temperature after the warm-up from 0.04 (the paper: 0.07; 0.07 drifted towards a
    /// uniform teacher in short runs, docs/training.md).
    #[arg(long, default_value_t = 0.04)]
    teacher_temp: f64,
    /// Drop-path rate of the student (the teacher has none).
    #[arg(long, default_value_t = 0.1)]
    drop_path: f64,
    /// Per-tensor gradient-norm clip (0: off).
    #[arg(long, default_value_t = 3.0)]
    clip_grad: f64,
    /// Checkpoint every N steps (and at the end); 0: only at the end.
    #[arg(long, default_value_t = 100)]
    checkpoint_every: usize,
    /// Progress line every N steps.
    #[arg(long, default_value_t = 10)]
    log_every: usize,
    /// Run directory: log.csv, config.json, checkpoint.safetensors.
    #[arg(long, default_value = "runs/dino")]
    out: PathBuf,
    /// Continue from this checkpoint (its config is used; --out may move the run).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Stop (with a checkpoint) before this step, e.g. to split a run into sessions.
    #[arg(long)]
    stop_at: Option<usize>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A training checkpoint (checkpoint.safetensors of a run).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Where to write the teacher's backbone (safetensors, NAT names).
    #[arg(long)]
    out: PathBuf,
}

fn config(a: &TrainArgs) -> Result<TrainConfig, String> {
    let (g, l, n) = match a.crops {
        Crops::Dino => (224, 96, 8),
        Crops::Small => (64, 32, 8),
        Crops::Tiny => (32, 16, 8),
    };
    let mut c = TrainConfig {
        arch: a.arch.clone(),
        out_dim: a.out_dim,
        head_hidden_dim: a.head_hidden,
        head_bottleneck_dim: a.head_bottleneck,
        data: a.data.clone(),
        procedural_len: a.procedural_len,
        procedural_size: a.procedural_size,
        global_size: a.global_size.unwrap_or(g),
        local_size: a.local_size.unwrap_or(l),
        n_local: a.local_crops.unwrap_or(n),
        batch_size: a.batch_size,
        steps: a.steps.unwrap_or(300),
        seed: a.seed,
        base_lr: a.lr,
        warmups: WarmupFractions {
            lr: a.lr_warmup,
            teacher_temp: a.temp_warmup,
            freeze_last_layer: a.freeze_last_layer,
        },
        teacher_temp: a.teacher_temp,
        drop_path: a.drop_path,
        clip_grad: a.clip_grad,
        checkpoint_every: a.checkpoint_every,
        log_every: a.log_every.max(1),
        out_dir: a.out.clone(),
    };
    if let (None, Some(epochs)) = (a.steps, a.epochs) {
        let len = c.dataset().map_err(|e| e.to_string())?.len();
        c.steps = epochs * (len / c.batch_size.max(1));
        if c.steps == 0 {
            return Err(format!(
                "--epochs {epochs}: no full batch of {} in {len} images",
                c.batch_size
            ));
        }
    }
    Ok(c)
}

pub fn train(a: TrainArgs) -> Result<(), String> {
    let mut t = match &a.resume {
        Some(path) => {
            let out = (a.out.as_path() != std::path::Path::new("runs/dino")).then(|| a.out.clone());
            Trainer::resume(path, out).map_err(|e| format!("--resume: {e}"))?
        }
        None => Trainer::new(config(&a)?).map_err(|e| e.to_string())?,
    };
    let c = &t.config;
    println!(
        "dino: {} + head {}-{}-{} -> K {} | {} params | data {} | crops 2 x {} + {} x {} | batch {} | {} steps/epoch",
        c.arch,
        c.head_hidden_dim,
        c.head_hidden_dim,
        c.head_bottleneck_dim,
        c.out_dim,
        t.student.backbone.params.num_trainable_elements()
            + t.student.head.params.num_trainable_elements(),
        c.data
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| format!("procedural ({} x {} px)", c.procedural_len, c.procedural_size)),
        c.global_size,
        c.n_local,
        c.local_size,
        c.batch_size,
        t.steps_per_epoch,
    );
    println!("schedules: {}", t.schedules.describe());
    println!(
        "drop path {} (student), clip {} per tensor, threads {}, out {}{}",
        c.drop_path,
        c.clip_grad,
        rayon::current_num_threads(),
        c.out_dir.display(),
        if t.step > 0 {
            format!(", resuming at step {}", t.step)
        } else {
            String::new()
        }
    );
    let (total, every) = (c.steps, c.log_every.max(1));
    let start = Instant::now();
    let logs = t
        .run(a.stop_at, |l| {
            if (l.step + 1) % every == 0 || l.step + 1 == total || l.step == 0 {
                println!("{}", l.progress_line(total));
            }
        })
        .map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    let images: usize = logs.len() * t.config.batch_size;
    println!(
        "done: {} steps in {:.1} s ({:.3} steps/s, {:.1} img/s); checkpoint {}",
        logs.len(),
        secs,
        logs.len() as f64 / secs.max(1e-9),
        images as f64 / secs.max(1e-9),
        dinonat_train::trainer::checkpoint_path(&t.config.out_dir).display()
    );
    Ok(())
}

pub fn export(a: ExportArgs) -> Result<(), String> {
    checkpoint::export_teacher_backbone(&a.checkpoint, &a.out).map_err(|e| e.to_string())?;
    println!(
        "wrote the teacher backbone of {} to {}",
        a.checkpoint.display(),
        a.out.display()
    );
    Ok(())
}
