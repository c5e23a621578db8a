//! Building blocks shared by the fast forward (fused.rs) and backward (backward.rs): the column
//! plan (queries of a row in chunks of LANES members of one dilation group), transposed image rows,
//! per-thread scratch, and moving a chunk's `[slot][lane]` tile to and from the attn layout.
//! The logits and softmax of a chunk are in logits.rs, the weighted sums in weighted_sum.rs.

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

/// Buffers above this many floats (64 MiB) are freed instead of pooled, so a thread does not hold
/// the scratch of one huge call for ever.
const POOL_MAX_LEN: usize = 1 << 24;

impl Drop for Scratch {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        if v.len() <= POOL_MAX_LEN {
            POOL.with(|p| p.borrow_mut().push(v));
        }
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
/// Writes a chunk's `[slot][lane]` tile into a buffer laid out like attn (or dS): `dst` points at
/// (this query row, slot 0, column 0), `plane` = W, the distance between slots. Slots beyond the
/// window get 0. With column dilation 1 and a full chunk the lanes are consecutive columns: one
/// vector store per slot.
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

pub(crate) use super::weighted_sum::{weighted_sum, weighted_sum_strided, Pattern, Strided};
