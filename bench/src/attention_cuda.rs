//! `dinonat bench attention --device cuda`: 2-D neighborhood attention ("na") over
//! --sizes x --kernels, and full attention ("full") per size, on the GPU in f32 or bf16
//! (--dtype), forward ("fwd") and/or forward + backward ("fwd+bwd"), timed with CUDA events
//! after a warm-up, median of several samples. --csv and --png are ignored on cuda (said on stderr).
//!
//! FLOP counts (multiply-add = 2): NA forward 4 * B * heads * H * W * kh' * kw' * d (QK^T and
//! AV over each query's k'^2 window, k' = min(k, L)); full attention forward 4 * B * heads * N^2 * d.
//! Backward counted as 2.5 x forward (dV, dP, dQ, dK and the recomputed S: five products of the
//! forward's two), so fwd+bwd = 3.5 x forward. Softmax, bias and exp are not counted.
//! Inputs: q, k, v separate contiguous `[B, H, W, heads, d]` blocks of one buffer, random in
//! [-1, 1); rpb (if on) f32. The forward of "fwd" writes no probabilities (inference); the
//! forward of "fwd+bwd" writes them for the backward, which also computes d(rpb). With fwd+bwd,
//! two breakdown rows follow for NA: "bwd" (the backward alone) and "bwd-no-drpb" (without d(rpb)).

use crate::args::AttentionArgs;
use crate::timing::{gflop_per_s, gpu_batch, gpu_median_ms};
use dinonat_kernels::cpu::attention::Attention;
use dinonat_kernels::cpu::neighborhood_attention::{HeadsView, Na2d};
use dinonat_kernels::cuda::attention::{attention_backward, attention_forward};
use dinonat_kernels::cuda::neighborhood_attention::{
    na2d_backward, na2d_forward, GpuFloat, GpuHeads,
};
use dinonat_kernels::cuda::{bf16, CudaSlice, GpuDevice};

fn random<T: GpuFloat>(n: usize, seed: u64) -> Vec<T> {
    let values = crate::timing::random(n, seed);
    values.into_iter().map(T::from_f32).collect()
}

/// Median milliseconds per call: warm-up, then 9 samples of `reps` calls (~3 ms each) between
/// two CUDA events.
fn time_ms(dev: &GpuDevice, mut f: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    dev.time_ms(2, &mut f)?;
    let (reps, estimate) = gpu_batch(dev, 3.0, 100, &mut f)?;
    let samples_n = if estimate > 50.0 { 3 } else { 9 };
    gpu_median_ms(dev, samples_n, reps, f)
}

struct Row {
    op: &'static str,
    size: usize,
    kernel: usize,
    pass: &'static str,
    ms: f64,
    gflop: f64,
}

fn all_finite<T: GpuFloat>(dev: &GpuDevice, x: &CudaSlice<T>, what: &str) -> Result<(), String> {
    let host = dev.download(x)?;
    if host.iter().any(|v| !v.to_f32().is_finite()) {
        return Err(format!(
            "bench attention (cuda): {what} has NaN or infinity"
        ));
    }
    Ok(())
}

/// The device buffers of one NA case: q, k, v in one buffer, the bias, the output's gradient and
/// what forward and backward write.
struct NaBuffers<T> {
    x: CudaSlice<T>,
    rpb: CudaSlice<f32>,
    g: CudaSlice<T>,
    out: CudaSlice<T>,
    attn: CudaSlice<f32>,
    grads: CudaSlice<T>,
    d_rpb: CudaSlice<f32>,
}

fn na_buffers<T: GpuFloat>(dev: &GpuDevice, p: &Na2d, size: usize) -> Result<NaBuffers<T>, String> {
    let n = p.out_len();
    Ok(NaBuffers {
        x: dev.upload(&random::<T>(3 * n, 7 + size as u64))?,
        rpb: dev.upload(&random::<f32>(p.rpb_len(), 3))?,
        g: dev.upload(&random::<T>(n, 11))?,
        out: dev.zeros::<T>(n)?,
        attn: dev.zeros::<f32>(p.attn_len())?,
        grads: dev.zeros::<T>(3 * n)?,
        d_rpb: dev.zeros::<f32>(p.rpb_len())?,
    })
}

