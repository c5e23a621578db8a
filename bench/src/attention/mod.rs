//! `dinonat bench attention` on the CPU: neighborhood attention (NA) against full self-attention,
//! forward and forward+backward, over square grids and kernel sizes. The kernels are called
//! directly (kernels::cpu::{neighborhood_attention, attention}), not through autodiff, so the time
//! is the kernel's. q, k, v are read from one fused QKV buffer `[batch, H, W, 3 * heads * dim]`
//! (the layout the NAT block produces) and the backward writes the fused dQKV.
//!
//! Counted FLOPs (docs/attention-ops.md): NA forward 4 * B * heads * d * (sum over rows of the
//! window height) * (sum over columns of the window width), which is 4 B heads H W k^2 d when
//! k <= H, W and dilation 1; NA backward 8 per window slot and channel (dA, dQ, dK, dV), so
//! fwd+bwd = 3 x fwd. Full forward 4 B heads N^2 d; backward counted as 2.5 x forward as in the
//! FlashAttention paper (the recomputed Q K^T included), so fwd+bwd = 3.5 x fwd.
//! Extra memory: what forward saves for backward beyond q, k, v and out: NA the probabilities
//! (B heads H W kh kw floats), full attention the log-sum-exp (B heads N floats); a naive full
//! attention would hold the B heads N^2 probabilities.

mod case;
mod report;

use crate::args::AttentionArgs;
use crate::timing::{median, process_cpu_seconds, random, repeats, wall_ms};
use case::{Case, Pass, Timing};
use dinonat_kernels::cpu::attention::{self as full, Attention};
use dinonat_kernels::cpu::neighborhood_attention::{
    self as na, HeadsGradsMut, HeadsRef, HeadsView, Na2d,
};
use report::{csv, draw, json_line, skipped_line, table};
use std::time::Duration;

/// Time spent on the timed repeats of one case (after one warm-up call), roughly.
const CASE_BUDGET: Duration = Duration::from_millis(400);
const MIN_REPEATS: usize = 3;
const MAX_REPEATS: usize = 200;

fn check_args(args: &AttentionArgs) -> Result<Vec<Pass>, String> {
    let passes = match args.pass.as_str() {
        "fwd" => vec![Pass::Forward],
        "fwd+bwd" => vec![Pass::ForwardBackward],
        "both" => vec![Pass::Forward, Pass::ForwardBackward],
        other => {
            return Err(format!(
                "--pass must be fwd, fwd+bwd or both, got {other:?}"
            ))
        }
    };
    for (flag, n) in [
        ("--batch", args.batch),
        ("--heads", args.heads),
        ("--dim", args.dim),
        ("--dilation", args.dilation),
    ] {
        if n == 0 {
            return Err(format!("{flag} must be >= 1, got 0"));
        }
    }
    if args.sizes.is_empty() || args.sizes.contains(&0) {
        return Err(format!(
            "--sizes must be a non-empty list of grid sides >= 1, got {:?}",
            args.sizes
        ));
    }
    if args.kernels.contains(&0) {
        return Err(format!(
            "--kernels must all be >= 1, got {:?}",
            args.kernels
        ));
    }
    if args.flop_budget.is_nan() || args.flop_budget < 0.0 {
        return Err(format!(
            "--flop-budget must be a number >= 0 (GFLOP), got {}",
            args.flop_budget
        ));
    }
    if args.threads == Some(0) {
        return Err("--threads must be >= 1, got 0".into());
    }
    if args.dtype != "f32" {
        return Err(format!(
            "--dtype {} is for --device cuda; the CPU bench runs f32",
            args.dtype
        ));
    }
    Ok(passes)
}

