//! Tests of 2-D / 1-D neighborhood attention: fast vs reference on every ISA path, f64 gradient
//! checks of the reference, the full-attention limit, fused-QKV views, thread-count determinism.

use super::backward::backward_with;
use super::fused::forward_with;
use super::*;
use crate::cpu::isa::Isa;

/// xorshift64*: deterministic test data in [-1, 1).
pub(crate) struct Rng(u64);
impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(crate) fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        x as f64 / (1u64 << 52) as f64 - 1.0
    }
    pub(crate) fn vec(&mut self, n: usize, amp: f64) -> Vec<f32> {
        (0..n).map(|_| (amp * self.next()) as f32).collect()
    }
}

fn to64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// Inputs of one problem: a fused QKV buffer (or three contiguous blocks in one buffer), the
/// views, rpb and an upstream gradient.
struct Problem {
    p: Na2d,
    qkv: Vec<f32>,
    views: [HeadsView; 3],
    rpb: Option<Vec<f32>>,
    d_out: Vec<f32>,
}

impl Problem {
    fn new(p: Na2d, fused: bool, with_rpb: bool, seed: u64) -> Problem {
        let mut rng = Rng::new(seed);
        let n = p.out_len();
        let (h, w, nh, d) = (p.height, p.width, p.heads, p.head_dim);
        let views = if fused {
            [0, 1, 2].map(|x| HeadsView::fused_qkv(h, w, nh, d, x))
        } else {
            [0, 1, 2].map(|x| HeadsView::contiguous(h, w, nh, d).with_offset(x * n))
        };
        Problem {
            p,
            qkv: rng.vec(3 * n, 1.5),
            views,
            rpb: with_rpb.then(|| rng.vec(p.rpb_len(), 1.0)),
            d_out: rng.vec(n, 1.0),
        }
    }
    fn refs(&self) -> [HeadsRef<'_, f32>; 3] {
        self.views.map(|view| HeadsRef {
            data: &self.qkv,
            view,
        })
    }
    /// The same numbers in the other layout.
    fn relayout(&self, fused: bool) -> Problem {
        let mut other = Problem::new(self.p, fused, false, 0);
        other.rpb = self.rpb.clone();
        other.d_out = self.d_out.clone();
        let p = &self.p;
        for x in 0..3 {
            for b in 0..p.batch {
                for i in 0..p.height {
                    for j in 0..p.width {
                        for h in 0..p.heads {
                            let (s, t) =
                                (self.views[x].at(b, i, j, h), other.views[x].at(b, i, j, h));
                            other.qkv[t..t + p.head_dim]
                                .copy_from_slice(&self.qkv[s..s + p.head_dim]);
                        }
                    }
                }
            }
        }
        other
    }
}

struct Outputs<T> {
    out: Vec<T>,
    attn: Vec<T>,
    grads: Vec<T>,
    d_rpb: Vec<T>,
}

fn run_fast(pr: &Problem, isa: Isa) -> Outputs<f32> {
    let p = &pr.p;
    let [q, k, v] = pr.refs();
    let mut out = vec![f32::NAN; p.out_len()];
    let mut attn = vec![f32::NAN; p.attn_len()];
    forward_with(isa, p, q, k, v, pr.rpb.as_deref(), &mut out, &mut attn);
    let mut grads = vec![f32::NAN; pr.qkv.len()];
    let mut d_rpb = vec![f32::NAN; p.rpb_len()];
    let [dq, dk, dv] = pr.views;
    backward_with(
        isa,
        p,
        q,
        k,
        v,
        &attn,
        &pr.d_out,
        HeadsGradsMut {
            data: &mut grads,
            dq,
            dk,
            dv,
        },
        pr.rpb.as_ref().map(|_| d_rpb.as_mut_slice()),
    );
    Outputs {
        out,
        attn,
        grads,
        d_rpb,
    }
}

fn run_reference(pr: &Problem) -> Outputs<f64> {
    let p = &pr.p;
    let qkv = to64(&pr.qkv);
    let rpb = pr.rpb.as_deref().map(to64);
    let [q, k, v] = pr.views.map(|view| HeadsRef {
        data: &qkv[..],
        view,
    });
    let mut out = vec![f64::NAN; p.out_len()];
    let mut attn = vec![f64::NAN; p.attn_len()];
    neighborhood_attention_2d_forward_reference(p, q, k, v, rpb.as_deref(), &mut out, &mut attn);
    let mut grads = vec![f64::NAN; qkv.len()];
    let mut d_rpb = vec![f64::NAN; p.rpb_len()];
    let [dq, dk, dv] = pr.views;
    neighborhood_attention_2d_backward_reference(
        p,
        q,
        k,
        v,
        &attn,
        &to64(&pr.d_out),
        HeadsGradsMut {
            data: &mut grads,
            dq,
            dk,
            dv,
        },
        rpb.as_ref().map(|_| d_rpb.as_mut_slice()),
    );
    Outputs {
        out,
        attn,
        grads,
        d_rpb,
    }
}

