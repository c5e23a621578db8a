//! `dinonat bench gemm` on the CPU: SGEMM GFLOP/s (2 m k n flops / median time) over the cubes
//! and the NAT shapes, row-major C = A B. Compare with OpenBLAS through numpy in the same run
//! (../shared/bench-ref/gemm_numpy_torch.py); absolute numbers on a shared machine drift.
//! `--dtype bf16` times the BF16 GEMM (`sgemm_bf16`, its path named) right after f32 per shape.
//! `--layout tn | nt` reads A or B transposed, as a linear layer's weight and data gradients do.

use crate::args::GemmArgs;
use crate::timing::{gflop_per_s, median, random, repeats};
use dinonat_kernels::cpu::gemm::{sgemm, sgemm_bf16, Layout};
use dinonat_kernels::cpu::isa;
use dinonat_report::progress::Progress;
use std::time::Instant;

/// Cubes, then the NAT shapes: qkv, proj, fc2 of a 56x56 stage at batch 8, a 28x28 stage, and an MLP.
pub const SHAPES: [(usize, usize, usize); 9] = [
    (256, 256, 256),
    (512, 512, 512),
    (1024, 1024, 1024),
    (2048, 2048, 2048),
    (25088, 64, 192),
    (25088, 64, 64),
    (25088, 192, 64),
    (6272, 128, 384),
    (128, 512, 2048),
];

pub fn run(args: &GemmArgs) -> Result<(), String> {
    let shapes = if args.shapes.is_empty() {
        SHAPES.to_vec()
    } else {
        args.shapes
            .iter()
            .map(|s| parse_shape(s))
            .collect::<Result<Vec<_>, _>>()?
    };
    let bf16 = match args.dtype.as_str() {
        "f32" => false,
        "bf16" => true,
        d => return Err(format!("--dtype {d:?}: expected f32 or bf16")),
    };
    let ops = Ops::parse(&args.layout)?;
    let measure = || measure_all(&shapes, args.json, bf16, ops);
    match args.threads {
        None => measure(),
        Some(0) => Err("--threads: must be at least 1".into()),
        Some(t) => rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .map_err(|e| format!("--threads {t}: cannot build a thread pool: {e}"))?
            .install(measure),
    }
}

/// "MxKxN" -> (m, k, n) (`--shape` of `bench gemm`, CPU and CUDA).
pub(crate) fn parse_shape(s: &str) -> Result<(usize, usize, usize), String> {
    let bad =
        || format!("--shape {s:?}: expected MxKxN with positive integers, e.g. 1024x1024x1024");
    let dims: Vec<usize> = s
        .split(['x', 'X'])
        .map(|d| d.trim().parse::<usize>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    match dims[..] {
        [m, k, n] if m > 0 && k > 0 && n > 0 => Ok((m, k, n)),
        _ => Err(bad()),
    }
}

/// Which operands of C = op(A) op(B) are stored transposed (`--layout`): "nn", "tn" or "nt".
#[derive(Clone, Copy)]
struct Ops(&'static str);

impl Ops {
    fn parse(s: &str) -> Result<Ops, String> {
        ["nn", "tn", "nt"]
            .into_iter()
            .find(|&o| o == s)
            .map(Ops)
            .ok_or_else(|| format!("--layout {s:?}: expected nn, tn or nt"))
    }
    fn name(self) -> &'static str {
        self.0
    }
    /// Layouts of op(A) (m x k) and op(B) (k x n), each stored densely.
    fn layouts(self, m: usize, k: usize, n: usize) -> (Layout, Layout) {
        let a = if self.0.starts_with('t') {
            Layout::col_major(m)
        } else {
            Layout::row_major(k)
        };
        let b = if self.0.ends_with('t') {
            Layout::col_major(k)
        } else {
            Layout::row_major(n)
        };
        (a, b)
    }
}

fn measure_all(
    shapes: &[(usize, usize, usize)],
    json: bool,
    bf16: bool,
    ops: Ops,
) -> Result<(), String> {
    let threads = rayon::current_num_threads();
    let isa = isa::active().name();
    let path = isa::bf16_gemm_active().name();
    if !json {
        println!(
            "sgemm {}, {threads} threads, isa {isa}; median of repeated runs after a warm-up",
            ops.name()
        );
        if bf16 {
            println!("bf16 GEMM path {path}, timed right after f32 on each shape");
            let h = (
                "m x k x n",
                "f32 ms",
                "GFLOP/s",
                "bf16 ms",
                "GFLOP/s",
                "bf16/f32",
            );
            println!(
                "{:>20} {:>10} {:>10} {:>10} {:>10} {:>9}",
                h.0, h.1, h.2, h.3, h.4, h.5
            );
        } else {
            println!("{:>20} {:>10} {:>10}", "m x k x n", "ms", "GFLOP/s");
        }
    }
    let mut bar = Progress::starting_at("bench gemm (shapes)", 0);
    for (i, &(m, k, n)) in shapes.iter().enumerate() {
        let ms = median_ms(m, k, n, ops, sgemm);
        let gflops = gflop_per_s(2.0 * (m * k * n) as f64 / 1e9, ms);
        let bf_ms = if bf16 {
            median_ms(m, k, n, ops, sgemm_bf16)
        } else {
            f64::NAN
        };
        let bf_gflops = gflop_per_s(2.0 * (m * k * n) as f64 / 1e9, bf_ms);
        let shape = format!("{m}x{k}x{n}");
        let line = match (json, bf16) {
            (true, false) => serde_json::json!({
                "m": m, "k": k, "n": n, "gflops": gflops, "ms": ms, "threads": threads, "isa": isa,
                "layout": ops.name(),
            })
            .to_string(),
            (true, true) => serde_json::json!({
                "m": m, "k": k, "n": n, "gflops": gflops, "ms": ms, "threads": threads, "isa": isa,
                "layout": ops.name(), "bf16_gflops": bf_gflops, "bf16_ms": bf_ms, "bf16_path": path,
            })
            .to_string(),
            (false, false) => format!("{shape:>20} {ms:>10.3} {gflops:>10.1}"),
            (false, true) => format!(
                "{shape:>20} {ms:>10.3} {gflops:>10.1} {bf_ms:>10.3} {bf_gflops:>10.1} {:>9.2}",
                bf_gflops / gflops
            ),
        };
        bar.suspend(|| println!("{line}"));
        bar.update(i + 1, shapes.len(), &format!("{m}x{k}x{n}"));
    }
    Ok(())
}

/// A GEMM with the signature of `sgemm` (f32 or BF16).
type Gemm = fn(usize, usize, usize, f32, &[f32], Layout, &[f32], Layout, f32, &mut [f32], Layout);

/// Median wall time of C = op(A) op(B) in milliseconds; about half a second of runs, at least 5.
fn median_ms(m: usize, k: usize, n: usize, ops: Ops, gemm: Gemm) -> f64 {
    let a = random(m * k, 1);
    let b = random(k * n, 2);
    let (la, lb) = ops.layouts(m, k, n);
    let mut c = vec![0.0f32; m * n];
    let mut once = || {
        let t = Instant::now();
        gemm(
            m,
            k,
            n,
            1.0,
            &a,
            la,
            &b,
            lb,
            0.0,
            &mut c,
            Layout::row_major(n),
        );
        t.elapsed().as_secs_f64() * 1e3
    };
    let first = once().max(once());
    let reps = repeats(500.0, first, 5, 200);
    median((0..reps).map(|_| once()).collect())
}
