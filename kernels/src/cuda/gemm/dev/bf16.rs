//! The dev corner's bf16-operand and B^T entry points: bf16 A and B already on the device
//! ([`gemm_bf16`], [`gemm_bf16_kernel`]), and B given K-major as B^T, n x k (a linear layer's
//! weight: [`gemm_bf16_bt`], [`gemm_tf32_bt`], wgmma only). The engine does not run them yet.

use super::super::check::check_operand;
use super::super::{mma, wgmma};
use super::{GemmKernel, WgmmaTile};
use crate::cuda::device::GpuDevice;
use crate::cuda::Result;
use crate::gemm::{BatchStrides, MatrixLayout};
use cudarc::driver::CudaSlice;
use half::bf16;

/// BF16 GEMM on bf16 operands already on the device: A m x k row-major (lda), B k x n row-major
/// (ldb), C f32 row-major (ldc). Requires k, n, lda, ldb and the A/B batch strides to be
/// multiples of 8 (16-byte chunks); otherwise use [`gemm`] with f32 operands.
pub fn gemm_bf16(
    dev: &GpuDevice,
    batch: BatchStrides,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &CudaSlice<bf16>,
    lda: usize,
    b: &CudaSlice<bf16>,
    ldb: usize,
    beta: f32,
    c: &mut CudaSlice<f32>,
    ldc: usize,
) -> Result<()> {
    gemm_bf16_kernel(
        dev,
        GemmKernel::Auto,
        batch,
        m,
        k,
        n,
        alpha,
        a,
        lda,
        b,
        ldb,
        beta,
        c,
        ldc,
    )
}

/// [`gemm_bf16`] with the tensor-core kernel chosen. The wgmma path transposes B to K-major
/// first (one pass over B); [`gemm_bf16_bt`] takes B already K-major.
pub fn gemm_bf16_kernel(
    dev: &GpuDevice,
    kernel: GemmKernel,
    batch: BatchStrides,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &CudaSlice<bf16>,
    lda: usize,
    b: &CudaSlice<bf16>,
    ldb: usize,
    beta: f32,
    c: &mut CudaSlice<f32>,
    ldc: usize,
) -> Result<()> {
    if m == 0 || n == 0 || batch.count == 0 {
        return Ok(());
    }
    for (what, v) in [
        ("k", k),
        ("n", n),
        ("lda", lda),
        ("ldb", ldb),
        ("A batch stride", batch.a),
        ("B batch stride", batch.b),
    ] {
        if v % 8 != 0 {
            return Err(format!("gemm_bf16: {what} = {v} is not a multiple of 8"));
        }
    }
    check_operand(
        "A",
        a.len(),
        batch.count,
        batch.a,
        MatrixLayout::row_major(lda).min_len(m, k),
    )?;
    check_operand(
        "B",
        b.len(),
        batch.count,
        batch.b,
        MatrixLayout::row_major(ldb).min_len(k, n),
    )?;
    check_operand(
        "C",
        c.len(),
        batch.count,
        batch.c,
        MatrixLayout::row_major(ldc).min_len(m, n),
    )?;
    let route = kernel.route(dev);
    if let Some(wtile) = route.wgmma.filter(|_| k > 0) {
        let a_ok = direct_ok(k, m, lda, batch.a, batch.count);
        if a_ok && kernel.b_n_major() && direct_ok(n, k, ldb, batch.b, batch.count) {
            return gemm_bf16_b_n_major(
                dev, wtile, batch, m, k, n, alpha, a, lda, b, ldb, beta, c, ldc,
            );
        }
        if a_ok {
            return gemm_bf16_b_row_major(
                dev, wtile, batch, m, k, n, alpha, a, lda, b, ldb, beta, c, ldc,
            );
        }
        if kernel != GemmKernel::Auto {
            return Err(format!(
                "gemm_bf16 (wgmma): A must not overlap between batch matrices (lda {lda}, batch stride {})",
                batch.a
            ));
        }
    }
    mma::launch_mma(
        dev, route.mma, batch, m, n, k, n, alpha, a, lda, b, ldb, beta, c, ldc,
    )
}

