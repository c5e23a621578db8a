//! GPU parity tests for neighborhood attention and full attention (kernels/src/cuda/
//! {neighborhood_attention, attention}.rs) against the CPU references in f64, forward and every
//! gradient, on random inputs of awkward shapes, outputs poisoned with NaN before each call.
//! Tolerances (relative Frobenius norm against f64): f32 (SIMT) 1e-5 for outputs and
//! probabilities, 2e-5 for gradients (dS = A (dA - D) cancels); bf16 1e-2 against the f64
//! reference evaluated on the same bf16-rounded inputs. Determinism: two runs bitwise equal.
//! Without a GPU every test prints why and returns. The NVRTC compile-check of these sources is
//! `nvrtc_compiles_every_source` in tests/cuda.rs (scripts/nvrtc-check.sh).

use dinonat_kernels::cpu::attention::{
    attention_backward_reference, attention_forward_reference, Attention,
};
use dinonat_kernels::cpu::neighborhood_attention::{
    neighborhood_attention_2d_backward_reference, neighborhood_attention_2d_forward_reference,
    HeadsGradsMut, HeadsRef, HeadsView, Na2d,
};
use dinonat_kernels::cuda::attention::{attention_backward, attention_forward};
use dinonat_kernels::cuda::neighborhood_attention::{
    na2d_backward, na2d_forward, GpuFloat, GpuHeads,
};
use dinonat_kernels::cuda::{bf16, GpuDevice};

fn device_or_skip() -> Option<&'static GpuDevice> {
    match GpuDevice::get() {
        Ok(d) => Some(d),
        Err(e) => {
            dinonat_kernels::cuda::skip_gpu_test(&format!("no CUDA device ({e})"));
            None
        }
    }
}

/// xorshift64*, seeded from the clock (fresh inputs every run; the seed is printed).
struct Rng(u64);
impl Rng {
    fn fresh(label: &str) -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let seed = t | 1;
        println!("{label}: seed {seed}");
        Rng(seed)
    }
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        (bits as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    /// Values in [-amp, amp), already representable in `T`.
    fn vec<T: GpuFloat>(&mut self, n: usize, amp: f32) -> Vec<T> {
        (0..n).map(|_| T::from_f32(self.uniform() * amp)).collect()
    }
}

fn f64s<T: GpuFloat>(x: &[T]) -> Vec<f64> {
    x.iter().map(|&v| v.to_f32() as f64).collect()
}

/// ||got - exact|| / ||exact||; a NaN or infinity anywhere gives infinity.
fn rel_err<T: GpuFloat>(got: &[T], exact: &[f64]) -> f64 {
    assert_eq!(got.len(), exact.len());
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&g, &e) in got.iter().zip(exact) {
        let g = g.to_f32() as f64;
        if !g.is_finite() {
            return f64::INFINITY;
        }
        num += (g - e) * (g - e);
        den += e * e;
    }
    (num / den.max(1e-300)).sqrt()
}

/// (forward, gradient) tolerance of an element type.
fn tolerances<T: GpuFloat>() -> (f64, f64) {
    if T::NAME == "bf16" {
        (1e-2, 1e-2)
    } else {
        (1e-5, 2e-5)
    }
}

#[derive(Clone, Copy, Debug)]
struct NaCase {
    batch: usize,
    hw: [usize; 2],
    heads: usize,
    dim: usize,
    kernel: [usize; 2],
    dilation: [usize; 2],
    rpb: bool,
    fused: bool,
}

const fn na(
    batch: usize,
    hw: [usize; 2],
    heads: usize,
    dim: usize,
    kernel: [usize; 2],
    dilation: [usize; 2],
    rpb: bool,
    fused: bool,
) -> NaCase {
    NaCase {
        batch,
        hw,
        heads,
        dim,
        kernel,
        dilation,
        rpb,
        fused,
    }
}

/// Odd and even kernels, dilation with L mod d != 0, k > L, rpb on and off, heads 1..4, head dims
/// 8..128, non-square grids, fused QKV views, and a window too large for shared memory (global path).
const NA_CASES: [NaCase; 9] = [
    na(1, [7, 9], 1, 8, [3, 3], [1, 1], true, false),
    na(2, [12, 10], 2, 16, [4, 5], [1, 1], true, true),
    na(1, [13, 11], 3, 33, [3, 3], [2, 3], true, true),
    na(1, [5, 4], 2, 24, [7, 7], [1, 1], false, false),
    na(2, [20, 17], 4, 64, [7, 7], [1, 1], true, true),
    na(1, [9, 14], 1, 40, [5, 6], [2, 1], false, false),
    na(1, [6, 7], 2, 128, [3, 3], [1, 1], true, true),
    na(1, [10, 9], 1, 32, [5, 3], [3, 4], true, false),
    na(1, [33, 35], 1, 64, [33, 35], [1, 1], true, false),
];

