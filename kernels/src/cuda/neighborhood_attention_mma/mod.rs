//! 2-D neighborhood attention on tensor cores (kernels/cuda/neighborhood_attention_mma.cu): QK^T
//! and PV (and the backward's four products) on mma.sync m16n8k16, BF16 operands, f32
//! accumulation; flash-style forward saving the log-sum-exp, backward recomputing P from it.
//! NEVER RUN ON A GPU YET: opt-in only ([`mma_requested`], `DINONAT_NA_MMA=1`), checked by
//! kernels/tests/cuda_na_mma.rs when a GPU is present. Design: docs/gpu-attention.md.
//!
//! Same [`Na2d`] / [`GpuHeads`] interface as [`super::neighborhood_attention`]; the saved state
//! is `lse` (`[B, heads, H, W]`, f32) instead of the probabilities. Shapes: head_dim 32 or 64, odd
//! kernel 3..=13 per axis, any dilation, halo within shared memory ([`plan::unsupported`] says
//! why not); [`na2d_forward_any`] / [`na2d_backward_any`] fall back to the SIMT kernels otherwise.

pub mod plan;

use super::device::GpuDevice;
use super::neighborhood_attention::{function, GpuFloat, GpuHeads, GpuView};
use super::nvrtc::NEIGHBORHOOD_ATTENTION_MMA;
use super::reduce::{check_len, to_i32};
use super::signature::{Entry, Param};
use super::Result;
use crate::attention::HeadsView;
use crate::neighborhood_attention::Na2d;
use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};
use plan::{plan, unsupported, MmaPlan};

/// The environment variable that opts in to the tensor-core NA ("1"); read only by [`mma_requested`].
pub const NA_MMA_ENV: &str = "DINONAT_NA_MMA";

/// True when `DINONAT_NA_MMA=1` (read once per process).
pub fn mma_requested() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var(NA_MMA_ENV).as_deref() == Ok("1"))
}

/// Mirrors `struct MmaParams` of the CUDA source (field order and types must match; the size is
/// checked against the PTX by [`ENTRIES`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct MmaParams {
    views: [GpuView; 6],
    batch: i32,
    height: i32,
    width: i32,
    heads: i32,
    dim: i32,
    kh: i32,
    kw: i32,
    dil_h: i32,
    dil_w: i32,
    tile_r: i32,
    tiles_r: i32,
    tiles_c: i32,
    halo_r: i32,
    has_rpb: i32,
    want_ds: i32,
    scale: f32,
}
// SAFETY: plain-old-data with the C layout of the kernel's parameter struct.
unsafe impl DeviceRepr for MmaParams {}

const PARAMS: Param = Param::Struct(std::mem::size_of::<MmaParams>());
const FWD: &[Param] = &[
    PARAMS,
    Param::Ptr,
    Param::Ptr,
    Param::Ptr,
    Param::Ptr,
    Param::Ptr,
    Param::Ptr,
];
const BWD_Q: &[Param] = &[
    PARAMS,
    Param::Ptr,
    Param::Ptr,
    Param::Ptr,
    Param::Ptr,
    Param::Ptr,
    Param::Ptr,
    Param::Ptr,
    Param::Ptr,
    Param::Ptr,
];
const BWD_KV: &[Param] = &[
    PARAMS,
    Param::Ptr,
    Param::Ptr,
    Param::Ptr,
    Param::Ptr,
    Param::Ptr,
    Param::Ptr,
    Param::Ptr,
    Param::Ptr,
];
const DOT: &[Param] = &[PARAMS, Param::Ptr, Param::Ptr, Param::Ptr];

macro_rules! pass_entries {
    ($t:literal) => {
        [
            Entry::new(concat!("na2d_mma_fwd_", $t, "_d32_c16"), FWD),
            Entry::new(concat!("na2d_mma_fwd_", $t, "_d32_c32"), FWD),
            Entry::new(concat!("na2d_mma_fwd_", $t, "_d64_c16"), FWD),
            Entry::new(concat!("na2d_mma_fwd_", $t, "_d64_c32"), FWD),
            Entry::new(concat!("na2d_mma_bwd_q_", $t, "_d32_c16"), BWD_Q),
            Entry::new(concat!("na2d_mma_bwd_q_", $t, "_d32_c32"), BWD_Q),
            Entry::new(concat!("na2d_mma_bwd_q_", $t, "_d64_c16"), BWD_Q),
            Entry::new(concat!("na2d_mma_bwd_q_", $t, "_d64_c32"), BWD_Q),
            Entry::new(concat!("na2d_mma_bwd_kv_", $t, "_d32_c16"), BWD_KV),
            Entry::new(concat!("na2d_mma_bwd_kv_", $t, "_d32_c32"), BWD_KV),
            Entry::new(concat!("na2d_mma_bwd_kv_", $t, "_d64_c16"), BWD_KV),
            Entry::new(concat!("na2d_mma_bwd_kv_", $t, "_d64_c32"), BWD_KV),
            Entry::new(concat!("na2d_mma_dot_", $t), DOT),
        ]
    };
}

