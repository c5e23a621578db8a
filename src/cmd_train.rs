//! `dinonat train` (DINO self-supervised training, docs/training.md) and `dinonat export` (the
//! teacher's backbone of a training checkpoint as a backbone file).

mod train_eval;

use clap::{Args, ValueEnum};
use dinonat_train::data::ErrorPolicy;
use dinonat_train::dino::schedule::WarmupFractions;
use dinonat_train::dino::Centering;
use dinonat_train::dist::{self, Collective};
use dinonat_train::trainer::config::TrainConfig;
use dinonat_train::trainer::{Control, Trainer};
use serde_json::json;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;
use train_eval::{Curves, EvalSplit};

/// `--centering`: dinonat_train::dino::Centering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CenteringArg {
    Center,
    SinkhornKnopp,
}

/// Multi-crop presets: global x 2 + local x n.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Crops {
    /// 2 x 224 + 8 x 96 (DINO's default).
    Dino,
    /// 2 x 64 + 8 x 32.
    Small,
    /// 2 x 32 + 8 x 16 (the built-in set's defaults use 4 local crops).
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
    /// BatchNorm in the DINO head's hidden layers (DINO's use_bn_in_head).
    #[arg(long)]
    head_bn: bool,
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
    /// Images per step (the peak lr scales with it: --lr). Default: 64 on the built-in set, 32 with
    /// --data (RunDefaults).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Total optimiser steps (the schedules span them); default: --epochs worth, else 500 on the
    /// built-in set and 600 with --data.
    #[arg(long)]
    steps: Option<usize>,
    /// Epochs over the data set (sets --steps when --steps is not given).
    #[arg(long)]
    epochs: Option<usize>,
    /// Training seed (weights, data order, augmentation; on the built-in set also its images). Seeds
    /// 1-4 generate the built-in k-NN splits and are refused there.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train this many runs, with seeds --seed, --seed + 10, --seed + 20, ... (each in OUT/seed-S),
    /// and end with the mean +- std of their k-NN (docs/training.md, "Held-out protocol").
    #[arg(long, default_value_t = 1, value_name = "N")]
    seeds: usize,
    /// Base lr; the peak lr is lr * batch / 256 (DINO: 0.0005; the default 0.004 gives a peak of
    /// 1e-3 at batch 64 and DINO's batch-256 peak, 5e-4, at batch 32).
    #[arg(long, default_value_t = 0.004)]
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
    /// Teacher EMA momentum at step 0, cosine to --momentum-teacher-end over the run. Default: DINO's
    /// 0.996 with --data, 0.99 on the built-in set (RunDefaults).
    #[arg(long)]
    momentum_teacher: Option<f64>,
    /// Teacher EMA momentum at the last step (equal to --momentum-teacher: constant). Default: DINO's
    /// 1 with --data, 0.99 on the built-in set.
    #[arg(long)]
    momentum_teacher_end: Option<f64>,
    /// The lr at the end of the cosine, as a fraction of the peak lr (1: constant after the
    /// warm-up). Default: DINO's 1e-6 with --data, 1 on the built-in set.
    #[arg(long, value_name = "FRACTION")]
    lr_end: Option<f64>,
    /// Hue jitter strength (DINO: 0.1; at most 0.5).
    #[arg(long, default_value_t = 0.1)]
    hue: f64,
    /// Grayscale probability per view (DINO: 0.2).
    #[arg(long, default_value_t = 0.2)]
    grayscale: f64,
    /// Inversion probability per view, x -> 1 - x (not in DINO; 0: off). Asks for features blind to
    /// brightness levels and contrast signs, which differ between visible and thermal images
    /// (docs/augmentation.md).
    #[arg(long, default_value_t = 0.0)]
    invert: f64,
    /// Weight of the KoLeo spreading term on the student's features of each global view, added to
    /// the DINO loss (DINOv2: 0.1; 0: off). Default: 0 (DINO's loss alone) with --data, 1.0 on the
    /// built-in set.
    #[arg(long)]
    koleo: Option<f64>,
    /// Weight of the DINO cross-entropy (1: DINO; 0: off, KoLeo alone: the ablation of
    /// docs/training.md).
    #[arg(long, default_value_t = 1.0, value_name = "W")]
    dino_weight: f64,
    /// How the teacher's targets are centred: DINO's running centre, or DINOv2's Sinkhorn-Knopp
    /// (every prototype gets the same mass over the batch; no centre).
    #[arg(long, value_enum, default_value = "center")]
    centering: CenteringArg,
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
    /// Stop (with a checkpoint) after this much wall time; the schedules still span --steps.
    #[arg(long, value_name = "MINUTES")]
    max_minutes: Option<f64>,
    /// k-NN of the teacher every N steps during training (0: only before and after).
    #[arg(long, value_name = "N", default_value_t = 0)]
    eval_every: usize,
    /// k-NN memory bank (class sub-folders); default with built-in data: the built-in train split.
    #[arg(long, value_name = "DIR", requires = "eval_val")]
    eval_train: Option<PathBuf>,
    /// k-NN queries (class sub-folders); default with built-in data: the built-in val split.
    #[arg(long, value_name = "DIR", requires = "eval_train")]
    eval_val: Option<PathBuf>,
    /// Images of the built-in k-NN split: train (seed 1) and val (seed 2), as `dinonat knn --builtin`.
    #[arg(long, value_names = ["TRAIN", "VAL"], num_args = 2, default_values_t = [2000usize, 500])]
    eval_builtin: Vec<usize>,
    /// k-NN evaluation transform size [default: 32 for *pico*, else 64] (as `dinonat knn`).
    #[arg(long, value_name = "N")]
    eval_size: Option<usize>,
    /// No k-NN evaluation at all (no table at the end).
    #[arg(long, conflicts_with_all = ["eval_every", "eval_train", "eval_val"])]
    no_eval: bool,
    /// Progress to stderr; the last line on stdout is one JSON object with the results.
    #[arg(long)]
    json: bool,
    /// Stop at the first unreadable training file (default: skip it with a warning, and count it
    /// in the progress lines and the summary).
    #[arg(long)]
    strict: bool,
    /// Only load this checkpoint completely (config, both networks, centre, optimiser state),
    /// print its step and exit: non-zero when anything is missing or mis-shaped.
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    check_checkpoint: Option<PathBuf>,
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

