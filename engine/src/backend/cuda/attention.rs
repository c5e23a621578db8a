//! Full and neighborhood attention on the GPU (kernels::cuda::{attention, neighborhood_attention},
//! f32): q, k, v read in place through their views, the gradients written into one buffer.

use super::{alloc, buffer, storage};
use crate::backend::qkv::Heads;
use crate::kernels::attention::{Attention, HeadsView};
use crate::kernels::cuda::attention as katt;
use crate::kernels::cuda::neighborhood_attention::{na2d_backward, na2d_forward, GpuHeads};
use crate::kernels::cuda::{CudaSlice, GpuDevice};
use crate::kernels::neighborhood_attention::Na2d;
use crate::storage::{cuda_err, Storage};
use crate::{Result, Tensor};

type Gpu<'a> = GpuHeads<'a, f32>;

/// Calls `f` with the GPU and q, k, v as the kernels read them.
fn with_heads<R>(
    op: &'static str,
    qkv: Heads,
    f: impl FnOnce(&'static GpuDevice, Gpu, Gpu, Gpu) -> Result<R>,
) -> Result<R> {
    let guards = qkv.map(|(t, _)| t.read_storage());
    let mut s = Vec::with_capacity(3);
    for ((t, _), g) in qkv.iter().zip(&guards) {
        let cs = buffer(op, t, g)?;
        s.push((cs.dev, cs.f32(op, t.shape())?));
    }
    let h = |i: usize| GpuHeads {
        data: s[i].1,
        view: qkv[i].1,
    };
    f(s[0].0, h(0), h(1), h(2))
}

pub(crate) fn attention_forward(p: &Attention, qkv: Heads) -> Result<[Storage; 2]> {
    const OP: &str = "attention";
    let shape = qkv[0].0.shape().to_vec();
    with_heads(OP, qkv, |dev, q, k, v| {
        let mut out = alloc(dev, OP, &[p.out_len()])?;
        let mut lse = alloc(dev, OP, &[p.lse_len()])?;
        katt::attention_forward(dev, p, q, k, v, &mut out, &mut lse)
            .map_err(cuda_err(OP, &shape))?;
        Ok([storage(dev, out), storage(dev, lse)])
    })
}

pub(crate) fn attention_backward(
    p: &Attention,
    qkv: Heads,
    [out, lse]: [&Tensor; 2],
    g: &Tensor,
    (len, views): (usize, [HeadsView; 3]),
) -> Result<Storage> {
    const OP: &str = "attention backward";
    let shape = qkv[0].0.shape().to_vec();
    with_heads(OP, qkv, |dev, q, k, v| {
        out.with_cuda(OP, |_, o| {
            lse.with_cuda(OP, |_, l| {
                g.with_cuda(OP, |_, dy| {
                    let mut buf = alloc(dev, OP, &[len])?;
                    katt::attention_backward(dev, p, q, k, v, o, l, dy, &mut buf, views)
                        .map_err(cuda_err(OP, &shape))?;
                    Ok(storage(dev, buf))
                })
            })
        })
    })
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

pub(crate) fn na_forward(p: &Na2d, qkv: Heads, rpb: Option<&Tensor>) -> Result<[Storage; 2]> {
    const OP: &str = "neighborhood_attention_2d";
    let shape = qkv[0].0.shape().to_vec();
    with_heads(OP, qkv, |dev, q, k, v| {
        let mut out = alloc(dev, OP, &[p.out_len()])?;
        let mut attn = alloc(dev, OP, &[p.attn_len()])?;
        with_rpb(OP, rpb, |r| {
            na2d_forward(dev, p, q, k, v, r, &mut out, Some(&mut attn))
                .map_err(cuda_err(OP, &shape))
        })?;
        Ok([storage(dev, out), storage(dev, attn)])
    })
}

pub(crate) fn na_backward(
    p: &Na2d,
    qkv: Heads,
    attn: &Tensor,
    g: &Tensor,
    (len, views): (usize, [HeadsView; 3]),
    with_rpb: bool,
) -> Result<(Storage, Option<Storage>)> {
    const OP: &str = "neighborhood_attention_2d backward";
    let shape = qkv[0].0.shape().to_vec();
    with_heads(OP, qkv, |dev, q, k, v| {
        attn.with_cuda(OP, |_, a| {
            g.with_cuda(OP, |_, dy| {
                let mut buf = alloc(dev, OP, &[len])?;
                let mut d_rpb = match with_rpb {
                    true => Some(alloc(dev, OP, &[p.rpb_len()])?),
                    false => None,
                };
                na2d_backward(dev, p, q, k, v, a, dy, &mut buf, views, d_rpb.as_mut())
                    .map_err(cuda_err(OP, &shape))?;
                Ok((storage(dev, buf), d_rpb.map(|d| storage(dev, d))))
            })
        })
    })
}
