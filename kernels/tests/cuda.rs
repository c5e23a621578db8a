//! GPU parity tests of the GEMMs: every kernel and tile (forced through the dev corner,
//! `cuda::gemm::dev`, feature `gemm-dev`: `cargo test -p dinonat-kernels --release --features
//! gemm-dev --test cuda`) against the CPU reference on fresh random inputs of awkward shapes,
//! outputs poisoned with NaN first, relative Frobenius-norm error against the stated tolerance
//! (GemmPrecision::tolerance). Without a GPU each test prints why and returns.

use dinonat_kernels::cpu::gemm::gemm_reference;
use dinonat_kernels::cuda::gemm::dev::{self as gemm, GemmKernel, MmaTile, WgmmaTile};
use dinonat_kernels::cuda::{GemmPrecision, GpuDevice};
use dinonat_kernels::gemm::{BatchStrides, MatrixLayout};
use half::bf16;

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
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40; // 24 bits
        (bits as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }
}

/// ||got - exact|| / ||exact||; NaN anywhere gives infinity.
fn rel_err(got: &[f32], exact: &[f64]) -> f64 {
    assert_eq!(got.len(), exact.len());
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&g, &e) in got.iter().zip(exact) {
        if !g.is_finite() {
            return f64::INFINITY;
        }
        num += (g as f64 - e) * (g as f64 - e);
        den += e * e;
    }
    (num / den.max(1e-300)).sqrt()
}

fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

#[derive(Clone, Copy, Debug)]
enum Op {
    N,
    T,
}

fn layout(op: Op, rows: usize, cols: usize) -> MatrixLayout {
    match op {
        Op::N => MatrixLayout::row_major(cols),
        Op::T => MatrixLayout::col_major(rows),
    }
}

/// The tolerance for one case. The relative-norm bounds of [`GemmPrecision::tolerance`] rely on
/// many products averaging their rounding errors; with a handful of outputs and short sums
/// (1 x 1 x 1: C = a * b) one case can show the worst case of rounding both operands,
/// 2 * 2^-11 ~ 9.8e-4 for TF32 (BF16: 2 * 2^-9 ~ 3.9e-3, under its 1e-2 already).
fn tolerance_for(p: GemmPrecision, m: usize, k: usize, n: usize) -> f64 {
    if p == GemmPrecision::Tf32 && m * n * k < 4096 {
        1.1e-3
    } else {
        p.tolerance()
    }
}

/// One GEMM on the GPU vs the f64 reference; returns the relative error over its tolerance.
fn check_gemm(
    dev: &GpuDevice,
    rng: &mut Rng,
    p: GemmPrecision,
    kernel: GemmKernel,
    (m, k, n): (usize, usize, usize),
    opa: Op,
    opb: Op,
    col_major_c: bool,
    beta: f32,
) -> f64 {
    let (la, lb) = (layout(opa, m, k), layout(opb, k, n));
    let lc = if col_major_c {
        MatrixLayout::col_major(m)
    } else {
        MatrixLayout::row_major(n)
    };
    let a = rng.vec(m * k);
    let b = rng.vec(k * n);
    let c0: Vec<f32> = if beta == 0.0 {
        vec![f32::NAN; m * n]
    } else {
        rng.vec(m * n)
    };
    let alpha = 0.75f32;
    let mut exact = to_f64(&c0);
    if beta == 0.0 {
        exact.iter_mut().for_each(|v| *v = 0.0);
    }
    gemm_reference::<f64>(
        m,
        k,
        n,
        alpha as f64,
        &to_f64(&a),
        la,
        &to_f64(&b),
        lb,
        beta as f64,
        &mut exact,
        lc,
    );
    let da = dev.upload(&a).unwrap();
    let db = dev.upload(&b).unwrap();
    let mut dc = dev.upload(&c0).unwrap();
    let one = BatchStrides {
        count: 1,
        a: 0,
        b: 0,
        c: 0,
    };
    gemm::gemm_batched_kernel(
        dev, p, kernel, one, m, k, n, alpha, &da, la, &db, lb, beta, &mut dc, lc,
    )
    .unwrap();
    let got = dev.download(&dc).unwrap();
    let err = rel_err(&got, &exact);
    let tol = tolerance_for(p, m, k, n);
    println!(
        "{:>4} {:>13} {m:>4} x {k:>4} x {n:>4} {opa:?}{opb:?} C{} beta {beta}: rel err {err:.2e} (tol {tol:.1e})",
        p.name(),
        kernel.name(),
        if col_major_c { "col" } else { "row" },
    );
    err / tol
}