/// max |got - want| / (1 + |want|), asserting no NaN in `got`.
fn max_err(got: &[f32], want: &[f64], what: &str) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    got.iter()
        .zip(want)
        .map(|(&g, &w)| {
            assert!(g.is_finite(), "{what}: non-finite output {g}");
            (g as f64 - w).abs() / (1.0 + w.abs())
        })
        .fold(0.0, f64::max)
}

fn shapes() -> Vec<Na2d> {
    let mut v = Vec::new();
    let mk = |b, h, w, nh, d, k: [usize; 2], dil: [usize; 2]| Na2d {
        dilation: dil,
        ..Na2d::new(b, h, w, nh, d, k)
    };
    v.push(mk(1, 7, 9, 1, 8, [3, 3], [1, 1]));
    v.push(mk(2, 5, 4, 2, 16, [7, 7], [1, 1])); // k > H, W: full attention
    v.push(mk(1, 3, 33, 3, 24, [4, 6], [1, 1])); // even k, wide
    v.push(mk(1, 11, 10, 2, 32, [5, 3], [2, 3])); // dilation, L mod d != 0
    v.push(mk(1, 20, 20, 1, 64, [7, 7], [1, 1]));
    v.push(mk(1, 9, 17, 4, 8, [2, 5], [4, 1])); // dilation > k'
    v.push(mk(2, 1, 1, 1, 8, [3, 3], [1, 1])); // single pixel
    v.push(mk(1, 13, 40, 2, 33, [7, 9], [1, 2])); // head dim not a multiple of lanes
    v.push(mk(1, 6, 5, 2, 16, [1, 2], [1, 1])); // kernel 1 on an axis
    v.push(mk(1, 9, 60, 2, 32, [7, 7], [2, 1])); // wide rows: vertical dK/dV path
    v.push(mk(2, 4, 45, 1, 24, [3, 6], [1, 1])); // even k, wide, d = 24
    v.push(mk(1, 3, 70, 1, 8, [3, 1], [1, 7])); // width-1 windows with dilation
    v
}

/// Tolerance: f32 fast vs f64 reference, relative to 1 + |want|: 2e-5 forward, 1e-4 backward.
#[test]
fn fast_matches_reference_on_each_isa() {
    for (s, p) in shapes().into_iter().enumerate() {
        for with_rpb in [false, true] {
            let pr = Problem::new(p, s % 2 == 0, with_rpb, 11 + s as u64);
            let want = run_reference(&pr);
            for isa in Isa::available() {
                let got = run_fast(&pr, isa);
                let ctx = format!("{} {p:?} rpb {with_rpb}", isa.name());
                let e = max_err(&got.out, &want.out, &format!("out {ctx}"));
                assert!(e < 2e-5, "out err {e} {ctx}");
                let e = max_err(&got.attn, &want.attn, &format!("attn {ctx}"));
                assert!(e < 2e-5, "attn err {e} {ctx}");
                let e = max_err(&got.grads, &want.grads, &format!("grads {ctx}"));
                assert!(e < 1e-4, "grads err {e} {ctx}");
                if with_rpb {
                    let e = max_err(&got.d_rpb, &want.d_rpb, &format!("d_rpb {ctx}"));
                    assert!(e < 1e-4, "d_rpb err {e} {ctx}");
                }
            }
        }
    }
}

/// Central differences (h = 1e-6) on loss = sum(out * d_out) in f64; tolerance 1e-6 relative.
#[test]
fn reference_gradients_match_finite_differences() {
    let p = Na2d {
        dilation: [1, 2],
        ..Na2d::new(1, 5, 6, 2, 3, [3, 4])
    };
    let pr = Problem::new(p, true, true, 5);
    let want = run_reference(&pr);
    let qkv = to64(&pr.qkv);
    let rpb = to64(pr.rpb.as_deref().unwrap());
    let d_out = to64(&pr.d_out);
    let loss = |qkv: &[f64], rpb: &[f64]| {
        let [q, k, v] = pr.views.map(|view| HeadsRef { data: qkv, view });
        let mut out = vec![0.0; p.out_len()];
        let mut attn = vec![0.0; p.attn_len()];
        neighborhood_attention_2d_forward_reference(&p, q, k, v, Some(rpb), &mut out, &mut attn);
        out.iter().zip(&d_out).map(|(a, b)| a * b).sum::<f64>()
    };
    let h = 1e-6;
    for i in 0..qkv.len() {
        let (mut a, mut b) = (qkv.clone(), qkv.clone());
        a[i] += h;
        b[i] -= h;
        let fd = (loss(&a, &rpb) - loss(&b, &rpb)) / (2.0 * h);
        assert!(
            (fd - want.grads[i]).abs() < 1e-6 * (1.0 + fd.abs()),
            "qkv[{i}]: fd {fd} vs {}",
            want.grads[i]
        );
    }
    for i in 0..rpb.len() {
        let (mut a, mut b) = (rpb.clone(), rpb.clone());
        a[i] += h;
        b[i] -= h;
        let fd = (loss(&qkv, &a) - loss(&qkv, &b)) / (2.0 * h);
        assert!(
            (fd - want.d_rpb[i]).abs() < 1e-6 * (1.0 + fd.abs()),
            "rpb[{i}]: fd {fd} vs {}",
            want.d_rpb[i]
        );
    }
}

