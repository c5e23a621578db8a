//! Fast f32 full self-attention backward, version 1 (flash style: P recomputed from the saved
//! log-sum-exp, no N x N buffer, no atomics).
//!
//! Pass A, one task per (batch, head, query tile): D = rowsum(dO * O); for each key tile
//! P = exp(s Q K^T - lse), dP = dO V^T, dS = P (dP - D), dQ += s dS K.
//! Pass B, one task per (batch, head, key tile): for each query tile (fixed order) the same P and
//! dS, then dV += P^T dO and dK += s dS^T Q for the tile's keys only. Each gradient row is summed
//! by one task in a fixed order: bitwise deterministic for any thread count. Math: docs/attention.md.

use rayon::prelude::*;

use super::flash::{logits_block, row_exp, transpose_tokens, KEY_TILE, QUERY_TILE};
use super::{Attention, HeadsGradsMut, HeadsRef, HeadsView};
use crate::cpu::isa::{self, Isa};
use crate::cpu::neighborhood_attention::blocks::{weighted_sum, Pattern, SharedMut};
use crate::cpu::neighborhood_attention::simd::{Portable, Simd};

/// Keys per pass-B task.
const KEY_TASK: usize = 64;

/// Fast f32 backward; same arguments and results as
/// [`attention_backward_reference`](super::attention_backward_reference).
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    p: &Attention,
    q: HeadsRef<f32>,
    k: HeadsRef<f32>,
    v: HeadsRef<f32>,
    out: &[f32],
    lse: &[f32],
    d_out: &[f32],
    grads: HeadsGradsMut<f32>,
) {
    backward_with(isa::active(), p, q, k, v, out, lse, d_out, grads)
}

struct BwdCtx<'a> {
    p: Attention,
    q: HeadsRef<'a, f32>,
    k: HeadsRef<'a, f32>,
    v: HeadsRef<'a, f32>,
    out: &'a [f32],
    lse: &'a [f32],
    d_out: HeadsRef<'a, f32>,
    /// D = rowsum(dO * O), `[B, heads, N]`: pass A writes, pass B reads.
    big_d: SharedMut,
    g: SharedMut,
    dq: HeadsView,
    dk: HeadsView,
    dv: HeadsView,
}