const SHAPES: [(usize, usize, usize); 9] = [
    (1, 1, 1),
    (3, 7, 33),
    (7, 33, 3),
    (33, 257, 7),
    (257, 33, 257),
    (1000, 513, 77),
    (130, 1000, 129),
    (128, 64, 256),
    (256, 512, 384),
];

fn gemm_parity(p: GemmPrecision) {
    let kernels: Vec<GemmKernel> = if p == GemmPrecision::Fp32Simt {
        vec![GemmKernel::Auto]
    } else {
        MmaTile::ALL.iter().map(|&t| GemmKernel::Mma(t)).collect()
    };
    gemm_parity_kernels(p, &kernels, p.name());
}

/// Every shape, operand layout, C layout and beta of the parity suite, on each kernel.
fn gemm_parity_kernels(p: GemmPrecision, tiles: &[GemmKernel], label: &str) {
    let Some(dev) = device_or_skip() else { return };
    let mut rng = Rng::fresh(label);
    let mut worst = 0.0f64; // max over cases of rel err / tolerance
    for &tile in tiles {
        for &shape in &SHAPES {
            worst = worst.max(check_gemm(
                dev,
                &mut rng,
                p,
                tile,
                shape,
                Op::N,
                Op::N,
                false,
                0.0,
            ));
        }
        for (opa, opb) in [(Op::T, Op::N), (Op::N, Op::T), (Op::T, Op::T)] {
            for shape in [(33, 257, 7), (257, 129, 200), (64, 96, 128)] {
                worst = worst.max(check_gemm(
                    dev, &mut rng, p, tile, shape, opa, opb, false, 0.0,
                ));
            }
        }
        for shape in [(7, 33, 3), (200, 100, 130)] {
            worst = worst.max(check_gemm(
                dev,
                &mut rng,
                p,
                tile,
                shape,
                Op::N,
                Op::N,
                false,
                0.5,
            ));
            worst = worst.max(check_gemm(
                dev,
                &mut rng,
                p,
                tile,
                shape,
                Op::N,
                Op::T,
                true,
                0.0,
            ));
            worst = worst.max(check_gemm(
                dev,
                &mut rng,
                p,
                tile,
                shape,
                Op::T,
                Op::N,
                true,
                -1.5,
            ));
        }
    }
    // The default kernel choice, once, on a shape large enough to pick the big tile.
    worst = worst.max(check_gemm(
        dev,
        &mut rng,
        p,
        GemmKernel::Auto,
        (1000, 513, 777),
        Op::N,
        Op::N,
        false,
        0.0,
    ));
    // `worst` is a ratio to each case's own tolerance (tolerance_for), so the bound is 1.
    println!(
        "{label}: worst rel err / tolerance {worst:.2e} (base tolerance {:.0e})",
        p.tolerance()
    );
    assert!(
        worst < 1.0,
        "{label}: a case's rel err is {worst:.2} x its tolerance"
    );
}

#[test]
fn gemm_fp32_simt_matches_cpu() {
    gemm_parity(GemmPrecision::Fp32Simt);
}

#[test]
fn gemm_tf32_matches_cpu() {
    gemm_parity(GemmPrecision::Tf32);
}

#[test]
fn gemm_bf16_matches_cpu() {
    gemm_parity(GemmPrecision::Bf16);
}

