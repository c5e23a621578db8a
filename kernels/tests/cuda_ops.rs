//! GPU parity tests of the engine-op kernels (reduce, softmax, layernorm, conv, optim): each
//! against its CPU reference computed in f64 on fresh random inputs of awkward shapes (1, 3, 7,
//! 33, 257, 1000 x 513), outputs poisoned with NaN first, relative Frobenius-norm error below the
//! stated tolerance (f32 kernels: 1e-5); also elementwise.cu against its CPU references. Without a
//! GPU each test prints why and returns. `nvrtc_compiles_every_source` (every CUDA source, the
//! GEMMs' included, for sm_80 and sm_90 / sm_90a) and `launches_match_the_ptx_entries` need only
//! libnvrtc (scripts/nvrtc-check.sh runs both).

use dinonat_kernels::conv::Conv2dGeometry;
use dinonat_kernels::cpu::bf16::{bf16_from_f32, f32_from_bf16, rounding_cases};
use dinonat_kernels::cpu::conv::{col2im_reference, im2col_reference};
use dinonat_kernels::cpu::gelu::{gelu_backward_reference, gelu_forward_reference};
use dinonat_kernels::cpu::layernorm::{layernorm_backward_reference, layernorm_forward_reference};
use dinonat_kernels::cpu::softmax::{
    log_softmax_backward_reference, log_softmax_forward_reference, softmax_backward_reference,
    softmax_forward_reference,
};
use dinonat_kernels::cuda::optim::AdamWStep;
use dinonat_kernels::cuda::reduce::{BinaryOp, MapOp, View};
use dinonat_kernels::cuda::{
    attention, bf16, conv, elementwise, gemm, layernorm, neighborhood_attention,
    neighborhood_attention_mma, nvrtc, optim, reduce, select, signature, softmax, GpuDevice,
};

/// The f32 kernels' bound on the relative-norm error against f64.
const TOL_F32: f64 = 1e-5;

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
    if den == 0.0 {
        return num.sqrt();
    }
    (num / den).sqrt()
}

fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

fn check(what: &str, got: &[f32], exact: &[f64], tol: f64) {
    let e = rel_err(got, exact);
    println!("{what}: rel err {e:.2e} (tol {tol:.0e})");
    assert!(e < tol, "{what}: rel err {e:.3e} >= {tol:.0e}");
}

fn poisoned(dev: &GpuDevice, n: usize) -> dinonat_kernels::cuda::CudaSlice<f32> {
    dev.upload(&vec![f32::NAN; n]).unwrap()
}

const SHAPES: [(usize, usize); 7] = [
    (1, 1),
    (3, 7),
    (7, 3),
    (33, 257),
    (257, 33),
    (1000, 513),
    (2, 4097),
];

#[test]
fn nvrtc_compiles_every_source() {
    let required = std::env::var("DINONAT_REQUIRE_NVRTC").as_deref() == Ok("1");
    if !nvrtc::nvrtc_present() {
        let msg = "libnvrtc cannot be loaded (run scripts/nvrtc-check.sh, or set LD_LIBRARY_PATH)";
        assert!(!required, "DINONAT_REQUIRE_NVRTC=1 but {msg}");
        dinonat_kernels::cuda::skip_gpu_test(msg);
        return;
    }
    match nvrtc::nvrtc_version() {
        Ok(v) => println!("NVRTC {}.{}", v.0, v.1),
        Err(e) => panic!("{e}"),
    }
    // DINONAT_PTX_DIR=<dir>: also write each PTX there (scripts/nvrtc-check.sh runs ptxas on them).
    let ptx_dir = std::env::var("DINONAT_PTX_DIR").ok();
    for arch in ["sm_80", "sm_90"] {
        for source in nvrtc::ALL_SOURCES {
            let ptx = nvrtc::compile(source, arch).unwrap_or_else(|e| panic!("{e}"));
            let text = ptx.to_src();
            let target = nvrtc::arch_for_source(source, arch);
            println!("{target} {}: {} bytes of PTX", source.name, text.len());
            if target == "sm_90a" {
                // The architecture-specific path really was compiled (__CUDA_ARCH_FEAT_SM90_ALL).
                assert!(
                    text.contains("wgmma.mma_async") && text.contains("cp.async.bulk.tensor"),
                    "{}: no wgmma / TMA in the sm_90a PTX",
                    source.name
                );
            }
            if let Some(dir) = &ptx_dir {
                let path = format!("{dir}/{}.{target}.ptx", source.name.trim_end_matches(".cu"));
                std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {path}: {e}"));
            }
        }
    }
}

