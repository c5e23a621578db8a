//! GEMM on the GPU: C = alpha * op(A) * op(B) + beta * C, shapes m x k x n as on the CPU
//! (`crate::gemm`'s [`MatrixLayout`] and [`BatchStrides`] describe the operands, as on the CPU: a
//! transposed operand is a swapped-stride layout, e.g. `MatrixLayout::col_major(rows)`).
//!
//! Production is one entry point, [`gemm_batched`] (what the engine runs), at the caller's
//! [`GemmPrecision`]; all accumulate in f32:
//! - `Fp32Simt`: kernels/cuda/gemm_simt.cu, FP32 FMA, any strides. The reference GPU GEMM.
//! - `Tf32`: mma.sync m16n8k8 on operands rounded to TF32 (10-bit mantissa).
//! - `Bf16`: mma.sync m16n8k16 on operands rounded to BF16 (7-bit mantissa) by the pack kernel.
//!
//! The tensor-core kernel is chosen automatically: the Hopper kernels of gemm_wgmma.cu (wgmma +
//! TMA, host side in `wgmma.rs`) on compute capability 9.0, else mma.sync (gemm_mma.cu, host side
//! in `mma.rs`) with the block tile `MmaTile::choose` picks. The mma.sync kernels read row-major A
//! and B in 16-byte chunks; an operand that is not (transposed, strided, leading dimension or k/n
//! not a multiple of the chunk) is first packed into a zero-padded row-major scratch buffer. A
//! column-major C is handled as C^T = B^T A^T.
//!
//! The dev corner (`dev`, cargo feature `gemm-dev`, off by default) holds what only the kernel
//! tests and `dinonat bench gemm --device cuda` use: each kernel and tile forced (`GemmKernel`),
//! bf16 operands and B given as B^T (`gemm_bf16*`, `gemm_tf32_bt`), and the environment switches
//! `DINONAT_NO_WGMMA` / `DINONAT_NO_NMAJOR`.

mod check;
mod mma;
mod wgmma;

#[cfg(feature = "gemm-dev")]
pub mod dev;

use super::device::GpuDevice;
use super::nvrtc::GEMM_SIMT;
use super::signature::{Entry, Param::*};
use super::Result;
use crate::gemm::{BatchStrides, MatrixLayout};
use check::{check_operand, to_i32};
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use half::bf16;
use mma::MmaTile;
use wgmma::WgmmaTile;

/// Which units compute the product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmPrecision {
    Fp32Simt,
    Tf32,
    Bf16,
}

impl GemmPrecision {
    pub const ALL: [GemmPrecision; 3] = [
        GemmPrecision::Fp32Simt,
        GemmPrecision::Tf32,
        GemmPrecision::Bf16,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GemmPrecision::Fp32Simt => "fp32",
            GemmPrecision::Tf32 => "tf32",
            GemmPrecision::Bf16 => "bf16",
        }
    }

    /// Relative Frobenius-norm error ||C - C_exact|| / ||C_exact|| the tests allow on random
    /// inputs: f32 rounding, TF32 operand rounding (2^-11 relative), BF16 rounding (2^-8).
    pub fn tolerance(self) -> f64 {
        match self {
            GemmPrecision::Fp32Simt => 1e-5,
            GemmPrecision::Tf32 => 5e-4,
            GemmPrecision::Bf16 => 1e-2,
        }
    }
}

/// Which tensor-core kernel runs a TF32 / BF16 GEMM: [`Route::auto`] in production; the dev
/// corner forces one (`dev::GemmKernel`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Route {
    /// wgmma with this tile (`Some(None)`: `WgmmaTile::choose`), or `None`: mma.sync. A GEMM with
    /// k = 0 always takes mma.sync (it only scales C).
    pub(crate) wgmma: Option<Option<WgmmaTile>>,
    /// The mma.sync tile (`None`: `MmaTile::choose`).
    pub(crate) mma: Option<MmaTile>,
}

impl Route {
    /// wgmma on compute capability 9.0, else mma.sync; each with its automatic tile.
    pub(crate) fn auto(dev: &GpuDevice) -> Route {
        Route {
            wgmma: wgmma::available(dev).then_some(None),
            mma: None,
        }
    }
}

const SIMT_TILE: usize = 128;

/// The PTX entries of the three GEMM sources as the launches here pass their arguments (checked
/// against the compiled PTX by `launches_match_the_ptx_entries` in kernels/tests/cuda_ops.rs).
pub const SIMT_ENTRIES: &[Entry] = &[Entry::new(
    "gemm_simt_f32",
    &[
        I32, I32, I32, F32, Ptr, I64, I64, I64, Ptr, I64, I64, I64, F32, Ptr, I64, I64, I64,
    ],
)];
pub use mma::ENTRIES as MMA_ENTRIES;
pub use wgmma::ENTRIES as WGMMA_ENTRIES;

/// A batch of GEMMs; matrix t of each operand starts at t * stride (see [`BatchStrides`]).
/// The kernel is chosen automatically (`Route::auto`).
pub fn gemm_batched(
    dev: &GpuDevice,
    precision: GemmPrecision,
    batch: BatchStrides,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &CudaSlice<f32>,
    la: MatrixLayout,
    b: &CudaSlice<f32>,
    lb: MatrixLayout,
    beta: f32,
    c: &mut CudaSlice<f32>,
    lc: MatrixLayout,
) -> Result<()> {
    let route = Route::auto(dev);
    gemm_batched_on(
        dev, precision, route, batch, m, k, n, alpha, a, la, b, lb, beta, c, lc,
    )
}

