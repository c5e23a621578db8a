//! Full (global) self-attention, flash style (kernels::cpu::attention, math in docs/attention.md),
//! forward and backward side by side; layouts in docs/attention-ops.md.
//!
//! `attention`:     q, k, v [batch, N, heads, head_dim] -> out [batch, N, heads, head_dim]
//! `attention_qkv`: qkv [batch, N, 3 * heads * head_dim] (channel order [3][heads][head_dim])
//!                  -> out [batch, N, heads * head_dim]
//!
//! Inputs whose head_dim is contiguous are read in place through strided views (no copy).
//! Forward saves the output and the log-sum-exp `lse` [batch, heads, N] of each query's scaled
//! logits; backward recomputes the probabilities from them (no N x N buffer) and writes dQ, dK, dV
//! into one buffer (three blocks, or the fused dQKV layout for `attention_qkv`).
//!
//! This file also holds what both attention op files share: the tensor -> kernel view helpers
//! and the checks of q, k, v.

use crate::autograd::no_grad;
use crate::backend::{self, device_of, heads, Attention, HeadsView};
use crate::{EngineError, Result, Tensor};

/// An input as the kernels read it: a detached handle (the recorded op keeps the original) and
/// its view. A tensor whose last (head_dim or channel) axis is contiguous is used in place; any
/// other is copied to row-major first.
pub(crate) struct Prepared {
    pub tensor: Tensor,
    /// Strides of the axes before the last, and the offset.
    pub strides: Vec<usize>,
    pub offset: usize,
}

pub(crate) fn prepare(t: &Tensor) -> Result<Prepared> {
    let last = t.rank() - 1;
    let tensor = if t.shape()[last] <= 1 || t.strides()[last] == 1 {
        t.detach()
    } else {
        let _guard = no_grad();
        t.try_contiguous()?.detach()
    };
    Ok(Prepared {
        strides: tensor.strides()[..last].to_vec(),
        offset: tensor.layout().offset,
        tensor,
    })
}

impl Prepared {
    /// The view of a `[batch, rows, cols, heads, head_dim]` tensor, shifted by `extra` elements.
    pub fn grid_view(&self, extra: usize) -> HeadsView {
        let s = &self.strides;
        HeadsView {
            offset: self.offset + extra,
            batch: s[0],
            row: s[1],
            col: s[2],
            head: s[3],
        }
    }
    /// The view of a `[batch, N, heads, head_dim]` tensor as one image row.
    pub fn token_view(&self, extra: usize) -> HeadsView {
        let s = &self.strides;
        HeadsView {
            offset: self.offset + extra,
            batch: s[0],
            row: 0,
            col: s[1],
            head: s[2],
        }
    }
    /// The view of part `which` of a fused `[.., 3 * heads * head_dim]` tensor whose head `h` of
    /// part `which` starts at channel `(which * heads + h) * head_dim`.
    pub fn fused_view(&self, which: usize, heads: usize, head_dim: usize) -> HeadsView {
        let s = &self.strides;
        let extra = which * heads * head_dim;
        if s.len() == 3 {
            HeadsView {
                offset: self.offset + extra,
                batch: s[0],
                row: s[1],
                col: s[2],
                head: head_dim,
            }
        } else {
            HeadsView {
                offset: self.offset + extra,
                batch: s[0],
                row: 0,
                col: s[1],
                head: head_dim,
            }
        }
    }
}

/// dQ, dK, dV of three separate inputs: one buffer `[3, shape..]`, returned as three views.
pub(crate) fn split_three(buf: Tensor, shape: &[usize]) -> Result<Vec<Option<Tensor>>> {
    (0..3)
        .map(|i| Ok(Some(buf.narrow(0, i, 1)?.reshape(shape)?)))
        .collect()
}

pub(crate) fn shape_error(op: &'static str, t: &Tensor, message: String) -> EngineError {
    EngineError::arg(op, t.shape(), message)
}

/// q, k, v of one shape and dtype, `rank` dims, head_dim >= 1.
pub(crate) fn check_qkv(
    op: &'static str,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    layout: &str,
) -> Result<()> {
    let rank = layout.split(',').count();
    if q.rank() != rank {
        return Err(shape_error(
            op,
            q,
            format!("q must be {layout} (rank {rank}), got rank {}", q.rank()),
        ));
    }
    for (name, t) in [("k", k), ("v", v)] {
        if t.shape() != q.shape() {
            return Err(shape_error(
                op,
                t,
                format!(
                    "{name} must have the shape of q, {:?}, got {:?}",
                    q.shape(),
                    t.shape()
                ),
            ));
        }
        q.check_dtype(op, t)?;
    }
    Ok(())
}

/// heads >= 1 and channels = 3 * heads * head_dim for a fused QKV input; returns head_dim.
pub(crate) fn fused_head_dim(op: &'static str, qkv: &Tensor, heads: usize) -> Result<usize> {
    let c = qkv.shape().last().copied().unwrap_or(0);
    if heads == 0 {
        return Err(shape_error(op, qkv, "heads must be >= 1, got 0".into()));
    }
    if c == 0 || c % (3 * heads) != 0 {
        return Err(shape_error(
            op,
            qkv,
            format!(
                "qkv channels {c} must be 3 * heads * head_dim with heads = {heads}: a positive \
                 multiple of {}",
                3 * heads
            ),
        ));
    }
    Ok(c / (3 * heads))
}

