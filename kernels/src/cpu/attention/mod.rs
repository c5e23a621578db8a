//! Full (global) self-attention on the CPU with O(N) memory, flash style (Dao et al.,
//! "FlashAttention", NeurIPS 2022): key tiles, online softmax, the log-sum-exp saved, the
//! probabilities recomputed in backward. Math: docs/attention.md.
//!
//! # API
//!
//! [`Attention`] describes the problem: `tokens` N per sequence. q, k, v are [`HeadsRef`]s, the
//! same strided views as neighborhood attention with one image row: token t of batch b, head h is
//! `view.at(b, 0, t, h)`. So `HeadsView::fused_qkv(1, N, heads, head_dim, 0/1/2)` reads a fused QKV
//! projection `[batch, N, 3 * heads * head_dim]` (an H x W image flattened row-major has N = H*W
//! and the same strides), `HeadsView::contiguous(1, N, heads, head_dim)` a `[batch, N, heads,
//! head_dim]` buffer.
//!
//! - [`attention_forward`]: `out` `[batch, N, heads, head_dim]` contiguous and `lse`
//!   `[batch, heads, N]` (log-sum-exp of the scaled logits of each query), which backward needs
//!   with `out` itself (D = rowsum(dO * O)).
//! - [`attention_backward`]: from q, k, v, out, lse, d_out writes dQ, dK, dV through a
//!   [`HeadsGradsMut`] (one buffer, three non-overlapping views: fused dQKV or three blocks).
//! - `*_reference`: generic plain versions that materialise the N x N matrix, same arguments.
//!
//! Parallel over (batch, head, query tile) in forward and in the dQ pass, over (batch, head, key
//! tile) in the dK/dV pass: every output element is summed by one task in a fixed order, so the
//! results are bitwise identical for any number of threads.

mod flash;
mod flash_backward;
mod reference;
#[cfg(test)]
mod tests;

pub use flash::attention_forward;
pub use flash_backward::attention_backward;
pub use reference::{attention_backward_reference, attention_forward_reference};

pub use crate::attention::{Attention, HeadsGradsMut, HeadsRef, HeadsView};
