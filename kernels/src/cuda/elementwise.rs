//! Elementwise kernels on device buffers (kernels/cuda/elementwise.cu). CPU references:
//! `cpu::gelu::gelu_forward_reference` etc., `cpu::bf16::{bf16_from_f32, f32_from_bf16}` for the
//! conversions (the same integer rule: equal bit for bit). Every launch's error is returned.

use super::device::GpuDevice;
use super::nvrtc::ELEMENTWISE;
use super::signature::{Entry, Param::*};
use super::Result;
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use half::bf16;

/// The PTX entry of each kernel as the launches below pass its arguments (checked against the
/// compiled PTX by `kernels/tests/cuda_ops.rs`).
pub const ENTRIES: &[Entry] = &[
    Entry::new("add_f32", &[Ptr, Ptr, Ptr, I64]),
    Entry::new("scale_f32", &[F32, Ptr, Ptr, I64]),
    Entry::new("axpy_f32", &[F32, Ptr, Ptr, I64]),
    Entry::new("gelu_forward_f32", &[Ptr, Ptr, I64]),
    Entry::new("gelu_backward_f32", &[Ptr, Ptr, Ptr, I64]),
    Entry::new("f32_to_bf16", &[Ptr, Ptr, I64]),
    Entry::new("bf16_to_f32", &[Ptr, Ptr, I64]),
];

fn config(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 65_535) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn check_len(what: &str, expected: usize, got: usize) -> Result<()> {
    if got < expected {
        Err(format!(
            "{what}: buffer has {got} elements, need {expected}"
        ))
    } else {
        Ok(())
    }
}

/// out = x + y (first `n` elements).
pub fn add(
    dev: &GpuDevice,
    n: usize,
    x: &CudaSlice<f32>,
    y: &CudaSlice<f32>,
    out: &mut CudaSlice<f32>,
) -> Result<()> {
    check_len("add x", n, x.len())?;
    check_len("add y", n, y.len())?;
    check_len("add out", n, out.len())?;
    let f = dev.function(ELEMENTWISE, "add_f32")?;
    let n_i = n as i64;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(x).arg(y).arg(out).arg(&n_i);
    unsafe { b.launch(config(n)) }.map_err(|e| format!("launch add_f32 (n={n}): {e}"))?;
    Ok(())
}

/// out = alpha * x.
pub fn scale(
    dev: &GpuDevice,
    n: usize,
    alpha: f32,
    x: &CudaSlice<f32>,
    out: &mut CudaSlice<f32>,
) -> Result<()> {
    check_len("scale x", n, x.len())?;
    check_len("scale out", n, out.len())?;
    let f = dev.function(ELEMENTWISE, "scale_f32")?;
    let n_i = n as i64;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(&alpha).arg(x).arg(out).arg(&n_i);
    unsafe { b.launch(config(n)) }.map_err(|e| format!("launch scale_f32 (n={n}): {e}"))?;
    Ok(())
}

/// y = alpha * x + y.
pub fn axpy(
    dev: &GpuDevice,
    n: usize,
    alpha: f32,
    x: &CudaSlice<f32>,
    y: &mut CudaSlice<f32>,
) -> Result<()> {
    check_len("axpy x", n, x.len())?;
    check_len("axpy y", n, y.len())?;
    let f = dev.function(ELEMENTWISE, "axpy_f32")?;
    let n_i = n as i64;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(&alpha).arg(x).arg(y).arg(&n_i);
    unsafe { b.launch(config(n)) }.map_err(|e| format!("launch axpy_f32 (n={n}): {e}"))?;
    Ok(())
}

/// y = GELU(x), erf form (docs/gelu.md).
pub fn gelu_forward(
    dev: &GpuDevice,
    n: usize,
    x: &CudaSlice<f32>,
    y: &mut CudaSlice<f32>,
) -> Result<()> {
    check_len("gelu_forward x", n, x.len())?;
    check_len("gelu_forward y", n, y.len())?;
    let f = dev.function(ELEMENTWISE, "gelu_forward_f32")?;
    let n_i = n as i64;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(x).arg(y).arg(&n_i);
    unsafe { b.launch(config(n)) }.map_err(|e| format!("launch gelu_forward_f32 (n={n}): {e}"))?;
    Ok(())
}

/// dx = dy * GELU'(x).
pub fn gelu_backward(
    dev: &GpuDevice,
    n: usize,
    x: &CudaSlice<f32>,
    dy: &CudaSlice<f32>,
    dx: &mut CudaSlice<f32>,
) -> Result<()> {
    check_len("gelu_backward x", n, x.len())?;
    check_len("gelu_backward dy", n, dy.len())?;
    check_len("gelu_backward dx", n, dx.len())?;
    let f = dev.function(ELEMENTWISE, "gelu_backward_f32")?;
    let n_i = n as i64;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(x).arg(dy).arg(dx).arg(&n_i);
    unsafe { b.launch(config(n)) }.map_err(|e| format!("launch gelu_backward_f32 (n={n}): {e}"))?;
    Ok(())
}

/// y = bf16(x), round to nearest even, NaN quieted (`cpu::bf16::bf16_from_f32`).
pub fn f32_to_bf16(
    dev: &GpuDevice,
    n: usize,
    x: &CudaSlice<f32>,
    y: &mut CudaSlice<bf16>,
) -> Result<()> {
    check_len("f32_to_bf16 x", n, x.len())?;
    check_len("f32_to_bf16 y", n, y.len())?;
    let f = dev.function(ELEMENTWISE, "f32_to_bf16")?;
    let n_i = n as i64;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(x).arg(y).arg(&n_i);
    unsafe { b.launch(config(n)) }.map_err(|e| format!("launch f32_to_bf16 (n={n}): {e}"))?;
    Ok(())
}

/// y = f32(x), exact, NaN quieted (`cpu::bf16::f32_from_bf16`).
pub fn bf16_to_f32(
    dev: &GpuDevice,
    n: usize,
    x: &CudaSlice<bf16>,
    y: &mut CudaSlice<f32>,
) -> Result<()> {
    check_len("bf16_to_f32 x", n, x.len())?;
    check_len("bf16_to_f32 y", n, y.len())?;
    let f = dev.function(ELEMENTWISE, "bf16_to_f32")?;
    let n_i = n as i64;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(x).arg(y).arg(&n_i);
    unsafe { b.launch(config(n)) }.map_err(|e| format!("launch bf16_to_f32 (n={n}): {e}"))?;
    Ok(())
}
