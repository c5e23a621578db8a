//! The one place that picks the NA kernel family: the tensor-core kernels only when
//! `DINONAT_NA_MMA=1` ([`super::mma_requested`]) and the shape is supported; the SIMT kernels
//! otherwise. What the forward saves for the backward differs ([`NaSaved`]).

use super::plan::unsupported;
use super::{lse_len, mma_requested, na2d_mma_backward, na2d_mma_forward};
use crate::attention::HeadsView;
use crate::cuda::device::GpuDevice;
use crate::cuda::neighborhood_attention::{na2d_backward, na2d_forward, GpuFloat, GpuHeads};
use crate::cuda::Result;
use crate::neighborhood_attention::Na2d;
use cudarc::driver::CudaSlice;

/// What a forward keeps for its backward: the probabilities (SIMT, `[B, heads, H, W, kh*kw]`) or
/// the log-sum-exp (tensor cores, `[B, heads, H, W]`).
pub enum NaSaved {
    Attn(CudaSlice<f32>),
    Lse(CudaSlice<f32>),
}

/// True when this process runs `p` on the tensor-core kernels.
pub fn uses_mma(p: &Na2d) -> bool {
    mma_requested() && unsupported(p).is_none()
}

/// Forward on the kernel family [`uses_mma`] picks; `keep`: return what the backward needs.
pub fn na2d_forward_any<T: GpuFloat>(
    dev: &GpuDevice,
    p: &Na2d,
    q: GpuHeads<T>,
    k: GpuHeads<T>,
    v: GpuHeads<T>,
    rpb: Option<&CudaSlice<f32>>,
    out: &mut CudaSlice<T>,
    keep: bool,
) -> Result<Option<NaSaved>> {
    if uses_mma(p) {
        let mut lse = dev.zeros::<f32>(lse_len(p))?;
        na2d_mma_forward(dev, p, q, k, v, rpb, out, &mut lse)?;
        return Ok(keep.then_some(NaSaved::Lse(lse)));
    }
    let mut attn = if keep {
        Some(dev.zeros::<f32>(p.attn_len())?)
    } else {
        None
    };
    na2d_forward(dev, p, q, k, v, rpb, out, attn.as_mut())?;
    Ok(attn.map(NaSaved::Attn))
}

/// Backward of [`na2d_forward_any`] from what it saved (`out` and `rpb` are the forward's).
pub fn na2d_backward_any<T: GpuFloat>(
    dev: &GpuDevice,
    p: &Na2d,
    q: GpuHeads<T>,
    k: GpuHeads<T>,
    v: GpuHeads<T>,
    rpb: Option<&CudaSlice<f32>>,
    out: &CudaSlice<T>,
    saved: &NaSaved,
    d_out: &CudaSlice<T>,
    grads: &mut CudaSlice<T>,
    views: [HeadsView; 3],
    d_rpb: Option<&mut CudaSlice<f32>>,
) -> Result<()> {
    match saved {
        NaSaved::Attn(attn) => na2d_backward(dev, p, q, k, v, attn, d_out, grads, views, d_rpb),
        NaSaved::Lse(lse) => {
            na2d_mma_backward(dev, p, q, k, v, rpb, out, lse, d_out, grads, views, d_rpb)
        }
    }
}
