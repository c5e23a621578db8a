//! Building blocks shared by the fast forward (fused.rs) and backward (backward.rs).
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

use super::simd::Simd;
use super::{window::group_len, AxisWindow, HeadsRef, Na2d};

/// Query rows per task: fixed (never derived from the thread count), so fixed-chunk reductions
/// over tasks are deterministic.
pub(super) const ROW_TILE: usize = 16;

/// A `*mut f32` that tasks share; each task writes a disjoint set of elements.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub *mut f32);
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

/// A run of consecutive members of one column dilation group, at most LANES long.
#[derive(Clone, Copy, Debug)]
pub(super) struct Chunk {
    /// Position of the first lane in group-sorted column order.
    pub p0: usize,
    pub count: usize,
    /// Every lane's window is unclamped: window start = own group index - left.
    pub interior: bool,
    /// Position (group-sorted order) of the group's first member.
    pub group_offset: usize,
}

/// The column axis, prepared once per call: group-sorted order, chunks and windows.
pub(super) struct ColumnPlan {
    /// `order[p]` = the column at group-sorted position p.
    pub order: Vec<usize>,
    pub chunks: Vec<Chunk>,
    /// The window of every column.
    pub windows: Vec<AxisWindow>,
}

impl ColumnPlan {
    pub fn new(p: &Na2d, lanes: usize) -> ColumnPlan {
        let (w, k, dil) = (p.width, p.kernel_size[1], p.dilation[1]);
        let mut order = Vec::with_capacity(w);
        let mut chunks = Vec::new();
        for g in 0..dil.min(w) {
            let n = group_len(w, dil, g);
            let off = order.len();
            order.extend((0..n).map(|m| g + m * dil));
            let ke = k.min(n);
            let (left, right) = (ke / 2, ke - 1 - ke / 2);
            let fits = |m: usize| m >= left && m + lanes + right <= n;
            let mut m = 0;
            while m < n {
                if fits(m) {
                    chunks.push(Chunk {
                        p0: off + m,
                        count: lanes,
                        interior: true,
                        group_offset: off,
                    });
                    m += lanes;
                } else {
                    let start = m;
                    while m < n && m - start < lanes && !fits(m) {
                        m += 1;
                    }
                    chunks.push(Chunk {
                        p0: off + start,
                        count: m - start,
                        interior: false,
                        group_offset: off,
                    });
                }
            }
        }
        let windows = (0..w).map(|j| p.col_window(j)).collect();
        ColumnPlan {
            order,
            chunks,
            windows,
        }
    }
}