#[test]
fn no_device_is_an_error_value() {
    match GpuDevice::get() {
        Ok(d) => println!("device present: {:?}", d.info()),
        Err(e) => assert!(e.starts_with("no CUDA device: use --device cpu"), "{e}"),
    }
}

#[test]
fn elementwise_matches_cpu() {
    let Some(dev) = device_or_skip() else { return };
    let mut rng = Rng::fresh("elementwise");
    for n in [1usize, 3, 7, 33, 257, 100_003] {
        let x: Vec<f32> = rng.vec(n).into_iter().map(|v| 4.0 * v).collect();
        let y = rng.vec(n);
        let (dx, dy) = (dev.upload(&x).unwrap(), dev.upload(&y).unwrap());
        let poison = vec![f32::NAN; n];

        let mut out = dev.upload(&poison).unwrap();
        elementwise::gelu_forward(dev, n, &dx, &mut out).unwrap();
        let mut exact = vec![0.0f64; n];
        gelu_forward_reference(&f64s(&x), &mut exact);
        let e1 = rel_err(&dev.download(&out).unwrap(), &exact);

        let mut out = dev.upload(&poison).unwrap();
        elementwise::gelu_backward(dev, n, &dx, &dy, &mut out).unwrap();
        gelu_backward_reference(&f64s(&x), &f64s(&y), &mut exact);
        let e2 = rel_err(&dev.download(&out).unwrap(), &exact);

        let mut out = dev.upload(&poison).unwrap();
        elementwise::add(dev, n, &dx, &dy, &mut out).unwrap();
        let exact: Vec<f64> = x
            .iter()
            .zip(&y)
            .map(|(&a, &b)| a as f64 + b as f64)
            .collect();
        let e3 = rel_err(&dev.download(&out).unwrap(), &exact);

        let mut out = dev.upload(&poison).unwrap();
        elementwise::scale(dev, n, -0.3, &dx, &mut out).unwrap();
        let exact: Vec<f64> = x.iter().map(|&a| -0.3f32 as f64 * a as f64).collect();
        let e4 = rel_err(&dev.download(&out).unwrap(), &exact);

        let mut yy = dev.upload(&y).unwrap();
        elementwise::axpy(dev, n, 1.7, &dx, &mut yy).unwrap();
        let exact: Vec<f64> = x
            .iter()
            .zip(&y)
            .map(|(&a, &b)| 1.7f32 as f64 * a as f64 + b as f64)
            .collect();
        let e5 = rel_err(&dev.download(&yy).unwrap(), &exact);

        let mut h = dev.upload(&vec![bf16::NAN; n]).unwrap();
        elementwise::f32_to_bf16(dev, n, &dx, &mut h).unwrap();
        let got = dev.download(&h).unwrap();
        let same = got
            .iter()
            .zip(&x)
            .all(|(g, &v)| g.to_bits() == bf16::from_f32(v).to_bits());

        println!("n={n}: gelu fwd {e1:.1e} bwd {e2:.1e} add {e3:.1e} scale {e4:.1e} axpy {e5:.1e} bf16 exact {same}");
        for (what, e) in [
            ("gelu fwd", e1),
            ("gelu bwd", e2),
            ("add", e3),
            ("scale", e4),
            ("axpy", e5),
        ] {
            assert!(e < 1e-6, "{what} n={n}: rel err {e:.2e} >= 1e-6");
        }
        assert!(
            same,
            "f32_to_bf16 n={n}: differs from round-to-nearest-even"
        );
    }
}

#[test]
fn sum_last_and_rows_match_cpu_and_are_deterministic() {
    let Some(dev) = device_or_skip() else { return };
    let mut rng = Rng::fresh("sum");
    for (rows, cols) in SHAPES {
        let x = rng.vec(rows * cols);
        let dx = dev.upload(&x).unwrap();
        let mut y = poisoned(dev, rows);
        reduce::sum_last(dev, rows, cols, &dx, &mut y).unwrap();
        let got = dev.download(&y).unwrap();
        let exact: Vec<f64> = (0..rows)
            .map(|r| x[r * cols..(r + 1) * cols].iter().map(|&v| v as f64).sum())
            .collect();
        check(&format!("sum_last {rows}x{cols}"), &got, &exact, TOL_F32);
        let mut yc = poisoned(dev, cols);
        reduce::sum_rows(dev, rows, cols, &dx, &mut yc).unwrap();
        let got = dev.download(&yc).unwrap();
        let exact: Vec<f64> = (0..cols)
            .map(|c| (0..rows).map(|r| x[r * cols + c] as f64).sum())
            .collect();
        check(&format!("sum_rows {rows}x{cols}"), &got, &exact, TOL_F32);
        let mut again = poisoned(dev, cols);
        reduce::sum_rows(dev, rows, cols, &dx, &mut again).unwrap();
        assert_eq!(
            dev.download(&again).unwrap(),
            got,
            "sum_rows {rows}x{cols}: rerun differs"
        );
    }
}

