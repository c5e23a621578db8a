//! GEMM on the GPU: C = alpha * op(A) * op(B) + beta * C, shapes m x k x n as on the CPU
//! (`crate::gemm`'s [`MatrixLayout`] and [`BatchStrides`] describe the operands, as on the CPU: a
//! transposed operand is a swapped-stride layout, e.g. `MatrixLayout::col_major(rows)`).
//!
//! Three precisions, chosen per call ([`GemmPrecision`]); all accumulate in f32:
//! - `Fp32Simt`: kernels/cuda/gemm_simt.cu, FP32 FMA, any strides. The reference GPU GEMM.
//! - `Tf32`: kernels/cuda/gemm_mma.cu, mma.sync m16n8k8 on operands rounded to TF32 (10-bit mantissa).
//! - `Bf16`: mma.sync m16n8k16 on operands rounded to BF16 (7-bit mantissa); f32 inputs are
//!   converted by the pack kernel first, bf16 inputs go straight in with [`gemm_bf16`].
//!
//! On compute capability 9.0, `Tf32` and `Bf16` run the Hopper kernels of gemm_wgmma.cu by default
//! (wgmma + TMA, host side in gemm_wgmma.rs; [`GemmKernel`] picks a kernel explicitly, and
//! [`gemm_bf16_bt`] / [`gemm_tf32_bt`] take B as B^T, n x k, with no layout pass).
//!
//! The mma.sync kernels read row-major A and B in 16-byte chunks; an operand that is not
//! (transposed, strided, leading dimension or k/n not a multiple of the chunk) is first packed into
//! a zero-padded row-major scratch buffer. A column-major C is handled as C^T = B^T A^T.

#[path = "gemm_wgmma.rs"]
mod wgmma;
pub use wgmma::{available as wgmma_available, WgmmaTile};

use super::device::GpuDevice;
use super::nvrtc::{GEMM_MMA, GEMM_SIMT};
use super::Result;
use crate::gemm::{BatchStrides, MatrixLayout};
use cudarc::driver::sys::CUfunction_attribute_enum;
use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits};
use half::bf16;

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

/// Block tile of the tensor-core kernels (gemm_mma.cu): 128 x 128 (warp tile 64 x 32, 4 stages,
/// two blocks per SM) or 128 x 256 (warp tile 64 x 64, 3 stages, one block per SM: twice the mma
/// per fragment load, fewer blocks). [`MmaTile::choose`] takes the large tile when it still fills the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MmaTile {
    T128x128,
    T128x256,
}

impl MmaTile {
    pub const ALL: [MmaTile; 2] = [MmaTile::T128x128, MmaTile::T128x256];

    pub fn name(self) -> &'static str {
        match self {
            MmaTile::T128x128 => "128x128",
            MmaTile::T128x256 => "128x256",
        }
    }
    fn block_n(self) -> usize {
        match self {
            MmaTile::T128x128 => 128,
            MmaTile::T128x256 => 256,
        }
    }
    /// Dynamic shared memory (keep in sync with the table in gemm_mma.cu; the same for both types).
    fn smem_bytes(self) -> u32 {
        match self {
            MmaTile::T128x128 => 75_776,
            MmaTile::T128x256 => 81_408,
        }
    }
    fn kernel(self, bf16: bool) -> &'static str {
        match (bf16, self) {
            (false, MmaTile::T128x128) => "gemm_tf32_mma_128x128",
            (false, MmaTile::T128x256) => "gemm_tf32_mma_128x256",
            (true, MmaTile::T128x128) => "gemm_bf16_mma_128x128",
            (true, MmaTile::T128x256) => "gemm_bf16_mma_128x256",
        }
    }
    /// The large tile when its blocks (times the batch) still make a full wave on the device.
    pub fn choose(dev: &GpuDevice, m: usize, n: usize, count: usize) -> MmaTile {
        let blocks = m.div_ceil(MMA_TILE_M) * n.div_ceil(256) * count;
        if blocks >= dev.info().multiprocessors.max(1) as usize {
            MmaTile::T128x256
        } else {
            MmaTile::T128x128
        }
    }
}

