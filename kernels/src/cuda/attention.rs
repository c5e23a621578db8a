//! Full self-attention on the GPU, flash style (kernels/cuda/attention.cu): forward with the
//! log-sum-exp saved, backward recomputing P (D = rowsum(dO * O); dQ per query tile, dK/dV per key
//! tile over every query tile; no atomics, deterministic). Same problem description, views and
//! layouts as [`crate::cpu::attention`] (its `*_reference` functions are the test oracle): `out`
//! `[batch, N, heads, d]` in `T`, `lse` `[batch, heads, N]` in f32. SIMT version 1 (no tensor
//! cores yet). Design: docs/gpu-attention.md.

use super::device::GpuDevice;
use super::neighborhood_attention::{dmax, intern, GpuFloat, GpuHeads, GpuView};
use super::nvrtc::ATTENTION;
use super::signature::{Entry, Param, Param::*};
use super::Result;
use crate::attention::{Attention, HeadsView};
use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};
use half::bf16;

/// Rows (queries or keys) per block; matches `BLOCK` in the CUDA source.
const BLOCK: usize = 64;

/// Mirrors `struct AttnParams` of the CUDA source.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct AttnParams {
    q: GpuView,
    k: GpuView,
    v: GpuView,
    dq: GpuView,
    dk: GpuView,
    dv: GpuView,
    batch: i32,
    tokens: i32,
    heads: i32,
    dim: i32,
    scale: f32,
    pad: i32,
}
// SAFETY: plain-old-data with the C layout of the kernel's parameter struct.
unsafe impl DeviceRepr for AttnParams {}

/// The kernel of `pass` ("fwd", "bwd_q", "bwd_kv") for element type `t` and head-dim width `dmax`.
fn kernel_name(pass: &str, t: &str, dmax: usize) -> String {
    format!("attn_{pass}_{t}_d{dmax}")
}

