//! Problem descriptors of 2-D neighborhood attention (Hassani et al., CVPR 2023), shared by the
//! CPU (`cpu::neighborhood_attention`) and CUDA (`cuda::neighborhood_attention`) kernels: the
//! problem [`Na2d`] and the window rule ([`window`]). Definition: docs/neighborhood-attention.md.

pub mod window;

use crate::attention::HeadsRef;
use window::{window, AxisWindow};

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