#[test]
fn gemm_batched_matches_cpu() {
    let Some(dev) = device_or_skip() else { return };
    let mut rng = Rng::fresh("batched");
    let (m, k, n, count) = (65, 40, 33, 3);
    let batch = BatchStrides {
        count,
        a: m * k + 5,
        b: k * n + 3,
        c: m * n + 1,
    };
    let a = rng.vec(count * batch.a);
    let b = rng.vec(count * batch.b);
    let (la, lb, lc) = (
        MatrixLayout::row_major(k),
        MatrixLayout::row_major(n),
        MatrixLayout::row_major(n),
    );
    let mut variants = vec![(GemmPrecision::Fp32Simt, GemmKernel::Auto)];
    for p in [GemmPrecision::Tf32, GemmPrecision::Bf16] {
        for t in MmaTile::ALL {
            variants.push((p, GemmKernel::Mma(t)));
        }
        if gemm::wgmma_available(dev) {
            for t in WgmmaTile::ALL {
                variants.push((p, GemmKernel::Wgmma(t)));
            }
        }
    }
    for (p, tile) in variants {
        let mut c = vec![f32::NAN; count * batch.c];
        let mut exact = vec![0.0f64; count * batch.c];
        let mut got_all = Vec::new();
        let mut exact_all = Vec::new();
        let (da, db) = (dev.upload(&a).unwrap(), dev.upload(&b).unwrap());
        let mut dc = dev.upload(&c).unwrap();
        gemm::gemm_batched_kernel(
            dev, p, tile, batch, m, k, n, 1.0, &da, la, &db, lb, 0.0, &mut dc, lc,
        )
        .unwrap();
        c = dev.download(&dc).unwrap();
        for t in 0..count {
            let (a64, b64) = (to_f64(&a[t * batch.a..]), to_f64(&b[t * batch.b..]));
            gemm_reference::<f64>(
                m,
                k,
                n,
                1.0,
                &a64,
                la,
                &b64,
                lb,
                0.0,
                &mut exact[t * batch.c..],
                lc,
            );
            got_all.extend_from_slice(&c[t * batch.c..t * batch.c + m * n]);
            exact_all.extend_from_slice(&exact[t * batch.c..t * batch.c + m * n]);
        }
        let err = rel_err(&got_all, &exact_all);
        println!("batched {} {}: rel err {err:.2e}", p.name(), tile.name());
        assert!(err < p.tolerance(), "batched {}: {err:.2e}", p.name());
    }
}

#[test]
fn gemm_bf16_direct_matches_cpu() {
    let Some(dev) = device_or_skip() else { return };
    let mut rng = Rng::fresh("bf16 direct");
    let (m, k, n) = (300, 264, 136);
    let a: Vec<bf16> = rng.vec(m * k).into_iter().map(bf16::from_f32).collect();
    let b: Vec<bf16> = rng.vec(k * n).into_iter().map(bf16::from_f32).collect();
    let a64: Vec<f64> = a.iter().map(|v| v.to_f64()).collect();
    let b64: Vec<f64> = b.iter().map(|v| v.to_f64()).collect();
    let mut exact = vec![0.0f64; m * n];
    let (la, lb, lc) = (
        MatrixLayout::row_major(k),
        MatrixLayout::row_major(n),
        MatrixLayout::row_major(n),
    );
    gemm_reference::<f64>(m, k, n, 1.0, &a64, la, &b64, lb, 0.0, &mut exact, lc);
    let (da, db) = (dev.upload(&a).unwrap(), dev.upload(&b).unwrap());
    let mut dc = dev.upload(&vec![f32::NAN; m * n]).unwrap();
    let one = BatchStrides {
        count: 1,
        a: 0,
        b: 0,
        c: 0,
    };
    let mut kernels = vec![GemmKernel::Auto];
    kernels.extend(MmaTile::ALL.map(GemmKernel::Mma));
    if gemm::wgmma_available(dev) {
        kernels.extend(WgmmaTile::ALL.map(GemmKernel::Wgmma));
        if std::env::var_os("DINONAT_NO_NMAJOR").is_none() {
            kernels.extend(WgmmaTile::ALL.map(GemmKernel::WgmmaNMajorB));
        }
    }
    for kernel in kernels {
        let mut dc = dev.upload(&vec![f32::NAN; m * n]).unwrap();
        gemm::gemm_bf16_kernel(
            dev, kernel, one, m, k, n, 1.0, &da, k, &db, n, 0.0, &mut dc, n,
        )
        .unwrap();
        let err = rel_err(&dev.download(&dc).unwrap(), &exact);
        // Operands are exact in bf16, so only f32 accumulation error remains.
        println!(
            "bf16 direct {} {m} x {k} x {n}: rel err {err:.2e} (tol 1e-5)",
            kernel.name()
        );
        assert!(err < 1e-5, "bf16 direct {}: {err:.2e}", kernel.name());
    }
    let bad = gemm::gemm_bf16(dev, one, m, 7, n, 1.0, &da, 7, &db, n, 0.0, &mut dc, n);
    assert!(bad.unwrap_err().contains("multiple of 8"));
}