struct NaResult<T> {
    out: Vec<T>,
    attn: Vec<f32>,
    grads: Vec<T>,
    d_rpb: Vec<f32>,
}

/// Views of q, k, v in the input buffer and of dq, dk, dv in the gradient buffer, and its length.
fn na_views(c: &NaCase) -> ([HeadsView; 3], usize) {
    let [h, w] = c.hw;
    let n = c.batch * h * w * c.heads * c.dim;
    if c.fused {
        let v = |i| HeadsView::fused_qkv(h, w, c.heads, c.dim, i);
        ([v(0), v(1), v(2)], 3 * n)
    } else {
        let v = HeadsView::contiguous(h, w, c.heads, c.dim);
        ([v, v.with_offset(n), v.with_offset(2 * n)], 3 * n)
    }
}

fn problem(c: &NaCase) -> Na2d {
    let mut p = Na2d::new(c.batch, c.hw[0], c.hw[1], c.heads, c.dim, c.kernel);
    p.dilation = c.dilation;
    p.scale = 0.77 / (c.dim as f64).sqrt();
    p
}

fn na_gpu<T: GpuFloat>(
    dev: &GpuDevice,
    c: &NaCase,
    qkv: &[T],
    rpb: &[f32],
    d_out: &[T],
) -> NaResult<T> {
    let p = problem(c);
    let (views, len) = na_views(c);
    let x = dev.upload(qkv).unwrap();
    let t = dev.upload(rpb).unwrap();
    let g = dev.upload(d_out).unwrap();
    let mut out = dev
        .upload(&vec![T::from_f32(f32::NAN); p.out_len()])
        .unwrap();
    let mut attn = dev.upload(&vec![f32::NAN; p.attn_len()]).unwrap();
    let mut grads = dev.upload(&vec![T::from_f32(f32::NAN); len]).unwrap();
    let mut d_rpb = dev.upload(&vec![f32::NAN; p.rpb_len()]).unwrap();
    let h = |i: usize| GpuHeads {
        data: &x,
        view: views[i],
    };
    let rpb_arg = if c.rpb { Some(&t) } else { None };
    na2d_forward(
        dev,
        &p,
        h(0),
        h(1),
        h(2),
        rpb_arg,
        &mut out,
        Some(&mut attn),
    )
    .unwrap_or_else(|e| panic!("{c:?}: {e}"));
    let d_rpb_arg = if c.rpb { Some(&mut d_rpb) } else { None };
    na2d_backward(
        dev,
        &p,
        h(0),
        h(1),
        h(2),
        &attn,
        &g,
        &mut grads,
        views,
        d_rpb_arg,
    )
    .unwrap_or_else(|e| panic!("{c:?}: {e}"));
    NaResult {
        out: dev.download(&out).unwrap(),
        attn: dev.download(&attn).unwrap(),
        grads: dev.download(&grads).unwrap(),
        d_rpb: dev.download(&d_rpb).unwrap(),
    }
}

