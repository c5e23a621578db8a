//! The tensor-core NA backward: D = rowsum(dO * O), the query-tile pass (dQ, and dS for d(rpb)),
//! the key-tile pass (dK, dV), and the fixed-order d(rpb) reduction. No atomics.

use super::plan::plan;
use super::{check_inputs, grid, kernel, lse_len, params};
use crate::attention::HeadsView;
use crate::cuda::device::GpuDevice;
use crate::cuda::neighborhood_attention::{function, GpuFloat, GpuHeads};
use crate::cuda::nvrtc::NEIGHBORHOOD_ATTENTION_MMA;
use crate::cuda::reduce::check_len;
use crate::cuda::Result;
use crate::neighborhood_attention::Na2d;
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

fn flat(n: usize, threads: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(threads) as u32, 1, 1),
        block_dim: (threads as u32, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Backward from the forward's `out` and `lse`: dQ, dK, dV written into `grads` through the views
/// `dq`, `dk`, `dv` (must not overlap), `d_rpb` written (not accumulated) when given; `rpb` is the
/// forward's (the logits are recomputed). Deterministic.
pub fn na2d_mma_backward<T: GpuFloat>(
    dev: &GpuDevice,
    p: &Na2d,
    q: GpuHeads<T>,
    k: GpuHeads<T>,
    v: GpuHeads<T>,
    rpb: Option<&CudaSlice<f32>>,
    out: &CudaSlice<T>,
    lse: &CudaSlice<f32>,
    d_out: &CudaSlice<T>,
    grads: &mut CudaSlice<T>,
    [dq, dk, dv]: [HeadsView; 3],
    d_rpb: Option<&mut CudaSlice<f32>>,
) -> Result<()> {
    check_inputs(p, [&q, &k, &v], rpb)?;
    check_len("neighborhood attention (mma): out", p.out_len(), out.len())?;
    check_len(
        "neighborhood attention (mma): d_out",
        p.out_len(),
        d_out.len(),
    )?;
    check_len("neighborhood attention (mma): lse", lse_len(p), lse.len())?;
    for (name, view) in [("dq", dq), ("dk", dk), ("dv", dv)] {
        check_len(
            &format!("neighborhood attention (mma): {name}"),
            view.min_len(p.dims()),
            grads.len(),
        )?;
    }
    if let Some(t) = &d_rpb {
        check_len("neighborhood attention (mma): d_rpb", p.rpb_len(), t.len())?;
    }
    if d_rpb.is_some() && rpb.is_none() {
        return Err("neighborhood attention (mma): d_rpb asked without rpb".into());
    }
    let views = [q.view, k.view, v.view, dq, dk, dv];
    let dummy = dev.zeros::<f32>(1)?;
    let rpb_arg = rpb.unwrap_or(&dummy);

    // D = rowsum(dO * O): every element written.
    let pq = plan(p, false)?;
    let mut prm = params(p, &pq, views, rpb.is_some())?;
    let mut dsum = dev.uninit::<f32>(lse_len(p))?;
    let name = format!("na2d_mma_dot_{}", T::NAME);
    let f = function(dev, NEIGHBORHOOD_ATTENTION_MMA, &name, 0)?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(&prm).arg(out).arg(d_out).arg(&mut dsum);
    unsafe { b.launch(flat(lse_len(p), 256)) }
        .map_err(|e| format!("launch {name} for {p:?}: {e}"))?;

    // Query tiles: dQ; dS into the scratch for d(rpb). Only the window slots are written, and only
    // they are read (na2d_mma_rpb_rows).
    prm.want_ds = d_rpb.is_some() as i32;
    let mut ds = dev.uninit::<f32>(if d_rpb.is_some() { p.attn_len() } else { 1 })?;
    let name = kernel("bwd_q", T::NAME, p, &pq);
    let f = function(dev, NEIGHBORHOOD_ATTENTION_MMA, &name, pq.smem)?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(&prm)
        .arg(q.data)
        .arg(k.data)
        .arg(v.data)
        .arg(rpb_arg)
        .arg(lse)
        .arg(&dsum)
        .arg(d_out)
        .arg(&mut *grads)
        .arg(&mut ds);
    unsafe { b.launch(grid(p, &pq)?) }.map_err(|e| format!("launch {name} for {p:?}: {e}"))?;

    // Key tiles: dK, dV.
    let pk = plan(p, true)?;
    let prm_k = params(p, &pk, views, rpb.is_some())?;
    let name = kernel("bwd_kv", T::NAME, p, &pk);
    let f = function(dev, NEIGHBORHOOD_ATTENTION_MMA, &name, pk.smem)?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(&prm_k)
        .arg(q.data)
        .arg(k.data)
        .arg(v.data)
        .arg(rpb_arg)
        .arg(lse)
        .arg(&dsum)
        .arg(d_out)
        .arg(&mut *grads);
    unsafe { b.launch(grid(p, &pk)?) }.map_err(|e| format!("launch {name} for {p:?}: {e}"))?;

    // d(rpb): per (b, head, query row) partials, then summed over (b, row) in order.
    if let Some(d_rpb) = d_rpb {
        let table = p.rpb_len() / p.heads;
        let rows = p.batch * p.heads * p.height;
        let mut partial = dev.uninit::<f32>(rows * table)?;
        let f = function(dev, NEIGHBORHOOD_ATTENTION_MMA, "na2d_mma_rpb_rows", 0)?;
        let mut b = dev.stream().launch_builder(&f);
        b.arg(&prm).arg(&ds).arg(&mut partial);
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        unsafe { b.launch(cfg) }.map_err(|e| format!("launch na2d_mma_rpb_rows for {p:?}: {e}"))?;
        let f = dev.function(NEIGHBORHOOD_ATTENTION_MMA, "na2d_mma_rpb_sum")?;
        let mut b = dev.stream().launch_builder(&f);
        b.arg(&prm).arg(&partial).arg(d_rpb);
        unsafe { b.launch(flat(p.heads * table, 128)) }
            .map_err(|e| format!("launch na2d_mma_rpb_sum for {p:?}: {e}"))?;
    }
    Ok(())
}
