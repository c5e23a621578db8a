//! Fast f32 full self-attention backward, version 1 (flash style: P recomputed from the saved
//! log-sum-exp, no N x N buffer, no atomics).
//!
//! Pass A, one task per (batch, head, query tile): D = rowsum(dO * O); for each key tile
//! P = exp(s Q K^T - lse), dP = dO V^T, dS = P (dP - D), dQ += s dS K.
//! Pass B, one task per (batch, head, key tile): for each query tile (fixed order) the same P and
//! dS, then dV += P^T dO and dK += s dS^T Q for the tile's keys only. Each gradient row is summed
//! by one task in a fixed order: bitwise deterministic for any thread count. Math: docs/attention.md.

use rayon::prelude::*;

use super::flash::{
    logits_block, row_exp, rows_times_matrix, transpose_tokens, KEY_TILE, QUERY_TILE,
};
use super::{Attention, HeadsGradsMut, HeadsRef, HeadsView};
use crate::cpu::isa::{self, Isa};
use crate::cpu::neighborhood_attention::blocks::SharedMut;
use crate::cpu::neighborhood_attention::simd::{Portable, Simd};

/// Keys per pass-B task.
const KEY_TASK: usize = 64;

/// Fast f32 backward; same arguments and results as
/// [`attention_backward_reference`](super::attention_backward_reference).
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
    let mut tmp = vec![0.0f32; qn * d];
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
        let kp = ctx.k.data.as_ptr().add(ctx.k.view.at(b, 0, k0, h));
        rows_times_matrix::<S>(
            dpp,
            KEY_TILE,
            qn,
            kn,
            kp,
            ctx.k.view.col,
            d,
            tmp.as_mut_ptr(),
        );
        for (x, &t) in dq_acc.iter_mut().zip(tmp.iter()) {
            *x += t;
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

/// Pass B: dK and dV for one key tile, summed over query tiles in order. Works on the transposed
/// tiles S^T, dP^T (keys as rows, queries along the vectors; Q and dO transposed once per task),
/// so the weights of one key are contiguous for the weighted sums dV += P^T dO, dK += dS^T Q.
#[inline(always)]
unsafe fn key_task<S: Simd>(ctx: &BwdCtx, task: usize) {
    let p = &ctx.p;
    let (n, d, l) = (p.tokens, p.head_dim, S::LANES);
    let tiles = n.div_ceil(KEY_TASK);
    let (bh, tile) = (task / tiles, task % tiles);
    let (b, h) = (bh / p.heads, bh % p.heads);
    let k0 = tile * KEY_TASK;
    let kn = KEY_TASK.min(n - k0);
    let scale = p.scale as f32;
    let ov = p.out_view();
    let qt = transpose_tokens::<S>(&ctx.q, b, h, 0, n, d);
    let dot = transpose_tokens::<S>(&ctx.d_out, b, h, 0, n, d);
    const QB: usize = 2 * QUERY_TILE;
    let mut st = vec![0.0f32; KEY_TASK * QB];
    let mut dpt = vec![0.0f32; KEY_TASK * QB];
    let (mut dk_acc, mut dv_acc) = (vec![0.0f32; kn * d], vec![0.0f32; kn * d]);
    let mut tmp = vec![0.0f32; kn * d];
    let kp = ctx.k.data.as_ptr().add(ctx.k.view.at(b, 0, k0, h));
    let vp = ctx.v.data.as_ptr().add(ctx.v.view.at(b, 0, k0, h));
    let (lse_all, big_d_all) = (
        &ctx.lse[bh * n..][..n],
        ctx.big_d.0.add(bh * n) as *const f32,
    );
    let mut q0 = 0;
    while q0 < n {
        let qn = QB.min(n - q0);
        let (sp, dpp) = (st.as_mut_ptr(), dpt.as_mut_ptr());
        logits_block::<S>(
            kp,
            ctx.k.view.col,
            kn,
            qt.row(0).add(q0),
            qt.stride,
            qn,
            d,
            scale,
            sp,
            QB,
        );
        logits_block::<S>(
            vp,
            ctx.v.view.col,
            kn,
            dot.row(0).add(q0),
            dot.stride,
            qn,
            d,
            1.0,
            dpp,
            QB,
        );
        // P^T = exp(S^T - lse[q]); dS^T = P^T (dP^T - D[q]); lse and D vary along the vectors.
        let (lse, big_d) = (lse_all.as_ptr().add(q0), big_d_all.add(q0));
        for kk in 0..kn {
            let (sr, dr) = (sp.add(kk * QB), dpp.add(kk * QB));
            let mut t = 0;
            while t + l <= qn {
                let pv = S::exp(S::sub(S::load(sr.add(t)), S::load(lse.add(t))));
                let ds = S::mul(pv, S::sub(S::load(dr.add(t)), S::load(big_d.add(t))));
                S::store(sr.add(t), pv);
                S::store(dr.add(t), ds);
                t += l;
            }
            if t < qn {
                // Tail: through a padded buffer, so no load reads past lse or D.
                let m = qn - t;
                let mut buf = [[0.0f32; 16]; 4];
                for (x, src) in buf.iter_mut().zip([sr as *const f32, dr, lse, big_d]) {
                    std::ptr::copy_nonoverlapping(src.add(t), x.as_mut_ptr(), m);
                }
                let pv = S::exp(S::sub(S::load(buf[0].as_ptr()), S::load(buf[2].as_ptr())));
                let ds = S::mul(
                    pv,
                    S::sub(S::load(buf[1].as_ptr()), S::load(buf[3].as_ptr())),
                );
                S::store(buf[0].as_mut_ptr(), pv);
                S::store(buf[1].as_mut_ptr(), ds);
                std::ptr::copy_nonoverlapping(buf[0].as_ptr(), sr.add(t), m);
                std::ptr::copy_nonoverlapping(buf[1].as_ptr(), dr.add(t), m);
            }
        }
        let qp = ctx.q.data.as_ptr().add(ctx.q.view.at(b, 0, q0, h));
        let dop = ctx.d_out.data.as_ptr().add(ov.at(b, 0, q0, h));
        rows_times_matrix::<S>(sp, QB, kn, qn, dop, ov.col, d, tmp.as_mut_ptr());
        for (x, &t) in dv_acc.iter_mut().zip(tmp.iter()) {
            *x += t;
        }
        rows_times_matrix::<S>(dpp, QB, kn, qn, qp, ctx.q.view.col, d, tmp.as_mut_ptr());
        for (x, &t) in dk_acc.iter_mut().zip(tmp.iter()) {
            *x += t;
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
