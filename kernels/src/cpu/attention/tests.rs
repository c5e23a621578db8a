//! Tests of full self-attention: flash vs the N x N reference on every ISA path, f64 gradient
//! check of the reference, fused-QKV views, thread-count determinism, and the neighborhood
//! attention limit (k >= H, W, no bias) against it.

use super::flash::forward_with;
use super::flash_backward::backward_with;
use super::*;
use crate::cpu::isa::{self, Isa};
use crate::cpu::neighborhood_attention::tests::Rng;
use crate::cpu::neighborhood_attention::{neighborhood_attention_2d_forward, Na2d};

struct Problem {
    p: Attention,
    qkv: Vec<f32>,
    views: [HeadsView; 3],
    d_out: Vec<f32>,
}

impl Problem {
    fn new(p: Attention, fused: bool, seed: u64) -> Problem {
        let mut rng = Rng::new(seed);
        let n = p.out_len();
        let (t, nh, d) = (p.tokens, p.heads, p.head_dim);
        let views = if fused {
            [0, 1, 2].map(|x| HeadsView::fused_qkv(1, t, nh, d, x))
        } else {
            [0, 1, 2].map(|x| HeadsView::contiguous(1, t, nh, d).with_offset(x * n))
        };
        Problem {
            p,
            qkv: rng.vec(3 * n, 2.0),
            views,
            d_out: rng.vec(n, 1.0),
        }
    }
    fn refs(&self) -> [HeadsRef<'_, f32>; 3] {
        self.views.map(|view| HeadsRef {
            data: &self.qkv,
            view,
        })
    }
}

struct Outputs<T> {
    out: Vec<T>,
    lse: Vec<T>,
    grads: Vec<T>,
}

fn run_fast(pr: &Problem, isa: Isa) -> Outputs<f32> {
    let p = &pr.p;
    let [q, k, v] = pr.refs();
    let mut out = vec![f32::NAN; p.out_len()];
    let mut lse = vec![f32::NAN; p.lse_len()];
    forward_with(isa, p, q, k, v, &mut out, &mut lse);
    let mut grads = vec![f32::NAN; pr.qkv.len()];
    let [dq, dk, dv] = pr.views;
    backward_with(
        isa,
        p,
        q,
        k,
        v,
        &out,
        &lse,
        &pr.d_out,
        HeadsGradsMut {
            data: &mut grads,
            dq,
            dk,
            dv,
        },
    );
    Outputs { out, lse, grads }
}

fn run_reference(pr: &Problem) -> Outputs<f64> {
    let p = &pr.p;
    let qkv: Vec<f64> = pr.qkv.iter().map(|&x| x as f64).collect();
    let d_out: Vec<f64> = pr.d_out.iter().map(|&x| x as f64).collect();
    let [q, k, v] = pr.views.map(|view| HeadsRef {
        data: &qkv[..],
        view,
    });
    let mut out = vec![f64::NAN; p.out_len()];
    let mut lse = vec![f64::NAN; p.lse_len()];
    attention_forward_reference(p, q, k, v, &mut out, &mut lse);
    let mut grads = vec![f64::NAN; qkv.len()];
    let [dq, dk, dv] = pr.views;
    attention_backward_reference(
        p,
        q,
        k,
        v,
        &out,
        &lse,
        &d_out,
        HeadsGradsMut {
            data: &mut grads,
            dq,
            dk,
            dv,
        },
    );
    Outputs { out, lse, grads }
}

fn max_err(got: &[f32], want: &[f64], what: &str) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(&g, &w)| {
            assert!(g.is_finite(), "{what}: non-finite {g}");
            (g as f64 - w).abs() / (1.0 + w.abs())
        })
        .fold(0.0, f64::max)
}

/// Tolerance (relative to 1 + |want|): 2e-5 forward and lse, 1e-4 gradients.
#[test]
fn flash_matches_reference_on_each_isa() {
    let shapes = [
        (1, 1, 1, 8),
        (2, 3, 2, 16),
        (1, 7, 1, 33),
        (1, 33, 3, 24),
        (1, 257, 2, 64),
        (2, 130, 1, 8),
    ];
    for (s, &(b, n, nh, d)) in shapes.iter().enumerate() {
        let p = Attention {
            scale: 0.4,
            ..Attention::new(b, n, nh, d)
        };
        let pr = Problem::new(p, s % 2 == 0, 40 + s as u64);
        let want = run_reference(&pr);
        for isa in Isa::available() {
            let got = run_fast(&pr, isa);
            let ctx = format!("{} {p:?}", isa.name());
            let e = max_err(&got.out, &want.out, "out");
            assert!(e < 2e-5, "out err {e} {ctx}");
            let e = max_err(&got.lse, &want.lse, "lse");
            assert!(e < 2e-5, "lse err {e} {ctx}");
            let e = max_err(&got.grads, &want.grads, "grads");
            assert!(e < 1e-4, "grads err {e} {ctx}");
        }
    }
}