/// Every kernel of the source with the arguments its launch below pushes (checked against the
/// PTX by `nvrtc_launches_match_the_ptx` in kernels/tests/cuda_na_mma.rs, scripts/nvrtc-check.sh).
pub const ENTRIES: &[Entry] = &{
    let f = pass_entries!("f32");
    let b = pass_entries!("bf16");
    let mut all = [Entry::new("", &[]); 28];
    let mut i = 0;
    while i < 13 {
        all[i] = f[i];
        all[13 + i] = b[i];
        i += 1;
    }
    all[26] = Entry::new("na2d_mma_rpb_rows", &[PARAMS, Param::Ptr, Param::Ptr]);
    all[27] = Entry::new("na2d_mma_rpb_sum", &[PARAMS, Param::Ptr, Param::Ptr]);
    all
};

fn params(p: &Na2d, pl: &MmaPlan, views: [HeadsView; 6], has_rpb: bool) -> Result<MmaParams> {
    Ok(MmaParams {
        views: views.map(GpuView::from),
        batch: to_i32("batch", p.batch)?,
        height: to_i32("height", p.height)?,
        width: to_i32("width", p.width)?,
        heads: to_i32("heads", p.heads)?,
        dim: to_i32("head_dim", p.head_dim)?,
        kh: to_i32("kernel_size[0]", p.kernel_size[0])?,
        kw: to_i32("kernel_size[1]", p.kernel_size[1])?,
        dil_h: to_i32("dilation[0]", p.dilation[0])?,
        dil_w: to_i32("dilation[1]", p.dilation[1])?,
        tile_r: to_i32("tile rows", pl.tile_r)?,
        tiles_r: to_i32("row tiles", pl.tiles[0])?,
        tiles_c: to_i32("column tiles", pl.tiles[1])?,
        halo_r: to_i32("halo rows", pl.halo_r)?,
        has_rpb: has_rpb as i32,
        want_ds: 0,
        scale: p.scale as f32,
    })
}

fn grid(p: &Na2d, pl: &MmaPlan) -> Result<LaunchConfig> {
    let (x, y) = (pl.blocks_x(p), p.batch * p.heads);
    if x > i32::MAX as usize || y > 65_535 {
        return Err(format!(
            "neighborhood attention (mma): grid {x} x {y} too large for {p:?}"
        ));
    }
    Ok(LaunchConfig {
        grid_dim: (x as u32, y as u32, 1),
        block_dim: (pl.threads() as u32, 1, 1),
        shared_mem_bytes: pl.smem as u32,
    })
}

fn kernel(pass: &str, t: &str, p: &Na2d, pl: &MmaPlan) -> String {
    format!("na2d_mma_{pass}_{t}_d{}_c{}", p.head_dim, pl.cw)
}

fn check_inputs<T>(p: &Na2d, qkv: [&GpuHeads<T>; 3], rpb: Option<&CudaSlice<f32>>) -> Result<()> {
    p.check()?;
    if let Some(why) = unsupported(p) {
        return Err(format!(
            "neighborhood attention (mma): not supported: {why}"
        ));
    }
    for (name, x) in ["q", "k", "v"].iter().zip(qkv) {
        check_len(
            &format!("{name} view {:?}", x.view),
            x.view.min_len(p.dims()),
            x.data.len(),
        )?;
    }
    if let Some(t) = rpb {
        check_len("neighborhood attention (mma): rpb", p.rpb_len(), t.len())?;
    }
    Ok(())
}

/// Queries of the problem: the length of `lse` (`[B, heads, H, W]`).
pub fn lse_len(p: &Na2d) -> usize {
    p.batch * p.heads * p.height * p.width
}

/// Forward: `out` (`[B, H, W, heads, d]`) and `lse` (f32, `[B, heads, H, W]`). An error for a
/// shape [`plan::unsupported`] rejects.
pub fn na2d_mma_forward<T: GpuFloat>(
    dev: &GpuDevice,
    p: &Na2d,
    q: GpuHeads<T>,
    k: GpuHeads<T>,
    v: GpuHeads<T>,
    rpb: Option<&CudaSlice<f32>>,
    out: &mut CudaSlice<T>,
    lse: &mut CudaSlice<f32>,
) -> Result<()> {
    check_inputs(p, [&q, &k, &v], rpb)?;
    check_len("neighborhood attention (mma): out", p.out_len(), out.len())?;
    check_len("neighborhood attention (mma): lse", lse_len(p), lse.len())?;
    let pl = plan(p, false)?;
    let none = HeadsView::contiguous(1, 1, 1, 1);
    let prm = params(
        p,
        &pl,
        [q.view, k.view, v.view, none, none, none],
        rpb.is_some(),
    )?;
    let name = kernel("fwd", T::NAME, p, &pl);
    let f = function(dev, NEIGHBORHOOD_ATTENTION_MMA, &name, pl.smem)?;
    let dummy = dev.zeros::<f32>(1)?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(&prm)
        .arg(q.data)
        .arg(k.data)
        .arg(v.data)
        .arg(rpb.unwrap_or(&dummy))
        .arg(out)
        .arg(lse);
    unsafe { b.launch(grid(p, &pl)?) }.map_err(|e| format!("launch {name} for {p:?}: {e}"))?;
    Ok(())
}

mod backward;
mod dispatch;
pub use backward::na2d_mma_backward;
pub use dispatch::{na2d_backward_any, na2d_forward_any, uses_mma, NaSaved};
