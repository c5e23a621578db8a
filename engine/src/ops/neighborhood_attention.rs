//! 2-D neighborhood attention (Hassani et al., CVPR 2023; definition and backward in
//! docs/neighborhood-attention.md; kernels::cpu::neighborhood_attention), forward and backward
//! side by side; layouts in docs/attention-ops.md.
//!
//! `neighborhood_attention_2d`:     q, k, v [batch, H, W, heads, head_dim]
//!                                  -> out [batch, H, W, heads, head_dim]
//! `neighborhood_attention_2d_qkv`: qkv [batch, H, W, 3 * heads * head_dim] (channel order
//!                                  [3][heads][head_dim]) -> out [batch, H, W, heads * head_dim]
//! rpb (optional): [heads, 2 kh - 1, 2 kw - 1], centred at the nominal kernel.
//!
//! Inputs whose head_dim is contiguous are read in place through strided views (no copy).
//! Forward saves the attention probabilities attn [batch, heads, H, W, kh * kw] (k^2 numbers per
//! query and head); backward gathers dQ, dK, dV from them into one buffer (three blocks, or the
//! fused dQKV layout for the `_qkv` variant) and d(rpb) when rpb is given.

use super::attention::{check_qkv, fused_head_dim, gradients_of_qkv, prepare, shape_error};
use crate::backend::{self, device_of, heads, HeadsView, Na2d};
use crate::{Result, Tensor};

/// kernel >= 1, dilation >= 1, finite scale, the sizes of the problem >= 1, and the rpb shape.
fn check_problem(op: &'static str, t: &Tensor, p: &Na2d, rpb: Option<&Tensor>) -> Result<()> {
    for (name, n) in [("kernel", p.kernel_size), ("dilation", p.dilation)] {
        for (axis, &x) in n.iter().enumerate() {
            if x == 0 {
                return Err(shape_error(
                    op,
                    t,
                    format!("{name}[{axis}] must be >= 1, got 0"),
                ));
            }
        }
    }
    if !p.scale.is_finite() {
        return Err(shape_error(
            op,
            t,
            format!("scale must be finite, got {}", p.scale),
        ));
    }
    p.check().map_err(|m| shape_error(op, t, m))?;
    if let Some(r) = rpb {
        t.check_dtype(op, r)?;
        let [a, b] = p.rpb_dims();
        let want = [p.heads, a, b];
        if r.shape() != want {
            return Err(shape_error(
                op,
                r,
                format!(
                    "rpb must have shape {want:?} ([heads, 2 * kernel[0] - 1, 2 * kernel[1] - 1]), \
                     got {:?}",
                    r.shape()
                ),
            ));
        }
    }
    Ok(())
}

impl Tensor {
    /// Neighborhood attention of queries `self` over keys `k` and values `v`, each query attending
    /// to the `kernel` window around it (clamped inside the grid, spaced by `dilation`), with an
    /// optional relative positional bias and the scale applied to <q, k> inside the op.
    /// q, k, v [batch, H, W, heads, head_dim], rpb [heads, 2 kh - 1, 2 kw - 1]
    /// -> out [batch, H, W, heads, head_dim].
    pub fn neighborhood_attention_2d(
        &self,
        k: &Tensor,
        v: &Tensor,
        rpb: Option<&Tensor>,
        kernel: [usize; 2],
        dilation: [usize; 2],
        scale: f64,
    ) -> Result<Tensor> {
        const OP: &str = "neighborhood_attention_2d";
        let q = self;
        let mut all = vec![q, k, v];
        all.extend(rpb);
        device_of(OP, &all)?;
        check_qkv(OP, q, k, v, "[batch, H, W, heads, head_dim]")?;
        let s = q.shape();
        let p = Na2d {
            batch: s[0],
            height: s[1],
            width: s[2],
            heads: s[3],
            head_dim: s[4],
            kernel_size: kernel,
            dilation,
            scale,
        };
        check_problem(OP, q, &p, rpb)?;
        let (pq, pk, pv) = (prepare(q)?, prepare(k)?, prepare(v)?);
        let views = [pq.grid_view(0), pk.grid_view(0), pv.grid_view(0)];
        let saved = [pq.tensor, pk.tensor, pv.tensor];
        let mut inputs = vec![q, k, v];
        inputs.extend(rpb);
        na_op(OP, p, saved, views, rpb, None, &inputs, s)
    }

