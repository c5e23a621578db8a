//! The logits of a chunk of queries and their softmax, for the fast forward (fused.rs) and the
//! dA = dO V^T of the backward (backward.rs).
//!
//! Layout trick: the queries of one image row are processed in chunks of LANES consecutive
//! members of one column dilation group. For an interior chunk (no clamping on the column axis)
//! lane u's window column t is the group member m0 + u - left + t, so with a key row stored
//! transposed (`[head_dim][column]`, columns sorted by dilation group) one unaligned vector load
//! gives key column t for all LANES queries: the logits of LANES queries for one slot are LANES
//! independent dot products accumulated with vertical FMAs, no horizontal sums. Border chunks
//! (and leftovers) take the per-query path: the k' keys of one window row are consecutive in the
//! transposed row, so one vector covers up to LANES of them. Logits land in a `[slot][lane]` tile,
//! where the softmax is vertical too.

use super::blocks::{Chunk, ColumnPlan};
use super::simd::Simd;
use super::AxisWindow;

/// What one query row needs to compute the logits of a chunk.
pub(super) struct RowInputs<'a> {
    /// The query row, transposed (scale folded in).
    pub q: *const f32,
    /// The k'_h key rows of the window, transposed.
    pub k: &'a [*const f32],
    pub stride: usize,
    pub d: usize,
    /// This head's rpb table rows `[2kh-1][2kw-1]` starting at the row window's bias_first, and the
    /// table's row length; None: no bias.
    pub bias: Option<(&'a [f32], usize)>,
    /// Nominal kw: the slot of (tr, tc) is tr * kw + tc.
    pub kw: usize,
}

/// Logits of the chunk's queries into `tile[(tr*kw + tc) * LANES + u]` (valid slots only).
#[inline(always)]
pub(super) unsafe fn chunk_logits<S: Simd>(
    r: &RowInputs,
    plan: &ColumnPlan,
    ch: &Chunk,
    tile: *mut f32,
) {
    let lanes = S::LANES;
    let cw0 = plan.windows[plan.order[ch.p0]];
    let kwe = cw0.size;
    if ch.interior {
        // Lane u's key column t sits at transposed position p0 + u - left + t.
        let left = (ch.p0 - ch.group_offset) - (cw0.first - cw0.first % cw0.step) / cw0.step;
        let kbase = ch.p0 - left;
        for (tr, &krow) in r.k.iter().enumerate() {
            let mut tc0 = 0;
            while tc0 < kwe {
                let nt = (kwe - tc0).min(8);
                let mut bias = [0.0f32; 8];
                if let Some((tab, cols)) = r.bias {
                    for (t, b) in bias.iter_mut().enumerate().take(nt) {
                        *b = tab[tr * cols + cw0.bias_first + tc0 + t];
                    }
                }
                let q = r.q.add(ch.p0);
                let k = krow.add(kbase + tc0);
                let out = tile.add((tr * r.kw + tc0) * lanes);
                match nt {
                    8 => qk_interior::<S, 8>(q, k, r.stride, r.d, &bias, out),
                    7 => qk_interior::<S, 7>(q, k, r.stride, r.d, &bias, out),
                    6 => qk_interior::<S, 6>(q, k, r.stride, r.d, &bias, out),
                    5 => qk_interior::<S, 5>(q, k, r.stride, r.d, &bias, out),
                    4 => qk_interior::<S, 4>(q, k, r.stride, r.d, &bias, out),
                    3 => qk_interior::<S, 3>(q, k, r.stride, r.d, &bias, out),
                    2 => qk_interior::<S, 2>(q, k, r.stride, r.d, &bias, out),
                    _ => qk_interior::<S, 1>(q, k, r.stride, r.d, &bias, out),
                }
                tc0 += nt;
            }
        }
    } else {
        for u in 0..ch.count {
            let pos = ch.p0 + u;
            let cw = plan.windows[plan.order[pos]];
            let kstart = ch.group_offset + (cw.first - cw.first % cw.step) / cw.step;
            let mut tr0 = 0;
            while tr0 < r.k.len() {
                let nr = (r.k.len() - tr0).min(8);
                let rows = &r.k[tr0..tr0 + nr];
                let args = LaneArgs {
                    r,
                    pos,
                    kstart,
                    tr0,
                    cw,
                    u,
                    tile,
                    tile_lanes: lanes,
                };
                // Windows of at most half a vector: half-width vectors (AVX-512 runs as two
                // 256-bit halves on some cores, so this halves the cost of the border path).
                if cw.size <= S::Half::LANES {
                    qk_lane_rows::<S::Half>(&args, rows);
                } else {
                    qk_lane_rows::<S>(&args, rows);
                }
                tr0 += nr;
            }
        }
    }
}

