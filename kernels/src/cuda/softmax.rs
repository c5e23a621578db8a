//! Softmax and log-softmax over the last axis on device buffers (kernels/cuda/softmax.cu).
//! CPU references: `cpu::softmax::{softmax,log_softmax}_{forward,backward}_reference`.
//! One block per row; the row reductions have a fixed order (deterministic).

use super::device::GpuDevice;
use super::nvrtc::SOFTMAX;
use super::reduce::{check_len, grid_rows, to_i32};
use super::signature::{Entry, Param::*};
use super::Result;
use cudarc::driver::{CudaSlice, PushKernelArg};

/// The PTX entry of each kernel as the launches below pass its arguments (checked against the
/// compiled PTX by `kernels/tests/cuda_ops.rs`).
pub const ENTRIES: &[Entry] = &[
    Entry::new("softmax_forward_f32", &[Ptr, Ptr, I32, I32, I32]),
    Entry::new("softmax_backward_f32", &[Ptr, Ptr, Ptr, I32, I32, I32]),
];

/// y = softmax(x) (or log-softmax with `log`) per row of x [rows, cols].
pub fn softmax_forward(
    dev: &GpuDevice,
    log: bool,
    rows: usize,
    cols: usize,
    x: &CudaSlice<f32>,
    y: &mut CudaSlice<f32>,
) -> Result<()> {
    check_len("softmax x", rows * cols, x.len())?;
    check_len("softmax y", rows * cols, y.len())?;
    if rows * cols == 0 {
        return Ok(());
    }
    let f = dev.function(SOFTMAX, "softmax_forward_f32")?;
    let (r, c, l) = (to_i32("rows", rows)?, to_i32("cols", cols)?, log as i32);
    let mut b = dev.stream().launch_builder(&f);
    b.arg(x).arg(y).arg(&r).arg(&c).arg(&l);
    unsafe { b.launch(grid_rows(rows)) }
        .map_err(|e| format!("launch softmax_forward_f32 ({rows} x {cols}, log={log}): {e}"))?;
    Ok(())
}

/// dx from the forward output y and dy: softmax dx = y (dy - sum(dy y)); log-softmax
/// dx = dy - exp(y) sum(dy).
pub fn softmax_backward(
    dev: &GpuDevice,
    log: bool,
    rows: usize,
    cols: usize,
    y: &CudaSlice<f32>,
    dy: &CudaSlice<f32>,
    dx: &mut CudaSlice<f32>,
) -> Result<()> {
    check_len("softmax_backward y", rows * cols, y.len())?;
    check_len("softmax_backward dy", rows * cols, dy.len())?;
    check_len("softmax_backward dx", rows * cols, dx.len())?;
    if rows * cols == 0 {
        return Ok(());
    }
    let f = dev.function(SOFTMAX, "softmax_backward_f32")?;
    let (r, c, l) = (to_i32("rows", rows)?, to_i32("cols", cols)?, log as i32);
    let mut b = dev.stream().launch_builder(&f);
    b.arg(y).arg(dy).arg(dx).arg(&r).arg(&c).arg(&l);
    unsafe { b.launch(grid_rows(rows)) }
        .map_err(|e| format!("launch softmax_backward_f32 ({rows} x {cols}, log={log}): {e}"))?;
    Ok(())
}
