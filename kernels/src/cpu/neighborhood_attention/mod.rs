//! 2-D (and 1-D) neighborhood attention (Hassani et al., "Neighborhood Attention Transformer",
//! CVPR 2023) on the CPU, forward and backward. Definition: docs/neighborhood-attention.md.
//!
//! # API (for the engine ops and benches built on top)
//!
//! Describe the problem with [`Na2d`] (batch, grid, heads, head dim, kernel size and dilation per
//! axis `[rows, cols]`, scale). q, k and v are read through [`HeadsRef`]: a slice plus a
//! [`HeadsView`] of element strides for (batch, row, col, head), head dim contiguous. So the three
//! can be views into one fused QKV projection output `[batch, H, W, 3 * heads * head_dim]`
//! ([`HeadsView::fused_qkv`]) or separate `[batch, H, W, heads, head_dim]` buffers
//! ([`HeadsView::contiguous`]), without copies.
//!
//! - [`neighborhood_attention_2d_forward`] writes `out` `[batch, H, W, heads, head_dim]`
//!   (contiguous) and the attention probabilities `attn` `[batch, heads, H, kh * kw, W]`
//!   ([`Na2d::attn_len`], [`Na2d::attn_index`]): slot `tr * kw + tc` is the key in the `tr`-th
//!   row, `tc`-th column of the query's window; slots beyond the effective window
//!   (k' = min(k, L) < k) hold 0. Slots before columns keeps the probabilities that backward
//!   gathers for one key (one slot, neighbouring queries) in few cache lines and pages, and lets
//!   the kernels move a slot for 16 queries with one vector. `attn` is all backward needs
//!   (k^2 floats per query; no log-sum-exp, no logits).
//! - [`neighborhood_attention_2d_backward`] takes `attn` and `d_out` (layout of `out`) and writes
//!   dQ, dK, dV into one buffer through three views ([`HeadsGradsMut`]): the fused dQKV gradient
//!   (`HeadsView::fused_qkv(.., 0/1/2)`) or three contiguous blocks (`HeadsView::contiguous(..)`
//!   with offsets 0, n, 2n). The views must not overlap (checked). `d_rpb` (if given) is written,
//!   not accumulated.
//! - `rpb`: `[heads, 2kh-1, 2kw-1]` ([`Na2d::rpb_len`]), optional, centred at the nominal kernel.
//! - Every fast f32 function has a `*_reference` twin, generic over [`Float`], same arguments.
//! - [`Na1d`] and the `neighborhood_attention_1d_*` functions are the same rule on one axis.
//!
//! Results are bitwise identical for any number of rayon threads (fixed tiles, fixed orders).
//! Kernels assert (panic) on inconsistent sizes; call [`Na2d::check`] first to get an error value.

mod backward;
pub(crate) mod blocks;
mod fused;
mod logits;
mod one_d;
mod reference;
pub(crate) mod simd;
#[cfg(test)]
pub(crate) mod tests;
mod weighted_sum;
pub mod window;

pub use backward::neighborhood_attention_2d_backward;
pub use fused::neighborhood_attention_2d_forward;
pub use one_d::{
    neighborhood_attention_1d_backward, neighborhood_attention_1d_backward_reference,
    neighborhood_attention_1d_forward, neighborhood_attention_1d_forward_reference, Na1d,
};
pub use reference::{
    neighborhood_attention_2d_backward_reference, neighborhood_attention_2d_forward_reference,
};
pub use window::{inverse_window, window, window_start, AxisInverse, AxisWindow};

use crate::Float;

/// Element strides of a `[batch, rows, cols, heads, head_dim]` view with `head_dim` contiguous:
/// element (b, y, x, h, c) lives at `offset + b*batch + y*row + x*col + h*head + c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadsView {
    pub offset: usize,
    pub batch: usize,
    pub row: usize,
    pub col: usize,
    pub head: usize,
}

impl HeadsView {
    /// A contiguous `[batch, height, width, heads, head_dim]` buffer.
    pub fn contiguous(height: usize, width: usize, heads: usize, head_dim: usize) -> HeadsView {
        let hd = heads * head_dim;
        HeadsView {
            offset: 0,
            batch: height * width * hd,
            row: width * hd,
            col: hd,
            head: head_dim,
        }
    }

    /// Part `which` (0 = q, 1 = k, 2 = v) of a fused QKV projection output
    /// `[batch, height, width, 3 * heads * head_dim]` with channel order `[3][heads][head_dim]`.
    pub fn fused_qkv(
        height: usize,
        width: usize,
        heads: usize,
        head_dim: usize,
        which: usize,
    ) -> HeadsView {
        assert!(
            which < 3,
            "fused_qkv: which must be 0 (q), 1 (k) or 2 (v), got {which}"
        );
        let hd = heads * head_dim;
        HeadsView {
            offset: which * hd,
            batch: height * width * 3 * hd,
            row: width * 3 * hd,
            col: 3 * hd,
            head: head_dim,
        }
    }

