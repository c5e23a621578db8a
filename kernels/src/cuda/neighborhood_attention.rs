//! 2-D neighborhood attention on the GPU, forward and backward (kernels/cuda/neighborhood_attention.cu).
//! Same definition, options and layouts as [`crate::cpu::neighborhood_attention`] (its
//! `*_reference` functions are the test oracle): [`Na2d`] describes the problem, q/k/v are read
//! through [`HeadsView`]s (fused QKV works in place), `out` is `[batch, H, W, heads, head_dim]`,
//! `attn` `[batch, heads, H, W, kh*kw]` (f32), `rpb` and `d_rpb` `[heads, 2kh-1, 2kw-1]` (f32).
//! Element type `T` (q, k, v, out, d_out, gradients): f32 or bf16; accumulation is f32.
//! Design: docs/gpu-attention.md. Every launch's error is returned, never a panic.

use super::device::GpuDevice;
use super::nvrtc::{Source, NEIGHBORHOOD_ATTENTION};
use super::signature::{Entry, Param, Param::*};
use super::Result;
use crate::attention::HeadsView;
use crate::neighborhood_attention::window::{group_len, inverse_window, window};
use crate::neighborhood_attention::Na2d;
use cudarc::driver::sys::CUfunction_attribute_enum;
use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits};
use half::bf16;

/// Element types the attention kernels read and write.
pub trait GpuFloat: DeviceRepr + ValidAsZeroBits + Copy + Default + Unpin + 'static {
    /// Kernel-name suffix.
    const NAME: &'static str;
    fn from_f32(x: f32) -> Self;
    fn to_f32(self) -> f32;
}
impl GpuFloat for f32 {
    const NAME: &'static str = "f32";
    fn from_f32(x: f32) -> f32 {
        x
    }
    fn to_f32(self) -> f32 {
        self
    }
}
impl GpuFloat for bf16 {
    const NAME: &'static str = "bf16";
    fn from_f32(x: f32) -> bf16 {
        bf16::from_f32(x)
    }
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
}

/// A device buffer and the [`HeadsView`] into it (q, k or v).
#[derive(Clone, Copy)]
pub struct GpuHeads<'a, T> {
    pub data: &'a CudaSlice<T>,
    pub view: HeadsView,
}

/// Element strides as the kernels read them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct GpuView {
    offset: i64,
    batch: i64,
    row: i64,
    col: i64,
    head: i64,
}
impl From<HeadsView> for GpuView {
    fn from(v: HeadsView) -> GpuView {
        GpuView {
            offset: v.offset as i64,
            batch: v.batch as i64,
            row: v.row as i64,
            col: v.col as i64,
            head: v.head as i64,
        }
    }
}

/// Mirrors `struct NaParams` of the CUDA source (field order and types must match).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct NaParams {
    q: GpuView,
    k: GpuView,
    v: GpuView,
    dq: GpuView,
    dk: GpuView,
    dv: GpuView,
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
    tile_c: i32,
    tiles_r: i32,
    tiles_c: i32,
    has_rpb: i32,
    write_attn: i32,
    want_drpb: i32,
    blocks_x: i32,
    scale: f32,
}
// SAFETY: plain-old-data with the C layout of the kernel's parameter struct.
unsafe impl DeviceRepr for NaParams {}

/// Queries (keys) per block along each axis, in dilation-group units.
const TILE: usize = 8;
/// Threads per query (key): each holds a quarter of the head dim (`G` in the CUDA source).
const LANES: usize = 4;
/// Largest dynamic shared memory a block asks for (H100/H200 allow 227 KiB).
const SMEM_LIMIT: usize = 160 * 1024;

fn to_i32(name: &str, x: usize) -> Result<i32> {
    i32::try_from(x).map_err(|_| format!("neighborhood attention (cuda): {name} = {x} exceeds i32"))
}

/// The register width of the head dim: 32, 64 or 128 (d <= 128).
pub(crate) fn dmax(d: usize, what: &str) -> Result<usize> {
    match d {
        1..=32 => Ok(32),
        33..=64 => Ok(64),
        65..=128 => Ok(128),
        _ => Err(format!(
            "{what} (cuda): head_dim {d} not supported (1..=128)"
        )),
    }
}

/// How a pass is launched: tile, shared memory, kernel variant.
struct Plan {
    tile: [usize; 2],
    tiles: [usize; 2],
    smem: usize,
    use_smem: bool,
}