pub fn run(args: &AttentionArgs) -> Result<(), String> {
    let passes = check_args(args)?;
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = args.threads {
        pool = pool.num_threads(n);
    }
    let pool = pool
        .build()
        .map_err(|e| format!("--threads: cannot build a thread pool: {e}"))?;
    let threads = pool.current_num_threads();
    let cases = pool.install(|| measure_all(args, &passes, threads));

    if args.json {
        for c in cases.iter().filter(|c| c.timing.is_some()) {
            println!("{}", json_line(args, threads, c));
        }
        for c in cases.iter().filter(|c| c.timing.is_none()) {
            eprintln!("skipped: {}", skipped_line(args, c));
        }
    } else {
        print!("{}", table(args, threads, &cases));
    }
    if let Some(path) = &args.csv {
        std::fs::write(path, csv(args, threads, &cases))
            .map_err(|e| format!("--csv {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.png {
        draw(path, args, &cases)?;
    }
    Ok(())
}

fn measure_all(args: &AttentionArgs, passes: &[Pass], threads: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    let total = args.sizes.len() * (args.kernels.len() + 1) * passes.len();
    let mut progress = dinonat_report::progress::progress("bench attention (cases)");
    for &size in &args.sizes {
        let mut bench = Buffers::new(args, size);
        for &kernel in &args.kernels {
            let p = na_problem(args, size, kernel);
            for &pass in passes {
                let fwd = na_forward_gflop(&p);
                let gflop = match pass {
                    Pass::Forward => fwd,
                    Pass::ForwardBackward => 3.0 * fwd,
                };
                let timing = Some(time(threads, || bench.na(&p, pass)));
                progress(cases.len() + 1, total);
                cases.push(Case {
                    size,
                    kernel: Some(kernel),
                    pass,
                    gflop,
                    extra_mem_bytes: p.attn_len() * 4,
                    naive_mem_bytes: 0,
                    timing,
                });
            }
        }
        let p = full_problem(args, size);
        let fwd = 4.0 * (args.batch * args.heads * args.dim) as f64 * (size as f64).powi(4) / 1e9;
        for &pass in passes {
            let gflop = match pass {
                Pass::Forward => fwd,
                Pass::ForwardBackward => 3.5 * fwd,
            };
            let timing = (fwd <= args.flop_budget).then(|| time(threads, || bench.full(&p, pass)));
            progress(cases.len() + 1, total);
            cases.push(Case {
                size,
                kernel: None,
                pass,
                gflop,
                extra_mem_bytes: p.lse_len() * 4,
                naive_mem_bytes: args.batch * args.heads * size.pow(4) * 4,
                timing,
            });
        }
    }
    cases
}

fn na_problem(args: &AttentionArgs, size: usize, kernel: usize) -> Na2d {
    let mut p = Na2d::new(args.batch, size, size, args.heads, args.dim, [kernel; 2]);
    p.dilation = [args.dilation; 2];
    p
}

fn full_problem(args: &AttentionArgs, size: usize) -> Attention {
    Attention::new(args.batch, size * size, args.heads, args.dim)
}

/// 4 B heads d * (keys per query summed over the grid): exact with k > L and dilation.
fn na_forward_gflop(p: &Na2d) -> f64 {
    let rows: usize = (0..p.height).map(|i| p.row_window(i).size).sum();
    let cols: usize = (0..p.width).map(|j| p.col_window(j).size).sum();
    4.0 * (p.batch * p.heads * p.head_dim) as f64 * rows as f64 * cols as f64 / 1e9
}

/// One warm-up call, then repeats adapted to its cost.
fn time(threads: usize, mut f: impl FnMut()) -> Timing {
    let (first, ()) = wall_ms(&mut f);
    let budget = CASE_BUDGET.as_secs_f64() * 1e3;
    let repeats = repeats(budget, first, MIN_REPEATS, MAX_REPEATS);
    let cpu_start = process_cpu_seconds();
    let ms: Vec<f64> = (0..repeats).map(|_| wall_ms(&mut f).0).collect();
    let cpu_ms = cpu_start
        .zip(process_cpu_seconds())
        .map(|(a, b)| (b - a) * 1e3 / (repeats * threads) as f64);
    Timing {
        ms: median(ms),
        repeats,
        cpu_ms,
    }
}

/// Fused QKV input, output, saved statistics and gradients of one grid size.
struct Buffers {
    size: usize,
    heads: usize,
    dim: usize,
    rpb_on: bool,
    qkv: Vec<f32>,
    d_out: Vec<f32>,
    out: Vec<f32>,
    d_qkv: Vec<f32>,
    saved: Vec<f32>,
    rpb: Vec<f32>,
    d_rpb: Vec<f32>,
}

impl Buffers {
    fn new(args: &AttentionArgs, size: usize) -> Buffers {
        let n = args.batch * size * size * args.heads * args.dim;
        Buffers {
            size,
            heads: args.heads,
            dim: args.dim,
            rpb_on: args.rpb,
            qkv: random(3 * n, 1),
            d_out: random(n, 2),
            out: vec![0.0; n],
            d_qkv: vec![0.0; 3 * n],
            saved: Vec::new(),
            rpb: Vec::new(),
            d_rpb: Vec::new(),
        }
    }

    fn views(&self) -> [HeadsView; 3] {
        [0, 1, 2].map(|w| HeadsView::fused_qkv(self.size, self.size, self.heads, self.dim, w))
    }

    fn na(&mut self, p: &Na2d, pass: Pass) {
        self.saved.resize(p.attn_len(), 0.0);
        if self.rpb_on && self.rpb.len() != p.rpb_len() {
            self.rpb = random(p.rpb_len(), 3);
            self.d_rpb = vec![0.0; p.rpb_len()];
        }
        let [vq, vk, vv] = self.views();
        let r = |view| HeadsRef {
            data: &self.qkv,
            view,
        };
        let rpb = self.rpb_on.then_some(&self.rpb[..]);
        na::neighborhood_attention_2d_forward(
            p,
            r(vq),
            r(vk),
            r(vv),
            rpb,
            &mut self.out,
            &mut self.saved,
        );
        if pass == Pass::ForwardBackward {
            let grads = HeadsGradsMut {
                data: &mut self.d_qkv,
                dq: vq,
                dk: vk,
                dv: vv,
            };
            let d_rpb = self.rpb_on.then_some(&mut self.d_rpb[..]);
            na::neighborhood_attention_2d_backward(
                p,
                r(vq),
                r(vk),
                r(vv),
                &self.saved,
                &self.d_out,
                grads,
                d_rpb,
            );
        }
    }

    fn full(&mut self, p: &Attention, pass: Pass) {
        self.saved.resize(p.lse_len(), 0.0);
        // An H x W image flattened row-major: one row of N = H W tokens, the same strides.
        let views = [0, 1, 2].map(|w| HeadsView::fused_qkv(1, p.tokens, self.heads, self.dim, w));
        let r = |view| HeadsRef {
            data: &self.qkv,
            view,
        };
        full::attention_forward(
            p,
            r(views[0]),
            r(views[1]),
            r(views[2]),
            &mut self.out,
            &mut self.saved,
        );
        if pass == Pass::ForwardBackward {
            let grads = HeadsGradsMut {
                data: &mut self.d_qkv,
                dq: views[0],
                dk: views[1],
                dv: views[2],
            };
            full::attention_backward(
                p,
                r(views[0]),
                r(views[1]),
                r(views[2]),
                &self.out,
                &self.saved,
                &self.d_out,
                grads,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::report::crossover;
    use super::*;

    fn args() -> AttentionArgs {
        AttentionArgs {
            batch: 1,
            heads: 1,
            dim: 4,
            sizes: vec![3, 5],
            kernels: vec![3],
            dilation: 1,
            rpb: true,
            pass: "both".into(),
            flop_budget: 1e-6,
            threads: Some(1),
            json: false,
            csv: None,
            png: None,
            device: crate::args::Device::Cpu,
            dtype: "f32".into(),
        }
    }

    type Change = fn(&mut AttentionArgs);

    #[test]
    fn bad_flags_are_named() {
        let cases: [(Change, &str); 5] = [
            (
                |a| a.pass = "back".into(),
                "--pass must be fwd, fwd+bwd or both",
            ),
            (|a| a.kernels = vec![0], "--kernels must all be >= 1"),
            (|a| a.sizes = vec![], "--sizes must be a non-empty list"),
            (|a| a.dilation = 0, "--dilation must be >= 1"),
            (
                |a| a.flop_budget = f64::NAN,
                "--flop-budget must be a number >= 0",
            ),
        ];
        for (change, expected) in cases {
            let mut a = args();
            change(&mut a);
            let err = check_args(&a).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn small_run_measures_na_and_skips_full_over_budget() {
        let a = args();
        let cases = measure_all(&a, &check_args(&a).unwrap(), 1);
        assert_eq!(cases.len(), 8);
        for c in &cases {
            assert_eq!(c.timing.is_some(), c.kernel.is_some(), "{c:?}");
        }
        // 3 x 3 grid, k 3: every query sees 9 keys; 4 * 9 * 9 * 4 FLOPs forward
        assert_eq!(cases[0].gflop, 4.0 * 81.0 * 4.0 / 1e9);
        let text = table(&a, 1, &cases);
        assert!(text.contains("full 5x5 fwd+bwd"), "{text}");
        assert!(csv(&a, 1, &cases).lines().count() == 9);
    }

    #[test]
    fn crossover_is_interpolated_in_log_log() {
        let case = |size, kernel, ms| Case {
            size,
            kernel,
            pass: Pass::Forward,
            gflop: 1.0,
            extra_mem_bytes: 0,
            naive_mem_bytes: 0,
            timing: Some(Timing {
                ms,
                repeats: 3,
                cpu_ms: None,
            }),
        };
        // full / na = 1/2 at 100 tokens, 2 at 400: equal at 200 tokens
        let cases = [
            case(10, Some(7), 2.0),
            case(10, None, 1.0),
            case(20, Some(7), 2.0),
            case(20, None, 4.0),
        ];
        let x = crossover(&cases, 7, Pass::Forward, false).unwrap();
        assert!((x - 200.0).abs() < 1e-9, "{x}");
        assert_eq!(crossover(&cases, 3, Pass::Forward, false), None);
    }
}
