//! `dinonat bench train-step`: whole DINO training steps (teacher forward on the 2 global views,
//! student forward + backward on all views, loss, clipping, AdamW, teacher EMA, centre update) of
//! a config, with the data preparation (decode + multi-crop augmentation) timed apart. Reports
//! img/s (source images, not crops, per second of step time), the split of a step and the
//! sustained GFLOP/s. The PyTorch twin is ../shared/bench-ref/dino_step_torch.py (same default
//! shape: nat_mini, 2 x 64 + 6 x 32 crops, batch 32, head 2048-2048-256 -> K 4096).
//!
//! FLOPs: 2 x the backbone's multiply-adds (`NatConfig::macs`: convs, linears, attention) plus
//! the head's linears, per view; the student's backward counts twice its forward.

use crate::args::TrainStepArgs;
use crate::profile;
use dinonat_engine::profile as engine_profile;
use dinonat_report::progress::Progress;
use dinonat_train::dino::schedule::WarmupFractions;
use dinonat_train::trainer::config::TrainConfig;
use dinonat_train::trainer::{StepTimings, Trainer};
use serde_json::json;
use std::time::Instant;

/// FLOPs of one step: teacher forward of 2 global views, student forward + backward (3x) of all.
fn step_flops(c: &TrainConfig) -> Result<f64, String> {
    let nat = c.backbone().map_err(dinonat_report::args::train_flagged)?;
    let f = nat.num_features() as f64;
    let (h, b, k) = (
        c.head_hidden_dim as f64,
        c.head_bottleneck_dim as f64,
        c.out_dim as f64,
    );
    let head = 2.0 * (f * h + h * h + h * b + b * k);
    let view = |s: usize| 2.0 * nat.macs(s, s) as f64 + head;
    let (g, l) = (view(c.global_size), view(c.local_size));
    let teacher = 2.0 * g;
    let student = 3.0 * (2.0 * g + c.n_local as f64 * l);
    Ok(c.batch_size as f64 * (teacher + student))
}

pub fn run(args: &TrainStepArgs) -> Result<(), String> {
    match args.threads {
        None => measure(args),
        Some(0) => Err("--threads: must be at least 1".into()),
        Some(t) => rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .map_err(|e| format!("--threads {t}: cannot build a thread pool: {e}"))?
            .install(|| measure(args)),
    }
}

/// The measured steps' totals: the step's phases, data preparation, step wall time, process CPU time.
#[derive(Clone, Copy, Default)]
struct Totals {
    phases: StepTimings,
    data: f64,
    step: f64,
    cpu: f64,
}

fn measure(a: &TrainStepArgs) -> Result<(), String> {
    if a.steps == 0 {
        return Err("--steps: must be at least 1".into());
    }
    let total = a.warmup + a.steps;
    let config = bench_config(a, total)?;
    let flops = step_flops(&config)?;
    let mut t = Trainer::new_on(config, a.device.device())
        .map_err(|e| dinonat_report::args::device_error(&dinonat_report::args::train_flagged(e)))?;
    t.set_checkpoint_levels(a.checkpoint_levels);
    if !a.json {
        println!("bench train-step: {}", describe(&t, a));
        println!(
            "{} warm-up + {} measured steps; {:.2} GFLOP per step",
            a.warmup,
            a.steps,
            flops / 1e9
        );
    }
    let totals = run_steps(&mut t, a, total)?;
    let cells = a.profile.then(engine_profile::finish);
    report(&t, a, flops, &totals, cells.as_deref());
    Ok(())
}

/// The run a benchmark steps through: the flags' network, crops and batch on procedural images.
fn bench_config(a: &TrainStepArgs, total: usize) -> Result<TrainConfig, String> {
    Ok(TrainConfig {
        arch: a.arch.clone(),
        out_dim: a.out_dim,
        head_hidden_dim: a.head_hidden,
        head_bottleneck_dim: a.head_bottleneck,
        head_bn: false,
        data: None,
        procedural_len: a.batch_size.max(1) * total,
        procedural_size: a.image_size,
        global_size: a.global_size,
        local_size: a.local_size,
        n_local: a.local_crops,
        batch_size: a.batch_size,
        // a long schedule: the measured steps run at a warm, non-zero lr with the last layer free
        steps: 1000,
        seed: 0,
        base_lr: 0.0005,
        warmups: WarmupFractions {
            lr: 0.0,
            teacher_temp: 0.0,
            freeze_last_layer: 0.0,
        },
        teacher_temp: 0.04,
        drop_path: 0.1,
        momentum_teacher: 0.996,
        momentum_teacher_end: 1.0,
        lr_end: None,
        hue: 0.1,
        grayscale: 0.2,
        invert: 0.0,
        koleo: 0.0,
        dino_weight: 1.0,
        centering: Default::default(),
        clip_grad: 3.0,
        checkpoint_every: 0,
        log_every: 1,
        out_dir: std::env::temp_dir(),
        init: None,
        precision: a.precision.resolve(Some(a.device))?,
    })
}