/// The largest halo (rows, cols) of any tile on one axis: the union of the windows of its queries
/// (`inverse` = false) or of the inverse neighbourhoods of its keys (`inverse` = true).
pub(crate) fn max_halo(len: usize, kernel: usize, dil: usize, tile: usize, inverse: bool) -> usize {
    let mut best = 0;
    for g in 0..dil.min(len) {
        let n = group_len(len, dil, g);
        let mut t0 = 0;
        while t0 < n {
            let t1 = (t0 + tile).min(n) - 1;
            let (a, b) = (t0 * dil + g, t1 * dil + g);
            let span = if inverse {
                let (lo, hi) = (
                    inverse_window(a, len, kernel, dil),
                    inverse_window(b, len, kernel, dil),
                );
                (hi.first + (hi.count - 1) * dil - lo.first) / dil + 1
            } else {
                let (lo, hi) = (window(a, len, kernel, dil), window(b, len, kernel, dil));
                (hi.first + (hi.size - 1) * dil - lo.first) / dil + 1
            };
            best = best.max(span);
            t0 += tile;
        }
    }
    best
}

fn plan(p: &Na2d, inverse: bool) -> Plan {
    let stride = p.head_dim | 1;
    let mut tile = TILE;
    loop {
        let hr = max_halo(p.height, p.kernel_size[0], p.dilation[0], tile, inverse);
        let hc = max_halo(p.width, p.kernel_size[1], p.dilation[1], tile, inverse);
        let smem = 2 * hr * hc * stride * 4;
        if smem <= SMEM_LIMIT || tile == 1 {
            let use_smem = smem <= SMEM_LIMIT;
            let tile = if use_smem { tile } else { TILE };
            let tiles = [
                group_len(p.height, p.dilation[0], 0).div_ceil(tile),
                group_len(p.width, p.dilation[1], 0).div_ceil(tile),
            ];
            return Plan {
                tile: [tile, tile],
                tiles,
                smem: if use_smem { smem } else { 0 },
                use_smem,
            };
        }
        tile /= 2;
    }
}

fn params(
    p: &Na2d,
    pl: &Plan,
    views: [HeadsView; 6],
    has_rpb: bool,
    write_attn: bool,
) -> Result<NaParams> {
    Ok(NaParams {
        q: views[0].into(),
        k: views[1].into(),
        v: views[2].into(),
        dq: views[3].into(),
        dk: views[4].into(),
        dv: views[5].into(),
        batch: to_i32("batch", p.batch)?,
        height: to_i32("height", p.height)?,
        width: to_i32("width", p.width)?,
        heads: to_i32("heads", p.heads)?,
        dim: to_i32("head_dim", p.head_dim)?,
        kh: to_i32("kernel_size[0]", p.kernel_size[0])?,
        kw: to_i32("kernel_size[1]", p.kernel_size[1])?,
        dil_h: to_i32("dilation[0]", p.dilation[0])?,
        dil_w: to_i32("dilation[1]", p.dilation[1])?,
        tile_r: pl.tile[0] as i32,
        tile_c: pl.tile[1] as i32,
        tiles_r: to_i32("row tiles", pl.tiles[0])?,
        tiles_c: to_i32("column tiles", pl.tiles[1])?,
        has_rpb: has_rpb as i32,
        write_attn: write_attn as i32,
        want_drpb: 0,
        blocks_x: to_i32(
            "blocks",
            p.dilation[0] * pl.tiles[0] * p.dilation[1] * pl.tiles[1],
        )?,
        scale: p.scale as f32,
    })
}

fn grid(p: &Na2d, pl: &Plan) -> Result<LaunchConfig> {
    let x = p.dilation[0] * pl.tiles[0] * p.dilation[1] * pl.tiles[1];
    let y = p.batch * p.heads;
    if x > i32::MAX as usize || y > 65_535 {
        return Err(format!(
            "neighborhood attention (cuda): grid {x} x {y} too large for {p:?}"
        ));
    }
    Ok(LaunchConfig {
        grid_dim: (x as u32, y as u32, 1),
        block_dim: ((pl.tile[0] * pl.tile[1] * LANES) as u32, 1, 1),
        shared_mem_bytes: pl.smem as u32,
    })
}

fn kernel_name(pass: &str, t: &str, dmax: usize, smem: bool) -> String {
    format!(
        "na2d_{pass}_{t}_d{dmax}_{}",
        if smem { "smem" } else { "global" }
    )
}