/// The backward on a chosen instruction set (tests run every available one).
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_with(
    isa: Isa,
    p: &Attention,
    q: HeadsRef<f32>,
    k: HeadsRef<f32>,
    v: HeadsRef<f32>,
    out: &[f32],
    lse: &[f32],
    d_out: &[f32],
    grads: HeadsGradsMut<f32>,
) {
    p.assert_inputs(&q, &k, &v);
    assert_eq!(out.len(), p.out_len(), "attention: out length, {p:?}");
    assert_eq!(lse.len(), p.lse_len(), "attention: lse length, {p:?}");
    assert_eq!(d_out.len(), p.out_len(), "attention: d_out length, {p:?}");
    grads.assert_disjoint(p.dims());
    let mut big_d = vec![0.0f32; p.lse_len()];
    let ctx = BwdCtx {
        p: *p,
        q,
        k,
        v,
        out,
        lse,
        d_out: HeadsRef {
            data: d_out,
            view: p.out_view(),
        },
        big_d: SharedMut(big_d.as_mut_ptr()),
        g: SharedMut(grads.data.as_mut_ptr()),
        dq: grads.dq,
        dk: grads.dk,
        dv: grads.dv,
    };
    let bh = p.batch * p.heads;
    (0..bh * p.tokens.div_ceil(QUERY_TILE))
        .into_par_iter()
        .for_each(|t| unsafe {
            match isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => queries_avx512(&ctx, t),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2Fma => queries_avx2(&ctx, t),
                _ => query_task::<Portable>(&ctx, t),
            }
        });
    (0..bh * p.tokens.div_ceil(KEY_TASK))
        .into_par_iter()
        .for_each(|t| unsafe {
            match isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => keys_avx512(&ctx, t),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2Fma => keys_avx2(&ctx, t),
                _ => key_task::<Portable>(&ctx, t),
            }
        });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn queries_avx512(ctx: &BwdCtx, t: usize) {
    query_task::<crate::cpu::neighborhood_attention::simd::Avx512>(ctx, t)
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn queries_avx2(ctx: &BwdCtx, t: usize) {
    query_task::<crate::cpu::neighborhood_attention::simd::Avx2>(ctx, t)
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn keys_avx512(ctx: &BwdCtx, t: usize) {
    key_task::<crate::cpu::neighborhood_attention::simd::Avx512>(ctx, t)
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn keys_avx2(ctx: &BwdCtx, t: usize) {
    key_task::<crate::cpu::neighborhood_attention::simd::Avx2>(ctx, t)
}

/// For `rows` rows of `cols` columns (row stride ld) of recomputed logits in `s` and dP in `dp`:
/// s <- P = exp(s - lse[r]); dp <- dS = P (dP - D[r]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn probabilities_and_ds<S: Simd>(
    s: *mut f32,
    dp: *mut f32,
    ld: usize,
    rows: usize,
    cols: usize,
    lse: &[f32],
    big_d: *const f32,
) {
    let l = S::LANES;
    for (r, &m) in lse.iter().enumerate().take(rows) {
        let (sr, dr) = (s.add(r * ld), dp.add(r * ld));
        row_exp::<S>(sr, cols, m);
        let dv = S::splat(*big_d.add(r));
        let mut t = 0;
        while t + l <= cols {
            let pv = S::load(sr.add(t));
            S::store(dr.add(t), S::mul(pv, S::sub(S::load(dr.add(t)), dv)));
            t += l;
        }
        for t in t..cols {
            *dr.add(t) = *sr.add(t) * (*dr.add(t) - *big_d.add(r));
        }
    }
}

/// Pass A: D and dQ for one query tile.
#[inline(always)]
unsafe fn query_task<S: Simd>(ctx: &BwdCtx, task: usize) {
    let p = &ctx.p;
    let (n, d) = (p.tokens, p.head_dim);
    let tiles = n.div_ceil(QUERY_TILE);
    let (bh, tile) = (task / tiles, task % tiles);
    let (b, h) = (bh / p.heads, bh % p.heads);
    let q0 = tile * QUERY_TILE;
    let qn = QUERY_TILE.min(n - q0);
    let scale = p.scale as f32;
    let ov = p.out_view();
    let big_d = ctx.big_d.0.add(bh * n + q0);
    for r in 0..qn {
        let (go, o) = (
            &ctx.d_out.data[ov.at(b, 0, q0 + r, h)..][..d],
            &ctx.out[ov.at(b, 0, q0 + r, h)..][..d],
        );
        *big_d.add(r) = go.iter().zip(o).map(|(a, b)| a * b).sum();
    }
    let kt = transpose_tokens::<S>(&ctx.k, b, h, 0, n, d);
    let vt = transpose_tokens::<S>(&ctx.v, b, h, 0, n, d);
    let mut s_buf = vec![0.0f32; QUERY_TILE * KEY_TILE];
    let mut dp_buf = vec![0.0f32; QUERY_TILE * KEY_TILE];
    let mut dq_acc = vec![0.0f32; qn * d];
    let mut tmp = vec![0.0f32; d];
    let iota: Vec<usize> = (0..KEY_TILE).collect();
    let kcols: Vec<usize> = (0..n).map(|t| t * ctx.k.view.col).collect();
    let kbase = [ctx.k.view.at(b, 0, 0, h)];
    let qp = ctx.q.data.as_ptr().add(ctx.q.view.at(b, 0, q0, h));
    let dop = ctx.d_out.data.as_ptr().add(ov.at(b, 0, q0, h));
    let lse = &ctx.lse[bh * n + q0..][..qn];
    let mut k0 = 0;
    while k0 < n {
        let kn = KEY_TILE.min(n - k0);
        let (sp, dpp) = (s_buf.as_mut_ptr(), dp_buf.as_mut_ptr());
        logits_block::<S>(
            qp,
            ctx.q.view.col,
            qn,
            kt.row(0).add(k0),
            kt.stride,
            kn,
            d,
            scale,
            sp,
            KEY_TILE,
        );
        logits_block::<S>(
            dop,
            ov.col,
            qn,
            vt.row(0).add(k0),
            vt.stride,
            kn,
            d,
            1.0,
            dpp,
            KEY_TILE,
        );
        probabilities_and_ds::<S>(sp, dpp, KEY_TILE, qn, kn, lse, big_d);
        for r in 0..qn {
            weighted_sum::<S>(
                d,
                dpp.add(r * KEY_TILE),
                Pattern {
                    rows: &[0],
                    cols: &iota[..kn],
                },
                ctx.k.data.as_ptr(),
                Pattern {
                    rows: &kbase,
                    cols: &kcols[k0..k0 + kn],
                },
                1.0,
                tmp.as_mut_ptr(),
            );
            for (x, &t) in dq_acc[r * d..][..d].iter_mut().zip(&tmp) {
                *x += t;
            }
        }
        k0 += kn;
    }
    for r in 0..qn {
        let o = ctx.g.0.add(ctx.dq.at(b, 0, q0 + r, h));
        for (e, &x) in dq_acc[r * d..][..d].iter().enumerate() {
            *o.add(e) = scale * x;
        }
    }
}

/// Pass B: dK and dV for one key tile, summed over query tiles in order.
#[inline(always)]
unsafe fn key_task<S: Simd>(ctx: &BwdCtx, task: usize) {
    let p = &ctx.p;
    let (n, d) = (p.tokens, p.head_dim);
    let tiles = n.div_ceil(KEY_TASK);
    let (bh, tile) = (task / tiles, task % tiles);
    let (b, h) = (bh / p.heads, bh % p.heads);
    let k0 = tile * KEY_TASK;
    let kn = KEY_TASK.min(n - k0);
    let scale = p.scale as f32;
    let ov = p.out_view();
    let kt = transpose_tokens::<S>(&ctx.k, b, h, k0, kn, d);
    let vt = transpose_tokens::<S>(&ctx.v, b, h, k0, kn, d);
    const QB: usize = 2 * QUERY_TILE;
    let mut s_buf = vec![0.0f32; QB * KEY_TASK];
    let mut dp_buf = vec![0.0f32; QB * KEY_TASK];
    let (mut dk_acc, mut dv_acc) = (vec![0.0f32; kn * d], vec![0.0f32; kn * d]);
    let mut tmp = vec![0.0f32; d];
    let wq: Vec<usize> = (0..QB).map(|r| r * KEY_TASK).collect();
    let qcols: Vec<usize> = (0..n).map(|t| t * ctx.q.view.col).collect();
    let docols: Vec<usize> = (0..n).map(|t| t * ov.col).collect();
    let qbase = [ctx.q.view.at(b, 0, 0, h)];
    let dobase = [ov.at(b, 0, 0, h)];
    let mut q0 = 0;
    while q0 < n {
        let qn = QB.min(n - q0);
        let (sp, dpp) = (s_buf.as_mut_ptr(), dp_buf.as_mut_ptr());
        let qp = ctx.q.data.as_ptr().add(ctx.q.view.at(b, 0, q0, h));
        let dop = ctx.d_out.data.as_ptr().add(ov.at(b, 0, q0, h));
        logits_block::<S>(
            qp,
            ctx.q.view.col,
            qn,
            kt.row(0),
            kt.stride,
            kn,
            d,
            scale,
            sp,
            KEY_TASK,
        );
        logits_block::<S>(
            dop,
            ov.col,
            qn,
            vt.row(0),
            vt.stride,
            kn,
            d,
            1.0,
            dpp,
            KEY_TASK,
        );
        let lse = &ctx.lse[bh * n + q0..][..qn];
        probabilities_and_ds::<S>(sp, dpp, KEY_TASK, qn, kn, lse, ctx.big_d.0.add(bh * n + q0));
        for kk in 0..kn {
            let wp = Pattern {
                rows: &[kk],
                cols: &wq[..qn],
            };
            weighted_sum::<S>(
                d,
                sp,
                wp,
                ctx.d_out.data.as_ptr(),
                Pattern {
                    rows: &dobase,
                    cols: &docols[q0..q0 + qn],
                },
                1.0,
                tmp.as_mut_ptr(),
            );
            for (x, &t) in dv_acc[kk * d..][..d].iter_mut().zip(&tmp) {
                *x += t;
            }
            weighted_sum::<S>(
                d,
                dpp,
                wp,
                ctx.q.data.as_ptr(),
                Pattern {
                    rows: &qbase,
                    cols: &qcols[q0..q0 + qn],
                },
                1.0,
                tmp.as_mut_ptr(),
            );
            for (x, &t) in dk_acc[kk * d..][..d].iter_mut().zip(&tmp) {
                *x += t;
            }
        }
        q0 += qn;
    }
    for kk in 0..kn {
        let (dkp, dvp) = (
            ctx.g.0.add(ctx.dk.at(b, 0, k0 + kk, h)),
            ctx.g.0.add(ctx.dv.at(b, 0, k0 + kk, h)),
        );
        for e in 0..d {
            *dkp.add(e) = scale * dk_acc[kk * d + e];
            *dvp.add(e) = dv_acc[kk * d + e];
        }
    }
}