fn describe(t: &Trainer, a: &TrainStepArgs) -> String {
    let c = &t.config;
    format!(
    "{} + head {}-{}-{} -> K {} | {} px images, crops 2 x {} + {} x {} | batch {} | {} threads | {:?}{}",
    c.arch,
    c.head_hidden_dim,
    c.head_hidden_dim,
    c.head_bottleneck_dim,
    c.out_dim,
    c.procedural_size,
    c.global_size,
    c.n_local,
    c.local_size,
    c.batch_size,
    rayon::current_num_threads(),
    t.device(),
    if a.checkpoint_levels {
        " | activation checkpointing per level"
    } else {
        ""
    }
)
}

/// Runs the warm-up and measured steps (the engine's profile covers the measured ones), printing
/// each step, and adds up the measured steps' times.
fn run_steps(t: &mut Trainer, a: &TrainStepArgs, total: usize) -> Result<Totals, String> {
    let (mut sum, mut data, mut step_s, mut cpu) = (StepTimings::default(), 0.0, 0.0, 0.0);
    let mut bar = Progress::starting_at("bench train-step (steps)", 0);
    for i in 0..total {
        if a.profile && i == a.warmup {
            engine_profile::start();
        }
        let clock = Instant::now();
        let batch = t.prepare_batch(0, i).map_err(|e| e.to_string())?;
        let data_s = clock.elapsed().as_secs_f64();
        let cpu0 = crate::timing::process_cpu_seconds();
        let clock = Instant::now();
        let log = t.train_step(&batch).map_err(|e| e.to_string())?;
        let secs = clock.elapsed().as_secs_f64();
        let cpu_s = crate::timing::process_cpu_seconds()
            .zip(cpu0)
            .map(|(b, a)| b - a)
            .unwrap_or(f64::NAN);
        let measured = i >= a.warmup;
        if !a.json {
            bar.suspend(|| {
                println!(
                    "step {}{}: {secs:.3} s (data {data_s:.3} s), loss {:.4}",
                    i + 1,
                    if measured { "" } else { " (warm-up)" },
                    log.loss
                )
            });
        }
        bar.update(i + 1, total, &format!("loss {:.4}", log.loss));
        if measured {
            let l = t.last_timings;
            sum.forward += l.forward;
            sum.backward += l.backward;
            sum.optimizer += l.optimizer;
            sum.ema += l.ema;
            sum.all_reduce += l.all_reduce;
            sum.all_reduce_total += l.all_reduce_total;
            data += data_s;
            step_s += secs;
            cpu += cpu_s;
        }
    }
    Ok(Totals {
        phases: sum,
        data,
        step: step_s,
        cpu,
    })
}

/// The per-step means: one JSON object, or a line and the profile's table.
fn report(
    t: &Trainer,
    a: &TrainStepArgs,
    flops: f64,
    totals: &Totals,
    cells: Option<&[engine_profile::ProfileCell]>,
) {
    let Totals {
        phases: sum,
        data,
        step: step_s,
        cpu,
    } = *totals;
    let n = a.steps as f64;
    let step = step_s / n;
    let img_per_s = t.config.batch_size as f64 / step;
    let gflops = flops / step / 1e9;
    let cpu_per_step = cpu / n;
    let (fw, bw, op, ema, dt) = (
        sum.forward / n,
        sum.backward / n,
        sum.optimizer / n,
        sum.ema / n,
        data / n,
    );
    let mean = StepTimings {
        forward: fw,
        backward: bw,
        optimizer: op,
        ema,
        all_reduce: sum.all_reduce / n,
        all_reduce_total: sum.all_reduce_total / n,
    };
    if a.json {
        println!(
            "{}",
            json!({
                "bench": "train-step",
                "arch": t.config.arch,
                "image_size": t.config.procedural_size,
                "global_size": t.config.global_size,
                "local_size": t.config.local_size,
                "local_crops": t.config.n_local,
                "batch": t.config.batch_size,
                "out_dim": t.config.out_dim,
                "head_hidden": t.config.head_hidden_dim,
                "head_bottleneck": t.config.head_bottleneck_dim,
                "threads": rayon::current_num_threads(),
                "precision": t.config.precision.name(),
                "device": format!("{:?}", t.device()).to_lowercase(),
                "checkpoint_levels": a.checkpoint_levels,
                "peak_device_mib": t.peak_device_memory.map(|(used, _)| used >> 20),
                "warmup_steps": a.warmup,
                "steps": a.steps,
                "step_seconds": step,
                "img_per_s": img_per_s,
                "forward_seconds": fw,
                "backward_seconds": bw,
                "optimizer_seconds": op,
                "ema_seconds": ema,
                "data_seconds": dt,
                "cpu_seconds_per_step": cpu_per_step,
                "gflop_per_step": flops / 1e9,
                "gflops": gflops,
                "profile": cells.map(|c| profile::to_json(c, &mean, n)),
            })
        );
    } else {
        println!(
            "step {step:.3} s = {img_per_s:.2} img/s (source images) | forward {fw:.3} s, backward {bw:.3} s, \
             optimiser {op:.4} s, EMA {ema:.4} s | data (separate, not in the step) {dt:.3} s | \
             {gflops:.1} GFLOP/s sustained | CPU {cpu_per_step:.2} s per step"
        );
        if let Some(cells) = cells {
            profile::print(cells, &mean, step, n);
        }
    }
}
