//! Problem descriptors of the attention family (full and neighborhood attention), shared by the
//! CPU (`cpu::attention`, `cpu::neighborhood_attention`) and CUDA kernels: the strided views q, k,
//! v and their gradients are read through, and the full-attention problem [`Attention`].
//! Math: docs/attention.md, docs/neighborhood-attention.md.

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

/// A full self-attention problem: `batch` sequences of `tokens` tokens, `heads` heads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attention {
    pub batch: usize,
    pub tokens: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Applied to <q, k> inside the op (usually 1/sqrt(head_dim)).
    pub scale: f64,
}

impl Attention {
    /// Scale 1/sqrt(head_dim).
    pub fn new(batch: usize, tokens: usize, heads: usize, head_dim: usize) -> Attention {
        Attention {
            batch,
            tokens,
            heads,
            head_dim,
            scale: 1.0 / (head_dim.max(1) as f64).sqrt(),
        }
    }

    /// Every size at least 1 and a finite scale.
    pub fn check(&self) -> Result<(), String> {
        for (name, n) in [
            ("batch", self.batch),
            ("tokens", self.tokens),
            ("heads", self.heads),
            ("head_dim", self.head_dim),
        ] {
            if n == 0 {
                return Err(format!("attention: {name} must be >= 1 in {self:?}"));
            }
        }
        if !self.scale.is_finite() {
            return Err(format!("attention: scale must be finite in {self:?}"));
        }
        Ok(())
    }

    /// `[batch, 1, tokens, heads, head_dim]`: the view dims (one image row).
    pub fn dims(&self) -> [usize; 5] {
        [self.batch, 1, self.tokens, self.heads, self.head_dim]
    }
    /// Length of `out` and `d_out`.
    pub fn out_len(&self) -> usize {
        self.batch * self.tokens * self.heads * self.head_dim
    }
    /// Length of `lse`: batch * heads * tokens.
    pub fn lse_len(&self) -> usize {
        self.batch * self.heads * self.tokens
    }
    /// The layout of `out`, `d_out`.
    pub fn out_view(&self) -> HeadsView {
        HeadsView::contiguous(1, self.tokens, self.heads, self.head_dim)
    }

    pub(crate) fn assert_inputs<T>(&self, q: &HeadsRef<T>, k: &HeadsRef<T>, v: &HeadsRef<T>) {
        if let Err(e) = self.check() {
            panic!("{e}");
        }
        let dims = self.dims();
        for (name, x) in [("q", q), ("k", k), ("v", v)] {
            assert!(
                x.view.min_len(dims) <= x.data.len(),
                "attention: {name} view {:?} needs {} elements for {dims:?}, slice has {}",
                x.view,
                x.view.min_len(dims),
                x.data.len()
            );
        }
    }
}
