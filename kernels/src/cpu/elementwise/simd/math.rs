//! Vector exp and ln, written once over [`SimdF32`] (math: docs/softmax.md for exp).

use super::SimdF32;

/// ln(x) within 2 ulp (measured 0.7) for every f32: ln(0) = -inf, ln(x < 0) = NaN, ln(inf) = inf, NaN -> NaN,
/// subnormals exact-range (scaled by 2^23 first).
#[inline(always)]
pub(crate) unsafe fn ln<V: SimdF32>(x: V) -> V {
    const LN2_HI: f32 = 355.0 / 512.0;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let tiny = V::splat(f32::MIN_POSITIVE);
    let xs = x.select_lt(tiny, x.mul(V::splat(8_388_608.0)), x);
    let (m, e) = xs.frexp();
    let e = e.add(x.select_lt(tiny, V::splat(-23.0), V::splat(0.0)));
    // m in [sqrt(1/2), sqrt(2)), so f = m - 1 is exact and |s| <= 0.172.
    let sqrt2 = V::splat(std::f32::consts::SQRT_2);
    let (m, e) = (
        sqrt2.select_lt(m, m.mul(V::splat(0.5)), m),
        sqrt2.select_lt(m, e.add(V::splat(1.0)), e),
    );
    // ln(1 + f) = 2 atanh(s), s = f / (2 + f); 2s = f - s f, so ln(1 + f) = f - s (f - R),
    // R = 2 (z/3 + z^2/5 + z^3/7 + z^4/9), z = s^2 (truncation error < 1e-9).
    let f = m.sub(V::splat(1.0));
    let s = f.div(f.add(V::splat(2.0)));
    let z = s.mul(s);
    let mut r = V::splat(2.0 / 9.0);
    r = r.mul_add(z, V::splat(2.0 / 7.0));
    r = r.mul_add(z, V::splat(2.0 / 5.0));
    r = r.mul_add(z, V::splat(2.0 / 3.0));
    let ln_m = f.sub(s.mul(f.sub(r.mul(z))));
    let y = e.mul_add(V::splat(LN2_HI), e.mul_add(V::splat(LN2_LO), ln_m));
    // Special values: NaN and +-inf make x - x NaN; then inf -> inf, 0 -> -inf, x < 0 -> NaN.
    let y = y.add(x.sub(x).mul(V::splat(0.0)));
    let y = V::splat(f32::MAX).select_lt(x, V::splat(f32::INFINITY), y);
    let y = x.select_lt(V::splat(f32::from_bits(1)), V::splat(f32::NEG_INFINITY), y);
    x.select_lt(V::splat(0.0), V::splat(f32::NAN), y)
}

/// exp(x) to about 1 ulp for every f32 (exp(-inf) = 0, exp(+inf) = inf, NaN -> NaN;
/// results below the normal range flush towards 0 gracefully through the split 2^n).
#[inline(always)]
pub(crate) unsafe fn exp<V: SimdF32>(x: V) -> V {
    exp_core(x, None)
}

/// exp(x + tail) for a small `tail` (|tail| <= ulp(x)): the tail enters after the Cody-Waite
/// reduction, so an argument known to more than f32 precision keeps its extra bits.
#[inline(always)]
pub(crate) unsafe fn exp_with_tail<V: SimdF32>(x: V, tail: V) -> V {
    exp_core(x, Some(tail))
}

#[inline(always)]
unsafe fn exp_core<V: SimdF32>(x: V, tail: Option<V>) -> V {
    // e^x = 2^n * e^r with n = round(x / ln2), r = x - n ln2 in [-ln2/2, ln2/2].
    const LN2_HI: f32 = 355.0 / 512.0; // 355/512: n * LN2_HI is exact for |n| < 2^15
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = V::splat(89.0).min(V::splat(-104.0).max(x));
    let n = x.mul(V::splat(std::f32::consts::LOG2_E)).round();
    let r = n.mul_add(V::splat(-LN2_HI), x);
    let mut r = n.mul_add(V::splat(-LN2_LO), r);
    if let Some(t) = tail {
        r = r.add(t);
    }
    // e^r = 1 + r + r^2 P(r), P a degree-4 Chebyshev fit of (e^r - 1 - r) / r^2 (rel. err 1e-8),
    // evaluated as one degree-6 Horner chain (7 fused steps).
    let mut p = V::splat(1.392_617_6e-3);
    p = p.mul_add(r, V::splat(8.363_173e-3));
    p = p.mul_add(r, V::splat(4.166_655_6e-2));
    p = p.mul_add(r, V::splat(1.666_657_8e-1));
    p = p.mul_add(r, V::splat(0.5));
    p = p.mul_add(r, V::splat(1.0));
    p = p.mul_add(r, V::splat(1.0));
    p.mul_pow2(n)
}