/// Milliseconds of one pass: "fwd" (no probabilities written) or "fwd+bwd".
fn time_na_pass<T: GpuFloat>(
    dev: &GpuDevice,
    p: &Na2d,
    b: &mut NaBuffers<T>,
    views: [HeadsView; 3],
    with_rpb: bool,
    pass: &str,
) -> Result<f64, String> {
    let NaBuffers {
        x,
        rpb,
        g,
        out,
        attn,
        grads,
        d_rpb,
    } = b;
    let h = |i: usize| GpuHeads {
        data: &*x,
        view: views[i],
    };
    let rpb_arg = with_rpb.then_some(&*rpb);
    if pass == "fwd" {
        time_ms(dev, || {
            na2d_forward(dev, p, h(0), h(1), h(2), rpb_arg, out, None)
        })
    } else {
        time_ms(dev, || {
            na2d_forward(dev, p, h(0), h(1), h(2), rpb_arg, out, Some(&mut *attn))?;
            let d_rpb = if with_rpb { Some(&mut *d_rpb) } else { None };
            na_backward(dev, p, x, views, attn, g, grads, d_rpb)
        })
    }
}

/// Milliseconds of the backward alone (attn from the last forward), with or without d(rpb).
fn time_na_backward<T: GpuFloat>(
    dev: &GpuDevice,
    p: &Na2d,
    b: &mut NaBuffers<T>,
    views: [HeadsView; 3],
    with_drpb: bool,
) -> Result<f64, String> {
    let NaBuffers {
        x,
        g,
        attn,
        grads,
        d_rpb,
        ..
    } = b;
    time_ms(dev, || {
        let d_rpb = if with_drpb { Some(&mut *d_rpb) } else { None };
        na_backward(dev, p, x, views, attn, g, grads, d_rpb)
    })
}

/// The NA backward on q, k, v read from the one buffer `x`.
fn na_backward<T: GpuFloat>(
    dev: &GpuDevice,
    p: &Na2d,
    x: &CudaSlice<T>,
    views: [HeadsView; 3],
    attn: &CudaSlice<f32>,
    g: &CudaSlice<T>,
    grads: &mut CudaSlice<T>,
    d_rpb: Option<&mut CudaSlice<f32>>,
) -> Result<(), String> {
    let h = |i: usize| GpuHeads {
        data: x,
        view: views[i],
    };
    na2d_backward(dev, p, h(0), h(1), h(2), attn, g, grads, views, d_rpb)
}

