//! `dinonat bench gemm --device cuda`: each GEMM precision on square cubes 1024..4096 (or
//! --shape MxKxN), timed with CUDA events after warm-up, median of many runs, beside the
//! datasheet roofline of the H100/H200 (SXM, dense): FP32 67, TF32 495, BF16 990 TFLOP/s.
//! Each result is also spot-checked against f64 dot products on the CPU (check_rel_err), so a
//! fast but wrong kernel cannot report a figure unnoticed. Operands are random in [-1, 1), row-major;
//! the bf16 GEMM reads bf16 operands (as torch.matmul on bf16 tensors does) and writes f32.
//! On compute capability 9.0 the wgmma kernels are timed too: TF32 and BF16 calls as above (the
//! TF32 call includes laying out and rounding A and B, the BF16 call transposing B to K-major),
//! and `gemm_bf16_bt` with B already K-major (B^T n x k, as a linear layer's weight is stored).
//! Built with the feature `gemm-dev` only (the kernels' GEMM dev corner, `cuda::gemm::dev`).

use crate::args::GemmArgs;
use crate::gemm::parse_shape;
use crate::timing::{gpu_batch, gpu_median_ms, random};
use dinonat_kernels::cpu::gemm::{BatchStrides, Layout};
use dinonat_kernels::cuda::gemm::dev::{self as gemm, GemmKernel, MmaTile, WgmmaTile};
use dinonat_kernels::cuda::{bf16, elementwise, CudaSlice, GemmPrecision, GpuDevice};

const DEFAULT_SHAPES: [(usize, usize, usize); 3] =
    [(1024, 1024, 1024), (2048, 2048, 2048), (4096, 4096, 4096)];

/// One timed kernel: the precision, the tensor-core kernel, and (bf16) whether B is given K-major.
#[derive(Clone, Copy)]
struct Variant {
    precision: GemmPrecision,
    kernel: GemmKernel,
    b_k_major: bool,
}

impl Variant {
    fn name(self) -> String {
        match (self.precision, self.b_k_major) {
            (GemmPrecision::Fp32Simt, _) => "simt 128x128".into(),
            (GemmPrecision::Tf32, true) => format!("{} B^T rounded", self.kernel.name()),
            (_, true) => format!("{} B^T", self.kernel.name()),
            _ => self.kernel.name().into(),
        }
    }
}

/// Every kernel variant timed: SIMT FP32, and each tensor-core precision with each block tile of
/// mma.sync and (on compute capability 9.0) of wgmma.
fn variants(dev: &GpuDevice) -> Vec<Variant> {
    let v = |precision, kernel, b_k_major| Variant {
        precision,
        kernel,
        b_k_major,
    };
    let mut out = vec![v(GemmPrecision::Fp32Simt, GemmKernel::Auto, false)];
    for p in [GemmPrecision::Tf32, GemmPrecision::Bf16] {
        for t in MmaTile::ALL {
            out.push(v(p, GemmKernel::Mma(t), false));
        }
    }
    // wgmma last: a fault there (sticky for the context) cannot cost the other figures.
    if gemm::wgmma_available(dev) {
        for (p, b_k_major) in [
            (GemmPrecision::Tf32, false),
            (GemmPrecision::Tf32, true),
            (GemmPrecision::Bf16, false),
            (GemmPrecision::Bf16, true),
        ] {
            for t in WgmmaTile::ALL {
                out.push(v(p, GemmKernel::Wgmma(t), b_k_major));
            }
        }
        if std::env::var_os("DINONAT_NO_NMAJOR").is_none() {
            for t in WgmmaTile::ALL {
                out.push(v(GemmPrecision::Bf16, GemmKernel::WgmmaNMajorB(t), false));
            }
        }
    }
    out
}

/// H100/H200 SXM datasheet peaks, dense, TFLOP/s.
pub fn roofline_tflops(p: GemmPrecision) -> f64 {
    match p {
        GemmPrecision::Fp32Simt => 67.0,
        GemmPrecision::Tf32 => 495.0,
        GemmPrecision::Bf16 => 990.0,
    }
}

struct Operands {
    a: CudaSlice<f32>,
    b: CudaSlice<f32>,
    a16: CudaSlice<bf16>,
    b16: CudaSlice<bf16>,
    /// B^T (n x k) in bf16, for the K-major variant (only on wgmma devices; else empty).
    bt16: CudaSlice<bf16>,
    /// A and B^T rounded to TF32 (f32), for the in-place TF32 variant (wgmma devices only).
    a32r: CudaSlice<f32>,
    bt32r: CudaSlice<f32>,
    c: CudaSlice<f32>,
    host_a: Vec<f32>,
    host_b: Vec<f32>,
}