/// The PTX entry of each kernel (every element type, head-dim width and shared-memory variant)
/// as the launches below pass its arguments (checked against the compiled PTX by
/// `kernels/tests/cuda_ops.rs`).
pub fn entries() -> Vec<Entry> {
    const P: Param = Struct(std::mem::size_of::<NaParams>());
    let mut out = vec![Entry::new("na2d_rpb_reduce", &[P, Ptr, Ptr])];
    for t in [<f32 as GpuFloat>::NAME, <bf16 as GpuFloat>::NAME] {
        for dm in [32, 64, 128] {
            for smem in [true, false] {
                let passes: [(&str, &'static [Param]); 3] = [
                    ("fwd", &[P, Ptr, Ptr, Ptr, Ptr, Ptr, Ptr]),
                    ("bwd_q", &[P, Ptr, Ptr, Ptr, Ptr, Ptr, Ptr, Ptr]),
                    ("bwd_kv", &[P, Ptr, Ptr, Ptr, Ptr, Ptr]),
                ];
                for (pass, params) in passes {
                    let name = intern(&kernel_name(pass, t, dm, smem));
                    out.push(Entry::new(name, params));
                }
            }
        }
    }
    out
}

/// Kernel `name` of `source`, its dynamic shared-memory limit raised to `smem` bytes when above 48 KB.
pub(crate) fn function(
    dev: &GpuDevice,
    source: Source,
    name: &str,
    smem: usize,
) -> Result<cudarc::driver::CudaFunction> {
    let leaked: &'static str = intern(name);
    let f = dev.function(source, leaked)?;
    if smem > 48 * 1024 {
        dev.context()
            .bind_to_thread()
            .map_err(|e| format!("{name}: binding the CUDA context: {e}"))?;
        f.set_attribute(
            CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            smem as i32,
        )
        .map_err(|e| format!("{name}: raising the shared-memory limit to {smem} bytes: {e}"))?;
    }
    Ok(f)
}

/// Kernel names are built at run time; the module cache wants `&'static str`: keep one copy each.
pub(crate) fn intern(name: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = NAMES
        .get_or_init(|| Mutex::new(HashSet::new()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(s) = set.get(name) {
        return s;
    }
    let s: &'static str = Box::leak(name.to_string().into_boxed_str());
    set.insert(s);
    s
}

/// A scratch buffer every element of which the next kernel writes (no memset).
fn uninit(dev: &GpuDevice, len: usize) -> Result<CudaSlice<f32>> {
    // SAFETY: f32 has no invalid bit patterns and the kernels write every element before reading.
    unsafe { dev.stream().alloc::<f32>(len) }
        .map_err(|e| format!("neighborhood attention (cuda): alloc of {len} floats: {e}"))
}

fn check_view<T>(what: &str, x: &GpuHeads<T>, dims: [usize; 5]) -> Result<()> {
    let need = x.view.min_len(dims);
    if need > x.data.len() {
        return Err(format!(
            "neighborhood attention (cuda): {what} view {:?} needs {need} elements, buffer has {}",
            x.view,
            x.data.len()
        ));
    }
    Ok(())
}

fn check_len(what: &str, need: usize, got: usize) -> Result<()> {
    if got < need {
        return Err(format!(
            "neighborhood attention (cuda): {what} has {got} elements, needs {need}"
        ));
    }
    Ok(())
}

/// Forward: writes `out` (`[B, H, W, heads, d]`) and, when given, `attn` (the probabilities
/// backward needs; pass `None` for inference). `rpb` optional, f32.
pub fn na2d_forward<T: GpuFloat>(
    dev: &GpuDevice,
    p: &Na2d,
    q: GpuHeads<T>,
    k: GpuHeads<T>,
    v: GpuHeads<T>,
    rpb: Option<&CudaSlice<f32>>,
    out: &mut CudaSlice<T>,
    attn: Option<&mut CudaSlice<f32>>,
) -> Result<()> {
    p.check()?;
    let dims = p.dims();
    check_view("q", &q, dims)?;
    check_view("k", &k, dims)?;
    check_view("v", &v, dims)?;
    check_len("out", p.out_len(), out.len())?;
    if let Some(t) = rpb {
        check_len("rpb", p.rpb_len(), t.len())?;
    }
    if let Some(a) = &attn {
        check_len("attn", p.attn_len(), a.len())?;
    }
    let dm = dmax(p.head_dim, "neighborhood attention")?;
    let pl = plan(p, false);
    let none = HeadsView::contiguous(1, 1, 1, 1);
    let prm = params(
        p,
        &pl,
        [q.view, k.view, v.view, none, none, none],
        rpb.is_some(),
        attn.is_some(),
    )?;
    let name = kernel_name("fwd", T::NAME, dm, pl.use_smem);
    let f = function(dev, NEIGHBORHOOD_ATTENTION, &name, pl.smem)?;
    let dummy = dev.zeros::<f32>(1)?;
    let mut dummy_attn = None;
    let attn_buf: &mut CudaSlice<f32> = match attn {
        Some(a) => a,
        None => dummy_attn.insert(dev.zeros::<f32>(1)?),
    };
    let mut b = dev.stream().launch_builder(&f);
    b.arg(&prm)
        .arg(q.data)
        .arg(k.data)
        .arg(v.data)
        .arg(rpb.unwrap_or(&dummy))
        .arg(out)
        .arg(attn_buf);
    unsafe { b.launch(grid(p, &pl)?) }.map_err(|e| format!("launch {name} for {p:?}: {e}"))?;
    Ok(())
}

/// Backward from the saved `attn` and `d_out` (layout of `out`): dQ, dK, dV written into `grads`
/// through the views `dq`, `dk`, `dv` (fused dQKV or three blocks; must not overlap: unlike the
/// CPU kernel this is not checked here), `d_rpb`
/// written (not accumulated) when given. Deterministic: no atomics, fixed summation orders.
pub fn na2d_backward<T: GpuFloat>(
    dev: &GpuDevice,
    p: &Na2d,
    q: GpuHeads<T>,
    k: GpuHeads<T>,
    v: GpuHeads<T>,
    attn: &CudaSlice<f32>,
    d_out: &CudaSlice<T>,
    grads: &mut CudaSlice<T>,
    [dq, dk, dv]: [HeadsView; 3],
    d_rpb: Option<&mut CudaSlice<f32>>,
) -> Result<()> {
    p.check()?;
    let dims = p.dims();
    check_view("q", &q, dims)?;
    check_view("k", &k, dims)?;
    check_view("v", &v, dims)?;
    check_len("attn", p.attn_len(), attn.len())?;
    check_len("d_out", p.out_len(), d_out.len())?;
    for (name, view) in [("dq", dq), ("dk", dk), ("dv", dv)] {
        check_len(name, view.min_len(dims), grads.len())?;
    }
    if let Some(t) = &d_rpb {
        check_len("d_rpb", p.rpb_len(), t.len())?;
    }
    let dm = dmax(p.head_dim, "neighborhood attention")?;
    let views = [q.view, k.view, v.view, dq, dk, dv];
    // Every element of ds is written by pass 1 (0 outside the effective window).
    let mut ds = uninit(dev, p.attn_len())?;

    // Pass 1: per query tile, K and V halo; the tile's d(rpb) partial when asked.
    let pq = plan(p, false);
    let mut prm_q = params(p, &pq, views, false, true)?;
    prm_q.want_drpb = d_rpb.is_some() as i32;
    let table = p.rpb_len() / p.heads;
    let tiles = prm_q.blocks_x as usize * p.batch * p.heads;
    let mut partial = uninit(dev, if d_rpb.is_some() { tiles * table } else { 1 })?;
    let name = kernel_name("bwd_q", T::NAME, dm, pq.use_smem);
    let f = function(dev, NEIGHBORHOOD_ATTENTION, &name, pq.smem)?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(&prm_q)
        .arg(k.data)
        .arg(v.data)
        .arg(attn)
        .arg(d_out)
        .arg(&mut ds)
        .arg(&mut *grads)
        .arg(&mut partial);
    unsafe { b.launch(grid(p, &pq)?) }.map_err(|e| format!("launch {name} for {p:?}: {e}"))?;

    // Pass 2: per key tile, Q and dO over the inverse neighbourhood.
    let pk = plan(p, true);
    let prm = params(p, &pk, views, false, true)?;
    let name = kernel_name("bwd_kv", T::NAME, dm, pk.use_smem);
    let f = function(dev, NEIGHBORHOOD_ATTENTION, &name, pk.smem)?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(&prm)
        .arg(q.data)
        .arg(attn)
        .arg(d_out)
        .arg(&ds)
        .arg(&mut *grads);
    unsafe { b.launch(grid(p, &pk)?) }.map_err(|e| format!("launch {name} for {p:?}: {e}"))?;

    // d(rpb): the per-tile partials of pass 1 added in a fixed order.
    if let Some(d_rpb) = d_rpb {
        let f = dev.function(NEIGHBORHOOD_ATTENTION, "na2d_rpb_reduce")?;
        let mut b = dev.stream().launch_builder(&f);
        b.arg(&prm_q).arg(&partial).arg(d_rpb);
        let cfg = LaunchConfig {
            grid_dim: ((p.heads * table).div_ceil(128) as u32, 1, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        unsafe { b.launch(cfg) }.map_err(|e| format!("launch na2d_rpb_reduce for {p:?}: {e}"))?;
    }
    Ok(())
}
