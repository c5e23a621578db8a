//! Host side of the Hopper GEMM (kernels/cuda/gemm_wgmma.cu, sm_90a): operand layout, TMA tensor
//! maps (`cuTensorMapEncodeTiled`), launch. Reached through `gemm::gemm_batched` on compute
//! capability 9.0 (f32 operands) and the dev corner (`dev`: forced tiles, bf16 operands, B^T);
//! docs/gpu.md ("wgmma path").
//!
//! wgmma reads both operands K-major: A as m x k row-major and B as B^T (n x k row-major), each row
//! pitch a multiple of 16 bytes (TMA). f32 operands are laid out by one pass each (`wg_pack_*`:
//! A rounded to TF32 or converted to bf16; B transposed and rounded/converted); bf16 operands in
//! that layout go in directly. TMA zero-fills outside the tensor, so any m, n, k works.

use crate::cuda::device::GpuDevice;
use crate::cuda::nvrtc::GEMM_WGMMA;
use crate::cuda::signature::{Entry, Param, Param::*};
use crate::cuda::Result;
use crate::gemm::{BatchStrides, MatrixLayout};
use cudarc::driver::sys::{self, CUfunction_attribute_enum};
use cudarc::driver::{CudaSlice, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg};
use half::bf16;

/// Block tile of the wgmma kernels: 128 x 256 (4 stages) or 128 x 128 (6 stages); two consumer
/// warpgroups of 64 rows each and one producer warpgroup, one block per SM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WgmmaTile {
    T128x128,
    T128x256,
}

impl WgmmaTile {
    fn block_n(self) -> usize {
        match self {
            WgmmaTile::T128x128 => 128,
            WgmmaTile::T128x256 => 256,
        }
    }
    /// Dynamic shared memory (the table in gemm_wgmma.cu).
    fn smem_bytes(self) -> u32 {
        match self {
            WgmmaTile::T128x128 => 197_728,
            WgmmaTile::T128x256 => 197_696,
        }
    }
    fn kernel(self, bf16: bool, b_n_major: bool) -> &'static str {
        match (bf16, b_n_major, self) {
            (false, _, WgmmaTile::T128x128) => "gemm_tf32_wgmma_128x128",
            (false, _, WgmmaTile::T128x256) => "gemm_tf32_wgmma_128x256",
            (true, false, WgmmaTile::T128x128) => "gemm_bf16_wgmma_128x128",
            (true, false, WgmmaTile::T128x256) => "gemm_bf16_wgmma_128x256",
            (true, true, WgmmaTile::T128x128) => "gemm_bf16n_wgmma_128x128",
            (true, true, WgmmaTile::T128x256) => "gemm_bf16n_wgmma_128x256",
        }
    }
    /// The large tile when its blocks (times the batch) fill at least 3/4 of the SMs once
    /// (measured on the H200: 128 x 256 faster at 2048^3 with 128 blocks on 132 SMs, 128 x 128
    /// faster at 1024^3 with 32).
    pub fn choose(dev: &GpuDevice, m: usize, n: usize, count: usize) -> WgmmaTile {
        let blocks = m.div_ceil(BM) * n.div_ceil(256) * count;
        if 4 * blocks >= 3 * dev.info().multiprocessors.max(1) as usize {
            WgmmaTile::T128x256
        } else {
            WgmmaTile::T128x128
        }
    }
}

/// gemm_wgmma.cu's entries as [`launch`] and [`pack`] pass their arguments.
pub const ENTRIES: &[Entry] = &[
    Entry::new("gemm_tf32_wgmma_128x256", WG),
    Entry::new("gemm_tf32_wgmma_128x128", WG),
    Entry::new("gemm_bf16_wgmma_128x256", WG),
    Entry::new("gemm_bf16_wgmma_128x128", WG),
    Entry::new("gemm_bf16n_wgmma_128x256", WG),
    Entry::new("gemm_bf16n_wgmma_128x128", WG),
    Entry::new("wg_pack_tf32", PACK),
    Entry::new("wg_pack_bf16", PACK),
    Entry::new("wg_pack_bf16_copy", PACK),
];
const WG: &[Param] = &[
    Param::TensorMap,
    Param::TensorMap,
    I32,
    I32,
    I32,
    F32,
    F32,
    Ptr,
    I64,
    I64,
];
const PACK: &[Param] = &[Ptr, I64, I64, I64, I32, I32, I32, Ptr, I32, I64];

const BM: usize = 128;
const THREADS: u32 = 384;