fn launch(
    dev: &GpuDevice,
    var: Variant,
    (m, k, n): (usize, usize, usize),
    o: &mut Operands,
) -> Result<(), String> {
    let one = BatchStrides {
        count: 1,
        a: 0,
        b: 0,
        c: 0,
    };
    match var.precision {
        GemmPrecision::Tf32 if var.b_k_major => {
            let tile = match var.kernel {
                GemmKernel::Wgmma(t) => Some(t),
                _ => None,
            };
            gemm::gemm_tf32_bt(
                dev, tile, one, m, k, n, 1.0, &o.a32r, k, &o.bt32r, k, 0.0, &mut o.c, n,
            )
        }
        GemmPrecision::Bf16 if var.b_k_major => {
            let tile = match var.kernel {
                GemmKernel::Wgmma(t) => Some(t),
                _ => None,
            };
            gemm::gemm_bf16_bt(
                dev, tile, one, m, k, n, 1.0, &o.a16, k, &o.bt16, k, 0.0, &mut o.c, n,
            )
        }
        GemmPrecision::Bf16 => gemm::gemm_bf16_kernel(
            dev, var.kernel, one, m, k, n, 1.0, &o.a16, k, &o.b16, n, 0.0, &mut o.c, n,
        ),
        p => gemm::gemm_batched_kernel(
            dev,
            p,
            var.kernel,
            BatchStrides {
                count: 1,
                a: 0,
                b: 0,
                c: 0,
            },
            m,
            k,
            n,
            1.0,
            &o.a,
            Layout::row_major(k),
            &o.b,
            Layout::row_major(n),
            0.0,
            &mut o.c,
            Layout::row_major(n),
        ),
    }
}

/// Median milliseconds per GEMM: 15 samples, each a batch of launches (~2 ms) between two
/// CUDA events, after a warm-up.
fn time_ms(
    dev: &GpuDevice,
    var: Variant,
    shape: (usize, usize, usize),
    o: &mut Operands,
) -> Result<f64, String> {
    dev.time_ms(3, || launch(dev, var, shape, o))?; // module load, clocks up
    let (reps, _) = gpu_batch(dev, 2.0, 200, || launch(dev, var, shape, o))?;
    gpu_median_ms(dev, 15, reps, || launch(dev, var, shape, o))
}

/// ||C - C_exact|| / ||C_exact|| over 64 sampled entries, exact in f64 from the f32 operands.
fn spot_check(
    dev: &GpuDevice,
    (m, k, n): (usize, usize, usize),
    o: &Operands,
) -> Result<f64, String> {
    let c = dev.download(&o.c)?;
    let (mut num, mut den) = (0.0f64, 0.0f64);
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..64 {
        s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let i = (s >> 33) as usize % m;
        s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let j = (s >> 33) as usize % n;
        let exact: f64 = (0..k)
            .map(|p| o.host_a[i * k + p] as f64 * o.host_b[p * n + j] as f64)
            .sum();
        let got = c[i * n + j] as f64;
        if !got.is_finite() {
            return Ok(f64::INFINITY);
        }
        num += (got - exact) * (got - exact);
        den += exact * exact;
    }
    Ok((num / den.max(1e-300)).sqrt())
}

pub fn run(args: &GemmArgs) -> Result<(), String> {
    let shapes: Vec<(usize, usize, usize)> = if args.shapes.is_empty() {
        DEFAULT_SHAPES.to_vec()
    } else {
        args.shapes
            .iter()
            .map(|s| parse_shape(s))
            .collect::<Result<_, _>>()?
    };
    let dev = GpuDevice::get()?;
    let info = dev.info();
    if !args.json {
        println!(
            "GPU {} (sm_{}{}), {} SMs; roofline = H100/H200 SXM datasheet, dense",
            info.name, info.compute_capability.0, info.compute_capability.1, info.multiprocessors
        );
        println!(
            "{:>16} {:>5} {:>17} {:>10} {:>9} {:>9} {:>7} {:>10}",
            "m x k x n", "prec", "variant", "ms", "TFLOP/s", "roofline", "% roof", "check err"
        );
    }
    let mut failures = Vec::new();
    for &(m, k, n) in &shapes {
        let mut o = operands(dev, (m, k, n))?;
        for var in variants(dev) {
            bench_variant(dev, args, var, (m, k, n), &mut o, &mut failures)?;
        }
    }
    if !failures.is_empty() {
        return Err(format!(
            "bench gemm: wrong results: {}",
            failures.join("; ")
        ));
    }
    Ok(())
}