#[test]
fn strided_copy_binary_and_map_match_cpu() {
    let Some(dev) = device_or_skip() else { return };
    let mut rng = Rng::fresh("layout");
    // A [7, 33, 5] buffer viewed permuted (2, 0, 1) and narrowed on the new dim 2 to 3..30.
    let (a, b, c) = (7usize, 33usize, 5usize);
    let src = rng.vec(a * b * c + 4);
    let dsrc = dev.upload(&src).unwrap();
    let shape = [c, a, 27];
    let strides = [1, b * c, c];
    let offset = 4 + 3 * c;
    let n: usize = shape.iter().product();
    let mut exact = Vec::with_capacity(n);
    for i in 0..shape[0] {
        for j in 0..shape[1] {
            for k in 0..shape[2] {
                exact.push(src[offset + i * strides[0] + j * strides[1] + k * strides[2]] as f64);
            }
        }
    }
    let mut dst = poisoned(dev, n);
    reduce::strided_copy(dev, &dsrc, &shape, &strides, offset, &mut dst).unwrap();
    check(
        "strided_copy permute+narrow",
        &dev.download(&dst).unwrap(),
        &exact,
        1e-12,
    );
    // Scatter back into a zero buffer: the viewed elements return, the others stay 0.
    let mut back = dev.zeros::<f32>(src.len()).unwrap();
    reduce::strided_scatter(dev, &dst, &shape, &strides, offset, &mut back).unwrap();
    let back = dev.download(&back).unwrap();
    let mut exact_back = vec![0.0f64; src.len()];
    for i in 0..shape[0] {
        for j in 0..shape[1] {
            for k in 0..shape[2] {
                let o = offset + i * strides[0] + j * strides[1] + k * strides[2];
                exact_back[o] = src[o] as f64;
            }
        }
    }
    check("strided_scatter", &back, &exact_back, 1e-12);
    // Broadcast: x [33, 257] op y [257] (row vector, stride 0 over rows).
    let (rows, cols) = (33usize, 257usize);
    let x = rng.vec(rows * cols);
    let y: Vec<f32> = rng.vec(cols).iter().map(|v| v + 2.5).collect();
    let (dx, dy) = (dev.upload(&x).unwrap(), dev.upload(&y).unwrap());
    for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
        let mut out = poisoned(dev, rows * cols);
        let va = View {
            data: &dx,
            strides: &[cols, 1],
            offset: 0,
        };
        let vb = View {
            data: &dy,
            strides: &[0, 1],
            offset: 0,
        };
        reduce::binary_strided(dev, op, &[rows, cols], va, vb, &mut out).unwrap();
        let exact: Vec<f64> = (0..rows * cols)
            .map(|i| {
                let (p, q) = (x[i] as f64, y[i % cols] as f64);
                match op {
                    BinaryOp::Add => p + q,
                    BinaryOp::Sub => p - q,
                    BinaryOp::Mul => p * q,
                    BinaryOp::Div => p / q,
                }
            })
            .collect();
        check(
            &format!("binary {op:?} broadcast"),
            &dev.download(&out).unwrap(),
            &exact,
            1e-7,
        );
    }
    let pos: Vec<f32> = x.iter().map(|v| v.abs() + 0.1).collect();
    let dpos = dev.upload(&pos).unwrap();
    for op in [
        MapOp::Affine(0.75, -0.5),
        MapOp::Exp,
        MapOp::Log,
        MapOp::Sqrt,
        MapOp::Pow(1.7),
        MapOp::Max(0.6),
        MapOp::Step(0.6),
    ] {
        let mut out = poisoned(dev, pos.len());
        reduce::map(dev, op, pos.len(), &dpos, &mut out).unwrap();
        let exact: Vec<f64> = pos
            .iter()
            .map(|&v| {
                let v = v as f64;
                match op {
                    MapOp::Affine(a, b) => a as f32 as f64 * v + b as f32 as f64,
                    MapOp::Exp => v.exp(),
                    MapOp::Log => v.ln(),
                    MapOp::Sqrt => v.sqrt(),
                    MapOp::Pow(p) => v.powf(p as f32 as f64),
                    MapOp::Max(p) => v.max(p as f32 as f64),
                    MapOp::Step(p) => (v > p as f32 as f64) as u8 as f64,
                }
            })
            .collect();
        check(
            &format!("map {op:?}"),
            &dev.download(&out).unwrap(),
            &exact,
            TOL_F32,
        );
    }
}