fn check_scale(op: &'static str, t: &Tensor, scale: f64) -> Result<()> {
    if !scale.is_finite() {
        return Err(shape_error(
            op,
            t,
            format!("scale must be finite, got {scale}"),
        ));
    }
    Ok(())
}

impl Tensor {
    /// Full self-attention softmax(s Q K^T) V per batch and head, flash style.
    /// q, k, v [batch, N, heads, head_dim] -> out [batch, N, heads, head_dim].
    pub fn attention(&self, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
        device_of("attention", &[self, k, v])?;
        const OP: &str = "attention";
        let q = self;
        check_qkv(OP, q, k, v, "[batch, N, heads, head_dim]")?;
        check_scale(OP, q, scale)?;
        let s = q.shape();
        let p = Attention {
            batch: s[0],
            tokens: s[1],
            heads: s[2],
            head_dim: s[3],
            scale,
        };
        p.check().map_err(|m| shape_error(OP, q, m))?;
        let (pq, pk, pv) = (prepare(q)?, prepare(k)?, prepare(v)?);
        let views = [pq.token_view(0), pk.token_view(0), pv.token_view(0)];
        let saved = [pq.tensor, pk.tensor, pv.tensor];
        attention_op(OP, p, saved, views, None, &[q, k, v], s)
    }

    /// Full self-attention on a fused QKV projection, read in place.
    /// qkv [batch, N, 3 * heads * head_dim] (channel order [3][heads][head_dim])
    /// -> out [batch, N, heads * head_dim]; the gradient is the fused dQKV.
    pub fn attention_qkv(&self, heads: usize, scale: f64) -> Result<Tensor> {
        const OP: &str = "attention_qkv";
        let qkv = self;
        if qkv.rank() != 3 {
            return Err(shape_error(
                OP,
                qkv,
                format!(
                    "qkv must be [batch, N, 3 * heads * head_dim] (rank 3), got rank {}",
                    qkv.rank()
                ),
            ));
        }
        let d = fused_head_dim(OP, qkv, heads)?;
        check_scale(OP, qkv, scale)?;
        let s = qkv.shape();
        let p = Attention {
            batch: s[0],
            tokens: s[1],
            heads,
            head_dim: d,
            scale,
        };
        p.check().map_err(|m| shape_error(OP, qkv, m))?;
        let pf = prepare(qkv)?;
        let views = [0, 1, 2].map(|w| pf.fused_view(w, heads, d));
        let t = pf.tensor;
        let saved = [t.clone(), t.clone(), t];
        attention_op(
            OP,
            p,
            saved,
            views,
            Some(s.to_vec()),
            &[qkv],
            &[s[0], s[1], heads * d],
        )
    }
}

/// Runs the forward and records the backward. `fused`: the qkv shape when the three views are
/// parts of one fused tensor (then the gradient is one fused dQKV).
fn attention_op(
    op: &'static str,
    p: Attention,
    saved: [Tensor; 3],
    views: [HeadsView; 3],
    fused: Option<Vec<usize>>,
    inputs: &[&Tensor],
    out_shape: &[usize],
) -> Result<Tensor> {
    let [out, lse] = backend::attention_forward(&p, heads(&saved, views))?;
    let out = Tensor::from_storage(out, out_shape);
    let lse = Tensor::from_storage(lse, &[p.lse_len()]);
    let out_saved = out.detach();
    let in_shape = inputs[0].shape().to_vec();
    Ok(Tensor::from_storage_op_like(
        &out,
        op,
        inputs,
        Box::new(move |g| {
            let n = p.out_len();
            let grads = match &fused {
                Some(shape) => (
                    shape.iter().product(),
                    [0, 1, 2].map(|w| HeadsView::fused_qkv(1, p.tokens, p.heads, p.head_dim, w)),
                ),
                None => (3 * n, [0, n, 2 * n].map(|o| p.out_view().with_offset(o))),
            };
            let buf = backend::attention_backward(
                &p,
                heads(&saved, views),
                [&out_saved, &lse],
                g,
                grads,
            )?;
            gradients_of_qkv(buf, &fused, &in_shape)
        }),
    ))
}

/// dQ, dK, dV as the op's inputs want them: the fused dQKV of `fused`'s shape, or three views
/// of one buffer `[3, in_shape..]`.
pub(crate) fn gradients_of_qkv(
    buf: crate::storage::Storage,
    fused: &Option<Vec<usize>>,
    in_shape: &[usize],
) -> Result<Vec<Option<Tensor>>> {
    match fused {
        Some(shape) => Ok(vec![Some(Tensor::from_storage(buf, shape))]),
        None => {
            let mut big = vec![3];
            big.extend_from_slice(in_shape);
            split_three(Tensor::from_storage(buf, &big), in_shape)
        }
    }
}