/// Random A (m x k) and B (k x n) on the device in every form the variants read (f32, BF16, and
/// with wgmma B^T in BF16 and A, B^T rounded to TF32), and C poisoned with NaN.
fn operands(dev: &GpuDevice, (m, k, n): (usize, usize, usize)) -> Result<Operands, String> {
    let host_a = random(m * k, 1 + m as u64);
    let host_b = random(k * n, 2 + n as u64);
    let a = dev.upload(&host_a)?;
    let b = dev.upload(&host_b)?;
    let mut a16 = dev.zeros::<bf16>(m * k)?;
    let mut b16 = dev.zeros::<bf16>(k * n)?;
    elementwise::f32_to_bf16(dev, m * k, &a, &mut a16)?;
    elementwise::f32_to_bf16(dev, k * n, &b, &mut b16)?;
    let (bt16, a32r, bt32r) = if gemm::wgmma_available(dev) {
        // TF32 rounding to nearest, ties away (cvt.rna), for finite values
        let rna = |x: f32| f32::from_bits((x.to_bits() + 0x1000) & !0x1fff);
        let mut t16 = vec![bf16::ZERO; k * n];
        let mut t32 = vec![0.0f32; k * n];
        for p in 0..k {
            for j in 0..n {
                t16[j * k + p] = bf16::from_f32(host_b[p * n + j]);
                t32[j * k + p] = rna(host_b[p * n + j]);
            }
        }
        let a32: Vec<f32> = host_a.iter().map(|&x| rna(x)).collect();
        (dev.upload(&t16)?, dev.upload(&a32)?, dev.upload(&t32)?)
    } else {
        (
            dev.zeros::<bf16>(1)?,
            dev.zeros::<f32>(1)?,
            dev.zeros::<f32>(1)?,
        )
    };
    let c = dev.upload(&vec![f32::NAN; m * n])?;
    Ok(Operands {
        a,
        b,
        a16,
        b16,
        bt16,
        a32r,
        bt32r,
        c,
        host_a,
        host_b,
    })
}

/// Times one variant on one shape and spot-checks its C: prints a row (or a JSON object); a
/// failure or a result over the tolerance goes into `failures`. A shape the variant cannot run is
/// skipped with a message.
fn bench_variant(
    dev: &GpuDevice,
    args: &GemmArgs,
    var: Variant,
    (m, k, n): (usize, usize, usize),
    o: &mut Operands,
    failures: &mut Vec<String>,
) -> Result<(), String> {
    let info = dev.info();
    let p = var.precision;
    let variant = var.name();
    if var.b_k_major && p == GemmPrecision::Tf32 && k % 4 != 0 {
        eprintln!("bench gemm tf32 B^T {m}x{k}x{n}: skipped (k must be a multiple of 4)");
        return Ok(());
    }
    if p == GemmPrecision::Bf16 && (k % 8 != 0 || n % 8 != 0) {
        eprintln!("bench gemm bf16 {m}x{k}x{n}: skipped (k and n must be multiples of 8)");
        return Ok(());
    }
    o.c = dev.upload(&vec![f32::NAN; m * n])?; // poisoned: each variant must write all of C
    let timed = time_ms(dev, var, (m, k, n), o)
        .and_then(|ms| spot_check(dev, (m, k, n), o).map(|err| (ms, err)));
    let (ms, err) = match timed {
        Ok(v) => v,
        Err(e) => {
            eprintln!("bench gemm {} {variant} {m}x{k}x{n}: {e}", p.name());
            failures.push(format!("{} {variant} {m}x{k}x{n}: {e}", p.name()));
            return Ok(());
        }
    };
    let tflops = 2.0 * m as f64 * k as f64 * n as f64 / (ms * 1e-3) / 1e12;
    let roof = roofline_tflops(p);
    if args.json {
        println!(
            "{{\"device\":\"{}\",\"m\":{m},\"k\":{k},\"n\":{n},\"precision\":\"{}\",\"variant\":\"{variant}\",\"ms\":{ms:.5},\"tflops\":{tflops:.2},\"roofline_tflops\":{roof},\"pct_roofline\":{:.1},\"check_rel_err\":{err:.2e}}}",
            info.name.replace('"', "'"),
            p.name(),
            100.0 * tflops / roof
        );
    } else {
        println!(
            "{:>16} {:>5} {variant:>17} {ms:>10.4} {tflops:>9.1} {roof:>9.0} {:>6.1}% {err:>10.1e}",
            format!("{m}x{k}x{n}"),
            p.name(),
            100.0 * tflops / roof
        );
    }
    if err > p.tolerance() * 4.0 {
        failures.push(format!(
            "{} {variant} {m}x{k}x{n}: spot-check rel err {err:.2e} (tolerance {:.0e})",
            p.name(),
            p.tolerance()
        ));
    }
    Ok(())
}
