//! Reductions and layout kernels on device buffers (kernels/cuda/reduce.cu; docs/gpu-ops.md).
//! Deterministic: fixed block trees and fixed row chunks combined in chunk order, so a rerun is
//! bitwise identical. CPU references: plain loops (the tests), `Layout::for_each_offset`.

use super::device::GpuDevice;
use super::nvrtc::REDUCE;
use super::signature::{Entry, Param::*};
use super::Result;
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

/// The PTX entry of each kernel as the launches below pass its arguments (checked against the
/// compiled PTX by `kernels/tests/cuda_ops.rs`).
pub const ENTRIES: &[Entry] = &[
    Entry::new("sum_last_f32", &[Ptr, Ptr, I32, I32]),
    Entry::new("sum_rows_partial_f32", &[Ptr, Ptr, I32, I32, I32]),
    Entry::new("sum_chunks_f32", &[Ptr, Ptr, I32, I32]),
    Entry::new("strided_copy_f32", &[Ptr, Ptr, I64, I32, Ptr, Ptr, I64]),
    Entry::new("strided_scatter_f32", &[Ptr, Ptr, I64, I32, Ptr, Ptr, I64]),
    Entry::new(
        "binary_strided_f32",
        &[I32, Ptr, Ptr, I64, Ptr, Ptr, I64, Ptr, I64, I32, Ptr],
    ),
    Entry::new("map_f32", &[I32, Ptr, Ptr, I64, F32, F32]),
];

/// Threads per block of the row kernels (one block per row).
pub const ROW_THREADS: u32 = 256;

