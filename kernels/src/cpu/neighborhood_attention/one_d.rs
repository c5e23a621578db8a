//! 1-D neighborhood attention: the same window rule on one axis. It is exactly 2-D NA on a
//! 1 x length grid with kernel [1, k] and dilation [1, d] (one window row, rpb `[heads, 1, 2k-1]`
//! = `[heads, 2k-1]`, attn `[batch, heads, length, k]`), so these are thin wrappers that share the
//! 2-D kernels and their tests.
//!
//! Views: a [`HeadsView`](super::HeadsView) whose `col` stride steps along the sequence; `row` is
//! never used (use `HeadsView::contiguous(1, length, heads, head_dim)` for `[batch, length, heads,
//! head_dim]`).

use super::{
    neighborhood_attention_2d_backward, neighborhood_attention_2d_backward_reference,
    neighborhood_attention_2d_forward, neighborhood_attention_2d_forward_reference, HeadsGradsMut,
    HeadsRef, Na2d,
};
use crate::Float;

/// A 1-D neighborhood attention problem on sequences of `length` tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Na1d {
    pub batch: usize,
    pub length: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub kernel_size: usize,
    pub dilation: usize,
    pub scale: f64,
}

impl Na1d {
    /// The equivalent 2-D problem (height 1).
    pub fn as_2d(&self) -> Na2d {
        Na2d {
            batch: self.batch,
            height: 1,
            width: self.length,
            heads: self.heads,
            head_dim: self.head_dim,
            kernel_size: [1, self.kernel_size],
            dilation: [1, self.dilation],
            scale: self.scale,
        }
    }
}

/// Fast f32 1-D forward: `out` `[batch, length, heads, d]`, `attn` `[batch, heads, length, k]`.
pub fn neighborhood_attention_1d_forward(
    p: &Na1d,
    q: HeadsRef<f32>,
    k: HeadsRef<f32>,
    v: HeadsRef<f32>,
    rpb: Option<&[f32]>,
    out: &mut [f32],
    attn: &mut [f32],
) {
    neighborhood_attention_2d_forward(&p.as_2d(), q, k, v, rpb, out, attn)
}

/// Plain 1-D forward (generic), same arguments.
pub fn neighborhood_attention_1d_forward_reference<T: Float>(
    p: &Na1d,
    q: HeadsRef<T>,
    k: HeadsRef<T>,
    v: HeadsRef<T>,
    rpb: Option<&[T]>,
    out: &mut [T],
    attn: &mut [T],
) {
    neighborhood_attention_2d_forward_reference(&p.as_2d(), q, k, v, rpb, out, attn)
}

/// Fast f32 1-D backward.
pub fn neighborhood_attention_1d_backward(
    p: &Na1d,
    q: HeadsRef<f32>,
    k: HeadsRef<f32>,
    v: HeadsRef<f32>,
    attn: &[f32],
    d_out: &[f32],
    grads: HeadsGradsMut<f32>,
    d_rpb: Option<&mut [f32]>,
) {
    neighborhood_attention_2d_backward(&p.as_2d(), q, k, v, attn, d_out, grads, d_rpb)
}

/// Plain 1-D backward (generic), same arguments.
pub fn neighborhood_attention_1d_backward_reference<T: Float>(
    p: &Na1d,
    q: HeadsRef<T>,
    k: HeadsRef<T>,
    v: HeadsRef<T>,
    attn: &[T],
    d_out: &[T],
    grads: HeadsGradsMut<T>,
    d_rpb: Option<&mut [T]>,
) {
    neighborhood_attention_2d_backward_reference(&p.as_2d(), q, k, v, attn, d_out, grads, d_rpb)
}
