//! `bench train-step --profile`: the step's time by kind of kernel and phase
//! (dinonat_engine::profile), with what the kernels do not account for: the graph, the
//! autograd's bookkeeping, views and glue between ops.

use dinonat_engine::profile::{Kind, ProfileCell};
use dinonat_train::trainer::StepTimings;
use serde_json::{json, Value};

/// The phases of a step as the trainer names them, with their wall time per step.
fn phases(t: &StepTimings) -> [(&'static str, f64); 5] {
    [
        ("forward", t.forward),
        ("backward", t.backward),
        ("all-reduce", t.all_reduce),
        ("optimiser", t.optimizer),
        ("EMA + centre", t.ema),
    ]
}

/// Seconds per step of `kind` (all kinds: `None`) in `phase`.
fn seconds(cells: &[ProfileCell], phase: &str, kind: Option<Kind>, steps: f64) -> f64 {
    let hit = |c: &&ProfileCell| c.phase == phase && kind.is_none_or(|k| c.kind == k);
    cells.iter().filter(hit).map(|c| c.seconds).sum::<f64>() / steps
}

/// The kinds present with their seconds, calls and FLOPs over all phases, largest time first.
fn kinds_by_time(cells: &[ProfileCell]) -> Vec<(Kind, f64, f64, f64)> {
    let mut kinds: Vec<(Kind, f64, f64, f64)> = Vec::new();
    for c in cells {
        match kinds.iter_mut().find(|k| k.0 == c.kind) {
            Some(k) => {
                k.1 += c.seconds;
                k.2 += c.calls as f64;
                k.3 += c.flops;
            }
            None => kinds.push((c.kind, c.seconds, c.calls as f64, c.flops)),
        }
    }
    kinds.sort_by(|a, b| b.1.total_cmp(&a.1));
    kinds
}

/// The table: one row per kind (seconds per step in each phase, total, share of the step, calls
/// per step, GFLOP/s where the kernels declare their FLOPs), then the time outside the kernels per phase; `timings` are means per step.
pub fn print(cells: &[ProfileCell], timings: &StepTimings, step: f64, steps: f64) {
    let phases = phases(timings);
    let mut head = format!("{:<42}", "where the step goes (s per step)");
    for (p, _) in &phases {
        head += &format!(" {p:>12}");
    }
    println!(
        "{head} {:>9} {:>7} {:>9} {:>8}",
        "total", "share", "calls", "GFLOP/s"
    );
    for (kind, total, calls, flops) in kinds_by_time(cells) {
        let mut row = format!("{:<42}", kind.name());
        for (p, _) in &phases {
            row += &match seconds(cells, p, Some(kind), steps) {
                0.0 => format!(" {:>12}", "-"),
                s => format!(" {s:>12.4}"),
            };
        }
        let total = total / steps;
        let share = 100.0 * total / step;
        let rate = match flops {
            0.0 => "-".to_string(),
            f => format!("{:.1}", f / total / steps / 1e9),
        };
        println!(
            "{row} {total:>9.4} {share:>6.1}% {:>9.0} {rate:>8}",
            calls / steps
        );
    }
    let mut row = format!("{:<42}", "outside kernels (graph, autograd, glue)");
    let mut outside = 0.0;
    for (p, wall) in &phases {
        let o = wall - seconds(cells, p, None, steps);
        outside += o;
        row += &format!(" {o:>12.4}");
    }
    println!("{row} {outside:>9.4} {:>6.1}%", 100.0 * outside / step);
}

/// The same as JSON: `cells` (phase, kind, seconds and calls per step) and `outside_kernels`
/// (seconds per step by phase).
pub fn to_json(cells: &[ProfileCell], timings: &StepTimings, steps: f64) -> Value {
    let rows: Vec<Value> = cells
        .iter()
        .map(|c| {
            json!({
                "phase": c.phase,
                "kind": c.kind.name(),
                "seconds_per_step": c.seconds / steps,
                "calls_per_step": c.calls as f64 / steps,
                "flops_per_step": c.flops / steps,
            })
        })
        .collect();
    let outside: serde_json::Map<String, Value> = phases(timings)
        .iter()
        .map(|(p, wall)| (p.to_string(), json!(wall - seconds(cells, p, None, steps))))
        .collect();
    json!({ "cells": rows, "outside_kernels": outside })
}
