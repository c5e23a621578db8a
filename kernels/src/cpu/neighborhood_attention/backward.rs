//! Fast f32 2-D neighborhood attention backward, version 1: no atomics, bitwise deterministic.
//!
//! Phase 1, one task per (batch, head, tile of ROW_TILE query rows): dA = dO V^T over the window
//! (the forward's vertical logits kernel with dO as queries and V as keys), D = sum A dA,
//! dS = A (dA - D) kept in a buffer of the shape of `attn`, dQ = s dS K, and a partial d(rpb)
//! table per task. Phase 2, one task per (batch, head, tile of key rows): dV and dK of each key
//! gathered over its inverse neighbourhood (window.rs), a fixed order per key. d(rpb) = the task
//! partials added in task order. Math: docs/neighborhood-attention.md, "Backward".

use rayon::prelude::*;

use super::blocks::{
    load_tile, store_tile, weighted_sum, weighted_sum_strided, ColumnPlan, Pattern, Scratch,
    SharedMut, Strided, Transposed, ROW_TILE,
};
use super::fused::{halo, lanes};
use super::logits::{chunk_logits, RowInputs};
use super::simd::{Portable, Simd};
use super::{inverse_window, HeadsGradsMut, HeadsRef, HeadsView, Na2d};
use crate::cpu::isa::{self, Isa};

/// Fast f32 backward; same arguments and results as
/// [`neighborhood_attention_2d_backward_reference`](super::neighborhood_attention_2d_backward_reference).
pub fn neighborhood_attention_2d_backward(
    p: &Na2d,
    q: HeadsRef<f32>,
    k: HeadsRef<f32>,
    v: HeadsRef<f32>,
    attn: &[f32],
    d_out: &[f32],
    grads: HeadsGradsMut<f32>,
    d_rpb: Option<&mut [f32]>,
) {
    backward_with(isa::active(), p, q, k, v, attn, d_out, grads, d_rpb)
}

struct BwdCtx<'a> {
    p: Na2d,
    q: HeadsRef<'a, f32>,
    k: HeadsRef<'a, f32>,
    v: HeadsRef<'a, f32>,
    attn: &'a [f32],
    d_out: HeadsRef<'a, f32>,
    /// dS, shape of attn; phase 1 writes it, phase 2 reads it.
    ds: SharedMut,
    g: SharedMut,
    dq: HeadsView,
    dk: HeadsView,
    dv: HeadsView,
    plan: ColumnPlan,
    with_rpb: bool,
}