/// Which tensor-core kernel runs a TF32/BF16 GEMM. `Auto`: wgmma ([`WgmmaTile::choose`]) on
/// compute capability 9.0 (for bf16 operands, B read N-major in place), otherwise mma.sync
/// ([`MmaTile::choose`]). Forcing a wgmma kernel elsewhere is an error value.
/// `Wgmma` reads B K-major (a row-major B is transposed first: one pass); `WgmmaNMajorB` reads a
/// row-major bf16 B in place ([`gemm_bf16_kernel`]; with f32 operands it is the same as `Wgmma`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmKernel {
    Auto,
    Mma(MmaTile),
    Wgmma(WgmmaTile),
    WgmmaNMajorB(WgmmaTile),
}

impl GemmKernel {
    pub fn name(self) -> &'static str {
        match self {
            GemmKernel::Auto => "auto",
            GemmKernel::Mma(t) => t.name(),
            GemmKernel::Wgmma(t) => t.name(),
            GemmKernel::WgmmaNMajorB(t) => t.name_n_major(),
        }
    }
    /// The wgmma tile to use (`Some(None)`: its automatic choice), or `None` for mma.sync.
    fn wgmma(self, dev: &GpuDevice, k: usize) -> Option<Option<WgmmaTile>> {
        match self {
            GemmKernel::Wgmma(t) | GemmKernel::WgmmaNMajorB(t) if k > 0 => Some(Some(t)),
            GemmKernel::Auto if k > 0 && wgmma::available(dev) => Some(None),
            _ => None,
        }
    }
    /// Whether a row-major bf16 B is read in place (N-major) rather than transposed first.
    /// `Auto` does unless the environment sets `DINONAT_NO_NMAJOR`.
    fn b_n_major(self) -> bool {
        match self {
            GemmKernel::WgmmaNMajorB(_) => true,
            GemmKernel::Auto => std::env::var_os("DINONAT_NO_NMAJOR").is_none(),
            _ => false,
        }
    }
    fn mma_tile(self) -> Option<MmaTile> {
        match self {
            GemmKernel::Mma(t) => Some(t),
            _ => None,
        }
    }
}

const MMA_TILE_M: usize = 128;
const MMA_THREADS: u32 = 256;
const SIMT_TILE: usize = 128;

/// C = alpha * op(A) * op(B) + beta * C for one matrix.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    dev: &GpuDevice,
    precision: GemmPrecision,
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
    let one = BatchStrides {
        count: 1,
        a: 0,
        b: 0,
        c: 0,
    };
    gemm_batched(
        dev, precision, one, m, k, n, alpha, a, la, b, lb, beta, c, lc,
    )
}

fn check_operand(name: &str, len: usize, count: usize, stride: usize, need: usize) -> Result<()> {
    let total = if need == 0 {
        0
    } else {
        (count - 1) * stride + need
    };
    if total > len {
        return Err(format!(
            "gemm operand {name}: needs {total} elements ({count} matrices, batch stride {stride}, \
             {need} per matrix), buffer has {len}"
        ));
    }
    Ok(())
}

fn to_i32(what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| format!("gemm: {what} = {v} exceeds i32"))
}

fn transposed(l: MatrixLayout) -> MatrixLayout {
    MatrixLayout {
        row_stride: l.col_stride,
        col_stride: l.row_stride,
    }
}

/// A batch of GEMMs; matrix t of each operand starts at t * stride (see [`BatchStrides`]).
#[allow(clippy::too_many_arguments)]
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
    gemm_batched_with(
        dev, precision, None, batch, m, k, n, alpha, a, la, b, lb, beta, c, lc,
    )
}

/// [`gemm_batched`] with the mma.sync block tile forced (`None`: [`GemmKernel::Auto`]);
/// the tile is ignored by `Fp32Simt`. For tests and benchmarks of each kernel variant.
#[allow(clippy::too_many_arguments)]
pub fn gemm_batched_with(
    dev: &GpuDevice,
    precision: GemmPrecision,
    tile: Option<MmaTile>,
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
    let kernel = tile.map_or(GemmKernel::Auto, GemmKernel::Mma);
    gemm_batched_kernel(
        dev, precision, kernel, batch, m, k, n, alpha, a, la, b, lb, beta, c, lc,
    )
}

