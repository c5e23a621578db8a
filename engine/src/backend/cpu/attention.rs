//! Full and neighborhood attention on the CPU (kernels::cpu::{attention, neighborhood_attention}):
//! q, k, v read in place through their views; the gradients written into one buffer through
//! three views (fused dQKV or three blocks).

use super::{storage, CpuKernels};
use crate::backend::qkv::Heads;
use crate::kernels::attention::{Attention, HeadsGradsMut, HeadsRef, HeadsView};
use crate::kernels::neighborhood_attention::Na2d;
use crate::storage::Storage;
use crate::{Element, Tensor};

/// Calls `f` with q, k and v as the kernels read them.
fn with_heads<T: Element, R>(
    qkv: Heads,
    f: impl FnOnce(HeadsRef<T>, HeadsRef<T>, HeadsRef<T>) -> R,
) -> R {
    let [(q, vq), (k, vk), (v, vv)] = qkv;
    q.with_strided(|sq: &[T], _| {
        k.with_strided(|sk: &[T], _| {
            v.with_strided(|sv: &[T], _| {
                let r = |data, view| HeadsRef { data, view };
                f(r(sq, vq), r(sk, vk), r(sv, vv))
            })
        })
    })
}

fn grads_mut<T>(data: &mut [T], views: [HeadsView; 3]) -> HeadsGradsMut<'_, T> {
    HeadsGradsMut {
        data,
        dq: views[0],
        dk: views[1],
        dv: views[2],
    }
}

/// [out, lse]: out [batch, N, heads, head_dim], lse [batch, heads, N].
pub(crate) fn attention_forward<T: CpuKernels>(p: &Attention, qkv: Heads) -> [Storage; 2] {
    let mut out = T::alloc(p.out_len());
    let mut lse = vec![T::ZERO; p.lse_len()];
    with_heads(qkv, |q, k, v| {
        T::attention_forward(p, q, k, v, &mut out, &mut lse)
    });
    [storage(out), storage(lse)]
}

/// dQ, dK, dV from q, k, v, the saved [out, lse] and dy.
pub(crate) fn attention_backward<T: CpuKernels>(
    p: &Attention,
    qkv: Heads,
    [out, lse]: [&Tensor; 2],
    g: &Tensor,
    (len, views): (usize, [HeadsView; 3]),
) -> Storage {
    let mut buf = T::alloc(len);
    with_heads(qkv, |q, k, v| {
        out.with_contiguous(|o: &[T]| {
            lse.with_contiguous(|l: &[T]| {
                g.with_contiguous(|dy: &[T]| {
                    let grads = grads_mut(&mut buf, views);
                    T::attention_backward(p, q, k, v, o, l, dy, grads);
                })
            })
        })
    });
    storage(buf)
}

/// [out, attn]: out [batch, H, W, heads, head_dim], attn as `Na2d::attn_index` lays it out.
pub(crate) fn na_forward<T: CpuKernels>(
    p: &Na2d,
    qkv: Heads,
    rpb: Option<&Tensor>,
) -> [Storage; 2] {
    let rpb_values: Option<Vec<T>> = rpb.map(|r| r.with_contiguous(|s: &[T]| s.to_vec()));
    let mut out = T::alloc(p.out_len());
    let mut attn = T::alloc(p.attn_len());
    with_heads(qkv, |q, k, v| {
        T::na_forward(p, q, k, v, rpb_values.as_deref(), &mut out, &mut attn)
    });
    [storage(out), storage(attn)]
}

/// dQ, dK, dV (and d(rpb) `with_rpb`) from q, k, v, the saved attn and dy.
pub(crate) fn na_backward<T: CpuKernels>(
    p: &Na2d,
    qkv: Heads,
    attn: &Tensor,
    g: &Tensor,
    (len, views): (usize, [HeadsView; 3]),
    with_rpb: bool,
) -> (Storage, Option<Storage>) {
    let mut buf = T::alloc(len);
    let mut d_rpb = with_rpb.then(|| vec![T::ZERO; p.rpb_len()]);
    with_heads(qkv, |q, k, v| {
        attn.with_contiguous(|a: &[T]| {
            g.with_contiguous(|dy: &[T]| {
                let grads = grads_mut(&mut buf, views);
                T::na_backward(p, q, k, v, a, dy, grads, d_rpb.as_deref_mut());
            })
        })
    });
    (storage(buf), d_rpb.map(storage))
}