    /// The same view shifted by `offset` elements.
    pub fn with_offset(self, offset: usize) -> HeadsView {
        HeadsView { offset, ..self }
    }

    /// Index of element (b, y, x, h, 0).
    #[inline(always)]
    pub fn at(&self, b: usize, y: usize, x: usize, h: usize) -> usize {
        self.offset + b * self.batch + y * self.row + x * self.col + h * self.head
    }

    /// One past the largest index the view touches for `dims = [batch, rows, cols, heads, dim]`.
    pub fn min_len(&self, dims: [usize; 5]) -> usize {
        if dims.contains(&0) {
            return 0;
        }
        self.at(dims[0] - 1, dims[1] - 1, dims[2] - 1, dims[3] - 1) + dims[4]
    }

    /// Whether no two elements of the view share an index (strides sorted, each at least the span
    /// of the smaller ones).
    fn is_injective(&self, dims: [usize; 5]) -> bool {
        let mut axes = [
            (self.batch, dims[0]),
            (self.row, dims[1]),
            (self.col, dims[2]),
            (self.head, dims[3]),
        ];
        axes.sort_unstable();
        let mut span = dims[4];
        for (stride, n) in axes {
            if n <= 1 {
                continue;
            }
            if stride < span {
                return false;
            }
            span += stride * (n - 1);
        }
        true
    }
}

/// Read-only q, k or v: a slice and the view into it.
#[derive(Clone, Copy, Debug)]
pub struct HeadsRef<'a, T> {
    pub data: &'a [T],
    pub view: HeadsView,
}

/// dQ, dK and dV written into one buffer through three non-overlapping views.
#[derive(Debug)]
pub struct HeadsGradsMut<'a, T> {
    pub data: &'a mut [T],
    pub dq: HeadsView,
    pub dk: HeadsView,
    pub dv: HeadsView,
}

impl<T> HeadsGradsMut<'_, T> {
    /// Panics unless the three views are injective, fit the buffer and do not overlap: either their
    /// whole index ranges are disjoint, or they interleave inside one pixel (the fused QKV layout:
    /// same strides, `heads * head_dim` contiguous, offsets at least that far apart and all inside
    /// one column stride).
    pub(crate) fn assert_disjoint(&self, dims: [usize; 5]) {
        let views = [self.dq, self.dk, self.dv];
        for (name, v) in ["dq", "dk", "dv"].iter().zip(views) {
            assert!(
                v.min_len(dims) <= self.data.len(),
                "neighborhood attention: {name} view {v:?} needs {} elements, buffer has {}",
                v.min_len(dims),
                self.data.len()
            );
            assert!(
                v.is_injective(dims),
                "neighborhood attention: {name} view {v:?} overlaps itself"
            );
        }
        if dims.contains(&0) {
            return;
        }
        let mut sorted = views;
        sorted.sort_by_key(|v| v.offset);
        let ranges_disjoint = sorted.windows(2).all(|w| w[0].min_len(dims) <= w[1].offset);
        let block = dims[3] * dims[4];
        let same = |a: &HeadsView, b: &HeadsView| {
            (a.batch, a.row, a.col, a.head) == (b.batch, b.row, b.col, b.head)
        };
        let interleaved = same(&sorted[0], &sorted[1])
            && same(&sorted[0], &sorted[2])
            && (dims[3] == 1 || sorted[0].head == dims[4])
            && sorted
                .windows(2)
                .all(|w| w[1].offset - w[0].offset >= block)
            && sorted[2].offset - sorted[0].offset + block <= sorted[0].col
            && HeadsView {
                offset: 0,
                head: dims[4],
                ..sorted[0]
            }
            .is_injective([dims[0], dims[1], dims[2], 1, sorted[0].col]);
        assert!(
            ranges_disjoint || interleaved,
            "neighborhood attention: gradient views overlap: {views:?}"
        );
    }
}

/// A 2-D neighborhood attention problem. Axis arrays are `[rows (H), cols (W)]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Na2d {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Nominal kernel size per axis (odd or even, may exceed the axis: k' = min(k, L)).
    pub kernel_size: [usize; 2],
    pub dilation: [usize; 2],
    /// Applied to <q, k> inside the op (NAT passes 1/sqrt(head_dim)).
    pub scale: f64,
}

impl Na2d {
    /// Dilation 1 and scale 1/sqrt(head_dim).
    pub fn new(
        batch: usize,
        height: usize,
        width: usize,
        heads: usize,
        head_dim: usize,
        kernel_size: [usize; 2],
    ) -> Na2d {
        Na2d {
            batch,
            height,
            width,
            heads,
            head_dim,
            kernel_size,
            dilation: [1, 1],
            scale: 1.0 / (head_dim.max(1) as f64).sqrt(),
        }
    }