/// [`gemm_batched`] with the tensor-core kernel chosen ([`GemmKernel`]); ignored by `Fp32Simt`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_batched_kernel(
    dev: &GpuDevice,
    precision: GemmPrecision,
    kernel: GemmKernel,
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
                    let (ta, tb, tc) = (transposed(lb), transposed(la), transposed(lc));
                    return gemm_batched_kernel(
                        dev, precision, kernel, swapped, n, k, m, alpha, b, ta, a, tb, beta, c, tc,
                    );
                }
                return Err(format!(
                    "gemm {}: C must be row- or column-major (got strides {:?}); use Fp32Simt",
                    precision.name(),
                    lc
                ));
            }
            if let Some(wtile) = kernel.wgmma(dev, k) {
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
            let tile = kernel.mma_tile();
            if precision == GemmPrecision::Tf32 {
                gemm_tf32(
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
                let a16 = pack::<bf16>(
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
                let b16 = pack::<bf16>(
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
                launch_mma(
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

/// BF16 GEMM on bf16 operands already on the device: A m x k row-major (lda), B k x n row-major
/// (ldb), C f32 row-major (ldc). Requires k, n, lda, ldb and the A/B batch strides to be
/// multiples of 8 (16-byte chunks); otherwise use [`gemm`] with f32 operands.
#[allow(clippy::too_many_arguments)]
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
    gemm_bf16_with(
        dev, None, batch, m, k, n, alpha, a, lda, b, ldb, beta, c, ldc,
    )
}

/// [`gemm_bf16`] with the mma.sync block tile forced (`None`: [`GemmKernel::Auto`]).
#[allow(clippy::too_many_arguments)]
pub fn gemm_bf16_with(
    dev: &GpuDevice,
    tile: Option<MmaTile>,
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
    let kernel = tile.map_or(GemmKernel::Auto, GemmKernel::Mma);
    gemm_bf16_kernel(
        dev, kernel, batch, m, k, n, alpha, a, lda, b, ldb, beta, c, ldc,
    )
}

/// [`gemm_bf16`] with the tensor-core kernel chosen. The wgmma path transposes B to K-major
/// first (one pass over B); [`gemm_bf16_bt`] takes B already K-major.
#[allow(clippy::too_many_arguments)]
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
    if let Some(wtile) = kernel.wgmma(dev, k) {
        let a_ok = wgmma::direct_ok(k, m, lda, batch.a, batch.count);
        if a_ok && kernel.b_n_major() && wgmma::direct_ok(n, k, ldb, batch.b, batch.count) {
            return wgmma::gemm_bf16_b_n_major(
                dev, wtile, batch, m, k, n, alpha, a, lda, b, ldb, beta, c, ldc,
            );
        }
        if a_ok {
            return wgmma::gemm_bf16_b_row_major(
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
    launch_mma(
        dev,
        kernel.mma_tile(),
        batch,
        m,
        n,
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

/// TF32 GEMM on f32 operands used in place by the wgmma kernel: A m x k row-major (lda), B given
/// K-major as B^T, n x k row-major (ldbt); C f32 row-major (ldc). No layout pass and no rounding:
/// the tensor cores truncate each operand to TF32 (10 mantissa bits), so round operands to TF32
/// beforehand (e.g. weights once) to get the accuracy of [`GemmPrecision::Tf32`]. Needs compute
/// capability 9.0; k, lda, ldbt and the A/B batch strides multiples of 4, matrices of a batch not
/// overlapping.
#[allow(clippy::too_many_arguments)]
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
    if m == 0 || n == 0 || batch.count == 0 {
        return Ok(());
    }
    if batch.count > 65_535 {
        return Err(format!(
            "gemm_tf32_bt: batch count {} exceeds 65535",
            batch.count
        ));
    }
    if k == 0
        || !wgmma::direct_ok_chunk(4, k, m, lda, batch.a, batch.count)
        || !wgmma::direct_ok_chunk(4, k, n, ldbt, batch.b, batch.count)
    {
        return Err(format!(
            "gemm_tf32_bt: need k > 0 and k, lda, ldbt and batch strides multiples of 4 with \
             non-overlapping matrices (k {k}, lda {lda}, ldbt {ldbt}, batch strides {} / {})",
            batch.a, batch.b
        ));
    }
    check_operand(
        "A",
        a.len(),
        batch.count,
        batch.a,
        MatrixLayout::row_major(lda).min_len(m, k),
    )?;
    check_operand(
        "B^T",
        bt.len(),
        batch.count,
        batch.b,
        MatrixLayout::row_major(ldbt).min_len(n, k),
    )?;
    check_operand(
        "C",
        c.len(),
        batch.count,
        batch.c,
        MatrixLayout::row_major(ldc).min_len(m, n),
    )?;
    wgmma::gemm_tf32_bt(
        dev, tile, batch, m, k, n, alpha, a, lda, bt, ldbt, beta, c, ldc,
    )
}

/// BF16 GEMM with B given K-major, as B^T (n x k row-major, ldbt; the layout of a linear layer's
/// weight): the wgmma kernel reads both operands in place. A m x k row-major (lda), C f32
/// row-major (ldc). Needs compute capability 9.0; k, lda, ldbt and the A/B batch strides multiples of
/// 8, matrices of a batch not overlapping.
#[allow(clippy::too_many_arguments)]
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
    if m == 0 || n == 0 || batch.count == 0 {
        return Ok(());
    }
    if batch.count > 65_535 {
        return Err(format!(
            "gemm_bf16_bt: batch count {} exceeds 65535",
            batch.count
        ));
    }
    if k == 0
        || !wgmma::direct_ok(k, m, lda, batch.a, batch.count)
        || !wgmma::direct_ok(k, n, ldbt, batch.b, batch.count)
    {
        return Err(format!(
            "gemm_bf16_bt: need k > 0 and k, lda, ldbt and batch strides multiples of 8 with \
             non-overlapping matrices (k {k}, lda {lda}, ldbt {ldbt}, batch strides {} / {})",
            batch.a, batch.b
        ));
    }
    check_operand(
        "A",
        a.len(),
        batch.count,
        batch.a,
        MatrixLayout::row_major(lda).min_len(m, k),
    )?;
    check_operand(
        "B^T",
        bt.len(),
        batch.count,
        batch.b,
        MatrixLayout::row_major(ldbt).min_len(n, k),
    )?;
    check_operand(
        "C",
        c.len(),
        batch.count,
        batch.c,
        MatrixLayout::row_major(ldc).min_len(m, n),
    )?;
    wgmma::gemm_bf16_bt(
        dev, tile, batch, m, k, n, alpha, a, lda, bt, ldbt, beta, c, ldc,
    )
}

#[allow(clippy::too_many_arguments)]
fn gemm_tf32(
    dev: &GpuDevice,
    tile: Option<MmaTile>,
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
    ldc: usize,
) -> Result<()> {
    let single = batch.count == 1;
    let direct_a = k.is_multiple_of(4)
        && la.col_stride == 1
        && la.row_stride.is_multiple_of(4)
        && (single || batch.a.is_multiple_of(4));
    let direct_b = k.is_multiple_of(4)
        && n.is_multiple_of(4)
        && lb.col_stride == 1
        && lb.row_stride.is_multiple_of(4)
        && (single || batch.b.is_multiple_of(4));
    let kp = k.div_ceil(4) * 4;
    let np = if direct_b { n } else { n.div_ceil(4) * 4 };
    let packed_a;
    let (a_use, lda, a_batch) = if direct_a {
        (a, la.row_stride, batch.a)
    } else {
        packed_a = pack::<f32>(dev, "pack_f32", a, la, batch.a, batch.count, m, k, m, kp)?;
        (&packed_a, kp, m * kp)
    };
    let packed_b;
    let (b_use, ldb, b_batch) = if direct_b {
        (b, lb.row_stride, batch.b)
    } else {
        packed_b = pack::<f32>(dev, "pack_f32", b, lb, batch.b, batch.count, k, n, kp, np)?;
        (&packed_b, np, kp * np)
    };
    let strides = BatchStrides {
        count: batch.count,
        a: a_batch,
        b: b_batch,
        c: batch.c,
    };
    launch_mma(
        dev, tile, strides, m, n, kp, np, alpha, a_use, lda, b_use, ldb, beta, c, ldc,
    )
}

/// Copy a strided rows x cols operand (per batch matrix) into a zero-padded row-major
/// rows_pad x cols_pad buffer of T (f32, or bf16 rounded to nearest even).
#[allow(clippy::too_many_arguments)]
fn pack<T: DeviceRepr + ValidAsZeroBits>(
    dev: &GpuDevice,
    kernel: &'static str,
    src: &CudaSlice<f32>,
    l: MatrixLayout,
    src_batch: usize,
    count: usize,
    rows: usize,
    cols: usize,
    rows_pad: usize,
    cols_pad: usize,
) -> Result<CudaSlice<T>> {
    let per = rows_pad * cols_pad;
    let mut dst = dev.zeros::<T>((per * count).max(1))?;
    if per == 0 {
        return Ok(dst);
    }
    let f = dev.function(GEMM_MMA, kernel)?;
    let blocks = per.div_ceil(256).min(4096) as u32;
    let cfg = LaunchConfig {
        grid_dim: (blocks, 1, count as u32),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let (rs, cs, sb) = (l.row_stride as i64, l.col_stride as i64, src_batch as i64);
    let (r, cl, rp, cp) = (
        to_i32("rows", rows)?,
        to_i32("cols", cols)?,
        to_i32("rows", rows_pad)?,
        to_i32("cols", cols_pad)?,
    );
    let db = per as i64;
    let mut lb = dev.stream().launch_builder(&f);
    lb.arg(src)
        .arg(&rs)
        .arg(&cs)
        .arg(&sb)
        .arg(&r)
        .arg(&cl)
        .arg(&mut dst)
        .arg(&rp)
        .arg(&cp)
        .arg(&db);
    unsafe { lb.launch(cfg) }.map_err(|e| {
        format!("launch {kernel} ({rows} x {cols} -> {rows_pad} x {cols_pad}): {e}")
    })?;
    Ok(dst)
}

#[allow(clippy::too_many_arguments)]
fn launch_mma<T: DeviceRepr>(
    dev: &GpuDevice,
    tile: Option<MmaTile>,
    batch: BatchStrides,
    m: usize,
    n: usize,
    k_load: usize,
    n_load: usize,
    alpha: f32,
    a: &CudaSlice<T>,
    lda: usize,
    b: &CudaSlice<T>,
    ldb: usize,
    beta: f32,
    c: &mut CudaSlice<f32>,
    ldc: usize,
) -> Result<()> {
    let tile = tile.unwrap_or_else(|| MmaTile::choose(dev, m, n, batch.count));
    let kernel = tile.kernel(std::mem::size_of::<T>() == 2);
    let smem = tile.smem_bytes();
    let f = dev.function(GEMM_MMA, kernel)?;
    // Function attributes act on the calling thread's current context.
    dev.context()
        .bind_to_thread()
        .map_err(|e| format!("{kernel}: binding the CUDA context: {e}"))?;
    f.set_attribute(
        CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
        smem as i32,
    )
    .map_err(|e| format!("{kernel}: raising the shared-memory limit to {smem} bytes: {e}"))?;
    let grid_y = m.div_ceil(MMA_TILE_M);
    if grid_y > 65_535 {
        return Err(format!(
            "{kernel}: m = {m} needs {grid_y} row blocks (max 65535)"
        ));
    }
    let cfg = LaunchConfig {
        grid_dim: (
            n.div_ceil(tile.block_n()) as u32,
            grid_y as u32,
            batch.count as u32,
        ),
        block_dim: (MMA_THREADS, 1, 1),
        shared_mem_bytes: smem,
    };
    let (mi, ni, ki, nl) = (
        to_i32("m", m)?,
        to_i32("n", n)?,
        to_i32("k", k_load)?,
        to_i32("n", n_load)?,
    );
    let (lda, ab, ldb, bb, ldc, cb) = (
        lda as i64,
        batch.a as i64,
        ldb as i64,
        batch.b as i64,
        ldc as i64,
        batch.c as i64,
    );
    let mut lb = dev.stream().launch_builder(&f);
    lb.arg(&mi).arg(&ni).arg(&ki).arg(&nl).arg(&alpha);
    lb.arg(a).arg(&lda).arg(&ab).arg(b).arg(&ldb).arg(&bb);
    lb.arg(&beta).arg(c).arg(&ldc).arg(&cb);
    unsafe { lb.launch(cfg) }
        .map_err(|e| format!("launch {kernel} ({m} x {k_load} x {n}): {e}"))?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
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
