//! LayerNorm over the last axis on device buffers (kernels/cuda/layernorm.cu; math in
//! docs/layernorm.md). CPU references: `cpu::layernorm::layernorm_{forward,backward}_reference`.
//! dgamma/dbeta: fixed chunks of rows ([`reduce::chunk_rows`]) then chunk order: deterministic.

use super::device::GpuDevice;
use super::nvrtc::LAYERNORM;
use super::reduce::{check_len, chunk_rows, grid_rows, to_i32};
use super::signature::{Entry, Param::*};
use super::Result;
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

/// The PTX entry of each kernel as the launches below pass its arguments (checked against the
/// compiled PTX by `kernels/tests/cuda_ops.rs`).
pub const ENTRIES: &[Entry] = &[
    Entry::new(
        "layernorm_forward_f32",
        &[Ptr, Ptr, Ptr, Ptr, Ptr, Ptr, I32, I32, F32],
    ),
    Entry::new(
        "layernorm_backward_dx_f32",
        &[Ptr, Ptr, Ptr, Ptr, Ptr, Ptr, I32, I32],
    ),
    Entry::new(
        "layernorm_backward_params_partial_f32",
        &[Ptr, Ptr, Ptr, Ptr, Ptr, Ptr, I32, I32, I32],
    ),
    Entry::new(
        "layernorm_backward_params_final_f32",
        &[Ptr, Ptr, Ptr, Ptr, I32, I32],
    ),
];

/// Forward: y [rows, cols], mean and rstd [rows] saved for the backward.
pub fn layernorm_forward(
    dev: &GpuDevice,
    rows: usize,
    cols: usize,
    eps: f32,
    x: &CudaSlice<f32>,
    gamma: &CudaSlice<f32>,
    beta: &CudaSlice<f32>,
    y: &mut CudaSlice<f32>,
    mean: &mut CudaSlice<f32>,
    rstd: &mut CudaSlice<f32>,
) -> Result<()> {
    check_len("layernorm x", rows * cols, x.len())?;
    check_len("layernorm gamma", cols, gamma.len())?;
    check_len("layernorm beta", cols, beta.len())?;
    check_len("layernorm y", rows * cols, y.len())?;
    check_len("layernorm mean", rows, mean.len())?;
    check_len("layernorm rstd", rows, rstd.len())?;
    if rows * cols == 0 {
        return Ok(());
    }
    let f = dev.function(LAYERNORM, "layernorm_forward_f32")?;
    let (r, c) = (to_i32("rows", rows)?, to_i32("cols", cols)?);
    let mut b = dev.stream().launch_builder(&f);
    b.arg(x)
        .arg(gamma)
        .arg(beta)
        .arg(y)
        .arg(mean)
        .arg(rstd)
        .arg(&r)
        .arg(&c)
        .arg(&eps);
    unsafe { b.launch(grid_rows(rows)) }
        .map_err(|e| format!("launch layernorm_forward_f32 ({rows} x {cols}): {e}"))?;
    Ok(())
}

/// Backward: dx [rows, cols], dgamma and dbeta [cols].
pub fn layernorm_backward(
    dev: &GpuDevice,
    rows: usize,
    cols: usize,
    x: &CudaSlice<f32>,
    gamma: &CudaSlice<f32>,
    mean: &CudaSlice<f32>,
    rstd: &CudaSlice<f32>,
    dy: &CudaSlice<f32>,
    dx: &mut CudaSlice<f32>,
    dgamma: &mut CudaSlice<f32>,
    dbeta: &mut CudaSlice<f32>,
) -> Result<()> {
    check_len("layernorm_backward x", rows * cols, x.len())?;
    check_len("layernorm_backward gamma", cols, gamma.len())?;
    check_len("layernorm_backward mean", rows, mean.len())?;
    check_len("layernorm_backward rstd", rows, rstd.len())?;
    check_len("layernorm_backward dy", rows * cols, dy.len())?;
    check_len("layernorm_backward dx", rows * cols, dx.len())?;
    check_len("layernorm_backward dgamma", cols, dgamma.len())?;
    check_len("layernorm_backward dbeta", cols, dbeta.len())?;
    if cols == 0 {
        return Ok(());
    }
    let (r, c) = (to_i32("rows", rows)?, to_i32("cols", cols)?);
    if rows > 0 {
        let f = dev.function(LAYERNORM, "layernorm_backward_dx_f32")?;
        let mut b = dev.stream().launch_builder(&f);
        b.arg(x)
            .arg(gamma)
            .arg(mean)
            .arg(rstd)
            .arg(dy)
            .arg(dx)
            .arg(&r)
            .arg(&c);
        unsafe { b.launch(grid_rows(rows)) }
            .map_err(|e| format!("launch layernorm_backward_dx_f32 ({rows} x {cols}): {e}"))?;
    }
    let cr = chunk_rows(rows);
    let chunks = rows.div_ceil(cr).max(1);
    // The partial pass writes every (chunk, column) entry of both: no memset.
    let mut pg = dev.uninit::<f32>(chunks * cols)?;
    let mut pb = dev.uninit::<f32>(chunks * cols)?;
    let (cr_i, ch) = (to_i32("chunk rows", cr)?, to_i32("chunks", chunks)?);
    let blocks = cols.div_ceil(256) as u32;
    let f = dev.function(LAYERNORM, "layernorm_backward_params_partial_f32")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(x)
        .arg(mean)
        .arg(rstd)
        .arg(dy)
        .arg(&mut pg)
        .arg(&mut pb)
        .arg(&r)
        .arg(&c)
        .arg(&cr_i);
    let cfg = LaunchConfig {
        grid_dim: (blocks, chunks as u32, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    unsafe { b.launch(cfg) }.map_err(|e| {
        format!("launch layernorm_backward_params_partial_f32 ({rows} x {cols}): {e}")
    })?;
    let f = dev.function(LAYERNORM, "layernorm_backward_params_final_f32")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(&pg).arg(&pb).arg(dgamma).arg(dbeta).arg(&ch).arg(&c);
    let cfg = LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    unsafe { b.launch(cfg) }.map_err(|e| {
        format!("launch layernorm_backward_params_final_f32 ({chunks} x {cols}): {e}")
    })?;
    Ok(())
}
