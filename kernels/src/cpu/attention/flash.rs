//! Fast f32 full self-attention forward, version 1 (flash style, O(N) memory).
//!
//! One task per (batch, head, tile of QUERY_TILE queries). K of that (batch, head) is transposed
//! once per task (`[head_dim][N]`), then for each tile of KEY_TILE keys: logits by a 4-query x
//! 2-vector register-blocked kernel (vectorised over keys), online softmax per query (running max
//! m, running sum l, the accumulator rescaled by exp(m_old - m_new)), and P V by the weighted-sum
//! kernel of neighborhood attention (vectorised over the head dim). Memory: O(QUERY_TILE x
//! KEY_TILE) per task. Checked against `attention_forward_reference` (reference.rs).

use rayon::prelude::*;

use super::{Attention, HeadsRef};
use crate::cpu::isa::{self, Isa};
use crate::cpu::neighborhood_attention::blocks::{
    weighted_sum_strided, SharedMut, Strided, Transposed,
};
use crate::cpu::neighborhood_attention::simd::{Portable, Simd};

/// Queries per task (forward and dQ pass).
pub(super) const QUERY_TILE: usize = 64;
/// Keys per inner tile (a multiple of 2 x 16 lanes).
pub(super) const KEY_TILE: usize = 128;

/// Fast f32 forward; same arguments and results as
/// [`attention_forward_reference`](super::attention_forward_reference).
pub fn attention_forward(
    p: &Attention,
    q: HeadsRef<f32>,
    k: HeadsRef<f32>,
    v: HeadsRef<f32>,
    out: &mut [f32],
    lse: &mut [f32],
) {
    forward_with(isa::active(), p, q, k, v, out, lse)
}

struct FwdCtx<'a> {
    p: Attention,
    q: HeadsRef<'a, f32>,
    k: HeadsRef<'a, f32>,
    v: HeadsRef<'a, f32>,
    out: SharedMut,
    lse: SharedMut,
}