/// NT slots of one window row for LANES interior queries: vertical dot products.
#[inline(always)]
unsafe fn qk_interior<S: Simd, const NT: usize>(
    q: *const f32,
    k: *const f32,
    stride: usize,
    d: usize,
    bias: &[f32; 8],
    out: *mut f32,
) {
    let mut acc = [S::zero(); NT];
    for c in 0..d {
        let qv = S::load(q.add(c * stride));
        let kp = k.add(c * stride);
        for (t, a) in acc.iter_mut().enumerate() {
            *a = S::fma(qv, S::load(kp.add(t)), *a);
        }
    }
    for (t, a) in acc.iter().enumerate() {
        S::store(out.add(t * S::LANES), S::add(*a, S::splat(bias[t])));
    }
}

struct LaneArgs<'a> {
    r: &'a RowInputs<'a>,
    pos: usize,
    kstart: usize,
    tr0: usize,
    cw: AxisWindow,
    u: usize,
    tile: *mut f32,
    /// Lanes of the tile (the chunk's vector width, which `qk_lane`'s may be half of).
    tile_lanes: usize,
}

#[inline(always)]
unsafe fn qk_lane_rows<S: Simd>(args: &LaneArgs, rows: &[*const f32]) {
    match rows.len() {
        8 => qk_lane::<S, 8>(args, rows),
        7 => qk_lane::<S, 7>(args, rows),
        6 => qk_lane::<S, 6>(args, rows),
        5 => qk_lane::<S, 5>(args, rows),
        4 => qk_lane::<S, 4>(args, rows),
        3 => qk_lane::<S, 3>(args, rows),
        2 => qk_lane::<S, 2>(args, rows),
        _ => qk_lane::<S, 1>(args, rows),
    }
}

/// NR window rows of one query: its k'_w keys per row are consecutive in the transposed row.
#[inline(always)]
unsafe fn qk_lane<S: Simd, const NR: usize>(a: &LaneArgs, rows: &[*const f32]) {
    let r = a.r;
    let lanes = S::LANES;
    let mut buf = [0.0f32; 16];
    let mut tc0 = 0;
    while tc0 < a.cw.size {
        let mut acc = [S::zero(); NR];
        for c in 0..r.d {
            let qv = S::splat(*r.q.add(c * r.stride + a.pos));
            let off = c * r.stride + a.kstart + tc0;
            for (x, &row) in acc.iter_mut().zip(rows) {
                *x = S::fma(qv, S::load(row.add(off)), *x);
            }
        }
        let n = (a.cw.size - tc0).min(lanes);
        for (rr, x) in acc.iter().enumerate() {
            S::store(buf.as_mut_ptr(), *x);
            let tr = a.tr0 + rr;
            for (t, &val) in buf.iter().enumerate().take(n) {
                let tc = tc0 + t;
                let bias = match r.bias {
                    Some((tab, cols)) => tab[tr * cols + a.cw.bias_first + tc],
                    None => 0.0,
                };
                *a.tile.add((tr * r.kw + tc) * a.tile_lanes + a.u) = val + bias;
            }
        }
        tc0 += lanes;
    }
}
/// In-place softmax over the valid slots (kh_e x kw_e of nominal width kw), vertical over lanes.
#[inline(always)]
pub(super) unsafe fn softmax_lanes<S: Simd>(tile: *mut f32, kh_e: usize, kw_e: usize, kw: usize) {
    let l = S::LANES;
    let mut m = S::load(tile);
    for tr in 0..kh_e {
        for tc in 0..kw_e {
            m = S::max(m, S::load(tile.add((tr * kw + tc) * l)));
        }
    }
    let mut sum = S::zero();
    for tr in 0..kh_e {
        for tc in 0..kw_e {
            let p = tile.add((tr * kw + tc) * l);
            let e = S::exp(S::sub(S::load(p), m));
            S::store(p, e);
            sum = S::add(sum, e);
        }
    }
    // 1/sum per lane (division once per query, not per slot).
    let mut inv = [0.0f32; 16];
    S::store(inv.as_mut_ptr(), sum);
    for x in inv.iter_mut().take(l) {
        *x = 1.0 / *x;
    }
    let inv = S::load(inv.as_ptr());
    for tr in 0..kh_e {
        for tc in 0..kw_e {
            let p = tile.add((tr * kw + tc) * l);
            S::store(p, S::mul(S::load(p), inv));
        }
    }
}