/// Fused QKV views and contiguous blocks give bitwise the same results.
#[test]
fn fused_qkv_views_equal_contiguous() {
    let p = Na2d {
        dilation: [2, 1],
        ..Na2d::new(2, 10, 19, 3, 16, [5, 7])
    };
    let fused = Problem::new(p, true, true, 9);
    let separate = fused.relayout(false);
    let a = run_fast(&fused, crate::cpu::isa::active());
    let b = run_fast(&separate, crate::cpu::isa::active());
    assert_eq!(a.out, b.out);
    assert_eq!(a.attn, b.attn);
    assert_eq!(a.d_rpb, b.d_rpb);
    let back = |pr: &Problem, g: &[f32]| -> Vec<f32> {
        let mut r = Vec::new();
        for view in pr.views {
            for bb in 0..p.batch {
                for i in 0..p.height {
                    for j in 0..p.width {
                        for h in 0..p.heads {
                            r.extend_from_slice(&g[view.at(bb, i, j, h)..][..p.head_dim]);
                        }
                    }
                }
            }
        }
        r
    };
    assert_eq!(back(&fused, &a.grads), back(&separate, &b.grads));
}

/// Bitwise identical forward and backward with 1 and 2 rayon threads (several row tiles per head).
#[test]
fn results_do_not_depend_on_thread_count() {
    let p = Na2d::new(2, 19, 41, 2, 16, [5, 5]);
    let pr = Problem::new(p, true, true, 3);
    let run = |n: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap();
        pool.install(|| run_fast(&pr, crate::cpu::isa::active()))
    };
    let (a, b) = (run(1), run(2));
    assert_eq!(a.out, b.out);
    assert_eq!(a.attn, b.attn);
    assert_eq!(a.grads, b.grads);
    assert_eq!(a.d_rpb, b.d_rpb);
}

/// With k >= H, W and no bias every query sees the whole grid: plain softmax(s QK^T) V.
/// Tolerance: relative error < 1e-5.
#[test]
fn full_window_equals_full_attention() {
    let p = Na2d::new(2, 5, 6, 2, 8, [6, 9]);
    let pr = Problem::new(p, true, false, 21);
    let fast = run_fast(&pr, crate::cpu::isa::active());
    let n = p.height * p.width;
    let d = p.head_dim;
    let out_view = HeadsView::contiguous(p.height, p.width, p.heads, d);
    let [q, k, v] = pr.refs();
    for b in 0..p.batch {
        for h in 0..p.heads {
            for x in 0..n {
                let (i, j) = (x / p.width, x % p.width);
                let qs = &q.data[q.view.at(b, i, j, h)..][..d];
                let logits: Vec<f64> = (0..n)
                    .map(|y| {
                        let ks = &k.data[k.view.at(b, y / p.width, y % p.width, h)..][..d];
                        p.scale
                            * qs.iter()
                                .zip(ks)
                                .map(|(&a, &c)| a as f64 * c as f64)
                                .sum::<f64>()
                    })
                    .collect();
                let m = logits.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
                for c in 0..d {
                    let want: f64 = (0..n)
                        .map(|y| {
                            (logits[y] - m).exp() / z
                                * v.data[v.view.at(b, y / p.width, y % p.width, h) + c] as f64
                        })
                        .sum();
                    let got = fast.out[out_view.at(b, i, j, h) + c] as f64;
                    assert!(
                        (got - want).abs() <= 1e-5 * want.abs().max(1e-2),
                        "{got} vs {want}"
                    );
                }
            }
        }
    }
}