/// TF32 GEMM on f32 operands used in place by the wgmma kernel: A m x k row-major (lda), B given
/// K-major as B^T, n x k row-major (ldbt); C f32 row-major (ldc). No layout pass and no rounding:
/// the tensor cores truncate each operand to TF32 (10 mantissa bits), so round operands to TF32
/// beforehand (e.g. weights once) to get the accuracy of [`GemmPrecision::Tf32`]. Needs compute
/// capability 9.0; k, lda, ldbt and the A/B batch strides multiples of 4, matrices of a batch not
/// overlapping.
pub fn gemm_tf32_bt(
    dev: &GpuDevice,
    tile: Option<WgmmaTile>,
    batch: BatchStrides,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &CudaSlice<f32>,
    lda: usize,
    bt: &CudaSlice<f32>,
    ldbt: usize,
    beta: f32,
    c: &mut CudaSlice<f32>,
    ldc: usize,
) -> Result<()> {
    let p = BtProblem {
        tile,
        batch,
        m,
        k,
        n,
        alpha,
        lda,
        ldbt,
        beta,
        ldc,
    };
    gemm_bt("gemm_tf32_bt", 4, false, dev, p, a, bt, c)
}

/// BF16 GEMM with B given K-major, as B^T (n x k row-major, ldbt; the layout of a linear layer's
/// weight): the wgmma kernel reads both operands in place. A m x k row-major (lda), C f32
/// row-major (ldc). Needs compute capability 9.0; k, lda, ldbt and the A/B batch strides multiples of
/// 8, matrices of a batch not overlapping.
pub fn gemm_bf16_bt(
    dev: &GpuDevice,
    tile: Option<WgmmaTile>,
    batch: BatchStrides,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &CudaSlice<bf16>,
    lda: usize,
    bt: &CudaSlice<bf16>,
    ldbt: usize,
    beta: f32,
    c: &mut CudaSlice<f32>,
    ldc: usize,
) -> Result<()> {
    let p = BtProblem {
        tile,
        batch,
        m,
        k,
        n,
        alpha,
        lda,
        ldbt,
        beta,
        ldc,
    };
    gemm_bt("gemm_bf16_bt", 8, true, dev, p, a, bt, c)
}

/// The scalars of a B^T GEMM (see [`gemm_bf16_bt`]).
struct BtProblem {
    tile: Option<WgmmaTile>,
    batch: BatchStrides,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    lda: usize,
    ldbt: usize,
    beta: f32,
    ldc: usize,
}

/// [`gemm_tf32_bt`] and [`gemm_bf16_bt`]: checks (`chunk` elements = 16 bytes), then one wgmma
/// launch on the operands in place.
fn gemm_bt<T: cudarc::driver::DeviceRepr>(
    what: &str,
    chunk: usize,
    is_bf16: bool,
    dev: &GpuDevice,
    p: BtProblem,
    a: &CudaSlice<T>,
    bt: &CudaSlice<T>,
    c: &mut CudaSlice<f32>,
) -> Result<()> {
    let BtProblem {
        tile,
        batch,
        m,
        k,
        n,
        alpha,
        lda,
        ldbt,
        beta,
        ldc,
    } = p;
    if m == 0 || n == 0 || batch.count == 0 {
        return Ok(());
    }
    if batch.count > 65_535 {
        return Err(format!("{what}: batch count {} exceeds 65535", batch.count));
    }
    if k == 0
        || !direct_ok_chunk(chunk, k, m, lda, batch.a, batch.count)
        || !direct_ok_chunk(chunk, k, n, ldbt, batch.b, batch.count)
    {
        return Err(format!(
            "{what}: need k > 0 and k, lda, ldbt and batch strides multiples of {chunk} with \
             non-overlapping matrices (k {k}, lda {lda}, ldbt {ldbt}, batch strides {} / {})",
            batch.a, batch.b
        ));
    }
    let row_major = |ld: usize, rows, cols| MatrixLayout::row_major(ld).min_len(rows, cols);
    check_operand("A", a.len(), batch.count, batch.a, row_major(lda, m, k))?;
    check_operand("B^T", bt.len(), batch.count, batch.b, row_major(ldbt, n, k))?;
    check_operand("C", c.len(), batch.count, batch.c, row_major(ldc, m, n))?;
    wgmma::launch(
        dev,
        is_bf16,
        false,
        tile,
        batch.count,
        m,
        n,
        k,
        a,
        lda,
        batch.a,
        bt,
        ldbt,
        batch.b,
        alpha,
        beta,
        c,
        ldc,
        batch.c,
    )
}