/// What the flags default to. On the built-in set: the values that make a run of minutes learn
/// (docs/notebook/2026-11-27-fourth-diagnosis-short-run-recipe.md). With --data: DINO's values (the Imagenette recipe's), because the
/// built-in values were measured to hurt there (28.1 % against 35.4 % k-NN at step 800).
struct RunDefaults {
    batch_size: usize,
    steps: usize,
    /// Local crops when neither --local-crops is given; None: the --crops preset's 8.
    n_local: Option<usize>,
    lr_end: Option<f64>,
    momentum_teacher: f64,
    momentum_teacher_end: f64,
    koleo: f64,
}

const BUILTIN_DEFAULTS: RunDefaults = RunDefaults {
    batch_size: 64,
    steps: 500,
    n_local: Some(4),
    lr_end: Some(1.0),
    momentum_teacher: 0.99,
    momentum_teacher_end: 0.99,
    koleo: 1.0,
};

const DATA_DEFAULTS: RunDefaults = RunDefaults {
    batch_size: 32,
    steps: 600,
    n_local: None,
    lr_end: None,
    momentum_teacher: 0.996,
    momentum_teacher_end: 1.0,
    koleo: 0.0,
};

fn config(a: &TrainArgs) -> Result<TrainConfig, String> {
    let (g, l, n) = match a.crops {
        Crops::Dino => (224, 96, 8),
        Crops::Small => (64, 32, 8),
        Crops::Tiny => (32, 16, 8),
    };
    let d = if a.data.is_some() {
        DATA_DEFAULTS
    } else {
        BUILTIN_DEFAULTS
    };
    let mut c = TrainConfig {
        arch: a.arch.clone(),
        out_dim: a.out_dim,
        head_hidden_dim: a.head_hidden,
        head_bottleneck_dim: a.head_bottleneck,
        head_bn: a.head_bn,
        data: a.data.clone(),
        procedural_len: a.procedural_len,
        procedural_size: a.procedural_size,
        global_size: a.global_size.unwrap_or(g),
        local_size: a.local_size.unwrap_or(l),
        n_local: a.local_crops.or(d.n_local).unwrap_or(n),
        batch_size: a.batch_size.unwrap_or(d.batch_size),
        steps: a.steps.unwrap_or(d.steps),
        seed: a.seed,
        base_lr: a.lr,
        warmups: WarmupFractions {
            lr: a.lr_warmup,
            teacher_temp: a.temp_warmup,
            freeze_last_layer: a.freeze_last_layer,
        },
        teacher_temp: a.teacher_temp,
        drop_path: a.drop_path,
        momentum_teacher: a.momentum_teacher.unwrap_or(d.momentum_teacher),
        momentum_teacher_end: a.momentum_teacher_end.unwrap_or(d.momentum_teacher_end),
        lr_end: a.lr_end.or(d.lr_end),
        koleo: a.koleo.unwrap_or(d.koleo),
        dino_weight: a.dino_weight,
        centering: match a.centering {
            CenteringArg::Center => Centering::Center,
            CenteringArg::SinkhornKnopp => Centering::SinkhornKnopp,
        },
        hue: a.hue,
        grayscale: a.grayscale,
        invert: a.invert,
        clip_grad: a.clip_grad,
        checkpoint_every: a.checkpoint_every,
        log_every: a.log_every.max(1),
        out_dir: a.out.clone(),
        init: None,
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

/// Prints progress to stdout, or to stderr with --json (stdout then ends with the JSON object).
macro_rules! say {
    ($json:expr, $($t:tt)*) => {
        if $json { eprintln!($($t)*) } else { println!($($t)*) }
    };
}

pub fn train(a: TrainArgs) -> Result<(), String> {
    if let Some(m) = a.max_minutes {
        if !(m.is_finite() && m > 0.0) {
            return Err(format!("--max-minutes: {m} must be positive"));
        }
    }
    if let Some(path) = &a.check_checkpoint {
        let t = Trainer::resume(path, None).map_err(|e| format!("--check-checkpoint: {e}"))?;
        println!(
            "checkpoint {}: step {} of {}, {} ok",
            path.display(),
            t.step,
            t.config.steps,
            t.config.arch
        );
        return Ok(());
    }
    if a.seeds == 0 {
        return Err("--seeds: must be at least 1".into());
    }
    // a world of one without a launcher; under mpirun / srun the MPI world (docs/distributed.md)
    let comm: Rc<dyn Collective> = Rc::from(dist::from_env().map_err(|e| e.to_string())?);
    let leader = comm.rank() == 0;
    if a.seeds == 1 {
        let out = train_run(&a, a.seed, &a.out, &comm)?;
        if a.json && leader {
            println!("{out}");
        }
        return Ok(());
    }
    if a.resume.is_some() {
        return Err("--seeds N > 1 starts N new runs: it cannot be combined with --resume".into());
    }
    let seeds: Vec<u64> = (0..a.seeds as u64)
        .map(|i| {
            a.seed
                .checked_add(10 * i)
                .ok_or("--seed: too large for --seeds")
        })
        .collect::<Result<_, _>>()?;
    let mut runs = Vec::new();
    for &seed in &seeds {
        let dir = a.out.join(format!("seed-{seed}"));
        if leader {
            say!(a.json, "\n== run with --seed {seed} ({})", dir.display());
        }
        runs.push(train_run(&a, seed, &dir, &comm)?);
    }
    if !leader {
        return Ok(());
    }
    let summary = train_eval::seed_summary(&seeds, &runs);
    say!(a.json, "\n{}", summary.table);
    if a.json {
        println!("{}", summary.json);
    }
    Ok(())
}

/// One training run with `seed` in `out` (or the resumed run); returns its JSON object.
fn train_run(
    a: &TrainArgs,
    seed: u64,
    out: &std::path::Path,
    comm: &Rc<dyn Collective>,
) -> Result<serde_json::Value, String> {
    let mut t = match &a.resume {
        Some(path) => {
            let out = (out != std::path::Path::new("runs/dino")).then(|| out.to_path_buf());
            Trainer::resume(path, out).map_err(|e| format!("--resume: {e}"))?
        }
        None => {
            let mut c = config(a)?;
            c.seed = seed;
            c.out_dir = out.to_path_buf();
            Trainer::new(c).map_err(|e| e.to_string())?
        }
    };
    if t.config.data.is_none() && !a.no_eval && a.eval_train.is_none() {
        train_eval::check_training_seed(t.config.seed)?;
    }
    check_run_paths(&t.config, a)?;
    if a.strict {
        t.set_error_policy(ErrorPolicy::Stop)
            .map_err(|e| e.to_string())?;
    }
    let (rank, world) = (comm.rank(), comm.size());
    t.set_collective(comm.clone()).map_err(|e| e.to_string())?;
    if rank != 0 {
        // a follower trains its shard; rank 0 evaluates, prints and writes the run directory
        t.run_with(a.stop_at, |_, _| Ok(Control::Continue))
            .map_err(|e| format!("rank {rank}: {e}"))?;
        return Ok(serde_json::Value::Null);
    }
    let js = a.json;
    if world > 1 {
        say!(
            js,
            "data parallel: {world} ranks ({}), global batch {} = {world} x {} per rank; the lr follows the global batch (peak = --lr x {} / 256); KoLeo per rank",
            comm.name(),
            t.config.batch_size,
            t.config.batch_size / world,
            t.config.batch_size
        );
    }
    let c = &t.config;
    say!(
        js,
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
    say!(js, "schedules: {}", t.schedules.describe());
    say!(
        js,
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

    // k-NN split: --eval-train/--eval-val, else the built-in split when training on built-in data.
    let split = if a.no_eval {
        None
    } else {
        EvalSplit::open(
            &a.eval_train,
            &a.eval_val,
            t.config.data.is_none(),
            &a.eval_builtin,
            a.eval_size.unwrap_or(if t.config.arch.contains("pico") {
                32
            } else {
                64
            }),
        )?
    };
    if a.eval_every > 0 && split.is_none() {
        return Err(
            "--eval-every needs --eval-train DIR --eval-val DIR when training on --data".into(),
        );
    }
    let mut curves = Curves::default();
    let log_csv = t.config.out_dir.join("log.csv");
    for l in dinonat_train::trainer::log::read_log(&log_csv, t.step) {
        curves.record(&l); // the steps before a resume
    }
    let baselines = match &split {
        Some(s) => {
            let pixels = s.knn_pixels()?;
            let random = s.knn_random_init(&t.config)?;
            say!(
                js,
                "k-NN (k 20, T 0.07) on {}: raw pixels {:.2}%, random init {:.2}%",
                s.describe(),
                pixels.reported(),
                random.reported()
            );
            if t.step == 0 {
                curves.knn.push((0.0, random.reported()));
            }
            Some((pixels, random))
        }
        None => None,
    };

    let (total, every) = (t.config.steps, t.config.log_every.max(1));
    let ln_k = (t.config.out_dim as f64).ln();
    let collapse_after = (t.config.steps / 10).max(1);
    let deadline = a.max_minutes.map(|m| (m * 60.0, m));
    let mut warned_at = None::<usize>;
    let mut warnings = 0usize;
    let start = Instant::now();
    let ckpt = dinonat_train::trainer::checkpoint_path(&t.config.out_dir);
    let mut bar = crate::progress::Progress::starting_at("train (steps)", t.step);
    let mut all_reduce_s = 0.0;
    let result = t.run_with(a.stop_at, |tr, l| {
        all_reduce_s += tr.last_timings.all_reduce;
        curves.record(l);
        if (l.step + 1) % every == 0 || l.step + 1 == total || l.step == 0 {
            let skipped = tr.bad_samples().errors().len();
            let note = if skipped > 0 { format!(" | {skipped} unreadable file(s) skipped") } else { String::new() };
            bar.suspend(|| say!(js, "{}{note}", l.progress_line(total)));
        }
        bar.update(l.step + 1, total, &format!("loss {:.4}", l.loss));
        if let Some(kind) = train_eval::collapse(l.teacher_entropy, ln_k) {
            if l.step >= collapse_after && warned_at.is_none_or(|w| l.step >= w + 10 * every) {
                bar.suspend(|| eprintln!(
                    "warning: step {}: teacher entropy {:.4} is {kind} (ln K = {ln_k:.4}): the teacher may be collapsing",
                    l.step + 1,
                    l.teacher_entropy
                ));
                warned_at = Some(l.step);
                warnings += 1;
            }
        }
        if let Some(s) = &split {
            if a.eval_every > 0 && (l.step + 1) % a.eval_every == 0 && l.step + 1 < total {
                let top1 = s
                    .knn_backbone(&tr.teacher.backbone)
                    .map_err(dinonat_train::trainer::TrainError)?
                    .reported();
                bar.suspend(|| say!(js, "step {}: k-NN top-1 {top1:.2}% (teacher)", l.step + 1));
                curves.knn.push(((l.step + 1) as f64, top1));
            }
        }
        if let Some((secs, m)) = deadline {
            if start.elapsed().as_secs_f64() >= secs && l.step + 1 < total {
                say!(js, "--max-minutes {m}: stopping after step {} with a checkpoint", l.step + 1);
                return Ok(Control::Stop);
            }
        }
        Ok(Control::Continue)
    });
    let logs = match result {
        Ok(logs) => logs,
        Err(e) => {
            let kept = if ckpt.is_file() {
                format!("the last good checkpoint is kept: {}", ckpt.display())
            } else {
                "no checkpoint was written yet".to_string()
            };
            let _ = curves.write_pngs(&t.config.out_dir);
            let skipped = t
                .skipped_summary()
                .map(|s| format!("; {s}"))
                .unwrap_or_default();
            return Err(format!("{e}; {kept}{skipped}"));
        }
    };
    let secs = start.elapsed().as_secs_f64();
    let images: usize = logs.len() * t.config.batch_size;
    say!(
        js,
        "done: {} steps in {:.1} s ({:.3} steps/s, {:.1} img/s); checkpoint {}",
        logs.len(),
        secs,
        logs.len() as f64 / secs.max(1e-9),
        images as f64 / secs.max(1e-9),
        ckpt.display()
    );
    if world > 1 {
        say!(
            js,
            "data parallel: gradient all-reduce {:.1} ms per step on average ({} ranks, {:.1} MB of f32 gradients)",
            1e3 * all_reduce_s / logs.len().max(1) as f64,
            world,
            4e-6 * t.optimizer.groups.iter().flat_map(|g| &g.params).map(|(_, p)| p.numel()).sum::<usize>() as f64
        );
    }

    let mut out = json!({
        "command": "train",
        "arch": t.config.arch,
        "steps": t.step,
        "total_steps": total,
        "train_seconds": secs,
        "img_per_s": images as f64 / secs.max(1e-9),
        "final_loss": logs.last().map(|l| l.loss),
        "final_teacher_entropy": logs.last().map(|l| l.teacher_entropy),
        "checkpoint": ckpt.display().to_string(),
        "seed": t.config.seed,
        "dino_weight": t.config.dino_weight,
        "koleo": t.config.koleo,
        "collapse_warnings": warnings,
        "unreadable_files": t.bad_samples().errors().len(),
        "world_size": world,
        "all_reduce_seconds_per_step": all_reduce_s / logs.len().max(1) as f64,
    });
    if let Some(s) = t.skipped_summary() {
        eprintln!("warning: {s}");
    }
    if let (Some(s), Some((pixels, random))) = (&split, baselines) {
        let trained = s.knn_backbone(&t.teacher.backbone)?;
        curves.knn.push((t.step as f64, trained.reported()));
        say!(js, "\nk-NN top-1 (k = 20, T = 0.07) on {}:", s.describe());
        let roles: Vec<&str> = trained.0.iter().map(|(r, _)| *r).collect();
        say!(
            js,
            "| features | {} |",
            roles.join(" top-1 % | ") + " top-1 %"
        );
        say!(js, "|---|{}", "---|".repeat(roles.len()));
        let row = |x: &train_eval::Scores| {
            x.0.iter()
                .map(|(_, v)| format!("{:.2}", v.top1))
                .collect::<Vec<_>>()
                .join(" | ")
        };
        say!(
            js,
            "| trained teacher (step {}) | {} |",
            t.step,
            row(&trained)
        );
        say!(
            js,
            "| random init ({}, seed {}) | {} |",
            t.config.arch,
            t.config.seed,
            row(&random)
        );
        say!(js, "| raw pixels ({} px) | {} |", s.size, row(&pixels));
        say!(
            js,
            "{}",
            train_eval::detail_table(&trained, &random, &pixels)
        );
        out["knn_top1_trained"] = json!(trained.reported());
        out["knn_top1_random"] = json!(random.reported());
        out["knn_top1_pixels"] = json!(pixels.reported());
        out["knn_split"] = json!(s.describe());
        let mut by_split = serde_json::Map::new();
        for (role, name) in s.describe_all() {
            by_split.insert(
                role.to_string(),
                json!({
                    "split": name,
                    "trained": trained.get(role),
                    "random": random.get(role),
                    "pixels": pixels.get(role),
                }),
            );
        }
        out["knn_top1_by_split"] = serde_json::Value::Object(by_split);
        out["knn_by_split"] = train_eval::reports_json(&trained, &random, &pixels);
    }
    match curves.write_pngs(&t.config.out_dir) {
        Ok(files) => say!(js, "curves: {}", files.join(", ")),
        Err(e) => eprintln!("warning: curves not drawn: {e}"),
    }
    Ok(out)
}

/// The run directory never is, nor lies inside, a file or folder the run reads.
fn check_run_paths(c: &TrainConfig, a: &TrainArgs) -> Result<(), String> {
    let inputs = [
        ("--data", &c.data),
        ("--eval-train", &a.eval_train),
        ("--eval-val", &a.eval_val),
    ];
    let mut inputs: Vec<_> = (inputs.iter())
        .filter_map(|(f, p)| p.as_deref().map(|p| (*f, p)))
        .collect();
    inputs.extend(a.resume.as_deref().map(|p| ("--resume", p)));
    dinonat_train::guard::check_outputs(&[("--out", &c.out_dir)], &inputs)
}

pub fn export(a: ExportArgs) -> Result<(), String> {
    dinonat_train::guard::check_outputs(&[("--out", &a.out)], &[("--checkpoint", &a.checkpoint)])?;
    dinonat_eval::backbone::export_teacher_backbone(&a.checkpoint, &a.out)
        .map_err(|e| e.describe(crate::cmd_embed::flag))?;
    println!(
        "wrote the teacher backbone of {} to {}",
        a.checkpoint.display(),
        a.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: TrainArgs,
    }

    fn parse(args: &[&str]) -> TrainConfig {
        config(&Cli::parse_from(std::iter::once("train").chain(args.iter().copied())).a).unwrap()
    }

    type Knobs = (usize, usize, usize, f64, Option<f64>, f64, f64);

    fn knobs(c: &TrainConfig) -> Knobs {
        let (b, s, n, k, l) = (c.batch_size, c.steps, c.n_local, c.koleo, c.lr_end);
        (b, s, n, k, l, c.momentum_teacher, c.momentum_teacher_end)
    }

    /// The built-in set gets the values of runs of minutes; --data gets DINO's; flags win over both.
    #[test]
    fn defaults_depend_on_the_data_and_flags_win() {
        assert_eq!(knobs(&parse(&[])), (64, 500, 4, 1.0, Some(1.0), 0.99, 0.99));
        assert_eq!(
            knobs(&parse(&["--data", "/nonexistent"])),
            (32, 600, 8, 0.0, None, 0.996, 1.0)
        );
        let flags = [
            "--batch-size",
            "16",
            "--steps",
            "7",
            "--local-crops",
            "2",
            "--koleo",
            "0.5",
            "--lr-end",
            "0.1",
            "--momentum-teacher",
            "0.98",
            "--momentum-teacher-end",
            "0.985",
        ];
        let want = (16, 7, 2, 0.5, Some(0.1), 0.98, 0.985);
        assert_eq!(knobs(&parse(&flags)), want);
        let with_data: Vec<&str> = ["--data", "/nonexistent"]
            .iter()
            .chain(&flags)
            .copied()
            .collect();
        assert_eq!(knobs(&parse(&with_data)), want);
    }
}