fn na_check<T: GpuFloat>(dev: &GpuDevice, label: &str) {
    let mut rng = Rng::fresh(label);
    let (tol_f, tol_g) = tolerances::<T>();
    let mut failures = Vec::new();
    for c in NA_CASES {
        let p = problem(&c);
        let (views, len) = na_views(&c);
        let qkv: Vec<T> = rng.vec(len, 1.5);
        let rpb: Vec<f32> = rng.vec(p.rpb_len(), 0.5);
        let d_out: Vec<T> = rng.vec(p.out_len(), 1.0);
        let got = na_gpu(dev, &c, &qkv, &rpb, &d_out);

        let (x, t, g) = (f64s(&qkv), f64s(&rpb), f64s(&d_out));
        let r = |i: usize| HeadsRef {
            data: &x[..],
            view: views[i],
        };
        let mut out = vec![0.0f64; p.out_len()];
        let mut attn = vec![0.0f64; p.attn_len()];
        let rpb_ref = if c.rpb { Some(&t[..]) } else { None };
        neighborhood_attention_2d_forward_reference::<f64>(
            &p,
            r(0),
            r(1),
            r(2),
            rpb_ref,
            &mut out,
            &mut attn,
        );
        let mut grads = vec![0.0f64; len];
        let mut d_rpb = vec![0.0f64; p.rpb_len()];
        neighborhood_attention_2d_backward_reference::<f64>(
            &p,
            r(0),
            r(1),
            r(2),
            &attn,
            &g,
            HeadsGradsMut {
                data: &mut grads,
                dq: views[0],
                dk: views[1],
                dv: views[2],
            },
            if c.rpb { Some(&mut d_rpb) } else { None },
        );
        let errs = [
            ("out", rel_err(&got.out, &out), tol_f),
            (
                "attn",
                rel_err(&got.attn, &cpu_attn_in_gpu_layout(&p, &attn)),
                tol_f,
            ),
            ("dqkv", rel_err(&got.grads, &grads), tol_g),
            (
                "d_rpb",
                if c.rpb {
                    rel_err(&got.d_rpb, &d_rpb)
                } else {
                    0.0
                },
                tol_g,
            ),
        ];
        println!(
            "{label} {c:?}: {}",
            errs.iter()
                .map(|(n, e, _)| format!("{n} {e:.2e}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (name, e, tol) in errs {
            if e.is_nan() || e >= tol {
                failures.push(format!(
                    "{label} {c:?}: {name} relative error {e:.3e} >= {tol:.0e}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The CPU kernels save `attn` as `[B, heads, H, slots, W]` (a slot's values for a row of queries are
/// contiguous, for vector loads); the GPU kernels as `[B, heads, H, W, slots]`. Each backward reads its
/// own layout; to compare them, the CPU reference is permuted into the GPU's.
fn cpu_attn_in_gpu_layout(p: &Na2d, cpu: &[f64]) -> Vec<f64> {
    let slots = p.window_slots();
    let mut gpu = vec![f64::NAN; cpu.len()];
    for b in 0..p.batch {
        for h in 0..p.heads {
            for i in 0..p.height {
                for j in 0..p.width {
                    for n in 0..slots {
                        let g = (((b * p.heads + h) * p.height + i) * p.width + j) * slots + n;
                        gpu[g] = cpu[p.attn_index(b, h, n, i, j)];
                    }
                }
            }
        }
    }
    gpu
}

#[test]
fn na_matches_cpu_reference_f32() {
    if let Some(dev) = device_or_skip() {
        na_check::<f32>(dev, "na f32");
    }
}

#[test]
fn na_matches_cpu_reference_bf16() {
    if let Some(dev) = device_or_skip() {
        na_check::<bf16>(dev, "na bf16");
    }
}

#[test]
fn na_is_deterministic() {
    let Some(dev) = device_or_skip() else { return };
    let mut rng = Rng::fresh("na determinism");
    let c = na(2, [23, 19], 3, 32, [7, 5], [1, 2], true, true);
    let p = problem(&c);
    let (_, len) = na_views(&c);
    let qkv: Vec<f32> = rng.vec(len, 1.5);
    let rpb: Vec<f32> = rng.vec(p.rpb_len(), 0.5);
    let d_out: Vec<f32> = rng.vec(p.out_len(), 1.0);
    let a = na_gpu(dev, &c, &qkv, &rpb, &d_out);
    let b = na_gpu(dev, &c, &qkv, &rpb, &d_out);
    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.out), bits(&b.out), "out differs between runs");
    assert_eq!(bits(&a.attn), bits(&b.attn), "attn differs between runs");
    assert_eq!(bits(&a.grads), bits(&b.grads), "dqkv differs between runs");
    assert_eq!(bits(&a.d_rpb), bits(&b.d_rpb), "d_rpb differs between runs");
}

/// (batch, tokens, heads, dim, fused)
const ATTN_CASES: [(usize, usize, usize, usize, bool); 7] = [
    (1, 1, 1, 8, false),
    (2, 3, 2, 33, true),
    (1, 7, 3, 64, false),
    (2, 33, 1, 32, true),
    (1, 130, 2, 16, true),
    (1, 257, 4, 96, false),
    (2, 200, 2, 32, false),
];

struct AttnResult<T> {
    out: Vec<T>,
    lse: Vec<f32>,
    grads: Vec<T>,
}

fn attn_views(p: &Attention, fused: bool) -> [HeadsView; 3] {
    let n = p.out_len();
    if fused {
        let v = |i| HeadsView::fused_qkv(1, p.tokens, p.heads, p.head_dim, i);
        [v(0), v(1), v(2)]
    } else {
        let v = p.out_view();
        [v, v.with_offset(n), v.with_offset(2 * n)]
    }
}

fn attn_gpu<T: GpuFloat>(
    dev: &GpuDevice,
    p: &Attention,
    views: [HeadsView; 3],
    qkv: &[T],
    d_out: &[T],
) -> AttnResult<T> {
    let x = dev.upload(qkv).unwrap();
    let g = dev.upload(d_out).unwrap();
    let mut out = dev
        .upload(&vec![T::from_f32(f32::NAN); p.out_len()])
        .unwrap();
    let mut lse = dev.upload(&vec![f32::NAN; p.lse_len()]).unwrap();
    let mut grads = dev.upload(&vec![T::from_f32(f32::NAN); qkv.len()]).unwrap();
    let h = |i: usize| GpuHeads {
        data: &x,
        view: views[i],
    };
    attention_forward(dev, p, h(0), h(1), h(2), &mut out, &mut lse)
        .unwrap_or_else(|e| panic!("{p:?}: {e}"));
    attention_backward(dev, p, h(0), h(1), h(2), &out, &lse, &g, &mut grads, views)
        .unwrap_or_else(|e| panic!("{p:?}: {e}"));
    AttnResult {
        out: dev.download(&out).unwrap(),
        lse: dev.download(&lse).unwrap(),
        grads: dev.download(&grads).unwrap(),
    }
}

fn attn_check<T: GpuFloat>(dev: &GpuDevice, label: &str) {
    let mut rng = Rng::fresh(label);
    let (tol_f, tol_g) = tolerances::<T>();
    let mut failures = Vec::new();
    for (batch, tokens, heads, dim, fused) in ATTN_CASES {
        let mut p = Attention::new(batch, tokens, heads, dim);
        p.scale = 1.3 / (dim as f64).sqrt();
        let views = attn_views(&p, fused);
        let qkv: Vec<T> = rng.vec(3 * p.out_len(), 1.5);
        let d_out: Vec<T> = rng.vec(p.out_len(), 1.0);
        let got = attn_gpu(dev, &p, views, &qkv, &d_out);
        let (x, g) = (f64s(&qkv), f64s(&d_out));
        let r = |i: usize| HeadsRef {
            data: &x[..],
            view: views[i],
        };
        let mut out = vec![0.0f64; p.out_len()];
        let mut lse = vec![0.0f64; p.lse_len()];
        attention_forward_reference::<f64>(&p, r(0), r(1), r(2), &mut out, &mut lse);
        let mut grads = vec![0.0f64; x.len()];
        attention_backward_reference::<f64>(
            &p,
            r(0),
            r(1),
            r(2),
            &out,
            &lse,
            &g,
            HeadsGradsMut {
                data: &mut grads,
                dq: views[0],
                dk: views[1],
                dv: views[2],
            },
        );
        let errs = [
            ("out", rel_err(&got.out, &out), tol_f),
            ("lse", rel_err(&got.lse, &lse), tol_f),
            ("dqkv", rel_err(&got.grads, &grads), tol_g),
        ];
        println!(
            "{label} B{batch} N{tokens} h{heads} d{dim} fused {fused}: {}",
            errs.iter()
                .map(|(n, e, _)| format!("{n} {e:.2e}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (name, e, tol) in errs {
            if e.is_nan() || e >= tol {
                failures.push(format!(
                    "{label} {p:?}: {name} relative error {e:.3e} >= {tol:.0e}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn attention_matches_cpu_reference_f32() {
    if let Some(dev) = device_or_skip() {
        attn_check::<f32>(dev, "attention f32");
    }
}

#[test]
fn attention_matches_cpu_reference_bf16() {
    if let Some(dev) = device_or_skip() {
        attn_check::<bf16>(dev, "attention bf16");
    }
}

#[test]
fn attention_is_deterministic() {
    let Some(dev) = device_or_skip() else { return };
    let mut rng = Rng::fresh("attention determinism");
    let p = Attention::new(2, 300, 2, 32);
    let views = attn_views(&p, true);
    let qkv: Vec<f32> = rng.vec(3 * p.out_len(), 1.5);
    let d_out: Vec<f32> = rng.vec(p.out_len(), 1.0);
    let a = attn_gpu(dev, &p, views, &qkv, &d_out);
    let b = attn_gpu(dev, &p, views, &qkv, &d_out);
    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.out), bits(&b.out), "out differs between runs");
    assert_eq!(bits(&a.lse), bits(&b.lse), "lse differs between runs");
    assert_eq!(bits(&a.grads), bits(&b.grads), "dqkv differs between runs");
}