/// Grid-stride launch over `n` elements.
pub(crate) fn grid_1d(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(256).clamp(1, 65_535) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per row (grid-stride over rows).
pub(crate) fn grid_rows(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.clamp(1, 65_535) as u32, 1, 1),
        block_dim: (ROW_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Rows per chunk of the column sums: a function of the shape only (never of the device), so
/// the summation order and the result are fixed; at most 1024 chunks.
pub fn chunk_rows(rows: usize) -> usize {
    rows.div_ceil(1024).max(32)
}

pub(crate) fn check_len(what: &str, expected: usize, got: usize) -> Result<()> {
    if got < expected {
        Err(format!(
            "{what}: buffer has {got} elements, need {expected}"
        ))
    } else {
        Ok(())
    }
}

pub(crate) fn to_i32(what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| format!("{what} = {v} does not fit the kernel's 32-bit index"))
}

/// y[r] = sum_j x[r, j] for x [rows, cols].
pub fn sum_last(
    dev: &GpuDevice,
    rows: usize,
    cols: usize,
    x: &CudaSlice<f32>,
    y: &mut CudaSlice<f32>,
) -> Result<()> {
    check_len("sum_last x", rows * cols, x.len())?;
    check_len("sum_last y", rows, y.len())?;
    if rows == 0 {
        return Ok(());
    }
    let f = dev.function(REDUCE, "sum_last_f32")?;
    let (r, c) = (to_i32("rows", rows)?, to_i32("cols", cols)?);
    let mut b = dev.stream().launch_builder(&f);
    b.arg(x).arg(y).arg(&r).arg(&c);
    unsafe { b.launch(grid_rows(rows)) }
        .map_err(|e| format!("launch sum_last_f32 ({rows} x {cols}): {e}"))?;
    Ok(())
}

/// y[j] = sum_r x[r, j] for x [rows, cols]: fixed chunks of [`chunk_rows`] rows, then the chunk
/// partials in chunk order.
pub fn sum_rows(
    dev: &GpuDevice,
    rows: usize,
    cols: usize,
    x: &CudaSlice<f32>,
    y: &mut CudaSlice<f32>,
) -> Result<()> {
    check_len("sum_rows x", rows * cols, x.len())?;
    check_len("sum_rows y", cols, y.len())?;
    if cols == 0 {
        return Ok(());
    }
    let cr = chunk_rows(rows);
    let chunks = rows.div_ceil(cr).max(1);
    // Pass 1 writes every (chunk, column) partial: no memset.
    let mut partial = dev.uninit::<f32>(chunks * cols)?;
    let (r, c, cr_i, ch) = (
        to_i32("rows", rows)?,
        to_i32("cols", cols)?,
        to_i32("chunk rows", cr)?,
        to_i32("chunks", chunks)?,
    );
    let blocks = cols.div_ceil(256) as u32;
    let f = dev.function(REDUCE, "sum_rows_partial_f32")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(x).arg(&mut partial).arg(&r).arg(&c).arg(&cr_i);
    let cfg = LaunchConfig {
        grid_dim: (blocks, chunks as u32, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    unsafe { b.launch(cfg) }
        .map_err(|e| format!("launch sum_rows_partial_f32 ({rows} x {cols}): {e}"))?;
    let f = dev.function(REDUCE, "sum_chunks_f32")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(&partial).arg(y).arg(&ch).arg(&c);
    let cfg = LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    unsafe { b.launch(cfg) }
        .map_err(|e| format!("launch sum_chunks_f32 ({chunks} x {cols}): {e}"))?;
    Ok(())
}

fn layout_arrays(
    dev: &GpuDevice,
    what: &str,
    shape: &[usize],
    strides: &[&[usize]],
) -> Result<Vec<CudaSlice<i64>>> {
    if shape.len() > 8 || strides.iter().any(|s| s.len() != shape.len()) {
        return Err(format!(
            "{what}: rank {} (at most 8, strides of the same rank)",
            shape.len()
        ));
    }
    let mut out = vec![dev.upload(&shape.iter().map(|&v| v as i64).collect::<Vec<_>>())?];
    for s in strides {
        out.push(dev.upload(&s.iter().map(|&v| v as i64).collect::<Vec<_>>())?);
    }
    Ok(out)
}

/// The largest storage index a strided view reads, plus one.
fn extent(shape: &[usize], strides: &[usize], offset: usize) -> usize {
    if shape.contains(&0) {
        return 0;
    }
    offset
        + shape
            .iter()
            .zip(strides)
            .map(|(&n, &s)| (n - 1) * s)
            .sum::<usize>()
        + 1
}

/// dst[i] = src[offset + sum_k idx_k(i) strides[k]], i in row-major order of `shape` (rank <= 8).
pub fn strided_copy(
    dev: &GpuDevice,
    src: &CudaSlice<f32>,
    shape: &[usize],
    strides: &[usize],
    offset: usize,
    dst: &mut CudaSlice<f32>,
) -> Result<()> {
    let n: usize = shape.iter().product();
    check_len(
        "strided_copy src",
        extent(shape, strides, offset),
        src.len(),
    )?;
    check_len("strided_copy dst", n, dst.len())?;
    if n == 0 {
        return Ok(());
    }
    let arrays = layout_arrays(dev, "strided_copy", shape, &[strides])?;
    let f = dev.function(REDUCE, "strided_copy_f32")?;
    let (n_i, rank, off) = (n as i64, shape.len() as i32, offset as i64);
    let mut b = dev.stream().launch_builder(&f);
    b.arg(src)
        .arg(dst)
        .arg(&n_i)
        .arg(&rank)
        .arg(&arrays[0])
        .arg(&arrays[1])
        .arg(&off);
    unsafe { b.launch(grid_1d(n)) }
        .map_err(|e| format!("launch strided_copy_f32 (shape {shape:?}): {e}"))?;
    Ok(())
}

/// dst[offset + sum_k idx_k(i) strides[k]] = src[i]: writes a contiguous buffer into a
/// non-overlapping strided view (the backward of narrow); other elements of dst are untouched.
pub fn strided_scatter(
    dev: &GpuDevice,
    src: &CudaSlice<f32>,
    shape: &[usize],
    strides: &[usize],
    offset: usize,
    dst: &mut CudaSlice<f32>,
) -> Result<()> {
    let n: usize = shape.iter().product();
    check_len("strided_scatter src", n, src.len())?;
    check_len(
        "strided_scatter dst",
        extent(shape, strides, offset),
        dst.len(),
    )?;
    if n == 0 {
        return Ok(());
    }
    let arrays = layout_arrays(dev, "strided_scatter", shape, &[strides])?;
    let f = dev.function(REDUCE, "strided_scatter_f32")?;
    let (n_i, rank, off) = (n as i64, shape.len() as i32, offset as i64);
    let mut b = dev.stream().launch_builder(&f);
    b.arg(src)
        .arg(dst)
        .arg(&n_i)
        .arg(&rank)
        .arg(&arrays[0])
        .arg(&arrays[1])
        .arg(&off);
    unsafe { b.launch(grid_1d(n)) }
        .map_err(|e| format!("launch strided_scatter_f32 (shape {shape:?}): {e}"))?;
    Ok(())
}

pub use crate::elementwise::{BinaryOp, MapOp};

/// A strided view of a device buffer: storage offset and element strides (0 = broadcast).
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub data: &'a CudaSlice<f32>,
    pub strides: &'a [usize],
    pub offset: usize,
}

/// out[i] = a[i] op b[i] over `shape` (row-major out), a and b strided views (broadcast: stride 0).
pub fn binary_strided(
    dev: &GpuDevice,
    op: BinaryOp,
    shape: &[usize],
    a: View,
    b: View,
    out: &mut CudaSlice<f32>,
) -> Result<()> {
    let n: usize = shape.iter().product();
    check_len("binary a", extent(shape, a.strides, a.offset), a.data.len())?;
    check_len("binary b", extent(shape, b.strides, b.offset), b.data.len())?;
    check_len("binary out", n, out.len())?;
    if n == 0 {
        return Ok(());
    }
    let arrays = layout_arrays(dev, "binary_strided", shape, &[a.strides, b.strides])?;
    let f = dev.function(REDUCE, "binary_strided_f32")?;
    let (op_i, n_i, rank) = (op as i32, n as i64, shape.len() as i32);
    let (ao, bo) = (a.offset as i64, b.offset as i64);
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&op_i)
        .arg(a.data)
        .arg(&arrays[1])
        .arg(&ao)
        .arg(b.data)
        .arg(&arrays[2])
        .arg(&bo)
        .arg(out)
        .arg(&n_i)
        .arg(&rank)
        .arg(&arrays[0]);
    unsafe { l.launch(grid_1d(n)) }
        .map_err(|e| format!("launch binary_strided_f32 ({op:?}, shape {shape:?}): {e}"))?;
    Ok(())
}

/// y[i] = f(x[i]) for the first `n` elements.
pub fn map(
    dev: &GpuDevice,
    op: MapOp,
    n: usize,
    x: &CudaSlice<f32>,
    y: &mut CudaSlice<f32>,
) -> Result<()> {
    check_len("map x", n, x.len())?;
    check_len("map y", n, y.len())?;
    if n == 0 {
        return Ok(());
    }
    let (code, p0, p1) = match op {
        MapOp::Affine(a, b) => (0i32, a as f32, b as f32),
        MapOp::Exp => (1, 0.0, 0.0),
        MapOp::Log => (2, 0.0, 0.0),
        MapOp::Sqrt => (3, 0.0, 0.0),
        MapOp::Pow(p) => (4, p as f32, 0.0),
        MapOp::Max(p) => (5, p as f32, 0.0),
        MapOp::Step(p) => (6, p as f32, 0.0),
    };
    let f = dev.function(REDUCE, "map_f32")?;
    let n_i = n as i64;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(&code).arg(x).arg(y).arg(&n_i).arg(&p0).arg(&p1);
    unsafe { b.launch(grid_1d(n)) }.map_err(|e| format!("launch map_f32 ({op:?}, n={n}): {e}"))?;
    Ok(())
}
