//! Weighted sums of head-dim rows, out = scale * sum w_n v_n, vectorised over the head dim: the
//! A V of the forward, dS K, and the dV / dK gathers of the backward (and the flash-attention
//! fallbacks). Offsets are split into a row part and a column part, so a window or an inverse
//! neighbourhood is described without per-entry index tables where it is regular.

use super::simd::Simd;

/// A 2-D set of offsets: entry (r, c) is at `rows[r] + cols[c]`.
#[derive(Clone, Copy)]
pub(crate) struct Pattern<'a> {
    pub rows: &'a [usize],
    pub cols: &'a [usize],
}

/// out[e] = scale * sum_{r,c} w[wp(r,c)] * v[vp(r,c) + e] for e < d (written, not accumulated);
/// `wp` and `vp` have the same shape. Two accumulator sets (even and odd c) break the FMA
/// dependency chain; the order is fixed.
#[inline(always)]
pub(crate) unsafe fn weighted_sum<S: Simd>(
    d: usize,
    w: *const f32,
    wp: Pattern,
    v: *const f32,
    vp: Pattern,
    scale: f32,
    out: *mut f32,
) {
    let l = S::LANES;
    let mut c0 = 0;
    while c0 + 4 * l <= d {
        ws_block::<S, 4>(c0, w, wp, v, vp, scale, out);
        c0 += 4 * l;
    }
    match (d - c0) / l {
        3 => ws_block::<S, 3>(c0, w, wp, v, vp, scale, out),
        2 => ws_block::<S, 2>(c0, w, wp, v, vp, scale, out),
        1 => ws_block::<S, 1>(c0, w, wp, v, vp, scale, out),
        _ => {}
    }
    c0 += (d - c0) / l * l;
    for e in c0..d {
        let mut acc = 0.0f32;
        for (&wr, &vr) in wp.rows.iter().zip(vp.rows) {
            for (&wc, &vc) in wp.cols.iter().zip(vp.cols) {
                acc += *w.add(wr + wc) * *v.add(vr + vc + e);
            }
        }
        *out.add(e) = scale * acc;
    }
}

#[inline(always)]
unsafe fn ws_block<S: Simd, const NV: usize>(
    c0: usize,
    w: *const f32,
    wp: Pattern,
    v: *const f32,
    vp: Pattern,
    scale: f32,
    out: *mut f32,
) {
    let l = S::LANES;
    let mut even = [S::zero(); NV];
    let mut odd = [S::zero(); NV];
    let nc = wp.cols.len();
    for (&wr, &vr) in wp.rows.iter().zip(vp.rows) {
        let (wr, vr) = (w.add(wr), v.add(vr + c0));
        let mut c = 0;
        while c + 1 < nc {
            let w0 = S::splat(*wr.add(*wp.cols.get_unchecked(c)));
            let w1 = S::splat(*wr.add(*wp.cols.get_unchecked(c + 1)));
            let p0 = vr.add(*vp.cols.get_unchecked(c));
            let p1 = vr.add(*vp.cols.get_unchecked(c + 1));
            for e in 0..NV {
                even[e] = S::fma(w0, S::load(p0.add(e * l)), even[e]);
                odd[e] = S::fma(w1, S::load(p1.add(e * l)), odd[e]);
            }
            c += 2;
        }
        if c < nc {
            let w0 = S::splat(*wr.add(*wp.cols.get_unchecked(c)));
            let p0 = vr.add(*vp.cols.get_unchecked(c));
            for (e, acc) in even.iter_mut().enumerate() {
                *acc = S::fma(w0, S::load(p0.add(e * l)), *acc);
            }
        }
    }
    let k = S::splat(scale);
    for e in 0..NV {
        S::store(out.add(c0 + e * l), S::mul(S::add(even[e], odd[e]), k));
    }
}

/// Rows given by offsets, columns an arithmetic progression: entry (r, c) at `rows[r] + c * step`
/// (step may be negative; every entry is inside the buffer).
#[derive(Clone, Copy)]
pub(crate) struct Strided<'a> {
    pub rows: &'a [usize],
    pub step: isize,
}

/// [`weighted_sum`] for `ncols` columns in arithmetic progression in both the weights and the
/// values (a query's window: the weight tile's slots, a window row's keys): no index loads.
#[inline(always)]
pub(crate) unsafe fn weighted_sum_strided<S: Simd>(
    d: usize,
    w: *const f32,
    wp: Strided,
    v: *const f32,
    vp: Strided,
    ncols: usize,
    scale: f32,
    out: *mut f32,
) {
    let l = S::LANES;
    let mut c0 = 0;
    while c0 + 4 * l <= d {
        wss_block::<S, 4>(c0, w, wp, v, vp, ncols, scale, out);
        c0 += 4 * l;
    }
    match (d - c0) / l {
        3 => wss_block::<S, 3>(c0, w, wp, v, vp, ncols, scale, out),
        2 => wss_block::<S, 2>(c0, w, wp, v, vp, ncols, scale, out),
        1 => wss_block::<S, 1>(c0, w, wp, v, vp, ncols, scale, out),
        _ => {}
    }
    c0 += (d - c0) / l * l;
    for e in c0..d {
        let mut acc = 0.0f32;
        for (&wr, &vr) in wp.rows.iter().zip(vp.rows) {
            for c in 0..ncols as isize {
                acc += *w.add(wr).offset(c * wp.step) * *v.add(vr + e).offset(c * vp.step);
            }
        }
        *out.add(e) = scale * acc;
    }
}

#[inline(always)]
unsafe fn wss_block<S: Simd, const NV: usize>(
    c0: usize,
    w: *const f32,
    wp: Strided,
    v: *const f32,
    vp: Strided,
    nc: usize,
    scale: f32,
    out: *mut f32,
) {
    let l = S::LANES;
    let mut even = [S::zero(); NV];
    let mut odd = [S::zero(); NV];
    for (&wr, &vr) in wp.rows.iter().zip(vp.rows) {
        let (mut wr, mut vr) = (w.add(wr), v.add(vr + c0));
        let mut c = 0;
        while c + 1 < nc {
            let w0 = S::splat(*wr);
            let w1 = S::splat(*wr.offset(wp.step));
            let p1 = vr.offset(vp.step);
            for e in 0..NV {
                even[e] = S::fma(w0, S::load(vr.add(e * l)), even[e]);
                odd[e] = S::fma(w1, S::load(p1.add(e * l)), odd[e]);
            }
            wr = wr.offset(2 * wp.step);
            vr = vr.offset(2 * vp.step);
            c += 2;
        }
        if c < nc {
            let w0 = S::splat(*wr);
            for (e, acc) in even.iter_mut().enumerate() {
                *acc = S::fma(w0, S::load(vr.add(e * l)), *acc);
            }
        }
    }
    let k = S::splat(scale);
    for e in 0..NV {
        S::store(out.add(c0 + e * l), S::mul(S::add(even[e], odd[e]), k));
    }
}