/// The device when it runs the wgmma kernels (compute capability 9.0), else a printed skip.
fn wgmma_device_or_skip() -> Option<&'static GpuDevice> {
    let dev = device_or_skip()?;
    if !gemm::wgmma_available(dev) {
        dinonat_kernels::cuda::skip_gpu_test(&format!(
            "the wgmma GEMM needs compute capability 9.0 (this device: {:?})",
            dev.info().compute_capability
        ));
        return None;
    }
    Some(dev)
}

#[test]
fn gemm_wgmma_tf32_matches_cpu() {
    if wgmma_device_or_skip().is_none() {
        return;
    }
    let kernels = WgmmaTile::ALL.map(GemmKernel::Wgmma);
    gemm_parity_kernels(GemmPrecision::Tf32, &kernels, "tf32 wgmma");
}

#[test]
fn gemm_wgmma_bf16_matches_cpu() {
    if wgmma_device_or_skip().is_none() {
        return;
    }
    let kernels = WgmmaTile::ALL.map(GemmKernel::Wgmma);
    gemm_parity_kernels(GemmPrecision::Bf16, &kernels, "bf16 wgmma");
}

/// Larger awkward shapes (several k-tiles through the 4- and 6-stage pipelines, partial tiles in
/// m, n and k): one f64 reference, every wgmma kernel.
#[test]
fn gemm_wgmma_large_matches_cpu() {
    let Some(dev) = wgmma_device_or_skip() else {
        return;
    };
    let mut rng = Rng::fresh("wgmma large");
    for (m, k, n) in [(1031, 1000, 1100), (520, 1001, 777)] {
        let (la, lb, lc) = (
            MatrixLayout::row_major(k),
            MatrixLayout::row_major(n),
            MatrixLayout::row_major(n),
        );
        let (a, b) = (rng.vec(m * k), rng.vec(k * n));
        let mut exact = vec![0.0f64; m * n];
        gemm_reference::<f64>(
            m,
            k,
            n,
            1.0,
            &to_f64(&a),
            la,
            &to_f64(&b),
            lb,
            0.0,
            &mut exact,
            lc,
        );
        let (da, db) = (dev.upload(&a).unwrap(), dev.upload(&b).unwrap());
        for p in [GemmPrecision::Tf32, GemmPrecision::Bf16] {
            for t in WgmmaTile::ALL {
                let mut dc = dev.upload(&vec![f32::NAN; m * n]).unwrap();
                let one = BatchStrides {
                    count: 1,
                    a: 0,
                    b: 0,
                    c: 0,
                };
                gemm::gemm_batched_kernel(
                    dev,
                    p,
                    GemmKernel::Wgmma(t),
                    one,
                    m,
                    k,
                    n,
                    1.0,
                    &da,
                    la,
                    &db,
                    lb,
                    0.0,
                    &mut dc,
                    lc,
                )
                .unwrap();
                let err = rel_err(&dev.download(&dc).unwrap(), &exact);
                println!(
                    "wgmma large {} {} {m} x {k} x {n}: rel err {err:.2e} (tol {:.0e})",
                    p.name(),
                    t.name(),
                    p.tolerance()
                );
                assert!(err < p.tolerance(), "{} {}: {err:.2e}", p.name(), t.name());
            }
        }
    }
}