/// Central differences (h = 1e-6) of loss = sum(out * d_out) in f64; tolerance 1e-6 relative.
#[test]
fn reference_gradients_match_finite_differences() {
    let p = Attention::new(2, 5, 2, 3);
    let pr = Problem::new(p, true, 8);
    let want = run_reference(&pr);
    let qkv: Vec<f64> = pr.qkv.iter().map(|&x| x as f64).collect();
    let d_out: Vec<f64> = pr.d_out.iter().map(|&x| x as f64).collect();
    let loss = |x: &[f64]| {
        let [q, k, v] = pr.views.map(|view| HeadsRef { data: x, view });
        let mut out = vec![0.0; p.out_len()];
        let mut lse = vec![0.0; p.lse_len()];
        attention_forward_reference(&p, q, k, v, &mut out, &mut lse);
        out.iter().zip(&d_out).map(|(a, b)| a * b).sum::<f64>()
    };
    let h = 1e-6;
    for i in 0..qkv.len() {
        let (mut a, mut b) = (qkv.clone(), qkv.clone());
        a[i] += h;
        b[i] -= h;
        let fd = (loss(&a) - loss(&b)) / (2.0 * h);
        assert!(
            (fd - want.grads[i]).abs() < 1e-6 * (1.0 + fd.abs()),
            "qkv[{i}]: fd {fd} vs {}",
            want.grads[i]
        );
    }
}

/// Bitwise identical results with 1 and 2 threads, and with fused vs separate q/k/v.
#[test]
fn flash_is_deterministic_and_layout_independent() {
    let p = Attention::new(2, 150, 2, 16);
    let pr = Problem::new(p, true, 2);
    let run = |pr: &Problem, n: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap();
        pool.install(|| run_fast(pr, isa::active()))
    };
    let (a, b) = (run(&pr, 1), run(&pr, 2));
    assert_eq!(a.out, b.out);
    assert_eq!(a.lse, b.lse);
    assert_eq!(a.grads, b.grads);
    // The same numbers as three contiguous blocks.
    let mut sep = Problem::new(p, false, 0);
    sep.d_out = pr.d_out.clone();
    let regather = |from: &Problem, data: &[f32], to: &Problem, out: &mut [f32]| {
        for x in 0..3 {
            for bb in 0..p.batch {
                for t in 0..p.tokens {
                    for h in 0..p.heads {
                        let (s, d) = (from.views[x].at(bb, 0, t, h), to.views[x].at(bb, 0, t, h));
                        out[d..d + p.head_dim].copy_from_slice(&data[s..s + p.head_dim]);
                    }
                }
            }
        }
    };
    let mut qkv = vec![0.0; sep.qkv.len()];
    regather(&pr, &pr.qkv, &sep, &mut qkv);
    sep.qkv = qkv;
    let c = run(&sep, 2);
    assert_eq!(a.out, c.out);
    let mut g = vec![0.0; sep.qkv.len()];
    regather(&pr, &a.grads, &sep, &mut g);
    assert_eq!(g, c.grads);
}

/// Neighborhood attention with k >= H, W and no bias is full attention: max-norm relative error
/// < 1e-5.
#[test]
fn neighborhood_attention_with_full_window_equals_attention() {
    let (b, h, w, nh, d) = (2, 6, 7, 2, 16);
    let p = Attention::new(b, h * w, nh, d);
    let pr = Problem::new(p, true, 77);
    let [q, k, v] = pr.refs();
    let mut out = vec![f32::NAN; p.out_len()];
    let mut lse = vec![f32::NAN; p.lse_len()];
    attention_forward(&p, q, k, v, &mut out, &mut lse);
    let na = Na2d::new(b, h, w, nh, d, [7, 9]);
    let views = [0, 1, 2].map(|x| HeadsView::fused_qkv(h, w, nh, d, x));
    let [q2, k2, v2] = views.map(|view| HeadsRef {
        data: &pr.qkv[..],
        view,
    });
    let mut out2 = vec![f32::NAN; na.out_len()];
    let mut attn = vec![f32::NAN; na.attn_len()];
    neighborhood_attention_2d_forward(&na, q2, k2, v2, None, &mut out2, &mut attn);
    // Relative to the largest output (max-norm relative error).
    let scale = out.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    for (x, y) in out.iter().zip(&out2) {
        assert!(
            (x - y).abs() <= 1e-5 * scale,
            "{x} vs {y} (max |out| {scale})"
        );
    }
}

/// Speed probe, run by hand: `ATT_THREADS=2 cargo test -p dinonat-kernels --release
/// attention_speed -- --ignored --nocapture` (B4 h2 N=28*28 d32). Prints the fastest iteration.
#[test]
#[ignore]
fn attention_speed() {
    let threads = std::env::var("ATT_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let p = Attention::new(4, 28 * 28, 2, 32);
    let pr = Problem::new(p, true, 1);
    let [q, k, v] = pr.refs();
    let mut out = vec![0.0; p.out_len()];
    let mut lse = vec![0.0; p.lse_len()];
    let mut grads = vec![0.0; pr.qkv.len()];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let (mut f, mut bw) = (f64::MAX, f64::MAX);
    pool.install(|| {
        for _ in 0..5 {
            let t = std::time::Instant::now();
            attention_forward(&p, q, k, v, &mut out, &mut lse);
            f = f.min(t.elapsed().as_secs_f64() * 1e3);
            let t = std::time::Instant::now();
            let [dq, dk, dv] = pr.views;
            let g = HeadsGradsMut {
                data: &mut grads,
                dq,
                dk,
                dv,
            };
            attention_backward(&p, q, k, v, &out, &lse, &pr.d_out, g);
            bw = bw.min(t.elapsed().as_secs_f64() * 1e3);
        }
    });
    println!("attention {threads} threads: forward {f:.2} ms, backward {bw:.2} ms");
}