/// [`gemm_batched`] on the tensor-core kernel `route` names (ignored by `Fp32Simt`).
pub(crate) fn gemm_batched_on(
    dev: &GpuDevice,
    precision: GemmPrecision,
    route: Route,
    batch: BatchStrides,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &CudaSlice<f32>,
    la: MatrixLayout,
    b: &CudaSlice<f32>,
    lb: MatrixLayout,
    beta: f32,
    c: &mut CudaSlice<f32>,
    lc: MatrixLayout,
) -> Result<()> {
    if m == 0 || n == 0 || batch.count == 0 {
        return Ok(());
    }
    if batch.count > 65_535 {
        return Err(format!("gemm: batch count {} exceeds 65535", batch.count));
    }
    check_operand("A", a.len(), batch.count, batch.a, la.min_len(m, k))?;
    check_operand("B", b.len(), batch.count, batch.b, lb.min_len(k, n))?;
    check_operand("C", c.len(), batch.count, batch.c, lc.min_len(m, n))?;
    match precision {
        GemmPrecision::Fp32Simt => gemm_simt(dev, batch, m, k, n, alpha, a, la, b, lb, beta, c, lc),
        GemmPrecision::Tf32 | GemmPrecision::Bf16 => {
            if lc.col_stride != 1 {
                if lc.row_stride == 1 {
                    // C^T (n x m, row-major) = op(B)^T op(A)^T
                    let swapped = BatchStrides {
                        count: batch.count,
                        a: batch.b,
                        b: batch.a,
                        c: batch.c,
                    };
                    let (ta, tb, tc) = (lb.transposed(), la.transposed(), lc.transposed());
                    return gemm_batched_on(
                        dev, precision, route, swapped, n, k, m, alpha, b, ta, a, tb, beta, c, tc,
                    );
                }
                return Err(format!(
                    "gemm {}: C must be row- or column-major (got strides {:?}); use Fp32Simt",
                    precision.name(),
                    lc
                ));
            }
            if let Some(wtile) = route.wgmma.filter(|_| k > 0) {
                return wgmma::gemm_f32(
                    dev,
                    precision == GemmPrecision::Bf16,
                    wtile,
                    batch,
                    m,
                    k,
                    n,
                    alpha,
                    a,
                    la,
                    b,
                    lb,
                    beta,
                    c,
                    lc.row_stride,
                );
            }
            let tile = route.mma;
            if precision == GemmPrecision::Tf32 {
                mma::gemm_tf32(
                    dev,
                    tile,
                    batch,
                    m,
                    k,
                    n,
                    alpha,
                    a,
                    la,
                    b,
                    lb,
                    beta,
                    c,
                    lc.row_stride,
                )
            } else {
                let kp = k.div_ceil(8) * 8;
                let np = n.div_ceil(8) * 8;
                let a16 = mma::pack::<bf16>(
                    dev,
                    "pack_f32_to_bf16",
                    a,
                    la,
                    batch.a,
                    batch.count,
                    m,
                    k,
                    m,
                    kp,
                )?;
                let b16 = mma::pack::<bf16>(
                    dev,
                    "pack_f32_to_bf16",
                    b,
                    lb,
                    batch.b,
                    batch.count,
                    k,
                    n,
                    kp,
                    np,
                )?;
                let packed = BatchStrides {
                    count: batch.count,
                    a: m * kp,
                    b: kp * np,
                    c: batch.c,
                };
                mma::launch_mma(
                    dev,
                    tile,
                    packed,
                    m,
                    n,
                    kp,
                    np,
                    alpha,
                    &a16,
                    kp,
                    &b16,
                    np,
                    beta,
                    c,
                    lc.row_stride,
                )
            }
        }
    }
}

fn gemm_simt(
    dev: &GpuDevice,
    batch: BatchStrides,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &CudaSlice<f32>,
    la: MatrixLayout,
    b: &CudaSlice<f32>,
    lb: MatrixLayout,
    beta: f32,
    c: &mut CudaSlice<f32>,
    lc: MatrixLayout,
) -> Result<()> {
    let f = dev.function(GEMM_SIMT, "gemm_simt_f32")?;
    let grid_y = m.div_ceil(SIMT_TILE);
    if grid_y > 65_535 {
        return Err(format!(
            "gemm_simt_f32: m = {m} needs {grid_y} row blocks (max 65535)"
        ));
    }
    let cfg = LaunchConfig {
        grid_dim: (
            n.div_ceil(SIMT_TILE) as u32,
            grid_y as u32,
            batch.count as u32,
        ),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let (mi, ni, ki) = (to_i32("m", m)?, to_i32("n", n)?, to_i32("k", k)?);
    let s = |v: usize| v as i64;
    let (ars, acs, ab) = (s(la.row_stride), s(la.col_stride), s(batch.a));
    let (brs, bcs, bb) = (s(lb.row_stride), s(lb.col_stride), s(batch.b));
    let (crs, ccs, cb) = (s(lc.row_stride), s(lc.col_stride), s(batch.c));
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&mi).arg(&ni).arg(&ki).arg(&alpha);
    l.arg(a).arg(&ars).arg(&acs).arg(&ab);
    l.arg(b).arg(&brs).arg(&bcs).arg(&bb);
    l.arg(&beta).arg(c).arg(&crs).arg(&ccs).arg(&cb);
    unsafe { l.launch(cfg) }.map_err(|e| format!("launch gemm_simt_f32 ({m} x {k} x {n}): {e}"))?;
    Ok(())
}