    /// Every size at least 1.
    pub fn check(&self) -> Result<(), String> {
        let named = [
            ("batch", self.batch),
            ("height", self.height),
            ("width", self.width),
            ("heads", self.heads),
            ("head_dim", self.head_dim),
            ("kernel_size[0]", self.kernel_size[0]),
            ("kernel_size[1]", self.kernel_size[1]),
            ("dilation[0]", self.dilation[0]),
            ("dilation[1]", self.dilation[1]),
        ];
        for (name, n) in named {
            if n == 0 {
                return Err(format!(
                    "neighborhood attention: {name} must be >= 1 in {self:?}"
                ));
            }
        }
        if !self.scale.is_finite() {
            return Err(format!(
                "neighborhood attention: scale must be finite in {self:?}"
            ));
        }
        Ok(())
    }

    /// `[batch, height, width, heads, head_dim]` of q/k/v views.
    pub fn dims(&self) -> [usize; 5] {
        [
            self.batch,
            self.height,
            self.width,
            self.heads,
            self.head_dim,
        ]
    }
    /// Length of `out` and `d_out`: batch * H * W * heads * head_dim.
    pub fn out_len(&self) -> usize {
        self.dims().iter().product()
    }
    /// kh * kw: attention slots per query (nominal kernel).
    pub fn window_slots(&self) -> usize {
        self.kernel_size[0] * self.kernel_size[1]
    }
    /// Index of (batch b, head h, query row i, window slot n = tr * kw + tc, query column j) in
    /// `attn`, laid out `[batch, heads, H, kh * kw, W]`: per image row, one line of W queries per
    /// window slot, so neighbouring queries' probabilities for the same slot are adjacent.
    #[inline(always)]
    pub fn attn_index(&self, b: usize, h: usize, n: usize, i: usize, j: usize) -> usize {
        (((b * self.heads + h) * self.height + i) * self.window_slots() + n) * self.width + j
    }
    /// Length of `attn`: batch * heads * kh * kw * H * W.
    pub fn attn_len(&self) -> usize {
        self.batch * self.heads * self.height * self.width * self.window_slots()
    }
    /// `[2kh-1, 2kw-1]`: the rpb table of one head.
    pub fn rpb_dims(&self) -> [usize; 2] {
        [2 * self.kernel_size[0] - 1, 2 * self.kernel_size[1] - 1]
    }
    /// Length of `rpb` and `d_rpb`: heads * (2kh-1) * (2kw-1).
    pub fn rpb_len(&self) -> usize {
        let [a, b] = self.rpb_dims();
        self.heads * a * b
    }
    /// The window of query row `i`.
    pub fn row_window(&self, i: usize) -> AxisWindow {
        window(i, self.height, self.kernel_size[0], self.dilation[0])
    }
    /// The window of query column `j`.
    pub fn col_window(&self, j: usize) -> AxisWindow {
        window(j, self.width, self.kernel_size[1], self.dilation[1])
    }

    /// Asserts the sizes of the forward arguments (invariants: callers check shapes first).
    /// The problem ([`Na2d::check`]), the q/k/v views against their slices and the rpb length, as
    /// an error value (the kernels assert the same).
    pub fn check_inputs<T>(
        &self,
        q: &HeadsRef<T>,
        k: &HeadsRef<T>,
        v: &HeadsRef<T>,
        rpb: Option<&[T]>,
    ) -> Result<(), String> {
        self.check()?;
        let dims = self.dims();
        for (name, x) in [("q", q), ("k", k), ("v", v)] {
            let need = x.view.min_len(dims);
            if need > x.data.len() {
                return Err(format!(
                    "neighborhood attention: {name} view {:?} needs {need} elements for {dims:?}, \
                     slice has {}",
                    x.view,
                    x.data.len()
                ));
            }
        }
        match rpb {
            Some(t) if t.len() != self.rpb_len() => Err(format!(
                "neighborhood attention: rpb has {} elements, expected heads x (2kh-1) x (2kw-1) = {} \
                 for {self:?}",
                t.len(),
                self.rpb_len()
            )),
            _ => Ok(()),
        }
    }

    pub(crate) fn assert_inputs<T>(
        &self,
        q: &HeadsRef<T>,
        k: &HeadsRef<T>,
        v: &HeadsRef<T>,
        rpb: Option<&[T]>,
    ) {
        if let Err(e) = self.check_inputs(q, k, v, rpb) {
            panic!("{e}");
        }
    }
}

/// `T::from_f64(scale)`: the scale in the element type.
#[inline]
pub(crate) fn scale_as<T: Float>(p: &Na2d) -> T {
    T::from_f64(p.scale)
}
