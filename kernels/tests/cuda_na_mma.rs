//! The tensor-core NA kernels (kernels/src/cuda/neighborhood_attention_mma/, NEVER RUN ON A GPU
//! when written): NVRTC compile and launch signatures (CPU only, needs libnvrtc), and on a GPU
//! forward and backward against the CPU reference in f64 on bf16-rounded inputs, outputs poisoned
//! with NaN, awkward shapes (H, W not multiples of the tile, borders, k' < k, dilation 2 and 3,
//! batch 3, heads 3, fused QKV views, rpb on and off).
//!
//! Tolerances (relative Frobenius norm against f64): out 1e-2, dQ/dK/dV and d(rpb) 3e-2. The
//! inputs are bf16 already, so the error comes from what the kernels round on the way: P (forward)
//! and dS (backward) are rounded to bf16 (relative 2^-9) before the second product, out and the
//! gradients are stored in T (bf16: 2^-9 again), and dS = P (dP - D) cancels (D from the rounded
//! out), which makes the gradients' relative error a few times that of out. The SIMT bf16 kernels
//! measured 1.9e-3 on the H200 with only the output rounding.
//! Without a GPU the GPU tests print why and pass (fail under DINONAT_REQUIRE_GPU=1).
//! Timing (in the packed GPU check): `cargo test --release -p dinonat-kernels --test cuda_na_mma
//! -- --ignored --nocapture mma_vs_simt_timing`.

use dinonat_kernels::cpu::neighborhood_attention::{
    neighborhood_attention_2d_backward_reference, neighborhood_attention_2d_forward_reference,
    HeadsGradsMut, HeadsRef, HeadsView, Na2d,
};
use dinonat_kernels::cuda::neighborhood_attention::{
    na2d_backward, na2d_forward, GpuFloat, GpuHeads,
};
use dinonat_kernels::cuda::neighborhood_attention_mma::{
    lse_len, na2d_mma_backward, na2d_mma_forward, plan, ENTRIES,
};
use dinonat_kernels::cuda::{bf16, nvrtc, signature, skip_gpu_test, CudaSlice, GpuDevice};

const TOL_OUT: f64 = 1e-2;
const TOL_GRAD: f64 = 3e-2;

#[test]
fn nvrtc_compiles_and_launches_match_the_ptx() {
    if !nvrtc::nvrtc_present() {
        let msg = "libnvrtc cannot be loaded (scripts/nvrtc-check.sh sets it up)";
        assert!(
            std::env::var("DINONAT_REQUIRE_NVRTC").as_deref() != Ok("1"),
            "DINONAT_REQUIRE_NVRTC=1 but {msg}"
        );
        skip_gpu_test(msg);
        return;
    }
    for arch in ["sm_80", "sm_90a"] {
        let ptx = nvrtc::compile(nvrtc::NEIGHBORHOOD_ATTENTION_MMA, arch)
            .unwrap_or_else(|e| panic!("{e}"))
            .to_src();
        assert!(ptx.contains("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"));
        assert!(ptx.contains("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16"));
        signature::check_entries(&ptx, ENTRIES)
            .unwrap_or_else(|e| panic!("{arch} neighborhood_attention_mma.cu: {e}"));
        println!(
            "{arch} neighborhood_attention_mma.cu: {} entries match",
            ENTRIES.len()
        );
    }
}

fn device_or_skip() -> Option<&'static GpuDevice> {
    match GpuDevice::get() {
        Ok(d) => Some(d),
        Err(e) => {
            skip_gpu_test(&format!("no CUDA device ({e})"));
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
        println!("{label}: seed {}", t | 1);
        Rng(t | 1)
    }
    /// Values in [-amp, amp) rounded to bf16, stored as `T`.
    fn vec<T: GpuFloat>(&mut self, n: usize, amp: f32) -> Vec<T> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
                let u = (bits as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
                T::from_f32(bf16::from_f32(u * amp).to_f32())
            })
            .collect()
    }
}

fn f64s<T: GpuFloat>(x: &[T]) -> Vec<f64> {
    x.iter().map(|&v| v.to_f32() as f64).collect()
}