/// Whether bf16 operands can be read in place: 16-byte pitches and matrix strides, matrices that
/// do not overlap (the tensor map's batch stride).
fn direct_ok(k: usize, rows: usize, ld: usize, batch_stride: usize, count: usize) -> bool {
    direct_ok_chunk(8, k, rows, ld, batch_stride, count)
}

/// [`direct_ok`] for elements of 16 / `chunk` bytes (8: bf16, 4: f32).
fn direct_ok_chunk(
    chunk: usize,
    k: usize,
    rows: usize,
    ld: usize,
    batch_stride: usize,
    count: usize,
) -> bool {
    k.is_multiple_of(chunk)
        && ld.is_multiple_of(chunk)
        && ld >= k.max(1)
        && (count == 1 || (batch_stride.is_multiple_of(chunk) && batch_stride >= rows * ld))
}

/// BF16 GEMM with row-major bf16 B (k x n, ldb): B is transposed to K-major first (one pass).
fn gemm_bf16_b_row_major(
    dev: &GpuDevice,
    tile: Option<WgmmaTile>,
    batch: BatchStrides,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &CudaSlice<bf16>,
    lda: usize,
    b: &CudaSlice<bf16>,
    ldb: usize,
    beta: f32,
    c: &mut CudaSlice<f32>,
    ldc: usize,
) -> Result<()> {
    let kp = k; // a multiple of 8, > 0 (checked by the caller)
    let lb = MatrixLayout {
        row_stride: 1,
        col_stride: ldb,
    }; // B^T: element (j, p) at p * ldb + j
    let bt = wgmma::pack::<bf16, bf16>(
        dev,
        "wg_pack_bf16_copy",
        b,
        lb,
        batch.b,
        batch.count,
        n,
        k,
        kp,
    )?;
    let strides = BatchStrides {
        count: batch.count,
        a: batch.a,
        b: n * kp,
        c: batch.c,
    };
    gemm_bf16_bt(
        dev, tile, strides, m, kp, n, alpha, a, lda, &bt, kp, beta, c, ldc,
    )
}

/// BF16 GEMM with row-major bf16 B (k x n, ldb) read in place, N-major (imm-trans-b = 1).
/// The caller checks [`direct_ok`] for A and for B (as an n-wide, k-row operand).
fn gemm_bf16_b_n_major(
    dev: &GpuDevice,
    tile: Option<WgmmaTile>,
    batch: BatchStrides,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &CudaSlice<bf16>,
    lda: usize,
    b: &CudaSlice<bf16>,
    ldb: usize,
    beta: f32,
    c: &mut CudaSlice<f32>,
    ldc: usize,
) -> Result<()> {
    wgmma::launch(
        dev,
        true,
        true,
        tile,
        batch.count,
        m,
        n,
        k,
        a,
        lda,
        batch.a,
        b,
        ldb,
        batch.b,
        alpha,
        beta,
        c,
        ldc,
        batch.c,
    )
}