/// The forward on a chosen instruction set (tests run every available one).
pub(crate) fn forward_with(
    isa: Isa,
    p: &Attention,
    q: HeadsRef<f32>,
    k: HeadsRef<f32>,
    v: HeadsRef<f32>,
    out: &mut [f32],
    lse: &mut [f32],
) {
    p.assert_inputs(&q, &k, &v);
    assert_eq!(out.len(), p.out_len(), "attention: out length, {p:?}");
    assert_eq!(lse.len(), p.lse_len(), "attention: lse length, {p:?}");
    let ctx = FwdCtx {
        p: *p,
        q,
        k,
        v,
        out: SharedMut(out.as_mut_ptr()),
        lse: SharedMut(lse.as_mut_ptr()),
    };
    let tasks = p.batch * p.heads * p.tokens.div_ceil(QUERY_TILE);
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn task_avx512(ctx: &FwdCtx, t: usize) {
    forward_task::<crate::cpu::neighborhood_attention::simd::Avx512>(ctx, t)
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn task_avx2(ctx: &FwdCtx, t: usize) {
    forward_task::<crate::cpu::neighborhood_attention::simd::Avx2>(ctx, t)
}

/// `[head_dim][tokens + LANES]` transposed copy of tokens `first..first + n` of (b, h).
#[inline(always)]
pub(super) unsafe fn transpose_tokens<S: Simd>(
    x: &HeadsRef<f32>,
    b: usize,
    h: usize,
    first: usize,
    n: usize,
    d: usize,
) -> Transposed {
    let order: Vec<usize> = (first..first + n).collect();
    let mut t = Transposed::new(0, 0, d, n, S::LANES);
    t.fill::<S>(x, b, 0, h, &order, 1.0);
    t
}

/// out[r * ldo + t] = scale * sum_c a[r * lda + c] * bt[c * ldb + t] for r < rows and t < n
/// rounded up to whole vectors (the extra columns are computed from bt's padding and ignored).
/// Register block: 4 rows x 2 vectors.
#[inline(always)]
pub(super) unsafe fn logits_block<S: Simd>(
    a: *const f32,
    lda: usize,
    rows: usize,
    bt: *const f32,
    ldb: usize,
    n: usize,
    d: usize,
    scale: f32,
    out: *mut f32,
    ldo: usize,
) {
    let l = S::LANES;
    let nv = n.div_ceil(l);
    let mut r0 = 0;
    while r0 < rows {
        let nr = (rows - r0).min(4);
        let mut v0 = 0;
        while v0 < nv {
            let nb = (nv - v0).min(2);
            let (ap, bp, op) = (a.add(r0 * lda), bt.add(v0 * l), out.add(r0 * ldo + v0 * l));
            match (nr, nb) {
                (4, 2) => mk::<S, 4, 2>(ap, lda, bp, ldb, d, scale, op, ldo),
                (3, 2) => mk::<S, 3, 2>(ap, lda, bp, ldb, d, scale, op, ldo),
                (2, 2) => mk::<S, 2, 2>(ap, lda, bp, ldb, d, scale, op, ldo),
                (1, 2) => mk::<S, 1, 2>(ap, lda, bp, ldb, d, scale, op, ldo),
                (4, _) => mk::<S, 4, 1>(ap, lda, bp, ldb, d, scale, op, ldo),
                (3, _) => mk::<S, 3, 1>(ap, lda, bp, ldb, d, scale, op, ldo),
                (2, _) => mk::<S, 2, 1>(ap, lda, bp, ldb, d, scale, op, ldo),
                _ => mk::<S, 1, 1>(ap, lda, bp, ldb, d, scale, op, ldo),
            }
            v0 += nb;
        }
        r0 += nr;
    }
}

#[inline(always)]
unsafe fn mk<S: Simd, const NR: usize, const NV: usize>(
    a: *const f32,
    lda: usize,
    bt: *const f32,
    ldb: usize,
    d: usize,
    scale: f32,
    out: *mut f32,
    ldo: usize,
) {
    let l = S::LANES;
    let mut acc = [[S::zero(); NV]; NR];
    for c in 0..d {
        let mut bv = [S::zero(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            *x = S::load(bt.add(c * ldb + v * l));
        }
        for (r, row) in acc.iter_mut().enumerate() {
            let av = S::splat(*a.add(r * lda + c));
            for (x, &y) in row.iter_mut().zip(&bv) {
                *x = S::fma(av, y, *x);
            }
        }
    }
    let k = S::splat(scale);
    for (r, row) in acc.iter().enumerate() {
        for (v, x) in row.iter().enumerate() {
            S::store(out.add(r * ldo + v * l), S::mul(*x, k));
        }
    }
}

/// out[r * d + c] = sum_t w[r * ldw + t] * x[t * ldx + c] for r < rows, c < d (written): a
/// (rows x inner) by (inner x d) product, the P V / dS K / P^T dO / dS^T Q of the flash kernels.
/// With d a multiple of LANES it is the register-blocked `logits_block` (4 rows share each load of
/// x); otherwise one weighted sum per row (no reads past a row's d values).
#[inline(always)]
pub(super) unsafe fn rows_times_matrix<S: Simd>(
    w: *const f32,
    ldw: usize,
    rows: usize,
    inner: usize,
    x: *const f32,
    ldx: usize,
    d: usize,
    out: *mut f32,
) {
    if d.is_multiple_of(S::LANES) {
        logits_block::<S>(w, ldw, rows, x, ldx, d, inner, 1.0, out, d);
    } else {
        for r in 0..rows {
            weighted_sum_strided::<S>(
                d,
                w.add(r * ldw),
                Strided {
                    rows: &[0],
                    step: 1,
                },
                x,
                Strided {
                    rows: &[0],
                    step: ldx as isize,
                },
                inner,
                1.0,
                out.add(r * d),
            );
        }
    }
}

/// max of x[0..n] (n >= 1).
#[inline(always)]
pub(super) unsafe fn row_max<S: Simd>(x: *const f32, n: usize) -> f32 {
    let l = S::LANES;
    let mut m = f32::NEG_INFINITY;
    let mut i = 0;
    if n >= l {
        let mut mv = S::load(x);
        while i + l <= n {
            mv = S::max(mv, S::load(x.add(i)));
            i += l;
        }
        let mut buf = [0.0f32; 16];
        S::store(buf.as_mut_ptr(), mv);
        m = buf[..l].iter().fold(m, |a, &b| a.max(b));
    }
    for t in i..n {
        m = m.max(*x.add(t));
    }
    m
}

/// x[t] = exp(x[t] - shift) for t < n, in place; returns the sum (fixed order).
#[inline(always)]
pub(super) unsafe fn row_exp<S: Simd>(x: *mut f32, n: usize, shift: f32) -> f32 {
    let l = S::LANES;
    let sh = S::splat(shift);
    let mut sum = S::zero();
    let mut i = 0;
    while i + l <= n {
        let e = S::exp(S::sub(S::load(x.add(i)), sh));
        S::store(x.add(i), e);
        sum = S::add(sum, e);
        i += l;
    }
    let mut total = S::hsum(sum);
    if i < n {
        let mut buf = [0.0f32; 16];
        std::ptr::copy_nonoverlapping(x.add(i), buf.as_mut_ptr(), n - i);
        let e = S::exp(S::sub(S::load(buf.as_ptr()), sh));
        S::store(buf.as_mut_ptr(), e);
        std::ptr::copy_nonoverlapping(buf.as_ptr(), x.add(i), n - i);
        for &y in &buf[..n - i] {
            total += y;
        }
    }
    total
}

#[inline(always)]
unsafe fn forward_task<S: Simd>(ctx: &FwdCtx, task: usize) {
    let p = &ctx.p;
    let (n, d) = (p.tokens, p.head_dim);
    let tiles = n.div_ceil(QUERY_TILE);
    let (bh, tile) = (task / tiles, task % tiles);
    let (b, h) = (bh / p.heads, bh % p.heads);
    let q0 = tile * QUERY_TILE;
    let qn = QUERY_TILE.min(n - q0);
    let scale = p.scale as f32;
    let kt = transpose_tokens::<S>(&ctx.k, b, h, 0, n, d);
    let mut s_buf = vec![0.0f32; QUERY_TILE * KEY_TILE];
    let mut o_acc = vec![0.0f32; qn * d];
    let mut pv = vec![0.0f32; qn * d];
    let (mut m, mut l) = (vec![f32::NEG_INFINITY; qn], vec![0.0f32; qn]);
    let qp = ctx.q.data.as_ptr().add(ctx.q.view.at(b, 0, q0, h));
    let mut k0 = 0;
    while k0 < n {
        let kn = KEY_TILE.min(n - k0);
        let sp = s_buf.as_mut_ptr();
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
        let mut alpha = [0.0f32; QUERY_TILE];
        for r in 0..qn {
            let row = sp.add(r * KEY_TILE);
            let m_new = m[r].max(row_max::<S>(row, kn));
            // First tile: nothing accumulated yet (alpha would be exp(-inf) = 0; avoid -inf - -inf).
            alpha[r] = if m[r] == f32::NEG_INFINITY {
                0.0
            } else {
                (m[r] - m_new).exp()
            };
            let sum = row_exp::<S>(row, kn, m_new);
            l[r] = l[r] * alpha[r] + sum;
            m[r] = m_new;
        }
        let vp = ctx.v.data.as_ptr().add(ctx.v.view.at(b, 0, k0, h));
        rows_times_matrix::<S>(sp, KEY_TILE, qn, kn, vp, ctx.v.view.col, d, pv.as_mut_ptr());
        for r in 0..qn {
            for (o, &t) in o_acc[r * d..][..d].iter_mut().zip(&pv[r * d..][..d]) {
                *o = *o * alpha[r] + t;
            }
        }
        k0 += kn;
    }
    let ov = p.out_view();
    for r in 0..qn {
        let inv = 1.0 / l[r];
        let o = ctx.out.0.add(ov.at(b, 0, q0 + r, h));
        for (e, &x) in o_acc[r * d..][..d].iter().enumerate() {
            *o.add(e) = x * inv;
        }
        *ctx.lse.0.add(bh * n + q0 + r) = m[r] + l[r].ln();
    }
}
