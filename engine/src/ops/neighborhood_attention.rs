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

use super::attention::{
    check_qkv, fused_head_dim, prepare, shape_error, split_three, with_three, AttentionElement,
};
use super::cuda::{all_cuda, alloc, cuda_slice, on_gpu};
use crate::kernels::cpu::neighborhood_attention::{HeadsGradsMut, HeadsRef, HeadsView, Na2d};
use crate::kernels::cuda::neighborhood_attention::{na2d_backward, na2d_forward, GpuHeads};
use crate::kernels::cuda::CudaSlice;
use crate::kernels::Float;
use crate::storage::cuda_err;
use crate::{with_dtype, Element, Result, Tensor};

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
        all_cuda(OP, &all)?;
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
        let (pq, pk, pv) = (prepare(q), prepare(k), prepare(v));
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
        all_cuda(OP, &all)?;
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
        let pf = prepare(qkv);
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
#[allow(clippy::too_many_arguments)]
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
    if inputs[0].is_cuda() {
        return na_op_cuda(op, p, saved, views, rpb, fused, inputs, out_shape);
    }
    with_dtype!(saved[0].dtype(), T => {
        let rpb_values: Option<Vec<T>> = rpb.map(|r| r.with_contiguous(|s: &[T]| s.to_vec()));
        let mut out = T::alloc(p.out_len());
        let mut attn = T::alloc(p.attn_len());
        with_three(&saved[0], &saved[1], &saved[2], |q: &[T], k: &[T], v: &[T]| {
            let r = |data, view| HeadsRef { data, view };
            T::na_forward(&p, r(q, views[0]), r(k, views[1]), r(v, views[2]), rpb_values.as_deref(), &mut out, &mut attn);
        });
        let has_rpb = rpb.is_some();
        let in_shape = inputs[0].shape().to_vec();
        Ok(Tensor::from_op(out, out_shape, op, inputs, Box::new(move |g| {
            let n = p.out_len();
            let [h, w, heads, d] = [p.height, p.width, p.heads, p.head_dim];
            let (len, grads_views) = match &fused {
                Some(shape) => (
                    shape.iter().product(),
                    [0, 1, 2].map(|which| HeadsView::fused_qkv(h, w, heads, d, which)),
                ),
                None => (3 * n, [0, n, 2 * n].map(|o| HeadsView::contiguous(h, w, heads, d).with_offset(o))),
            };
            let mut buf = T::alloc(len);
            let mut d_rpb = has_rpb.then(|| vec![T::ZERO; p.rpb_len()]);
            with_three(&saved[0], &saved[1], &saved[2], |q: &[T], k: &[T], v: &[T]| {
                g.with_contiguous(|dy: &[T]| {
                    let r = |data, view| HeadsRef { data, view };
                    let grads = HeadsGradsMut {
                        data: &mut buf,
                        dq: grads_views[0],
                        dk: grads_views[1],
                        dv: grads_views[2],
                    };
                    T::na_backward(&p, r(q, views[0]), r(k, views[1]), r(v, views[2]), &attn, dy, grads, d_rpb.as_deref_mut());
                })
            });
            let mut result = match &fused {
                Some(shape) => vec![Some(Tensor::from_data(buf, shape))],
                None => {
                    let mut big = vec![3];
                    big.extend_from_slice(&in_shape);
                    split_three(Tensor::from_data(buf, &big), &in_shape)?
                }
            };
            if let Some(dt) = d_rpb {
                let [a, b] = p.rpb_dims();
                result.push(Some(Tensor::from_data(dt, &[p.heads, a, b])));
            }
            Ok(result)
        })))
    })
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

/// Calls `f` with the contiguous device buffer of `rpb`, if any.
fn with_rpb<R>(
    op: &'static str,
    rpb: Option<&Tensor>,
    f: impl FnOnce(Option<&CudaSlice<f32>>) -> Result<R>,
) -> Result<R> {
    match rpb {
        Some(r) => r.with_cuda(op, |_, s| f(Some(s))),
        None => f(None),
    }
}

/// [`na_op`] on the GPU (kernels::cuda::neighborhood_attention, f32). Forward saves attn in the
/// CUDA kernels' layout `[batch, heads, H, W, kh * kw]` (a device tensor); backward writes dQ, dK,
/// dV (or the fused dQKV) and d(rpb) on the device.
#[allow(clippy::too_many_arguments)]
fn na_op_cuda(
    op: &'static str,
    p: Na2d,
    saved: [Tensor; 3],
    views: [HeadsView; 3],
    rpb: Option<&Tensor>,
    fused: Option<Vec<usize>>,
    inputs: &[&Tensor],
    out_shape: &[usize],
) -> Result<Tensor> {
    let shape = inputs[0].shape().to_vec();
    let (dev, out, attn) = {
        let guards = saved.each_ref().map(|t| t.read_storage());
        let mut s = Vec::with_capacity(3);
        for (t, g) in saved.iter().zip(&guards) {
            s.push(cuda_slice(op, t, g)?);
        }
        let dev = s[0].dev;
        let mut out = alloc(dev, op, out_shape)?;
        let mut attn = alloc(dev, op, &[p.attn_len()])?;
        let h = |i: usize| GpuHeads {
            data: &s[i].data,
            view: views[i],
        };
        with_rpb(op, rpb, |r| {
            na2d_forward(dev, &p, h(0), h(1), h(2), r, &mut out, Some(&mut attn))
                .map_err(cuda_err(op, &shape))
        })?;
        (dev, out, attn)
    };
    let attn = Tensor::from_cuda(attn, dev, &[p.attn_len()]);
    let has_rpb = rpb.is_some();
    Ok(Tensor::from_cuda_op(
        out,
        dev,
        out_shape,
        op,
        inputs,
        Box::new(move |g| {
            let g = on_gpu(g)?;
            let (len, grads_views) = grad_views(&p, &fused);
            let (buf, d_rpb) = g.with_cuda(op, |dev, dy| {
                let guards = saved.each_ref().map(|t| t.read_storage());
                let mut s = Vec::with_capacity(3);
                for (t, g) in saved.iter().zip(&guards) {
                    s.push(cuda_slice(op, t, g)?);
                }
                let attn_guard = attn.read_storage();
                let a = cuda_slice(op, &attn, &attn_guard)?;
                let h = |i: usize| GpuHeads {
                    data: &s[i].data,
                    view: views[i],
                };
                let mut buf = alloc(dev, op, &[len])?;
                let mut d_rpb = match has_rpb {
                    true => Some(alloc(dev, op, &[p.rpb_len()])?),
                    false => None,
                };
                na2d_backward(
                    dev,
                    &p,
                    h(0),
                    h(1),
                    h(2),
                    &a.data,
                    dy,
                    &mut buf,
                    grads_views,
                    d_rpb.as_mut(),
                )
                .map_err(cuda_err(op, &shape))?;
                Ok((buf, d_rpb))
            })?;
            let mut result = match &fused {
                Some(qkv_shape) => vec![Some(Tensor::from_cuda(buf, dev, qkv_shape))],
                None => {
                    let mut big = vec![3];
                    big.extend_from_slice(&shape);
                    split_three(Tensor::from_cuda(buf, dev, &big), &shape)?
                }
            };
            if let Some(dt) = d_rpb {
                let [a, b] = p.rpb_dims();
                result.push(Some(Tensor::from_cuda(dt, dev, &[p.heads, a, b])));
            }
            Ok(result)
        }),
    ))
}
