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

pub use super::neighborhood_attention::{HeadsGradsMut, HeadsRef, HeadsView};

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