#[test]
fn softmax_and_log_softmax_match_cpu() {
    let Some(dev) = device_or_skip() else { return };
    let mut rng = Rng::fresh("softmax");
    for (rows, cols) in SHAPES {
        let n = rows * cols;
        let x: Vec<f32> = rng.vec(n).iter().map(|v| v * 8.0).collect();
        let dy = rng.vec(n);
        let (dx_in, ddy) = (dev.upload(&x).unwrap(), dev.upload(&dy).unwrap());
        for log in [false, true] {
            let name = if log { "log_softmax" } else { "softmax" };
            let mut exact_y = vec![0.0f64; n];
            if log {
                log_softmax_forward_reference(&f64s(&x), &mut exact_y, cols);
            } else {
                softmax_forward_reference(&f64s(&x), &mut exact_y, cols);
            }
            let mut y = poisoned(dev, n);
            softmax::softmax_forward(dev, log, rows, cols, &dx_in, &mut y).unwrap();
            let got_y = dev.download(&y).unwrap();
            check(
                &format!("{name} forward {rows}x{cols}"),
                &got_y,
                &exact_y,
                TOL_F32,
            );
            // Backward from the GPU's y (the op's saved output), reference in f64 on the same y.
            let mut exact_dx = vec![0.0f64; n];
            if log {
                log_softmax_backward_reference(&f64s(&got_y), &f64s(&dy), &mut exact_dx, cols);
            } else {
                softmax_backward_reference(&f64s(&got_y), &f64s(&dy), &mut exact_dx, cols);
            }
            let mut dx = poisoned(dev, n);
            softmax::softmax_backward(dev, log, rows, cols, &y, &ddy, &mut dx).unwrap();
            check(
                &format!("{name} backward {rows}x{cols}"),
                &dev.download(&dx).unwrap(),
                &exact_dx,
                TOL_F32,
            );
        }
    }
}

#[test]
fn layernorm_matches_cpu() {
    let Some(dev) = device_or_skip() else { return };
    let mut rng = Rng::fresh("layernorm");
    let eps = 1e-5f32;
    for (rows, cols) in SHAPES {
        let n = rows * cols;
        let x: Vec<f32> = rng.vec(n).iter().map(|v| v * 3.0 + 0.5).collect();
        let gamma = rng.vec(cols);
        let beta = rng.vec(cols);
        let dy = rng.vec(n);
        let (mut ey, mut em, mut er) = (vec![0.0; n], vec![0.0; rows], vec![0.0; rows]);
        layernorm_forward_reference(
            &f64s(&x),
            &f64s(&gamma),
            &f64s(&beta),
            eps as f64,
            &mut ey,
            &mut em,
            &mut er,
            cols,
        );
        let dx_in = dev.upload(&x).unwrap();
        let dg = dev.upload(&gamma).unwrap();
        let db = dev.upload(&beta).unwrap();
        let ddy = dev.upload(&dy).unwrap();
        let (mut y, mut mean, mut rstd) =
            (poisoned(dev, n), poisoned(dev, rows), poisoned(dev, rows));
        layernorm::layernorm_forward(
            dev, rows, cols, eps, &dx_in, &dg, &db, &mut y, &mut mean, &mut rstd,
        )
        .unwrap();
        check(
            &format!("layernorm forward y {rows}x{cols}"),
            &dev.download(&y).unwrap(),
            &ey,
            TOL_F32,
        );
        check(
            &format!("layernorm forward mean {rows}x{cols}"),
            &dev.download(&mean).unwrap(),
            &em,
            TOL_F32,
        );
        check(
            &format!("layernorm forward rstd {rows}x{cols}"),
            &dev.download(&rstd).unwrap(),
            &er,
            TOL_F32,
        );
        let (mut edx, mut edg, mut edb) = (vec![0.0; n], vec![0.0; cols], vec![0.0; cols]);
        layernorm_backward_reference(
            &f64s(&x),
            &f64s(&gamma),
            &em,
            &er,
            &f64s(&dy),
            &mut edx,
            &mut edg,
            &mut edb,
            cols,
        );
        let (mut dx, mut dgam, mut dbet) =
            (poisoned(dev, n), poisoned(dev, cols), poisoned(dev, cols));
        layernorm::layernorm_backward(
            dev, rows, cols, &dx_in, &dg, &mean, &rstd, &ddy, &mut dx, &mut dgam, &mut dbet,
        )
        .unwrap();
        // dx of a one-column row is 0 in exact arithmetic: compare absolutely there.
        let tol_dx = if cols == 1 { 1e-6 } else { TOL_F32 };
        check(
            &format!("layernorm backward dx {rows}x{cols}"),
            &dev.download(&dx).unwrap(),
            &edx,
            tol_dx,
        );
        check(
            &format!("layernorm backward dgamma {rows}x{cols}"),
            &dev.download(&dgam).unwrap(),
            &edg,
            TOL_F32,
        );
        check(
            &format!("layernorm backward dbeta {rows}x{cols}"),
            &dev.download(&dbet).unwrap(),
            &edb,
            TOL_F32,
        );
    }
}