/// The PTX entry of each kernel (every element type and head-dim width) as the launches below
/// pass its arguments (checked against the compiled PTX by `kernels/tests/cuda_ops.rs`).
pub fn entries() -> Vec<Entry> {
    const P: Param = Struct(std::mem::size_of::<AttnParams>());
    let mut out = Vec::new();
    for t in [<f32 as GpuFloat>::NAME, <bf16 as GpuFloat>::NAME] {
        for dm in [32, 64, 128] {
            let passes: [(&str, &'static [Param]); 3] = [
                ("fwd", &[P, Ptr, Ptr, Ptr, Ptr, Ptr]),
                ("bwd_q", &[P, Ptr, Ptr, Ptr, Ptr, Ptr, Ptr, Ptr, Ptr]),
                ("bwd_kv", &[P, Ptr, Ptr, Ptr, Ptr, Ptr, Ptr, Ptr]),
            ];
            for (pass, params) in passes {
                out.push(Entry::new(intern(&kernel_name(pass, t, dm)), params));
            }
        }
    }
    out
}

fn params(p: &Attention, views: [HeadsView; 6]) -> Result<AttnParams> {
    let i = |name: &str, x: usize| {
        i32::try_from(x).map_err(|_| format!("attention (cuda): {name} = {x} exceeds i32"))
    };
    Ok(AttnParams {
        q: views[0].into(),
        k: views[1].into(),
        v: views[2].into(),
        dq: views[3].into(),
        dk: views[4].into(),
        dv: views[5].into(),
        batch: i("batch", p.batch)?,
        tokens: i("tokens", p.tokens)?,
        heads: i("heads", p.heads)?,
        dim: i("head_dim", p.head_dim)?,
        scale: p.scale as f32,
        pad: 0,
    })
}

fn config(p: &Attention, smem_floats: usize) -> Result<LaunchConfig> {
    if p.batch * p.heads > 65_535 {
        return Err(format!(
            "attention (cuda): batch * heads = {} exceeds 65535",
            p.batch * p.heads
        ));
    }
    Ok(LaunchConfig {
        grid_dim: (
            p.tokens.div_ceil(BLOCK) as u32,
            (p.batch * p.heads) as u32,
            1,
        ),
        block_dim: (BLOCK as u32, 1, 1),
        shared_mem_bytes: (smem_floats * 4) as u32,
    })
}

fn check(p: &Attention, named: &[(&str, usize, usize)]) -> Result<()> {
    p.check()?;
    for &(name, need, got) in named {
        if got < need {
            return Err(format!(
                "attention (cuda): {name} has {got} elements, needs {need} for {p:?}"
            ));
        }
    }
    Ok(())
}

fn function(
    dev: &GpuDevice,
    name: &str,
    smem_bytes: usize,
) -> Result<cudarc::driver::CudaFunction> {
    let f = dev.function(ATTENTION, intern(name))?;
    if smem_bytes > 48 * 1024 {
        dev.context()
            .bind_to_thread()
            .map_err(|e| format!("{name}: binding the CUDA context: {e}"))?;
        f.set_attribute(
            cudarc::driver::sys::CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            smem_bytes as i32,
        )
        .map_err(|e| format!("{name}: raising the shared-memory limit to {smem_bytes} bytes: {e}"))?;
    }
    Ok(f)
}

/// Forward: `out` `[B, N, heads, d]` and `lse` `[B, heads, N]`.
pub fn attention_forward<T: GpuFloat>(
    dev: &GpuDevice,
    p: &Attention,
    q: GpuHeads<T>,
    k: GpuHeads<T>,
    v: GpuHeads<T>,
    out: &mut CudaSlice<T>,
    lse: &mut CudaSlice<f32>,
) -> Result<()> {
    let dims = p.dims();
    check(
        p,
        &[
            ("q", q.view.min_len(dims), q.data.len()),
            ("k", k.view.min_len(dims), k.data.len()),
            ("v", v.view.min_len(dims), v.data.len()),
            ("out", p.out_len(), out.len()),
            ("lse", p.lse_len(), lse.len()),
        ],
    )?;
    let dm = dmax(p.head_dim, "attention")?;
    let none = HeadsView::contiguous(1, 1, 1, 1);
    let prm = params(p, [q.view, k.view, v.view, none, none, none])?;
    let name = kernel_name("fwd", T::NAME, dm);
    let smem = 2 * BLOCK * p.head_dim;
    let f = function(dev, &name, smem * 4)?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(&prm)
        .arg(q.data)
        .arg(k.data)
        .arg(v.data)
        .arg(out)
        .arg(lse);
    unsafe { b.launch(config(p, smem)?) }.map_err(|e| format!("launch {name} for {p:?}: {e}"))?;
    Ok(())
}

/// Backward: dQ, dK, dV into `grads` through the views `[dq, dk, dv]` (must not overlap; not
/// checked here, unlike the CPU kernel).
pub fn attention_backward<T: GpuFloat>(
    dev: &GpuDevice,
    p: &Attention,
    q: GpuHeads<T>,
    k: GpuHeads<T>,
    v: GpuHeads<T>,
    out: &CudaSlice<T>,
    lse: &CudaSlice<f32>,
    d_out: &CudaSlice<T>,
    grads: &mut CudaSlice<T>,
    [dq, dk, dv]: [HeadsView; 3],
) -> Result<()> {
    let dims = p.dims();
    check(
        p,
        &[
            ("q", q.view.min_len(dims), q.data.len()),
            ("k", k.view.min_len(dims), k.data.len()),
            ("v", v.view.min_len(dims), v.data.len()),
            ("out", p.out_len(), out.len()),
            ("lse", p.lse_len(), lse.len()),
            ("d_out", p.out_len(), d_out.len()),
            ("dq", dq.min_len(dims), grads.len()),
            ("dk", dk.min_len(dims), grads.len()),
            ("dv", dv.min_len(dims), grads.len()),
        ],
    )?;
    let dm = dmax(p.head_dim, "attention")?;
    let prm = params(p, [q.view, k.view, v.view, dq, dk, dv])?;
    let mut dsum = dev.zeros::<f32>(p.lse_len())?;

    let name = kernel_name("bwd_q", T::NAME, dm);
    let smem = 2 * BLOCK * p.head_dim;
    let f = function(dev, &name, smem * 4)?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(&prm)
        .arg(q.data)
        .arg(k.data)
        .arg(v.data)
        .arg(out)
        .arg(lse)
        .arg(d_out)
        .arg(&mut dsum)
        .arg(&mut *grads);
    unsafe { b.launch(config(p, smem)?) }.map_err(|e| format!("launch {name} for {p:?}: {e}"))?;

    let name = kernel_name("bwd_kv", T::NAME, dm);
    let smem = 2 * BLOCK * p.head_dim + 2 * BLOCK;
    let f = function(dev, &name, smem * 4)?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(&prm)
        .arg(q.data)
        .arg(k.data)
        .arg(v.data)
        .arg(lse)
        .arg(d_out)
        .arg(&dsum)
        .arg(&mut *grads);
    unsafe { b.launch(config(p, smem)?) }.map_err(|e| format!("launch {name} for {p:?}: {e}"))?;
    Ok(())
}