/// The backward on a chosen instruction set (tests run every available one).
pub(crate) fn backward_with(
    isa: Isa,
    p: &Na2d,
    q: HeadsRef<f32>,
    k: HeadsRef<f32>,
    v: HeadsRef<f32>,
    attn: &[f32],
    d_out: &[f32],
    grads: HeadsGradsMut<f32>,
    d_rpb: Option<&mut [f32]>,
) {
    p.assert_inputs(&q, &k, &v, None);
    assert_eq!(
        attn.len(),
        p.attn_len(),
        "neighborhood attention: attn length, {p:?}"
    );
    assert_eq!(
        d_out.len(),
        p.out_len(),
        "neighborhood attention: d_out length, {p:?}"
    );
    grads.assert_disjoint(p.dims());
    if let Some(t) = &d_rpb {
        assert_eq!(
            t.len(),
            p.rpb_len(),
            "neighborhood attention: d_rpb length, {p:?}"
        );
    }
    // Every slot of every query is written in phase 1 before phase 2 reads it.
    let mut ds = Scratch::new(p.attn_len());
    let table = p.rpb_dims()[0] * p.rpb_dims()[1];
    let ctx = BwdCtx {
        p: *p,
        q,
        k,
        v,
        attn,
        d_out: HeadsRef {
            data: d_out,
            view: HeadsView::contiguous(p.height, p.width, p.heads, p.head_dim),
        },
        ds: SharedMut(ds.as_mut_ptr()),
        g: SharedMut(grads.data.as_mut_ptr()),
        dq: grads.dq,
        dk: grads.dk,
        dv: grads.dv,
        plan: ColumnPlan::new(p, lanes(isa)),
        with_rpb: d_rpb.is_some(),
    };
    let tasks = p.batch * p.heads * p.height.div_ceil(ROW_TILE);
    let part_len = if ctx.with_rpb { table } else { 1 };
    let mut partials = vec![0.0f32; tasks * part_len];
    partials
        .par_chunks_mut(part_len)
        .enumerate()
        .for_each(|(t, part)| unsafe {
            match isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => queries_avx512(&ctx, t, part),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2Fma => queries_avx2(&ctx, t, part),
                _ => query_task::<Portable>(&ctx, t, part),
            }
        });
    (0..tasks).into_par_iter().for_each(|t| unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => keys_avx512(&ctx, t),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => keys_avx2(&ctx, t),
            _ => key_task::<Portable>(&ctx, t),
        }
    });
    if let Some(t) = d_rpb {
        // Fixed order: per head, batches then row tiles.
        let tiles = p.height.div_ceil(ROW_TILE);
        for (h, th) in t.chunks_mut(table).enumerate() {
            th.fill(0.0);
            for b in 0..p.batch {
                for tile in 0..tiles {
                    let part = &partials[((b * p.heads + h) * tiles + tile) * table..][..table];
                    for (x, &y) in th.iter_mut().zip(part) {
                        *x += y;
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn queries_avx512(ctx: &BwdCtx, t: usize, part: &mut [f32]) {
    query_task::<super::simd::Avx512>(ctx, t, part)
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn queries_avx2(ctx: &BwdCtx, t: usize, part: &mut [f32]) {
    query_task::<super::simd::Avx2>(ctx, t, part)
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn keys_avx512(ctx: &BwdCtx, t: usize) {
    key_task::<super::simd::Avx512>(ctx, t)
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn keys_avx2(ctx: &BwdCtx, t: usize) {
    key_task::<super::simd::Avx2>(ctx, t)
}

/// Phase 1 for query rows of one tile: dS (into ctx.ds), dQ, and this task's d(rpb) partial.
#[inline(always)]
unsafe fn query_task<S: Simd>(ctx: &BwdCtx, task: usize, part: &mut [f32]) {
    let p = &ctx.p;
    let plan = &ctx.plan;
    let tiles = p.height.div_ceil(ROW_TILE);
    let (bh, tile) = (task / tiles, task % tiles);
    let (b, h) = (bh / p.heads, bh % p.heads);
    let (i0, i1) = (tile * ROW_TILE, ((tile + 1) * ROW_TILE).min(p.height));
    let (d, kw, slots, lanes) = (p.head_dim, p.kernel_size[1], p.window_slots(), S::LANES);
    let bias_cols = p.rpb_dims()[1];
    let (lo, hi) = halo(p, i0, i1);
    let mut vt = Transposed::new(lo, hi, d, p.width, lanes);
    let mut dot = Transposed::new(i0, i1 - 1, d, p.width, lanes);
    let mut tile_buf = vec![0.0f32; slots * lanes];
    let mut a_buf = vec![0.0f32; slots * lanes];
    let wrows: Vec<usize> = (0..p.kernel_size[0]).map(|tr| tr * kw * lanes).collect();
    let mut krows_off = Vec::with_capacity(p.kernel_size[0]);
    let kcol = ctx.k.view.col;
    let s = p.scale as f32;
    part.fill(0.0);
    for i in i0..i1 {
        dot.fill::<S>(&ctx.d_out, b, i, h, &plan.order, 1.0);
        let rw = p.row_window(i);
        for tr in 0..rw.size {
            vt.fill::<S>(&ctx.v, b, rw.first + tr * rw.step, h, &plan.order, 1.0);
        }
        let vrows: Vec<*const f32> = (0..rw.size)
            .map(|tr| vt.row(rw.first + tr * rw.step))
            .collect();
        krows_off.clear();
        krows_off.extend((0..rw.size).map(|tr| ctx.k.view.at(b, rw.first + tr * rw.step, 0, h)));
        let inputs = RowInputs {
            q: dot.row(i),
            k: &vrows,
            stride: vt.stride,
            d,
            bias: None,
            kw,
        };
        let plane = p.width;
        let row_at = p.attn_index(b, h, 0, i, 0);
        for ch in &plan.chunks {
            let tp = tile_buf.as_mut_ptr();
            chunk_logits::<S>(&inputs, plan, ch, tp);
            let kwe = plan.windows[plan.order[ch.p0]].size;
            // A into the [slot][lane] layout of dA (lanes past count keep stale finite values:
            // their results are never written out).
            let ab = a_buf.as_mut_ptr();
            load_tile::<S>(
                ctx.attn.as_ptr().add(row_at),
                plane,
                plan,
                ch,
                rw.size,
                kw,
                ab,
            );
            // D = sum A dA; dS = A (dA - D), vertical over lanes.
            let mut big_d = S::zero();
            for tr in 0..rw.size {
                for tc in 0..kwe {
                    let o = (tr * kw + tc) * lanes;
                    big_d = S::fma(S::load(ab.add(o)), S::load(tp.add(o)), big_d);
                }
            }
            for tr in 0..rw.size {
                for tc in 0..kwe {
                    let o = (tr * kw + tc) * lanes;
                    S::store(
                        tp.add(o),
                        S::mul(S::load(ab.add(o)), S::sub(S::load(tp.add(o)), big_d)),
                    );
                }
            }
            store_tile::<S>(
                tp,
                ctx.ds.0.add(row_at),
                plane,
                plan,
                ch,
                rw.size,
                kw,
                slots,
            );
            // d(rpb) partial. Interior lanes share every relative offset: one lane sum per slot
            // (adding lane by lane would chain every add through the same table entry).
            if ctx.with_rpb && ch.interior {
                let cb = plan.windows[plan.order[ch.p0]].bias_first;
                for tr in 0..rw.size {
                    let prow = (rw.bias_first + tr) * bias_cols + cb;
                    for tc in 0..kwe {
                        part[prow + tc] += S::hsum(S::load(tp.add((tr * kw + tc) * lanes)));
                    }
                }
            }
            for u in 0..ch.count {
                let j = plan.order[ch.p0 + u];
                let cw = plan.windows[j];
                if ctx.with_rpb && !ch.interior {
                    for tr in 0..rw.size {
                        let prow = (rw.bias_first + tr) * bias_cols + cw.bias_first;
                        for tc in 0..cw.size {
                            part[prow + tc] += *tp.add((tr * kw + tc) * lanes + u);
                        }
                    }
                }
                weighted_sum_strided::<S>(
                    d,
                    tp.add(u),
                    Strided {
                        rows: &wrows[..rw.size],
                        step: lanes as isize,
                    },
                    ctx.k.data.as_ptr().add(cw.first * kcol),
                    Strided {
                        rows: &krows_off,
                        step: (cw.step * kcol) as isize,
                    },
                    cw.size,
                    s,
                    ctx.g.0.add(ctx.dq.at(b, i, j, h)),
                );
            }
        }
    }
}

/// Phase 2 for key rows of one tile: dV = sum A dO and dK = s sum dS Q over the queries that see
/// each key (inverse neighbourhood; the key's slot in each query's window from its window start).
/// Offsets split into a row part and a column part, so each key is two `weighted_sum` calls.
#[inline(always)]
unsafe fn key_task<S: Simd>(ctx: &BwdCtx, task: usize) {
    let p = &ctx.p;
    let tiles = p.height.div_ceil(ROW_TILE);
    let (bh, tile) = (task / tiles, task % tiles);
    let (b, h) = (bh / p.heads, bh % p.heads);
    let (a0, a1) = (tile * ROW_TILE, ((tile + 1) * ROW_TILE).min(p.height));
    let (d, kw) = (p.head_dim, p.kernel_size[1]);
    let plane = p.width;
    let [kh_n, kw_n] = p.kernel_size;
    let [dh, dw] = p.dilation;
    let s = p.scale as f32;
    // Per key column: the (query column j, slot column tc) pairs, as offsets.
    let (mut wcol, mut docol, mut qcol, mut col_at) = (Vec::new(), Vec::new(), Vec::new(), vec![0]);
    let mut col_step = Vec::with_capacity(p.width);
    for c in 0..p.width {
        let ic = inverse_window(c, p.width, kw_n, dw);
        for uj in 0..ic.count {
            let j = ic.first + uj * ic.step;
            wcol.push((c - ctx.plan.windows[j].first) / dw * plane + j);
            docol.push(j * ctx.d_out.view.col);
            qcol.push(j * ctx.q.view.col);
        }
        col_at.push(wcol.len());
        // Unclamped query columns: the slot column falls by one as j grows by dw, so the weight
        // offsets are an arithmetic progression (step dw - W) and the strided kernel applies.
        let w = &wcol[col_at[c]..];
        let step = if w.len() > 1 {
            w[1] as isize - w[0] as isize
        } else {
            0
        };
        let arithmetic = w.windows(2).all(|x| x[1] as isize - x[0] as isize == step);
        col_step.push(arithmetic.then_some(step));
    }
    let (mut wrow, mut dorow, mut qrow) = (Vec::new(), Vec::new(), Vec::new());
    let ds = ctx.ds.0 as *const f32;
    for a in a0..a1 {
        let ir = inverse_window(a, p.height, kh_n, dh);
        wrow.clear();
        dorow.clear();
        qrow.clear();
        for ui in 0..ir.count {
            let i = ir.first + ui * ir.step;
            let tr = (a - p.row_window(i).first) / dh;
            wrow.push(p.attn_index(b, h, tr * kw, i, 0));
            dorow.push(ctx.d_out.view.at(b, i, 0, h));
            qrow.push(ctx.q.view.at(b, i, 0, h));
        }
        for c in 0..p.width {
            let cols = col_at[c]..col_at[c + 1];
            if let Some(wstep) = col_step[c] {
                let (n, c0) = (cols.len(), cols.start);
                let (vstep_do, vstep_q) = (
                    (dw * ctx.d_out.view.col) as isize,
                    (dw * ctx.q.view.col) as isize,
                );
                let wp = Strided {
                    rows: &wrow,
                    step: wstep,
                };
                weighted_sum_strided::<S>(
                    d,
                    ctx.attn.as_ptr().add(wcol[c0]),
                    wp,
                    ctx.d_out.data.as_ptr().add(docol[c0]),
                    Strided {
                        rows: &dorow,
                        step: vstep_do,
                    },
                    n,
                    1.0,
                    ctx.g.0.add(ctx.dv.at(b, a, c, h)),
                );
                weighted_sum_strided::<S>(
                    d,
                    ds.add(wcol[c0]),
                    wp,
                    ctx.q.data.as_ptr().add(qcol[c0]),
                    Strided {
                        rows: &qrow,
                        step: vstep_q,
                    },
                    n,
                    s,
                    ctx.g.0.add(ctx.dk.at(b, a, c, h)),
                );
                continue;
            }
            let wp = Pattern {
                rows: &wrow,
                cols: &wcol[cols.clone()],
            };
            weighted_sum::<S>(
                d,
                ctx.attn.as_ptr(),
                wp,
                ctx.d_out.data.as_ptr(),
                Pattern {
                    rows: &dorow,
                    cols: &docol[cols.clone()],
                },
                1.0,
                ctx.g.0.add(ctx.dv.at(b, a, c, h)),
            );
            weighted_sum::<S>(
                d,
                ds,
                wp,
                ctx.q.data.as_ptr(),
                Pattern {
                    rows: &qrow,
                    cols: &qcol[cols],
                },
                s,
                ctx.g.0.add(ctx.dk.at(b, a, c, h)),
            );
        }
    }
}