#[test]
fn im2col_col2im_match_cpu() {
    let Some(dev) = device_or_skip() else { return };
    let mut rng = Rng::fresh("conv");
    let cases = [
        // channels, h, w, kh, kw, stride, pad, batch
        (1, 1, 1, 1, 1, 1, 0, 1),
        (3, 7, 5, 3, 3, 1, 1, 2),
        (3, 33, 31, 4, 4, 4, 0, 3),
        (2, 17, 19, 7, 5, 2, 3, 2),
        (5, 16, 16, 3, 3, 2, 1, 1),
    ];
    for (ch, h, w, kh, kw, s, p, batch) in cases {
        let g = Conv2dGeometry {
            channels: ch,
            height: h,
            width: w,
            kernel_h: kh,
            kernel_w: kw,
            stride_h: s,
            stride_w: s,
            pad_h: p,
            pad_w: p,
        };
        let (ni, nc) = (ch * h * w, g.col_rows() * g.col_cols());
        let image = rng.vec(batch * ni);
        let colsv = rng.vec(batch * nc);
        let (mut ecols, mut eimg) = (vec![0.0f64; batch * nc], vec![0.0f64; batch * ni]);
        let mut img_f32 = vec![0.0f32; batch * ni];
        for b in 0..batch {
            im2col_reference(
                &g,
                &f64s(&image[b * ni..(b + 1) * ni]),
                &mut ecols[b * nc..(b + 1) * nc],
            );
            col2im_reference(
                &g,
                &f64s(&colsv[b * nc..(b + 1) * nc]),
                &mut eimg[b * ni..(b + 1) * ni],
            );
            col2im_reference(
                &g,
                &colsv[b * nc..(b + 1) * nc],
                &mut img_f32[b * ni..(b + 1) * ni],
            );
        }
        let (dimg, dcols) = (dev.upload(&image).unwrap(), dev.upload(&colsv).unwrap());
        let mut out_cols = poisoned(dev, batch * nc);
        conv::im2col(dev, &g, batch, &dimg, &mut out_cols).unwrap();
        check(
            &format!("im2col {g:?} batch {batch}"),
            &dev.download(&out_cols).unwrap(),
            &ecols,
            1e-12,
        );
        let mut out_img = poisoned(dev, batch * ni);
        conv::col2im(dev, &g, batch, &dcols, &mut out_img).unwrap();
        let got = dev.download(&out_img).unwrap();
        check(&format!("col2im {g:?} batch {batch}"), &got, &eimg, TOL_F32);
        // Same summation order as the f32 reference: bitwise equal.
        assert_eq!(
            got, img_f32,
            "col2im {g:?}: not bitwise equal to the f32 reference"
        );
    }
}