/// 1-D NA (fast and reference wrappers) against the 2-D reference on a 1 x L grid.
#[test]
fn one_d_matches_reference() {
    for (len, k, dil, d) in [(1, 3, 1, 8), (33, 7, 1, 16), (257, 6, 3, 32), (7, 9, 2, 8)] {
        let p1 = Na1d {
            batch: 2,
            length: len,
            heads: 2,
            head_dim: d,
            kernel_size: k,
            dilation: dil,
            scale: 0.3,
        };
        let p = p1.as_2d();
        let pr = Problem::new(p, false, true, len as u64);
        let want = run_reference(&pr);
        let [q, kk, v] = pr.refs();
        let mut out = vec![f32::NAN; p.out_len()];
        let mut attn = vec![f32::NAN; p.attn_len()];
        neighborhood_attention_1d_forward(&p1, q, kk, v, pr.rpb.as_deref(), &mut out, &mut attn);
        assert!(max_err(&out, &want.out, "1d out") < 2e-5);
        let mut grads = vec![f32::NAN; pr.qkv.len()];
        let mut d_rpb = vec![f32::NAN; p.rpb_len()];
        let [dq, dk, dv] = pr.views;
        neighborhood_attention_1d_backward(
            &p1,
            q,
            kk,
            v,
            &attn,
            &pr.d_out,
            HeadsGradsMut {
                data: &mut grads,
                dq,
                dk,
                dv,
            },
            Some(&mut d_rpb),
        );
        assert!(max_err(&grads, &want.grads, "1d grads") < 1e-4);
        assert!(max_err(&d_rpb, &want.d_rpb, "1d d_rpb") < 1e-4);
        let mut out_r = vec![f32::NAN; p.out_len()];
        let mut attn_r = vec![f32::NAN; p.attn_len()];
        neighborhood_attention_1d_forward_reference(
            &p1,
            q,
            kk,
            v,
            pr.rpb.as_deref(),
            &mut out_r,
            &mut attn_r,
        );
        assert!(max_err(&out_r, &want.out, "1d ref out") < 2e-5);
    }
}

#[test]
#[should_panic(expected = "overlap")]
fn overlapping_gradient_views_are_rejected() {
    let p = Na2d::new(1, 3, 3, 2, 4, [3, 3]);
    let pr = Problem::new(p, false, false, 1);
    let mut g = vec![0.0f32; 3 * p.out_len()];
    let v = HeadsView::contiguous(3, 3, 2, 4);
    let [q, k, vv] = pr.refs();
    let attn = vec![0.0; p.attn_len()];
    neighborhood_attention_2d_backward(
        &p,
        q,
        k,
        vv,
        &attn,
        &pr.d_out,
        HeadsGradsMut {
            data: &mut g,
            dq: v,
            dk: v.with_offset(4),
            dv: v.with_offset(2 * p.out_len()),
        },
        None,
    );
}

/// Measures the benchmark shape (B4 h2 56x56 d32 k7 rpb). Run by hand:
/// `NA_THREADS=2 NA_ITERS=20 NA_PHASE=both cargo test -p dinonat-kernels --release na_speed --
/// --ignored --nocapture` (NA_PHASE=fwd: forward only), under `perf stat -e cycles:u` on a busy
/// machine (cycles do not count time spent descheduled). Prints the fastest iteration.
#[test]
#[ignore]
fn na_speed() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (threads, iters) = (env("NA_THREADS", 2), env("NA_ITERS", 20));
    let both = std::env::var("NA_PHASE").map_or(true, |v| v != "fwd");
    let p = Na2d::new(4, 56, 56, 2, 32, [7, 7]);
    let pr = Problem::new(p, true, true, 1);
    let [q, k, v] = pr.refs();
    let mut out = vec![0.0; p.out_len()];
    let mut attn = vec![0.0; p.attn_len()];
    let mut grads = vec![0.0; pr.qkv.len()];
    let mut d_rpb = vec![0.0; p.rpb_len()];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let (mut best_f, mut best_b) = (f64::MAX, f64::MAX);
    pool.install(|| {
        for _ in 0..iters {
            let t = std::time::Instant::now();
            neighborhood_attention_2d_forward(&p, q, k, v, pr.rpb.as_deref(), &mut out, &mut attn);
            best_f = best_f.min(t.elapsed().as_secs_f64() * 1e3);
            if both {
                let t = std::time::Instant::now();
                let [dq, dk, dv] = pr.views;
                neighborhood_attention_2d_backward(
                    &p,
                    q,
                    k,
                    v,
                    &attn,
                    &pr.d_out,
                    HeadsGradsMut {
                        data: &mut grads,
                        dq,
                        dk,
                        dv,
                    },
                    Some(&mut d_rpb),
                );
                best_b = best_b.min(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    });
    println!("NA {threads} threads: forward {best_f:.3} ms, backward {best_b:.3} ms (fastest of {iters})");
}