    /// [`Tensor::neighborhood_attention_2d`] on a fused QKV projection, read in place.
    /// qkv [batch, H, W, 3 * heads * head_dim] (channel order [3][heads][head_dim]),
    /// rpb [heads, 2 kh - 1, 2 kw - 1] -> out [batch, H, W, heads * head_dim]; the gradient of
    /// qkv is written directly in the fused layout.
    pub fn neighborhood_attention_2d_qkv(
        &self,
        heads: usize,
        rpb: Option<&Tensor>,
        kernel: [usize; 2],
        dilation: [usize; 2],
        scale: f64,
    ) -> Result<Tensor> {
        const OP: &str = "neighborhood_attention_2d_qkv";
        let qkv = self;
        let mut all = vec![qkv];
        all.extend(rpb);
        device_of(OP, &all)?;
        if qkv.rank() != 4 {
            return Err(shape_error(
                OP,
                qkv,
                format!(
                    "qkv must be [batch, H, W, 3 * heads * head_dim] (rank 4), got rank {}",
                    qkv.rank()
                ),
            ));
        }
        let d = fused_head_dim(OP, qkv, heads)?;
        let s = qkv.shape();
        let p = Na2d {
            batch: s[0],
            height: s[1],
            width: s[2],
            heads,
            head_dim: d,
            kernel_size: kernel,
            dilation,
            scale,
        };
        check_problem(OP, qkv, &p, rpb)?;
        let pf = prepare(qkv)?;
        let views = [0, 1, 2].map(|w| pf.fused_view(w, heads, d));
        let t = pf.tensor;
        let saved = [t.clone(), t.clone(), t];
        let mut inputs = vec![qkv];
        inputs.extend(rpb);
        na_op(
            OP,
            p,
            saved,
            views,
            rpb,
            Some(s.to_vec()),
            &inputs,
            &[s[0], s[1], s[2], heads * d],
        )
    }
}

/// Runs the forward and records the backward. `fused`: the qkv shape when the three views are
/// parts of one fused tensor (then the gradient is one fused dQKV).
fn na_op(
    op: &'static str,
    p: Na2d,
    saved: [Tensor; 3],
    views: [HeadsView; 3],
    rpb: Option<&Tensor>,
    fused: Option<Vec<usize>>,
    inputs: &[&Tensor],
    out_shape: &[usize],
) -> Result<Tensor> {
    let [out, attn] = backend::na_forward(&p, heads(&saved, views), rpb)?;
    let attn = Tensor::from_storage(attn, &[p.attn_len()]);
    let has_rpb = rpb.is_some();
    let in_shape = inputs[0].shape().to_vec();
    Ok(Tensor::from_storage_op(
        out,
        out_shape,
        op,
        inputs,
        Box::new(move |g| {
            let grads = grad_views(&p, &fused);
            let (buf, d_rpb) =
                backend::na_backward(&p, heads(&saved, views), &attn, g, grads, has_rpb)?;
            let mut result = gradients_of_qkv(buf, &fused, &in_shape)?;
            if let Some(dt) = d_rpb {
                let [a, b] = p.rpb_dims();
                result.push(Some(Tensor::from_storage(dt, &[p.heads, a, b])));
            }
            Ok(result)
        }),
    ))
}

/// The gradient views and buffer length of backward: one fused dQKV, or three blocks
/// `[3, batch, H, W, heads, head_dim]`.
fn grad_views(p: &Na2d, fused: &Option<Vec<usize>>) -> (usize, [HeadsView; 3]) {
    let n = p.out_len();
    let [h, w, heads, d] = [p.height, p.width, p.heads, p.head_dim];
    match fused {
        Some(shape) => (
            shape.iter().product(),
            [0, 1, 2].map(|which| HeadsView::fused_qkv(h, w, heads, d, which)),
        ),
        None => (
            3 * n,
            [0, n, 2 * n].map(|o| HeadsView::contiguous(h, w, heads, d).with_offset(o)),
        ),
    }
}