fn na_case<T: GpuFloat>(
    dev: &GpuDevice,
    args: &AttentionArgs,
    size: usize,
    kernel: usize,
    passes: &[&'static str],
) -> Result<Vec<Row>, String> {
    let mut p = Na2d::new(
        args.batch,
        size,
        size,
        args.heads,
        args.dim,
        [kernel, kernel],
    );
    p.dilation = [args.dilation, args.dilation];
    p.check()?;
    let n = p.out_len();
    let mut b = na_buffers::<T>(dev, &p, size)?;
    let v = HeadsView::contiguous(size, size, args.heads, args.dim);
    let views = [v, v.with_offset(n), v.with_offset(2 * n)];
    let kk = |l: usize| (kernel.min(l.div_ceil(args.dilation))) as f64;
    let fwd_gflop =
        4.0 * (args.batch * args.heads * size * size * args.dim) as f64 * kk(size) * kk(size) / 1e9;
    let mut rows = Vec::new();
    for &pass in passes {
        let ms = time_na_pass(dev, &p, &mut b, views, args.rpb, pass)?;
        all_finite(dev, &b.out, "na out")?;
        if pass != "fwd" {
            all_finite(dev, &b.grads, "na dqkv")?;
        }
        let gflop = if pass == "fwd" {
            fwd_gflop
        } else {
            3.5 * fwd_gflop
        };
        rows.push(Row {
            op: "na",
            size,
            kernel,
            pass,
            ms,
            gflop,
        });
    }
    if passes.contains(&"fwd+bwd") {
        // Breakdown: the backward alone (attn from the last forward), with and without d(rpb).
        let variants: &[(&'static str, bool)] = if args.rpb {
            &[("bwd", true), ("bwd-no-drpb", false)]
        } else {
            &[("bwd", false)]
        };
        for &(pass, with_drpb) in variants {
            let ms = time_na_backward(dev, &p, &mut b, views, with_drpb)?;
            rows.push(Row {
                op: "na",
                size,
                kernel,
                pass,
                ms,
                gflop: 2.5 * fwd_gflop,
            });
        }
    }
    Ok(rows)
}

fn full_case<T: GpuFloat>(
    dev: &GpuDevice,
    args: &AttentionArgs,
    size: usize,
    passes: &[&'static str],
) -> Result<Vec<Row>, String> {
    let tokens = size * size;
    let p = Attention::new(args.batch, tokens, args.heads, args.dim);
    let n = p.out_len();
    let x = dev.upload(&random::<T>(3 * n, 5 + size as u64))?;
    let g = dev.upload(&random::<T>(n, 13))?;
    let mut out = dev.zeros::<T>(n)?;
    let mut lse = dev.zeros::<f32>(p.lse_len())?;
    let mut grads = dev.zeros::<T>(3 * n)?;
    let v = p.out_view();
    let views = [v, v.with_offset(n), v.with_offset(2 * n)];
    let h = |i: usize| GpuHeads {
        data: &x,
        view: views[i],
    };
    let fwd_gflop =
        4.0 * (args.batch * args.heads * args.dim) as f64 * (tokens as f64).powi(2) / 1e9;
    let mut rows = Vec::new();
    for &pass in passes {
        let gflop = if pass == "fwd" {
            fwd_gflop
        } else {
            3.5 * fwd_gflop
        };
        if gflop > args.flop_budget {
            eprintln!(
                "full attention {size}x{size} {pass}: skipped ({gflop:.0} GFLOP > --flop-budget {})",
                args.flop_budget
            );
            continue;
        }
        let ms = if pass == "fwd" {
            time_ms(dev, || {
                attention_forward(dev, &p, h(0), h(1), h(2), &mut out, &mut lse)
            })?
        } else {
            time_ms(dev, || {
                attention_forward(dev, &p, h(0), h(1), h(2), &mut out, &mut lse)?;
                attention_backward(dev, &p, h(0), h(1), h(2), &out, &lse, &g, &mut grads, views)
            })?
        };
        all_finite(dev, &out, "full out")?;
        rows.push(Row {
            op: "full",
            size,
            kernel: 0,
            pass,
            ms,
            gflop,
        });
    }
    Ok(rows)
}

fn run_typed<T: GpuFloat>(args: &AttentionArgs, dtype: &str) -> Result<(), String> {
    let passes: Vec<&'static str> = match args.pass.as_str() {
        "fwd" => vec!["fwd"],
        "fwd+bwd" => vec!["fwd+bwd"],
        "both" => vec!["fwd", "fwd+bwd"],
        other => return Err(format!("--pass {other}: expected fwd, fwd+bwd or both")),
    };
    if args.csv.is_some() || args.png.is_some() {
        eprintln!(
            "bench attention --device cuda: --csv and --png are ignored on cuda (use --json)"
        );
    }
    let dev = GpuDevice::get()?;
    if !args.json {
        let info = dev.info();
        println!(
            "GPU {} (sm_{}{}), {} SMs, dtype {dtype}; GFLOP/s count fwd 4*B*h*H*W*k'^2*d (NA), \
             4*B*h*N^2*d (full), fwd+bwd = 3.5 x fwd",
            info.name, info.compute_capability.0, info.compute_capability.1, info.multiprocessors
        );
        println!(
            "{:>4} {:>5} {:>6} {:>3} {:>5} {:>5} {:>5} {:>4} {:>8} {:>10} {:>9}",
            "op", "size", "kernel", "dil", "rpb", "batch", "heads", "dim", "pass", "ms", "GFLOP/s"
        );
    }
    for &size in &args.sizes {
        let mut rows = Vec::new();
        for &kernel in &args.kernels {
            rows.extend(na_case::<T>(dev, args, size, kernel, &passes)?);
        }
        rows.extend(full_case::<T>(dev, args, size, &passes)?);
        for r in rows {
            let (dil, rpb) = if r.op == "na" {
                (args.dilation, args.rpb)
            } else {
                (1, false)
            };
            let gflops = gflop_per_s(r.gflop, r.ms);
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "op": r.op, "size": r.size, "kernel": r.kernel, "dilation": dil,
                        "rpb": rpb, "batch": args.batch, "heads": args.heads, "dim": args.dim,
                        "pass": r.pass, "ms": r.ms, "gflops": gflops, "dtype": dtype,
                        "device": dev.info().name,
                    })
                );
            } else {
                println!(
                    "{:>4} {:>5} {:>6} {:>3} {:>5} {:>5} {:>5} {:>4} {:>8} {:>10.4} {:>9.1}",
                    r.op,
                    r.size,
                    r.kernel,
                    dil,
                    rpb,
                    args.batch,
                    args.heads,
                    args.dim,
                    r.pass,
                    r.ms,
                    gflops
                );
            }
        }
    }
    Ok(())
}

pub fn run(args: &AttentionArgs) -> Result<(), String> {
    match args.dtype.as_str() {
        "f32" => run_typed::<f32>(args, "f32"),
        "bf16" => run_typed::<bf16>(args, "bf16"),
        other => Err(format!("--dtype {other}: expected f32 or bf16")),
    }
}