/// ||got - exact|| / ||exact||; a NaN or infinity anywhere gives infinity.
fn rel_err<T: GpuFloat>(got: &[T], exact: &[f64]) -> f64 {
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

/// (batch, [H, W], heads, head_dim, kernel, dilation, rpb, fused QKV)
type Case = (
    usize,
    [usize; 2],
    usize,
    usize,
    [usize; 2],
    [usize; 2],
    bool,
    bool,
);

const CASES: [Case; 8] = [
    (3, [13, 11], 3, 32, [7, 7], [1, 1], true, false),
    (1, [21, 19], 2, 64, [5, 7], [2, 2], true, true),
    (2, [17, 10], 3, 32, [3, 5], [2, 3], false, true),
    (1, [9, 12], 1, 32, [13, 13], [1, 1], true, false),
    (1, [30, 27], 2, 32, [13, 11], [1, 1], true, false),
    (2, [7, 33], 1, 64, [3, 9], [1, 2], true, false),
    (1, [5, 4], 2, 32, [7, 7], [1, 1], false, false),
    (1, [40, 37], 1, 32, [7, 7], [1, 1], true, true),
];

/// CPU only: the GPU cases and the timed shapes are all ones the mma kernels take (a case that
/// silently needed the SIMT fallback would test nothing).
#[test]
fn every_case_has_an_mma_plan() {
    for c in CASES {
        let p = problem(&c);
        assert_eq!(plan::unsupported(&p), None, "{c:?}");
    }
    for side in [56, 112] {
        assert_eq!(
            plan::unsupported(&Na2d::new(8, side, side, 4, 32, [7, 7])),
            None
        );
    }
}

fn problem(c: &Case) -> Na2d {
    let mut p = Na2d::new(c.0, c.1[0], c.1[1], c.2, c.3, c.4);
    p.dilation = c.5;
    p.scale = 0.77 / (c.3 as f64).sqrt();
    p
}

fn views(c: &Case) -> ([HeadsView; 3], usize) {
    let [h, w] = c.1;
    let n = c.0 * h * w * c.2 * c.3;
    if c.7 {
        let v = |i| HeadsView::fused_qkv(h, w, c.2, c.3, i);
        ([v(0), v(1), v(2)], 3 * n)
    } else {
        let v = HeadsView::contiguous(h, w, c.2, c.3);
        ([v, v.with_offset(n), v.with_offset(2 * n)], 3 * n)
    }
}

/// out, lse, dQKV, d(rpb) from the mma kernels, every output poisoned first.
fn run_mma<T: GpuFloat>(
    dev: &GpuDevice,
    c: &Case,
    qkv: &[T],
    rpb: &[f32],
    d_out: &[T],
) -> (Vec<T>, Vec<f32>, Vec<T>, Vec<f32>) {
    let p = problem(c);
    let (v, len) = views(c);
    let x = dev.upload(qkv).unwrap();
    let t = dev.upload(rpb).unwrap();
    let g = dev.upload(d_out).unwrap();
    let nan = T::from_f32(f32::NAN);
    let mut out = dev.upload(&vec![nan; p.out_len()]).unwrap();
    let mut lse = dev.upload(&vec![f32::NAN; lse_len(&p)]).unwrap();
    let mut grads = dev.upload(&vec![nan; len]).unwrap();
    let mut d_rpb = dev.upload(&vec![f32::NAN; p.rpb_len()]).unwrap();
    let h = |i: usize| GpuHeads {
        data: &x,
        view: v[i],
    };
    let rpb_arg = c.6.then_some(&t);
    na2d_mma_forward(dev, &p, h(0), h(1), h(2), rpb_arg, &mut out, &mut lse)
        .unwrap_or_else(|e| panic!("{c:?}: {e}"));
    let d_rpb_arg = if c.6 { Some(&mut d_rpb) } else { None };
    na2d_mma_backward(
        dev,
        &p,
        h(0),
        h(1),
        h(2),
        rpb_arg,
        &out,
        &lse,
        &g,
        &mut grads,
        v,
        d_rpb_arg,
    )
    .unwrap_or_else(|e| panic!("{c:?}: {e}"));
    (
        dev.download(&out).unwrap(),
        dev.download(&lse).unwrap(),
        dev.download(&grads).unwrap(),
        dev.download(&d_rpb).unwrap(),
    )
}

fn check<T: GpuFloat>(dev: &GpuDevice, label: &str) {
    let mut rng = Rng::fresh(label);
    let mut failures = Vec::new();
    for c in CASES {
        let p = problem(&c);
        assert!(
            plan::unsupported(&p).is_none(),
            "{c:?}: {:?}",
            plan::unsupported(&p)
        );
        let (v, len) = views(&c);
        let qkv: Vec<T> = rng.vec(len, 1.5);
        let rpb: Vec<f32> = rng.vec(p.rpb_len(), 0.5);
        let d_out: Vec<T> = rng.vec(p.out_len(), 1.0);
        let (out, lse, grads, d_rpb) = run_mma(dev, &c, &qkv, &rpb, &d_out);

        let (x, t, g) = (f64s(&qkv), f64s(&rpb), f64s(&d_out));
        let r = |i: usize| HeadsRef {
            data: &x[..],
            view: v[i],
        };
        let mut e_out = vec![0.0f64; p.out_len()];
        let mut attn = vec![0.0f64; p.attn_len()];
        let rpb_ref = c.6.then_some(&t[..]);
        neighborhood_attention_2d_forward_reference::<f64>(
            &p,
            r(0),
            r(1),
            r(2),
            rpb_ref,
            &mut e_out,
            &mut attn,
        );
        let mut e_grads = vec![0.0f64; len];
        let mut e_rpb = vec![0.0f64; p.rpb_len()];
        neighborhood_attention_2d_backward_reference::<f64>(
            &p,
            r(0),
            r(1),
            r(2),
            &attn,
            &g,
            HeadsGradsMut {
                data: &mut e_grads,
                dq: v[0],
                dk: v[1],
                dv: v[2],
            },
            if c.6 { Some(&mut e_rpb) } else { None },
        );
        let errs = [
            ("out", rel_err(&out, &e_out), TOL_OUT),
            ("dqkv", rel_err(&grads, &e_grads), TOL_GRAD),
            (
                "d_rpb",
                if c.6 { rel_err(&d_rpb, &e_rpb) } else { 0.0 },
                TOL_GRAD,
            ),
            // lse has no CPU twin; every entry must be finite (the gradients above depend on it).
            (
                "lse finite",
                if lse.iter().all(|l| l.is_finite()) {
                    0.0
                } else {
                    f64::INFINITY
                },
                1.0,
            ),
        ];
        let line: Vec<String> = errs
            .iter()
            .map(|(n, e, _)| format!("{n} {e:.2e}"))
            .collect();
        println!("{label} {c:?}: {}", line.join(", "));
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

#[test]
fn mma_matches_cpu_reference_bf16() {
    if let Some(dev) = device_or_skip() {
        check::<bf16>(dev, "na mma bf16");
    }
}

#[test]
fn mma_matches_cpu_reference_f32_inputs() {
    if let Some(dev) = device_or_skip() {
        check::<f32>(dev, "na mma f32 in/out");
    }
}

#[test]
fn mma_is_deterministic_and_rejects_unsupported_shapes() {
    let Some(dev) = device_or_skip() else { return };
    let mut rng = Rng::fresh("na mma determinism");
    let c = CASES[0];
    let p = problem(&c);
    let (_, len) = views(&c);
    let qkv: Vec<bf16> = rng.vec(len, 1.5);
    let rpb: Vec<f32> = rng.vec(p.rpb_len(), 0.5);
    let d_out: Vec<bf16> = rng.vec(p.out_len(), 1.0);
    let a = run_mma(dev, &c, &qkv, &rpb, &d_out);
    let b = run_mma(dev, &c, &qkv, &rpb, &d_out);
    let bits = |x: &[bf16]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let fbits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.0), bits(&b.0), "out");
    assert_eq!(fbits(&a.1), fbits(&b.1), "lse");
    assert_eq!(bits(&a.2), bits(&b.2), "dqkv");
    assert_eq!(fbits(&a.3), fbits(&b.3), "d_rpb");
    // head_dim 48 is not compiled: an error naming it, nothing launched.
    let mut q = p;
    q.head_dim = 48;
    let x = dev
        .upload(&vec![bf16::from_f32(0.5); q.out_len() * 3])
        .unwrap();
    let h = GpuHeads {
        data: &x,
        view: HeadsView::contiguous(q.height, q.width, q.heads, 48),
    };
    let mut out = dev.zeros::<bf16>(q.out_len()).unwrap();
    let mut lse = dev.zeros::<f32>(lse_len(&q)).unwrap();
    let e = na2d_mma_forward(dev, &q, h, h, h, None, &mut out, &mut lse).unwrap_err();
    assert!(e.contains("head_dim 48"), "{e}");
}

/// Median of 5 samples of `reps` calls, ms per call.
fn median_ms(dev: &GpuDevice, mut f: impl FnMut() -> Result<(), String>) -> f64 {
    for _ in 0..3 {
        f().unwrap();
    }
    let mut s: Vec<f64> = (0..5).map(|_| dev.time_ms(10, &mut f).unwrap()).collect();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s[2]
}

/// B8 h4 d32 k7 bf16 at 56^2 and 112^2: SIMT vs mma, forward and forward + backward, same run.
#[test]
#[ignore = "timing; run by scripts/gpu-check-ops.sh on a GPU"]
fn mma_vs_simt_timing() {
    let Some(dev) = device_or_skip() else { return };
    let mut rng = Rng::fresh("na mma timing");
    println!("{} ({}):", dev.info().name, dev.info().arch);
    for side in [56, 112] {
        let p = Na2d::new(8, side, side, 4, 32, [7, 7]);
        let c: Case = (8, [side, side], 4, 32, [7, 7], [1, 1], true, true);
        let (v, len) = views(&c);
        let x = dev.upload(&rng.vec::<bf16>(len, 1.5)).unwrap();
        let t = dev.upload(&rng.vec::<f32>(p.rpb_len(), 0.5)).unwrap();
        let g = dev.upload(&rng.vec::<bf16>(p.out_len(), 1.0)).unwrap();
        let mut out: CudaSlice<bf16> = dev.zeros(p.out_len()).unwrap();
        let mut grads: CudaSlice<bf16> = dev.zeros(len).unwrap();
        let mut attn = dev.zeros::<f32>(p.attn_len()).unwrap();
        let mut lse = dev.zeros::<f32>(lse_len(&p)).unwrap();
        let mut d_rpb = dev.zeros::<f32>(p.rpb_len()).unwrap();
        let h = |i: usize| GpuHeads {
            data: &x,
            view: v[i],
        };
        let simt_f = median_ms(dev, || {
            na2d_forward(dev, &p, h(0), h(1), h(2), Some(&t), &mut out, None)
        });
        let simt_fb = median_ms(dev, || {
            na2d_forward(
                dev,
                &p,
                h(0),
                h(1),
                h(2),
                Some(&t),
                &mut out,
                Some(&mut attn),
            )?;
            na2d_backward(
                dev,
                &p,
                h(0),
                h(1),
                h(2),
                &attn,
                &g,
                &mut grads,
                v,
                Some(&mut d_rpb),
            )
        });
        let mma_f = median_ms(dev, || {
            na2d_mma_forward(dev, &p, h(0), h(1), h(2), Some(&t), &mut out, &mut lse)
        });
        let mma_fb = median_ms(dev, || {
            na2d_mma_forward(dev, &p, h(0), h(1), h(2), Some(&t), &mut out, &mut lse)?;
            na2d_mma_backward(
                dev,
                &p,
                h(0),
                h(1),
                h(2),
                Some(&t),
                &out,
                &lse,
                &g,
                &mut grads,
                v,
                Some(&mut d_rpb),
            )
        });
        println!(
            "na B8 h4 d32 k7 bf16 {side}x{side}: forward simt {simt_f:.3} ms, mma {mma_f:.3} ms ({:.2}x); \
             fwd+bwd simt {simt_fb:.3} ms, mma {mma_fb:.3} ms ({:.2}x)",
            simt_f / mma_f,
            simt_fb / mma_fb
        );
    }
}

/// The dispatch: SIMT (probabilities saved) unless DINONAT_NA_MMA=1 and the shape is supported;
/// an unsupported shape (head_dim 48) is SIMT even when asked.
#[test]
fn dispatch_is_opt_in_and_falls_back() {
    use dinonat_kernels::cuda::neighborhood_attention_mma::{
        mma_requested, na2d_backward_any, na2d_forward_any, NaSaved,
    };
    let Some(dev) = device_or_skip() else { return };
    let mut rng = Rng::fresh("na dispatch");
    for dim in [32, 48] {
        let c: Case = (1, [9, 10], 2, dim, [5, 5], [1, 1], true, false);
        let p = problem(&c);
        let (v, len) = views(&c);
        let x = dev.upload(&rng.vec::<bf16>(len, 1.5)).unwrap();
        let t = dev.upload(&rng.vec::<f32>(p.rpb_len(), 0.5)).unwrap();
        let g = dev.upload(&rng.vec::<bf16>(p.out_len(), 1.0)).unwrap();
        let mut out: CudaSlice<bf16> = dev.zeros(p.out_len()).unwrap();
        let mut grads: CudaSlice<bf16> = dev.zeros(len).unwrap();
        let h = |i: usize| GpuHeads {
            data: &x,
            view: v[i],
        };
        let saved = na2d_forward_any(dev, &p, h(0), h(1), h(2), Some(&t), &mut out, true)
            .unwrap()
            .expect("keep = true saves");
        let want_mma = mma_requested() && dim == 32;
        assert_eq!(matches!(saved, NaSaved::Lse(_)), want_mma, "dim {dim}");
        na2d_backward_any(
            dev,
            &p,
            h(0),
            h(1),
            h(2),
            Some(&t),
            &out,
            &saved,
            &g,
            &mut grads,
            v,
            None,
        )
        .unwrap();
        let grads = dev.download(&grads).unwrap();
        assert!(grads.iter().all(|x| x.to_f32().is_finite()), "dim {dim}");
        println!("dispatch dim {dim}: mma {want_mma}");
    }
}