thread_local! {
    static POOL: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A scratch buffer of `len` f32 from a per-thread pool, returned to it on drop. Contents are
/// unspecified (left from an earlier use): callers write before they read. Large fresh `Vec`s
/// are mmapped and page-fault on first touch on every call; reused ones do not.
pub(crate) struct Scratch(Vec<f32>, usize);

impl Scratch {
    pub fn new(len: usize) -> Scratch {
        let mut v = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
        if v.len() < len {
            v.resize(len, 0.0);
        }
        Scratch(v, len)
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0[..self.1]
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0[..self.1]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        POOL.with(|p| p.borrow_mut().push(v));
    }
}

/// Image rows of one (batch, head) stored transposed, `[head_dim][stride]` per row with columns in
/// group-sorted order and `stride = width + LANES` (padding, so per-query vector loads past a
/// window's end stay inside the buffer; the padding holds stale finite-or-not values that only
/// reach discarded lanes). Rows are transposed on first use.
pub(crate) struct Transposed {
    data: Scratch,
    lo: usize,
    ready: Vec<bool>,
    pub stride: usize,
    d: usize,
}

impl Transposed {
    pub fn new(lo: usize, hi: usize, d: usize, width: usize, lanes: usize) -> Transposed {
        let stride = width + lanes;
        Transposed {
            data: Scratch::new((hi - lo + 1) * d * stride),
            lo,
            ready: vec![false; hi - lo + 1],
            stride,
            d,
        }
    }

    /// Makes row `a` of `src` (batch b, head h), times `scale`, available.
    #[inline(always)]
    pub unsafe fn fill<S: Simd>(
        &mut self,
        src: &HeadsRef<f32>,
        b: usize,
        a: usize,
        h: usize,
        order: &[usize],
        scale: f32,
    ) {
        let r = a - self.lo;
        if self.ready[r] {
            return;
        }
        self.ready[r] = true;
        let (d, stride) = (self.d, self.stride);
        let dst = &mut self.data[r * d * stride..][..d * stride];
        let last = order.iter().max().map_or(0, |&j| j + 1);
        assert!(
            order.len() <= stride
                && src.view.min_len([b + 1, a + 1, last, h + 1, d]) <= src.data.len()
        );
        // Blocks of 8 columns: 8 strided reads, contiguous 8-float writes per channel.
        let dp = dst.as_mut_ptr();
        let sp = src.data.as_ptr();
        let base = src.view.at(b, a, 0, h);
        let col = src.view.col;
        // Every source index is < min_len (asserted), every target < d * stride.
        for (blk, cols) in order.chunks(8).enumerate() {
            let mut srcs = [0usize; 8];
            for (s, &j) in srcs.iter_mut().zip(cols) {
                *s = base + j * col;
            }
            // The source is strided (one head's d floats per pixel): fetch the next block early.
            for &j in order.iter().skip((blk + 1) * 8).take(8) {
                let p = sp.add(base + j * col);
                let mut off = 0;
                while off < d {
                    S::prefetch(p.add(off));
                    off += 16;
                }
            }
            let p0 = blk * 8;
            let mut c = 0;
            if cols.len() == 8 {
                while c + 8 <= d {
                    let ptrs = srcs.map(|s| sp.add(s + c));
                    S::transpose8(&ptrs, scale, dp.add(c * stride + p0), stride);
                    c += 8;
                }
            }
            for c in c..d {
                for (t, &s) in srcs.iter().enumerate().take(cols.len()) {
                    *dp.add(c * stride + p0 + t) = scale * *sp.add(s + c);
                }
            }
        }
    }

    /// Row `a` (must have been filled).
    #[inline(always)]
    pub fn row(&self, a: usize) -> *const f32 {
        debug_assert!(self.ready[a - self.lo]);
        self.data[(a - self.lo) * self.d * self.stride..].as_ptr()
    }
}

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

/// Writes a chunk's `[slot][lane]` tile into a buffer laid out like attn (or dS): `dst` points at
/// (this query row, slot 0, column 0), `plane` = W, the distance between slots. Slots beyond the window get 0. With column
/// dilation 1 and a full chunk the lanes are consecutive columns: one vector store per slot.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) unsafe fn store_tile<S: Simd>(
    tile: *const f32,
    dst: *mut f32,
    plane: usize,
    plan: &ColumnPlan,
    ch: &Chunk,
    kh_e: usize,
    kw: usize,
    slots: usize,
) {
    let l = S::LANES;
    let kw_e = plan.windows[plan.order[ch.p0]].size;
    let valid = |n: usize| n / kw < kh_e && n % kw < kw_e;
    if ch.count == l && plan.windows[plan.order[ch.p0]].step == 1 {
        let j0 = plan.order[ch.p0];
        for n in 0..slots {
            let x = if valid(n) {
                S::load(tile.add(n * l))
            } else {
                S::zero()
            };
            S::store(dst.add(n * plane + j0), x);
        }
    } else {
        for u in 0..ch.count {
            let j = plan.order[ch.p0 + u];
            for n in 0..slots {
                *dst.add(n * plane + j) = if valid(n) { *tile.add(n * l + u) } else { 0.0 };
            }
        }
    }
}

/// The inverse of [`store_tile`] for the valid slots (other tile entries are left as they are).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) unsafe fn load_tile<S: Simd>(
    src: *const f32,
    plane: usize,
    plan: &ColumnPlan,
    ch: &Chunk,
    kh_e: usize,
    kw: usize,
    tile: *mut f32,
) {
    let l = S::LANES;
    let kw_e = plan.windows[plan.order[ch.p0]].size;
    if ch.count == l && plan.windows[plan.order[ch.p0]].step == 1 {
        let j0 = plan.order[ch.p0];
        for tr in 0..kh_e {
            for tc in 0..kw_e {
                let n = tr * kw + tc;
                S::store(tile.add(n * l), S::load(src.add(n * plane + j0)));
            }
        }
    } else {
        for u in 0..ch.count {
            let j = plan.order[ch.p0 + u];
            for tr in 0..kh_e {
                for tc in 0..kw_e {
                    let n = tr * kw + tc;
                    *tile.add(n * l + u) = *src.add(n * plane + j);
                }
            }
        }
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

/// A 2-D set of offsets: entry (r, c) is at `rows[r] + cols[c]`.
#[derive(Clone, Copy)]
pub(crate) struct Pattern<'a> {
    pub rows: &'a [usize],
    pub cols: &'a [usize],
}

/// out[e] = scale * sum_{r,c} w[wp(r,c)] * v[vp(r,c) + e] for e < d (written, not accumulated);
/// `wp` and `vp` have the same shape. Two accumulator sets (even and odd c) break the FMA
/// dependency chain; the order is fixed.
#[inline(always)]
pub(crate) unsafe fn weighted_sum<S: Simd>(
    d: usize,
    w: *const f32,
    wp: Pattern,
    v: *const f32,
    vp: Pattern,
    scale: f32,
    out: *mut f32,
) {
    let l = S::LANES;
    let mut c0 = 0;
    while c0 + 4 * l <= d {
        ws_block::<S, 4>(c0, w, wp, v, vp, scale, out);
        c0 += 4 * l;
    }
    match (d - c0) / l {
        3 => ws_block::<S, 3>(c0, w, wp, v, vp, scale, out),
        2 => ws_block::<S, 2>(c0, w, wp, v, vp, scale, out),
        1 => ws_block::<S, 1>(c0, w, wp, v, vp, scale, out),
        _ => {}
    }
    c0 += (d - c0) / l * l;
    for e in c0..d {
        let mut acc = 0.0f32;
        for (&wr, &vr) in wp.rows.iter().zip(vp.rows) {
            for (&wc, &vc) in wp.cols.iter().zip(vp.cols) {
                acc += *w.add(wr + wc) * *v.add(vr + vc + e);
            }
        }
        *out.add(e) = scale * acc;
    }
}

#[inline(always)]
unsafe fn ws_block<S: Simd, const NV: usize>(
    c0: usize,
    w: *const f32,
    wp: Pattern,
    v: *const f32,
    vp: Pattern,
    scale: f32,
    out: *mut f32,
) {
    let l = S::LANES;
    let mut even = [S::zero(); NV];
    let mut odd = [S::zero(); NV];
    let nc = wp.cols.len();
    for (&wr, &vr) in wp.rows.iter().zip(vp.rows) {
        let (wr, vr) = (w.add(wr), v.add(vr + c0));
        let mut c = 0;
        while c + 1 < nc {
            let w0 = S::splat(*wr.add(*wp.cols.get_unchecked(c)));
            let w1 = S::splat(*wr.add(*wp.cols.get_unchecked(c + 1)));
            let p0 = vr.add(*vp.cols.get_unchecked(c));
            let p1 = vr.add(*vp.cols.get_unchecked(c + 1));
            for e in 0..NV {
                even[e] = S::fma(w0, S::load(p0.add(e * l)), even[e]);
                odd[e] = S::fma(w1, S::load(p1.add(e * l)), odd[e]);
            }
            c += 2;
        }
        if c < nc {
            let w0 = S::splat(*wr.add(*wp.cols.get_unchecked(c)));
            let p0 = vr.add(*vp.cols.get_unchecked(c));
            for (e, acc) in even.iter_mut().enumerate() {
                *acc = S::fma(w0, S::load(p0.add(e * l)), *acc);
            }
        }
    }
    let k = S::splat(scale);
    for e in 0..NV {
        S::store(out.add(c0 + e * l), S::mul(S::add(even[e], odd[e]), k));
    }
}

/// Rows given by offsets, columns an arithmetic progression: entry (r, c) at `rows[r] + c * step`
/// (step may be negative; every entry is inside the buffer).
#[derive(Clone, Copy)]
pub(crate) struct Strided<'a> {
    pub rows: &'a [usize],
    pub step: isize,
}