/// bf16 operands with B given K-major (B^T, n x k), read in place by TMA; a batch of two.
#[test]
fn gemm_wgmma_bf16_bt_matches_cpu() {
    let Some(dev) = wgmma_device_or_skip() else {
        return;
    };
    let mut rng = Rng::fresh("bf16 bt");
    for (m, k, n) in [(300, 264, 136), (1000, 512, 777), (5, 8, 3)] {
        let count = 2;
        let batch = BatchStrides {
            count,
            a: m * k + 8,
            b: n * k + 16,
            c: m * n + 1,
        };
        let a: Vec<bf16> = rng
            .vec(count * batch.a)
            .into_iter()
            .map(bf16::from_f32)
            .collect();
        let bt: Vec<bf16> = rng
            .vec(count * batch.b)
            .into_iter()
            .map(bf16::from_f32)
            .collect();
        let mut exact = vec![0.0f64; count * batch.c];
        let (la, lb, lc) = (
            MatrixLayout::row_major(k),
            MatrixLayout::col_major(k),
            MatrixLayout::row_major(n),
        );
        for t in 0..count {
            let a64: Vec<f64> = a[t * batch.a..].iter().map(|v| v.to_f64()).collect();
            let b64: Vec<f64> = bt[t * batch.b..].iter().map(|v| v.to_f64()).collect();
            gemm_reference::<f64>(
                m,
                k,
                n,
                1.0,
                &a64,
                la,
                &b64,
                lb,
                0.0,
                &mut exact[t * batch.c..],
                lc,
            );
        }
        let (da, db) = (dev.upload(&a).unwrap(), dev.upload(&bt).unwrap());
        for tile in WgmmaTile::ALL {
            let mut dc = dev.upload(&vec![f32::NAN; count * batch.c]).unwrap();
            gemm::gemm_bf16_bt(
                dev,
                Some(tile),
                batch,
                m,
                k,
                n,
                1.0,
                &da,
                k,
                &db,
                k,
                0.0,
                &mut dc,
                n,
            )
            .unwrap();
            let c = dev.download(&dc).unwrap();
            let (mut got, mut ex) = (Vec::new(), Vec::new());
            for t in 0..count {
                got.extend_from_slice(&c[t * batch.c..t * batch.c + m * n]);
                ex.extend_from_slice(&exact[t * batch.c..t * batch.c + m * n]);
            }
            let err = rel_err(&got, &ex);
            println!(
                "bf16 bt {} {m} x {k} x {n} x {count}: rel err {err:.2e} (tol 1e-5)",
                tile.name()
            );
            assert!(err < 1e-5, "bf16 bt {}: {err:.2e}", tile.name());
        }
    }
    let one = BatchStrides {
        count: 1,
        a: 0,
        b: 0,
        c: 0,
    };
    let (da, db) = (
        dev.upload(&[bf16::from_f32(1.0); 64]).unwrap(),
        dev.upload(&[bf16::from_f32(1.0); 64]).unwrap(),
    );
    let mut dc = dev.zeros::<f32>(64).unwrap();
    let bad = gemm::gemm_bf16_bt(
        dev, None, one, 4, 7, 4, 1.0, &da, 7, &db, 7, 0.0, &mut dc, 4,
    );
    assert!(bad.unwrap_err().contains("multiples of 8"));
}

/// bf16 operands with a row-major B read in place by the N-major wgmma kernel (TMA boxes of
/// 64 n x 64 k, imm-trans-b): awkward m, n (multiples of 8) and k, a batch of two with gaps.
#[test]
fn gemm_wgmma_bf16_n_major_matches_cpu() {
    let Some(dev) = wgmma_device_or_skip() else {
        return;
    };
    let mut rng = Rng::fresh("bf16 n-major");
    for (m, k, n) in [
        (300, 264, 136),
        (1031, 1000, 1104),
        (5, 8, 8),
        (129, 72, 328),
    ] {
        let count = 2;
        let batch = BatchStrides {
            count,
            a: m * k + 8,
            b: k * n + 16,
            c: m * n + 1,
        };
        let a: Vec<bf16> = rng
            .vec(count * batch.a)
            .into_iter()
            .map(bf16::from_f32)
            .collect();
        let b: Vec<bf16> = rng
            .vec(count * batch.b)
            .into_iter()
            .map(bf16::from_f32)
            .collect();
        let mut exact = vec![0.0f64; count * batch.c];
        let (la, lb, lc) = (
            MatrixLayout::row_major(k),
            MatrixLayout::row_major(n),
            MatrixLayout::row_major(n),
        );
        for t in 0..count {
            let a64: Vec<f64> = a[t * batch.a..].iter().map(|v| v.to_f64()).collect();
            let b64: Vec<f64> = b[t * batch.b..].iter().map(|v| v.to_f64()).collect();
            gemm_reference::<f64>(
                m,
                k,
                n,
                1.0,
                &a64,
                la,
                &b64,
                lb,
                0.0,
                &mut exact[t * batch.c..],
                lc,
            );
        }
        let (da, db) = (dev.upload(&a).unwrap(), dev.upload(&b).unwrap());
        let mut kernels: Vec<GemmKernel> = WgmmaTile::ALL
            .iter()
            .map(|&t| GemmKernel::WgmmaNMajorB(t))
            .collect();
        kernels.push(GemmKernel::Auto);
        for kernel in kernels {
            let mut dc = dev.upload(&vec![f32::NAN; count * batch.c]).unwrap();
            gemm::gemm_bf16_kernel(
                dev, kernel, batch, m, k, n, 1.0, &da, k, &db, n, 0.0, &mut dc, n,
            )
            .unwrap();
            let c = dev.download(&dc).unwrap();
            let (mut got, mut ex) = (Vec::new(), Vec::new());
            for t in 0..count {
                got.extend_from_slice(&c[t * batch.c..t * batch.c + m * n]);
                ex.extend_from_slice(&exact[t * batch.c..t * batch.c + m * n]);
            }
            let err = rel_err(&got, &ex);
            println!(
                "bf16 n-major {} {m} x {k} x {n} x {count}: rel err {err:.2e} (tol 1e-5)",
                kernel.name()
            );
            assert!(err < 1e-5, "bf16 n-major {}: {err:.2e}", kernel.name());
        }
    }
}