#[test]
fn adamw_and_ema_match_cpu() {
    let Some(dev) = device_or_skip() else { return };
    let mut rng = Rng::fresh("optim");
    for n in [1usize, 7, 257, 1000 * 513] {
        let mut p = rng.vec(n);
        let mut m = vec![0.0f32; n];
        let mut v = vec![0.0f32; n];
        let (mut ep, mut em, mut ev) = (f64s(&p), vec![0.0f64; n], vec![0.0f64; n]);
        let mut dp = dev.upload(&p).unwrap();
        let (mut dm, mut dv) = (dev.upload(&m).unwrap(), dev.upload(&v).unwrap());
        for step in 1..=3u64 {
            let g = rng.vec(n);
            let h = AdamWStep {
                lr: 1e-3 * step as f32,
                weight_decay: 0.04,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                step,
            };
            let (bc1, bc2) = (
                1.0 - 0.9f64.powi(step as i32),
                1.0 - 0.999f64.powi(step as i32),
            );
            for i in 0..n {
                let gi = g[i] as f64;
                let (lr, wd) = (h.lr as f64, h.weight_decay as f64);
                ep[i] *= 1.0 - lr * wd;
                em[i] = h.beta1 as f64 * em[i] + (1.0 - h.beta1 as f64) * gi;
                ev[i] = h.beta2 as f64 * ev[i] + (1.0 - h.beta2 as f64) * gi * gi;
                ep[i] -= lr * (em[i] / bc1) / ((ev[i] / bc2).sqrt() + h.eps as f64);
            }
            let dg = dev.upload(&g).unwrap();
            optim::adamw_step(dev, n, &h, &mut dp, &dg, &mut dm, &mut dv).unwrap();
        }
        p = dev.download(&dp).unwrap();
        m = dev.download(&dm).unwrap();
        v = dev.download(&dv).unwrap();
        check(&format!("adamw p n={n}"), &p, &ep, TOL_F32);
        check(&format!("adamw m n={n}"), &m, &em, TOL_F32);
        check(&format!("adamw v n={n}"), &v, &ev, 1e-4);
        let t = rng.vec(n);
        let s = rng.vec(n);
        let mut dt = dev.upload(&t).unwrap();
        let ds = dev.upload(&s).unwrap();
        optim::ema_update(dev, n, 0.996, &mut dt, &ds).unwrap();
        let exact: Vec<f64> = t
            .iter()
            .zip(&s)
            .map(|(&a, &b)| 0.996 * a as f64 + 0.004 * b as f64)
            .collect();
        check(
            &format!("ema n={n}"),
            &dev.download(&dt).unwrap(),
            &exact,
            TOL_F32,
        );
    }
}

/// Every CUDA source for sm_80 and sm_90a: each launch's arguments (`ENTRIES` / `entries()`,
/// next to the launch code) against the entry signatures in the PTX, and no PTX entry without a
/// launch-table row.
#[test]
fn launches_match_the_ptx_entries() {
    if !nvrtc::nvrtc_present() {
        dinonat_kernels::cuda::skip_gpu_test(
            "libnvrtc cannot be loaded (scripts/nvrtc-check.sh sets it up)",
        );
        return;
    }
    let (na, att) = (neighborhood_attention::entries(), attention::entries());
    let tables: [(nvrtc::Source, &[signature::Entry]); 13] = [
        (nvrtc::ELEMENTWISE, elementwise::ENTRIES),
        (nvrtc::REDUCE, reduce::ENTRIES),
        (nvrtc::SOFTMAX, softmax::ENTRIES),
        (nvrtc::LAYERNORM, layernorm::ENTRIES),
        (nvrtc::CONV, conv::ENTRIES),
        (nvrtc::ATTENTION, &att),
        (nvrtc::NEIGHBORHOOD_ATTENTION, &na),
        (
            nvrtc::NEIGHBORHOOD_ATTENTION_MMA,
            neighborhood_attention_mma::ENTRIES,
        ),
        (nvrtc::SELECT, select::ENTRIES),
        (nvrtc::OPTIM, optim::ENTRIES),
        (nvrtc::GEMM_SIMT, gemm::SIMT_ENTRIES),
        (nvrtc::GEMM_MMA, gemm::MMA_ENTRIES),
        (nvrtc::GEMM_WGMMA, gemm::WGMMA_ENTRIES),
    ];
    // every source has its table
    for s in nvrtc::ALL_SOURCES {
        assert!(
            tables.iter().any(|(t, _)| t.name == s.name),
            "{} has no launch table",
            s.name
        );
    }
    for arch in ["sm_80", "sm_90a"] {
        for (source, entries) in tables {
            let ptx = nvrtc::compile(source, arch).unwrap_or_else(|e| panic!("{e}"));
            signature::check_entries(&ptx.to_src(), entries)
                .unwrap_or_else(|e| panic!("{arch} {}: {e}", source.name));
            println!("{arch} {}: {} entries match", source.name, entries.len());
        }
    }
}

