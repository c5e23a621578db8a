//! Fast f32 2-D neighborhood attention forward, version 1: fused logits + bias + softmax + weighted
//! sum of V, one task per (batch, head, tile of ROW_TILE query rows), the key rows of the tile's
//! halo transposed once per task and reused by every query row of the tile (they stay in L2).
//! Vectorised over queries for the logits (blocks.rs) and over the head dim for the weighted sum.
//! Checked against `neighborhood_attention_2d_forward_reference` (reference.rs) in tests.rs.

use rayon::prelude::*;

use super::blocks::{
    store_tile, weighted_sum_strided, ColumnPlan, SharedMut, Strided, Transposed, ROW_TILE,
};
use super::logits::{chunk_logits, softmax_lanes, RowInputs};
use super::simd::{Portable, Simd};
use super::{HeadsRef, HeadsView, Na2d};
use crate::cpu::isa::{self, Isa};

/// Fast f32 forward; same arguments and results as
/// [`neighborhood_attention_2d_forward_reference`](super::neighborhood_attention_2d_forward_reference).
pub fn neighborhood_attention_2d_forward(
    p: &Na2d,
    q: HeadsRef<f32>,
    k: HeadsRef<f32>,
    v: HeadsRef<f32>,
    rpb: Option<&[f32]>,
    out: &mut [f32],
    attn: &mut [f32],
) {
    forward_with(isa::active(), p, q, k, v, rpb, out, attn)
}

pub(super) struct FwdCtx<'a> {
    p: Na2d,
    q: HeadsRef<'a, f32>,
    k: HeadsRef<'a, f32>,
    v: HeadsRef<'a, f32>,
    rpb: Option<&'a [f32]>,
    out: SharedMut,
    attn: SharedMut,
    plan: ColumnPlan,
}

/// The forward on a chosen instruction set (tests run every available one).
pub(crate) fn forward_with(
    isa: Isa,
    p: &Na2d,
    q: HeadsRef<f32>,
    k: HeadsRef<f32>,
    v: HeadsRef<f32>,
    rpb: Option<&[f32]>,
    out: &mut [f32],
    attn: &mut [f32],
) {
    p.assert_inputs(&q, &k, &v, rpb);
    assert_eq!(
        out.len(),
        p.out_len(),
        "neighborhood attention: out length, {p:?}"
    );
    assert_eq!(
        attn.len(),
        p.attn_len(),
        "neighborhood attention: attn length, {p:?}"
    );
    let ctx = FwdCtx {
        p: *p,
        q,
        k,
        v,
        rpb,
        out: SharedMut(out.as_mut_ptr()),
        attn: SharedMut(attn.as_mut_ptr()),
        plan: ColumnPlan::new(p, lanes(isa)),
    };
    let tasks = p.batch * p.heads * p.height.div_ceil(ROW_TILE);
    (0..tasks).into_par_iter().for_each(|t| unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => task_avx512(&ctx, t),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => task_avx2(&ctx, t),
            _ => forward_task::<Portable>(&ctx, t),
        }
    });
}

pub(super) fn lanes(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 16,
        _ => 8,
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn task_avx512(ctx: &FwdCtx, t: usize) {
    forward_task::<super::simd::Avx512>(ctx, t)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn task_avx2(ctx: &FwdCtx, t: usize) {
    forward_task::<super::simd::Avx2>(ctx, t)
}

/// The range of key rows the windows of query rows i0..i1 touch.
pub(super) fn halo(p: &Na2d, i0: usize, i1: usize) -> (usize, usize) {
    let lo = (i0..i1).map(|i| p.row_window(i).first).min().unwrap();
    let hi = (i0..i1)
        .map(|i| {
            let w = p.row_window(i);
            w.first + (w.size - 1) * w.step
        })
        .max()
        .unwrap();
    (lo, hi)
}

/// This head's rpb rows from the row window's first bias row, and the table's row length.
pub(super) fn bias_rows<'a>(
    p: &Na2d,
    rpb: Option<&'a [f32]>,
    h: usize,
    bias_first: usize,
) -> Option<(&'a [f32], usize)> {
    let [rows, cols] = p.rpb_dims();
    rpb.map(|t| {
        (
            &t[(h * rows + bias_first) * cols..(h + 1) * rows * cols],
            cols,
        )
    })
}

#[inline(always)]
unsafe fn forward_task<S: Simd>(ctx: &FwdCtx, task: usize) {
    let p = &ctx.p;
    let plan = &ctx.plan;
    let tiles = p.height.div_ceil(ROW_TILE);
    let (bh, tile) = (task / tiles, task % tiles);
    let (b, h) = (bh / p.heads, bh % p.heads);
    let (i0, i1) = (tile * ROW_TILE, ((tile + 1) * ROW_TILE).min(p.height));
    let (d, kw, slots, lanes) = (p.head_dim, p.kernel_size[1], p.window_slots(), S::LANES);
    let (lo, hi) = halo(p, i0, i1);
    let mut kt = Transposed::new(lo, hi, d, p.width, lanes);
    let mut qt = Transposed::new(i0, i1 - 1, d, p.width, lanes);
    let mut tile_buf = vec![0.0f32; slots * lanes];
    // Offsets of the window rows in the [slot][lane] tile and in V (columns advance by strides).
    let wrows: Vec<usize> = (0..p.kernel_size[0]).map(|tr| tr * kw * lanes).collect();
    let mut vrows = Vec::with_capacity(p.kernel_size[0]);
    let out_view = HeadsView::contiguous(p.height, p.width, p.heads, d);
    let scale = p.scale as f32;
    let vcol = ctx.v.view.col;
    for i in i0..i1 {
        qt.fill::<S>(&ctx.q, b, i, h, &plan.order, scale);
        let rw = p.row_window(i);
        for tr in 0..rw.size {
            kt.fill::<S>(&ctx.k, b, rw.first + tr * rw.step, h, &plan.order, 1.0);
        }
        let krows: Vec<*const f32> = (0..rw.size)
            .map(|tr| kt.row(rw.first + tr * rw.step))
            .collect();
        vrows.clear();
        vrows.extend((0..rw.size).map(|tr| ctx.v.view.at(b, rw.first + tr * rw.step, 0, h)));
        let inputs = RowInputs {
            q: qt.row(i),
            k: &krows,
            stride: kt.stride,
            d,
            bias: bias_rows(p, ctx.rpb, h, rw.bias_first),
            kw,
        };
        let attn_row = ctx.attn.0.add(p.attn_index(b, h, 0, i, 0));
        let plane = p.width;
        for ch in &plan.chunks {
            let tp = tile_buf.as_mut_ptr();
            chunk_logits::<S>(&inputs, plan, ch, tp);
            let kwe = plan.windows[plan.order[ch.p0]].size;
            softmax_lanes::<S>(tp, rw.size, kwe, kw);
            store_tile::<S>(tp, attn_row, plane, plan, ch, rw.size, kw, slots);
            for u in 0..ch.count {
                let j = plan.order[ch.p0 + u];
                let cw = plan.windows[j];
                weighted_sum_strided::<S>(
                    d,
                    tp.add(u),
                    Strided {
                        rows: &wrows[..rw.size],
                        step: lanes as isize,
                    },
                    ctx.v.data.as_ptr().add(cw.first * vcol),
                    Strided {
                        rows: &vrows,
                        step: (cw.step * vcol) as isize,
                    },
                    cw.size,
                    1.0,
                    ctx.out.0.add(out_view.at(b, i, j, h)),
                );
            }
        }
    }
}
