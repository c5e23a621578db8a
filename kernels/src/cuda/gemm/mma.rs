//! Host side of the mma.sync GEMM (kernels/cuda/gemm_mma.cu, sm_80+): the block tile, the packing
//! of operands the kernel cannot read in place, the launch. Reached through `gemm_batched` (TF32 /
//! BF16 on devices without wgmma) and the dev corner (`dev`, feature `gemm-dev`).

use super::check::to_i32;
use crate::cuda::device::GpuDevice;
use crate::cuda::nvrtc::GEMM_MMA;
use crate::cuda::signature::{Entry, Param, Param::*};
use crate::cuda::Result;
use crate::gemm::{BatchStrides, MatrixLayout};
use cudarc::driver::sys::CUfunction_attribute_enum;
use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};

/// Block tile of the tensor-core kernels (gemm_mma.cu): 128 x 128 (warp tile 64 x 32, 4 stages,
/// two blocks per SM) or 128 x 256 (warp tile 64 x 64, 3 stages, one block per SM: twice the mma
/// per fragment load, fewer blocks). [`MmaTile::choose`] takes the large tile when it still fills the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MmaTile {
    T128x128,
    T128x256,
}

impl MmaTile {
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

/// gemm_mma.cu's entries as [`launch_mma`] and [`pack`] pass their arguments.
pub const ENTRIES: &[Entry] = &[
    Entry::new("gemm_tf32_mma_128x128", MMA),
    Entry::new("gemm_tf32_mma_128x256", MMA),
    Entry::new("gemm_bf16_mma_128x128", MMA),
    Entry::new("gemm_bf16_mma_128x256", MMA),
    Entry::new("pack_f32", PACK),
    Entry::new("pack_f32_to_bf16", PACK),
];
const MMA: &[Param] = &[
    I32, I32, I32, I32, F32, Ptr, I64, I64, Ptr, I64, I64, F32, Ptr, I64, I64,
];
const PACK: &[Param] = &[Ptr, I64, I64, I64, I32, I32, Ptr, I32, I32, I64];

const MMA_TILE_M: usize = 128;
const MMA_THREADS: u32 = 256;

pub(super) fn gemm_tf32(
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
pub(super) fn pack<T: DeviceRepr>(
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
    // The kernel writes every element, padding included: no memset.
    let mut dst = dev.uninit::<T>((per * count).max(1))?;
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

pub(super) fn launch_mma<T: DeviceRepr>(
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