/// The CPU tests' rounding cases, then `random` random bit patterns.
fn awkward_f32(random: usize) -> Vec<f32> {
    let mut v = rounding_cases();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    v.extend((0..random).map(|_| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        f32::from_bits(seed as u32)
    }));
    v
}

/// f32 -> bf16 and bf16 -> f32 on the device against the CPU's rule (`cpu::bf16`), bit for bit:
/// narrowing on awkward and random values (NaN payloads quieted alike), widening on all 65536
/// bf16 patterns; outputs poisoned.
#[test]
fn bf16_conversions_match_the_cpu_bit_for_bit() {
    let Some(dev) = device_or_skip() else { return };
    let x = awkward_f32(1 << 20);
    let n = x.len();
    let dx = dev.upload(&x).unwrap();
    let mut h = dev.upload(&vec![bf16::from_bits(0x7FFF); n]).unwrap();
    elementwise::f32_to_bf16(dev, n, &dx, &mut h).unwrap();
    let got = dev.download(&h).unwrap();
    for (v, g) in x.iter().zip(&got) {
        let want = bf16_from_f32(*v);
        assert_eq!(g.to_bits(), want.to_bits(), "narrow {:#010x}", v.to_bits());
    }
    let all: Vec<bf16> = (0..=u16::MAX).map(bf16::from_bits).collect();
    let da = dev.upload(&all).unwrap();
    let mut w = dev
        .upload(&vec![f32::from_bits(0x7FBF_FFFF); all.len()])
        .unwrap();
    elementwise::bf16_to_f32(dev, all.len(), &da, &mut w).unwrap();
    let wide = dev.download(&w).unwrap();
    for (h, g) in all.iter().zip(&wide) {
        let want = f32_from_bf16(*h);
        assert_eq!(g.to_bits(), want.to_bits(), "widen {:#06x}", h.to_bits());
    }
    println!("bf16 conversions: {n} narrowed, 65536 widened, bit for bit");
}

/// x [outer, n, inner] with ties (values on a coarse grid) and a NaN in the first row.
fn with_ties(rng: &mut Rng, len: usize) -> Vec<f32> {
    let mut x: Vec<f32> = rng.vec(len).iter().map(|v| (v * 4.0).round()).collect();
    if len > 2 {
        x[1] = f32::NAN;
    }
    x
}

const AXES: [(usize, usize, usize); 6] = [
    (1, 1, 1),
    (3, 7, 1),
    (1, 33, 5),
    (7, 3, 257),
    (257, 65, 1),
    (2, 1000, 33),
];

#[test]
fn max_and_its_backward_match_cpu_bitwise() {
    let Some(dev) = device_or_skip() else { return };
    let mut rng = Rng::fresh("max");
    for (outer, n, inner) in AXES {
        let x = with_ties(&mut rng, outer * n * inner);
        let (mut y, mut at) = (vec![0.0f32; outer * inner], vec![0usize; outer * inner]);
        for o in 0..outer {
            for i in 0..inner {
                let (mut best, mut where_) = (x[o * n * inner + i], 0);
                for j in 1..n {
                    let v = x[(o * n + j) * inner + i];
                    if v > best {
                        (best, where_) = (v, j);
                    }
                }
                (y[o * inner + i], at[o * inner + i]) = (best, where_);
            }
        }
        let dx_in = dev.upload(&x).unwrap();
        let mut dy_out = poisoned(dev, outer * inner);
        let mut dat = dev.upload(&vec![-1i32; outer * inner]).unwrap();
        select::max_axis(dev, (outer, n, inner), &dx_in, &mut dy_out, &mut dat).unwrap();
        let got = dev.download(&dy_out).unwrap();
        let got_at = dev.download(&dat).unwrap();
        let same = |a: &f32, b: &f32| a.to_bits() == b.to_bits();
        assert!(
            got.iter().zip(&y).all(|(a, b)| same(a, b)),
            "max {outer}x{n}x{inner}"
        );
        let at32: Vec<i32> = at.iter().map(|&a| a as i32).collect();
        assert_eq!(got_at, at32, "argmax {outer}x{n}x{inner}");
        // backward: dy at the positions, 0 elsewhere; dx poisoned first
        let g = rng.vec(outer * inner);
        let mut dx = vec![0.0f32; outer * n * inner];
        for o in 0..outer {
            for i in 0..inner {
                dx[(o * n + at[o * inner + i]) * inner + i] = g[o * inner + i];
            }
        }
        let dg = dev.upload(&g).unwrap();
        let mut ddx = poisoned(dev, outer * n * inner);
        select::max_backward(dev, (outer, n, inner), &dg, &dat, &mut ddx).unwrap();
        let got = dev.download(&ddx).unwrap();
        assert!(
            got.iter().zip(&dx).all(|(a, b)| same(a, b)),
            "max backward {outer}x{n}x{inner}"
        );
        println!("max {outer}x{n}x{inner}: values, positions and backward bitwise equal");
    }
}

