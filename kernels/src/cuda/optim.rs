//! Fused optimizer kernels on device buffers (kernels/cuda/optim.cu; docs/gpu-ops.md): one AdamW
//! step per parameter tensor (its own lr and weight decay), the DINO teacher's EMA update and
//! the per-tensor gradient clipping.

use super::device::GpuDevice;
use super::nvrtc::OPTIM;
use super::reduce::{check_len, grid_1d};
use super::signature::{Entry, Param::*};
use super::Result;
use cudarc::driver::{CudaSlice, PushKernelArg};

/// The PTX entry of each kernel as the launches below pass its arguments (checked against the
/// compiled PTX by `kernels/tests/cuda_ops.rs`).
pub const ENTRIES: &[Entry] = &[
    Entry::new(
        "adamw_step_f32",
        &[Ptr, Ptr, Ptr, Ptr, I64, F32, F32, F32, F32, F32, F32, F32],
    ),
    Entry::new("ema_update_f32", &[Ptr, Ptr, I64, F32]),
    Entry::new("clip_scale_f32", &[Ptr, Ptr, Ptr, I64, F32]),
];

/// AdamW hyper-parameters of one step of one tensor; `step` counts from 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    pub lr: f32,
    pub weight_decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub step: u64,
}

impl AdamWStep {
    /// Bias corrections (1 - beta1^t, 1 - beta2^t), in f64 then rounded.
    pub fn bias_corrections(&self) -> (f32, f32) {
        let t = self.step.max(1) as f64;
        (
            (1.0 - (self.beta1 as f64).powf(t)) as f32,
            (1.0 - (self.beta2 as f64).powf(t)) as f32,
        )
    }
}

/// One fused AdamW step on the first `n` elements:
/// p <- p (1 - lr wd); m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2;
/// p <- p - lr (m / bc1) / (sqrt(v / bc2) + eps).
pub fn adamw_step(
    dev: &GpuDevice,
    n: usize,
    h: &AdamWStep,
    param: &mut CudaSlice<f32>,
    grad: &CudaSlice<f32>,
    m: &mut CudaSlice<f32>,
    v: &mut CudaSlice<f32>,
) -> Result<()> {
    check_len("adamw param", n, param.len())?;
    check_len("adamw grad", n, grad.len())?;
    check_len("adamw m", n, m.len())?;
    check_len("adamw v", n, v.len())?;
    if n == 0 {
        return Ok(());
    }
    let (bc1, bc2) = h.bias_corrections();
    let f = dev.function(OPTIM, "adamw_step_f32")?;
    let n_i = n as i64;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(param)
        .arg(grad)
        .arg(m)
        .arg(v)
        .arg(&n_i)
        .arg(&h.lr)
        .arg(&h.weight_decay)
        .arg(&h.beta1)
        .arg(&h.beta2)
        .arg(&h.eps)
        .arg(&bc1)
        .arg(&bc2);
    unsafe { b.launch(grid_1d(n)) }.map_err(|e| format!("launch adamw_step_f32 (n={n}): {e}"))?;
    Ok(())
}

/// teacher <- momentum * teacher + (1 - momentum) * student (first `n` elements).
pub fn ema_update(
    dev: &GpuDevice,
    n: usize,
    momentum: f32,
    teacher: &mut CudaSlice<f32>,
    student: &CudaSlice<f32>,
) -> Result<()> {
    check_len("ema teacher", n, teacher.len())?;
    check_len("ema student", n, student.len())?;
    if n == 0 {
        return Ok(());
    }
    let f = dev.function(OPTIM, "ema_update_f32")?;
    let n_i = n as i64;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(teacher).arg(student).arg(&n_i).arg(&momentum);
    unsafe { b.launch(grid_1d(n)) }.map_err(|e| format!("launch ema_update_f32 (n={n}): {e}"))?;
    Ok(())
}

/// out = g * min(1, max_norm / (norm + 1e-6)) for the first `n` elements, `norm` = ||g|| as one
/// device element (DINO's per-tensor clipping, with no host round trip).
pub fn clip_scale(
    dev: &GpuDevice,
    n: usize,
    max_norm: f32,
    g: &CudaSlice<f32>,
    norm: &CudaSlice<f32>,
    out: &mut CudaSlice<f32>,
) -> Result<()> {
    check_len("clip grad", n, g.len())?;
    check_len("clip norm", 1, norm.len())?;
    check_len("clip out", n, out.len())?;
    if n == 0 {
        return Ok(());
    }
    let f = dev.function(OPTIM, "clip_scale_f32")?;
    let n_i = n as i64;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(g).arg(norm).arg(out).arg(&n_i).arg(&max_norm);
    unsafe { b.launch(grid_1d(n)) }.map_err(|e| format!("launch clip_scale_f32 (n={n}): {e}"))?;
    Ok(())
}