/// TF32 rounding to nearest (ties away from zero), as cvt.rna.tf32.f32, for finite values.
fn round_tf32(x: f32) -> f32 {
    f32::from_bits((x.to_bits() + 0x1000) & !0x1fff)
}

/// f32 operands used in place (A row-major, B^T n x k) by the TF32 wgmma kernel; operands rounded
/// to TF32 on the host first, so only f32 accumulation error remains.
#[test]
fn gemm_wgmma_tf32_bt_matches_cpu() {
    let Some(dev) = wgmma_device_or_skip() else {
        return;
    };
    let mut rng = Rng::fresh("tf32 bt");
    for (m, k, n) in [(300, 264, 136), (1000, 516, 777), (5, 4, 3)] {
        let count = 2;
        let batch = BatchStrides {
            count,
            a: m * k + 4,
            b: n * k + 8,
            c: m * n + 1,
        };
        let a: Vec<f32> = rng
            .vec(count * batch.a)
            .into_iter()
            .map(round_tf32)
            .collect();
        let bt: Vec<f32> = rng
            .vec(count * batch.b)
            .into_iter()
            .map(round_tf32)
            .collect();
        let mut exact = vec![0.0f64; count * batch.c];
        let (la, lb, lc) = (
            MatrixLayout::row_major(k),
            MatrixLayout::col_major(k),
            MatrixLayout::row_major(n),
        );
        for t in 0..count {
            gemm_reference::<f64>(
                m,
                k,
                n,
                1.0,
                &to_f64(&a[t * batch.a..]),
                la,
                &to_f64(&bt[t * batch.b..]),
                lb,
                0.0,
                &mut exact[t * batch.c..],
                lc,
            );
        }
        let (da, db) = (dev.upload(&a).unwrap(), dev.upload(&bt).unwrap());
        for tile in WgmmaTile::ALL {
            let mut dc = dev.upload(&vec![f32::NAN; count * batch.c]).unwrap();
            gemm::gemm_tf32_bt(
                dev,
                Some(tile),
                batch,
                m,
                k,
                n,
                1.0,
                &da,
                k,
                &db,
                k,
                0.0,
                &mut dc,
                n,
            )
            .unwrap();
            let c = dev.download(&dc).unwrap();
            let (mut got, mut ex) = (Vec::new(), Vec::new());
            for t in 0..count {
                got.extend_from_slice(&c[t * batch.c..t * batch.c + m * n]);
                ex.extend_from_slice(&exact[t * batch.c..t * batch.c + m * n]);
            }
            let err = rel_err(&got, &ex);
            println!(
                "tf32 bt {} {m} x {k} x {n} x {count}: rel err {err:.2e} (tol 1e-5)",
                tile.name()
            );
            assert!(err < 1e-5, "tf32 bt {}: {err:.2e}", tile.name());
        }
    }
}