#[test]
fn index_select_and_its_backward_match_cpu_bitwise() {
    let Some(dev) = device_or_skip() else { return };
    let mut rng = Rng::fresh("index_select");
    for (outer, n, inner) in AXES {
        // repeats, reversed order, and (for n > 2) an index never picked
        let m = 2 * n + 1;
        let indices: Vec<usize> = (0..m)
            .map(|j| {
                if n > 2 {
                    (j * 7 + 1) % (n - 1)
                } else {
                    (m - j) % n
                }
            })
            .collect();
        let x = rng.vec(outer * n * inner);
        let mut y = vec![0.0f32; outer * m * inner];
        for o in 0..outer {
            for (j, &s) in indices.iter().enumerate() {
                for i in 0..inner {
                    y[(o * m + j) * inner + i] = x[(o * n + s) * inner + i];
                }
            }
        }
        let dx_in = dev.upload(&x).unwrap();
        let mut dy_out = poisoned(dev, outer * m * inner);
        select::index_select(dev, (outer, n, inner), &indices, &dx_in, &mut dy_out).unwrap();
        assert_eq!(
            dev.download(&dy_out).unwrap(),
            y,
            "index_select {outer}x{n}x{inner}"
        );
        let g = rng.vec(outer * m * inner);
        let mut dx = vec![0.0f32; outer * n * inner];
        for o in 0..outer {
            for (j, &s) in indices.iter().enumerate() {
                for i in 0..inner {
                    dx[(o * n + s) * inner + i] += g[(o * m + j) * inner + i];
                }
            }
        }
        let dg = dev.upload(&g).unwrap();
        let mut ddx = poisoned(dev, outer * n * inner);
        select::index_select_backward(dev, (outer, n, inner), &indices, &dg, &mut ddx).unwrap();
        let got = dev.download(&ddx).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&got),
            bits(&dx),
            "index_select backward {outer}x{n}x{inner}"
        );
        println!(
            "index_select {outer}x{n}x{inner} ({m} indices): forward and backward bitwise equal"
        );
    }
    // an index out of range is an error value, not a device fault
    let x = dev.upload(&[1.0f32, 2.0]).unwrap();
    let mut y = poisoned(dev, 1);
    let e = select::index_select(dev, (1, 2, 1), &[2], &x, &mut y).unwrap_err();
    assert!(e.contains("index 2 out of range"), "{e}");
}

#[test]
fn clip_scale_matches_cpu() {
    let Some(dev) = device_or_skip() else { return };
    let mut rng = Rng::fresh("clip");
    for n in [1usize, 7, 257, 1000 * 513] {
        let g = rng.vec(n);
        let norm = g.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        // one threshold that clips, one that does not
        for max_norm in [0.5 * norm, 2.0 * norm] {
            let coef = max_norm / (norm + 1e-6);
            let exact: Vec<f64> = g
                .iter()
                .map(|&v| {
                    if coef < 1.0 {
                        v as f64 * coef
                    } else {
                        v as f64
                    }
                })
                .collect();
            let dg = dev.upload(&g).unwrap();
            let dn = dev.upload(&[norm as f32]).unwrap();
            let mut out = poisoned(dev, n);
            optim::clip_scale(dev, n, max_norm as f32, &dg, &dn, &mut out).unwrap();
            let got = dev.download(&out).unwrap();
            check(
                &format!("clip n={n} max_norm={max_norm:.3}"),
                &got,
                &exact,
                TOL_F32,
            );
            if coef >= 1.0 {
                assert_eq!(
                    got, g,
                    "clip n={n}: below the threshold the gradient is unchanged"
                );
            }
        }
    }
}