/// [`weighted_sum`] for `ncols` columns in arithmetic progression in both the weights and the
/// values (a query's window: the weight tile's slots, a window row's keys): no index loads.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn weighted_sum_strided<S: Simd>(
    d: usize,
    w: *const f32,
    wp: Strided,
    v: *const f32,
    vp: Strided,
    ncols: usize,
    scale: f32,
    out: *mut f32,
) {
    let l = S::LANES;
    let mut c0 = 0;
    while c0 + 4 * l <= d {
        wss_block::<S, 4>(c0, w, wp, v, vp, ncols, scale, out);
        c0 += 4 * l;
    }
    match (d - c0) / l {
        3 => wss_block::<S, 3>(c0, w, wp, v, vp, ncols, scale, out),
        2 => wss_block::<S, 2>(c0, w, wp, v, vp, ncols, scale, out),
        1 => wss_block::<S, 1>(c0, w, wp, v, vp, ncols, scale, out),
        _ => {}
    }
    c0 += (d - c0) / l * l;
    for e in c0..d {
        let mut acc = 0.0f32;
        for (&wr, &vr) in wp.rows.iter().zip(vp.rows) {
            for c in 0..ncols as isize {
                acc += *w.add(wr).offset(c * wp.step) * *v.add(vr + e).offset(c * vp.step);
            }
        }
        *out.add(e) = scale * acc;
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn wss_block<S: Simd, const NV: usize>(
    c0: usize,
    w: *const f32,
    wp: Strided,
    v: *const f32,
    vp: Strided,
    nc: usize,
    scale: f32,
    out: *mut f32,
) {
    let l = S::LANES;
    let mut even = [S::zero(); NV];
    let mut odd = [S::zero(); NV];
    for (&wr, &vr) in wp.rows.iter().zip(vp.rows) {
        let (mut wr, mut vr) = (w.add(wr), v.add(vr + c0));
        let mut c = 0;
        while c + 1 < nc {
            let w0 = S::splat(*wr);
            let w1 = S::splat(*wr.offset(wp.step));
            let p1 = vr.offset(vp.step);
            for e in 0..NV {
                even[e] = S::fma(w0, S::load(vr.add(e * l)), even[e]);
                odd[e] = S::fma(w1, S::load(p1.add(e * l)), odd[e]);
            }
            wr = wr.offset(2 * wp.step);
            vr = vr.offset(2 * vp.step);
            c += 2;
        }
        if c < nc {
            let w0 = S::splat(*wr);
            for (e, acc) in even.iter_mut().enumerate() {
                *acc = S::fma(w0, S::load(vr.add(e * l)), *acc);
            }
        }
    }
    let k = S::splat(scale);
    for e in 0..NV {
        S::store(out.add(c0 + e * l), S::mul(S::add(even[e], odd[e]), k));
    }
}
