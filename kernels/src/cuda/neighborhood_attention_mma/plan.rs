//! The launch plan of the tensor-core NA kernels (kernels/cuda/neighborhood_attention_mma.cu):
//! which shapes they take, the block tile, the staged halo and its shared memory. Pure index
//! maths, tested on the CPU against the window rule (`window`, `inverse_window`).
//!
//! A block owns `tile_r x 8` queries (keys) of one dilation group (group units), 2 rows per warp.
//! Its halo, the union of its queries' windows (forward, dQ pass) or of its keys' inverse
//! neighbourhoods (dK/dV pass), is staged as `halo_r x cw` bf16 rows of `d + 8` elements; `cw`
//! is the widest halo rounded up to 16 (the mma k-step of the second product) and must be <= 32.

use crate::cuda::neighborhood_attention::max_halo;
use crate::cuda::Result;
use crate::neighborhood_attention::window::group_len;
use crate::neighborhood_attention::Na2d;

/// Tile columns (the 8 query columns of one half of an m16 fragment).
pub const TILE_C: usize = 8;
/// Largest dynamic shared memory a block asks for (sm_80 allows 163 KiB, sm_90 227 KiB).
pub const SMEM_LIMIT: usize = 160 * 1024;
/// Head dims the kernels are compiled for.
pub const HEAD_DIMS: [usize; 2] = [32, 64];
/// Nominal kernel sizes (per axis) the kernels take: odd 3..=13.
pub const KERNELS: std::ops::RangeInclusive<usize> = 3..=13;

/// How one pass is launched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmaPlan {
    /// Rows of the block tile (group units): 8, 4 or 2 (two per warp).
    pub tile_r: usize,
    /// Tiles per dilation group along each axis (of group 0, the longest).
    pub tiles: [usize; 2],
    /// Halo rows staged (the largest of any tile).
    pub halo_r: usize,
    /// Halo columns staged: 16 or 32.
    pub cw: usize,
    /// Dynamic shared memory, bytes.
    pub smem: usize,
}

impl MmaPlan {
    pub fn threads(&self) -> usize {
        self.tile_r / 2 * 32
    }
    /// Blocks along grid x: every tile of every (row group, column group).
    pub fn blocks_x(&self, p: &Na2d) -> usize {
        p.dilation[0] * self.tiles[0] * p.dilation[1] * self.tiles[1]
    }
}

/// Why the tensor-core kernels do not take `p`, or `None` when they do.
pub fn unsupported(p: &Na2d) -> Option<String> {
    if !HEAD_DIMS.contains(&p.head_dim) {
        return Some(format!("head_dim {} (supported: 32, 64)", p.head_dim));
    }
    for (axis, &k) in p.kernel_size.iter().enumerate() {
        if k % 2 == 0 || !KERNELS.contains(&k) {
            return Some(format!("kernel_size[{axis}] = {k} (supported: odd 3..=13)"));
        }
    }
    for inverse in [false, true] {
        if let Err(e) = plan(p, inverse) {
            return Some(e);
        }
    }
    None
}

/// The plan of the query-tile passes (`inverse` = false: forward, dQ) or the key-tile pass
/// (`inverse` = true: dK, dV): the tallest tile (8, 4, 2 rows) whose halo fits.
pub fn plan(p: &Na2d, inverse: bool) -> Result<MmaPlan> {
    let cols = max_halo(p.width, p.kernel_size[1], p.dilation[1], TILE_C, inverse);
    let cw = cols.div_ceil(16) * 16;
    if cw > 32 {
        return Err(format!(
            "neighborhood attention (mma): a halo of {cols} columns (> 32) for {p:?}"
        ));
    }
    let mut last = 0;
    for tile_r in [8, 4, 2] {
        let halo_r = max_halo(p.height, p.kernel_size[0], p.dilation[0], tile_r, inverse);
        let per_key = 2 * (p.head_dim + 8) * 2 + if inverse { 2 * 4 } else { 0 };
        let smem = halo_r * cw * per_key;
        last = smem;
        if smem <= SMEM_LIMIT {
            let tiles = [
                group_len(p.height, p.dilation[0], 0).div_ceil(tile_r),
                group_len(p.width, p.dilation[1], 0).div_ceil(TILE_C),
            ];
            return Ok(MmaPlan {
                tile_r,
                tiles,
                halo_r,
                cw,
                smem,
            });
        }
    }
    Err(format!(
        "neighborhood attention (mma): the halo needs {last} bytes of shared memory \
         (> {SMEM_LIMIT}) even with 2-row tiles for {p:?}"
    ))
}

#[cfg(test)]
mod tests;
