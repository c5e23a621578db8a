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

pub use crate::attention::{HeadsGradsMut, HeadsRef, HeadsView};
pub use crate::neighborhood_attention::window::{
    self, group_len, inverse_window, window, window_start, AxisInverse, AxisWindow,
};
pub use crate::neighborhood_attention::Na2d;
pub use backward::neighborhood_attention_2d_backward;
pub use fused::neighborhood_attention_2d_forward;
pub use one_d::{
    neighborhood_attention_1d_backward, neighborhood_attention_1d_backward_reference,
    neighborhood_attention_1d_forward, neighborhood_attention_1d_forward_reference, Na1d,
};
pub use reference::{
    neighborhood_attention_2d_backward_reference, neighborhood_attention_2d_forward_reference,
};

use crate::Float;

/// `T::from_f64(scale)`: the scale in the element type.
#[inline]
pub(crate) fn scale_as<T: Float>(p: &Na2d) -> T {
    T::from_f64(p.scale)
}