/// True on the devices the wgmma kernels run on (compute capability 9.0: H100, H200).
pub(super) fn available(dev: &GpuDevice) -> bool {
    dev.info().compute_capability == (9, 0)
}

/// A `CUtensorMap` passed by value (`__grid_constant__`) to the kernel.
#[repr(transparent)]
struct TensorMap(sys::CUtensorMap);
unsafe impl DeviceRepr for TensorMap {}

/// Operand as the kernel reads it: `rows` rows of `cols` elements (k), row pitch `pitch` and
/// matrix stride `batch` (elements), `count` matrices; box = 128 bytes of k x `box_rows` rows.
fn tensor_map<T: DeviceRepr>(
    dev: &GpuDevice,
    buf: &CudaSlice<T>,
    is_bf16: bool,
    cols: usize,
    rows: usize,
    count: usize,
    pitch: usize,
    batch: usize,
    box_rows: usize,
) -> Result<TensorMap> {
    let esize = if is_bf16 { 2 } else { 4 };
    let (ptr, _sync) = buf.device_ptr(dev.stream());
    let batch_bytes = if count == 1 {
        pitch * rows.max(1) * esize
    } else {
        batch * esize
    };
    let dims = [cols as u64, rows as u64, count as u64];
    let strides = [(pitch * esize) as u64, batch_bytes as u64];
    let boxes = [(128 / esize) as u32, box_rows as u32, 1];
    let ones = [1u32; 3];
    let dtype = if is_bf16 {
        sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
    } else {
        sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_FLOAT32
    };
    let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::zeroed();
    unsafe {
        sys::cuTensorMapEncodeTiled(
            map.as_mut_ptr(),
            dtype,
            3,
            ptr as *mut std::ffi::c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            boxes.as_ptr(),
            ones.as_ptr(),
            sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
    }
    .result()
    .map_err(|e| {
        format!(
            "cuTensorMapEncodeTiled ({rows} x {cols}, pitch {pitch}, {count} matrices, batch stride \
             {batch}): {e}"
        )
    })?;
    Ok(TensorMap(unsafe { map.assume_init() }))
}

/// Lay out a rows x cols operand (element (i, j) at i * l.row_stride + j * l.col_stride, matrix t at
/// t * src_batch) as row-major rows x cols_pad of the kernel's element type, padding with zeros.
pub(super) fn pack<S: DeviceRepr, D: DeviceRepr>(
    dev: &GpuDevice,
    kernel: &'static str,
    src: &CudaSlice<S>,
    l: MatrixLayout,
    src_batch: usize,
    count: usize,
    rows: usize,
    cols: usize,
    cols_pad: usize,
) -> Result<CudaSlice<D>> {
    let per = rows * cols_pad;
    // Every element is written by the kernel: no memset.
    let mut dst = unsafe { dev.stream().alloc::<D>((per * count).max(1)) }
        .map_err(|e| format!("{kernel}: alloc of {} elements: {e}", per * count))?;
    if per == 0 {
        return Ok(dst);
    }
    let grid_y = rows.div_ceil(32);
    if grid_y > 65_535 {
        return Err(format!("{kernel}: {rows} rows exceed 65535 * 32"));
    }
    let f = dev.function(GEMM_WGMMA, kernel)?;
    let cfg = LaunchConfig {
        grid_dim: (cols_pad.div_ceil(32) as u32, grid_y as u32, count as u32),
        block_dim: (32, 8, 1),
        shared_mem_bytes: 0,
    };
    let (rs, cs, sb) = (l.row_stride as i64, l.col_stride as i64, src_batch as i64);
    let i_fast = i32::from(l.row_stride == 1 && l.col_stride != 1);
    let (r, cl, cp) = (rows as i32, cols as i32, cols_pad as i32);
    let db = per as i64;
    let mut lb = dev.stream().launch_builder(&f);
    lb.arg(src)
        .arg(&rs)
        .arg(&cs)
        .arg(&sb)
        .arg(&r)
        .arg(&cl)
        .arg(&i_fast);
    lb.arg(&mut dst).arg(&cp).arg(&db);
    unsafe { lb.launch(cfg) }
        .map_err(|e| format!("launch {kernel} ({rows} x {cols} -> pitch {cols_pad}): {e}"))?;
    Ok(dst)
}

/// TF32 or BF16 GEMM of f32 operands in any layout; C row-major (ldc).
pub(super) fn gemm_f32(
    dev: &GpuDevice,
    is_bf16: bool,
    tile: Option<WgmmaTile>,
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
    let count = batch.count;
    let kernel = if is_bf16 {
        "wg_pack_bf16"
    } else {
        "wg_pack_tf32"
    };
    let kp = if is_bf16 {
        k.div_ceil(8) * 8
    } else {
        k.div_ceil(4) * 4
    };
    let kp = kp.max(if is_bf16 { 8 } else { 4 });
    let c_batch = batch.c;
    if is_bf16 {
        let pa = pack::<f32, bf16>(dev, kernel, a, la, batch.a, count, m, k, kp)?;
        let pb = pack::<f32, bf16>(dev, kernel, b, lb.transposed(), batch.b, count, n, k, kp)?;
        launch(
            dev,
            true,
            false,
            tile,
            count,
            m,
            n,
            kp,
            &pa,
            kp,
            m * kp,
            &pb,
            kp,
            n * kp,
            alpha,
            beta,
            c,
            ldc,
            c_batch,
        )
    } else {
        let pa = pack::<f32, f32>(dev, kernel, a, la, batch.a, count, m, k, kp)?;
        let pb = pack::<f32, f32>(dev, kernel, b, lb.transposed(), batch.b, count, n, k, kp)?;
        launch(
            dev,
            false,
            false,
            tile,
            count,
            m,
            n,
            kp,
            &pa,
            kp,
            m * kp,
            &pb,
            kp,
            n * kp,
            alpha,
            beta,
            c,
            ldc,
            c_batch,
        )
    }
}

pub(super) fn launch<T: DeviceRepr>(
    dev: &GpuDevice,
    is_bf16: bool,
    b_n_major: bool,
    tile: Option<WgmmaTile>,
    count: usize,
    m: usize,
    n: usize,
    k: usize,
    a: &CudaSlice<T>,
    lda: usize,
    a_batch: usize,
    bt: &CudaSlice<T>,
    ldbt: usize,
    b_batch: usize,
    alpha: f32,
    beta: f32,
    c: &mut CudaSlice<f32>,
    ldc: usize,
    c_batch: usize,
) -> Result<()> {
    if !available(dev) {
        return Err(format!(
            "the wgmma GEMM needs compute capability 9.0 (sm_90a); this device is {}.{}",
            dev.info().compute_capability.0,
            dev.info().compute_capability.1
        ));
    }
    let tile = tile.unwrap_or_else(|| WgmmaTile::choose(dev, m, n, count));
    let kernel = tile.kernel(is_bf16, b_n_major);
    let map_a = tensor_map(dev, a, is_bf16, k, m, count, lda, a_batch, BM)?;
    let map_b = if b_n_major {
        // B row-major k x n: boxes of 64 n x 64 k
        tensor_map(dev, bt, is_bf16, n, k, count, ldbt, b_batch, 64)?
    } else {
        tensor_map(dev, bt, is_bf16, k, n, count, ldbt, b_batch, tile.block_n())?
    };
    let smem = tile.smem_bytes();
    let f = dev.function(GEMM_WGMMA, kernel)?;
    dev.context()
        .bind_to_thread()
        .map_err(|e| format!("{kernel}: binding the CUDA context: {e}"))?;
    f.set_attribute(
        CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
        smem as i32,
    )
    .map_err(|e| format!("{kernel}: raising the shared-memory limit to {smem} bytes: {e}"))?;
    let grid_y = m.div_ceil(BM);
    if grid_y > 65_535 || count > 65_535 {
        return Err(format!(
            "{kernel}: m = {m} ({grid_y} row blocks) or batch {count} exceeds 65535"
        ));
    }
    let cfg = LaunchConfig {
        grid_dim: (
            n.div_ceil(tile.block_n()) as u32,
            grid_y as u32,
            count as u32,
        ),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: smem,
    };
    let to_i32 = |what: &str, v: usize| {
        i32::try_from(v).map_err(|_| format!("{kernel}: {what} = {v} exceeds i32"))
    };
    let (mi, ni, ki) = (to_i32("m", m)?, to_i32("n", n)?, to_i32("k", k)?);
    let (ldc, cb) = (ldc as i64, c_batch as i64);
    let mut lb = dev.stream().launch_builder(&f);
    lb.arg(&map_a).arg(&map_b).arg(&mi).arg(&ni).arg(&ki);
    lb.arg(&alpha).arg(&beta).arg(c).arg(&ldc).arg(&cb);
    unsafe { lb.launch(cfg) }.map_err(|e| format!("launch {kernel} ({m} x {k} x {n}): {e}"))?;
    Ok(())
}
