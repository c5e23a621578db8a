//! GELU, erf form: y = x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2))). Math: docs/gelu.md.
//!
//! The fast kernel (version 2; version 1 called libm `erff` per element and lost all relative
//! precision for x < -4, where 1 + erf cancels) evaluates Phi through the scaled complementary
//! error function, which stays accurate in the lower tail:
//!
//!   Phi(-a) = 0.5 * exp(-a^2/2) * K(q) / (1 + sqrt(2) a),   a = |x|,  q = (a - 4) / (a + 4),
//!
//! K(a) = (1 + sqrt(2) a) * erfcx(a / sqrt(2)) is smooth on [0, inf) (from 1 to 2/sqrt(pi)) and is
//! approximated by a degree-10 polynomial in q (Chebyshev fit, relative error 1.5e-8 with f32
//! coefficients). exp(-a^2/2) takes the rounding error of a^2 as a tail, so the exponent is exact.
//! Phi(x) = Phi(-a) for x < 0 and 1 - Phi(-a) otherwise; the backward reuses exp(-a^2/2) for phi.
//! Measured error against the f64 reference over x in [-10, 10] (test `gelu_dense_sweep`):
//! forward 2.2 eps relative (eps = 2^-23), backward 2.0 eps of |Phi| + |x phi|; tests assert 4 eps.

use crate::cpu::elementwise::simd::{self, isa_dispatch, lanes_loop, SimdF32};
use crate::cpu::elementwise::{PAR_MIN_ELEMS, PAR_TASK_ELEMS};
use crate::cpu::isa::{self, Isa};
use crate::Float;
use rayon::prelude::*;

#[cfg(test)]
mod tests;

const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi)
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

pub fn gelu_forward_reference<T: Float>(x: &[T], y: &mut [T]) {
    let half = T::from_f64(0.5);
    let c = T::from_f64(FRAC_1_SQRT_2);
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi = half * xi * (T::ONE + (xi * c).erf());
    }
}

/// dx = dy * (Phi(x) + x * phi(x)), phi the standard normal density.
pub fn gelu_backward_reference<T: Float>(x: &[T], dy: &[T], dx: &mut [T]) {
    let half = T::from_f64(0.5);
    let c = T::from_f64(FRAC_1_SQRT_2);
    let p = T::from_f64(FRAC_1_SQRT_2PI);
    for ((d, &xi), &g) in dx.iter_mut().zip(x).zip(dy) {
        let cdf = half * (T::ONE + (xi * c).erf());
        let pdf = p * (-half * xi * xi).exp();
        *d = g * (cdf + xi * pdf);
    }
}

/// Fast f32 forward: `y = x Phi(x)` (see the module doc for the error bound).
/// gelu(-inf) = -0, gelu(inf) = inf, NaN -> NaN (the reference gives NaN at -inf).
pub fn gelu_forward(x: &[f32], y: &mut [f32]) {
    gelu_forward_with(isa::active(), x, y)
}

/// Fast f32 backward: `dx = dy (Phi(x) + x phi(x))`; the derivative is 0 at -inf and 1 at inf.
pub fn gelu_backward(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    gelu_backward_with(isa::active(), x, dy, dx)
}

pub(crate) fn gelu_forward_with(isa: Isa, x: &[f32], y: &mut [f32]) {
    assert_eq!(
        x.len(),
        y.len(),
        "gelu_forward: x has {} elements, y {}",
        x.len(),
        y.len()
    );
    if x.len() < PAR_MIN_ELEMS {
        forward_block(isa, x, y);
    } else {
        x.par_chunks(PAR_TASK_ELEMS)
            .zip(y.par_chunks_mut(PAR_TASK_ELEMS))
            .for_each(|(xc, yc)| forward_block(isa, xc, yc));
    }
}

pub(crate) fn gelu_backward_with(isa: Isa, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    let n = x.len();
    assert!(
        dy.len() == n && dx.len() == n,
        "gelu_backward: x, dy, dx have {n}, {}, {} elements",
        dy.len(),
        dx.len()
    );
    if n < PAR_MIN_ELEMS {
        backward_block(isa, x, dy, dx);
    } else {
        x.par_chunks(PAR_TASK_ELEMS)
            .zip(dy.par_chunks(PAR_TASK_ELEMS))
            .zip(dx.par_chunks_mut(PAR_TASK_ELEMS))
            .for_each(|((xc, gc), dc)| backward_block(isa, xc, gc, dc));
    }
}

/// Returns (Phi(x), exp(-x^2/2)) for a vector of x.
#[inline(always)]
unsafe fn normal_cdf<V: SimdF32>(x: V) -> (V, V) {
    // Beyond |x| = 16 exp(-x^2/2) is 0 in f32; clamping keeps q finite for x = +-inf.
    let a = V::splat(16.0).min(x.abs());
    let q = a.sub(V::splat(4.0)).div(a.add(V::splat(4.0)));
    const K: [f32; 11] = [
        -2.149_907_8e-4,
        -1.392_456_5e-4,
        2.099_216_2e-3,
        -1.387_525_8e-3,
        -1.456_746_9e-2,
        5.777_814_2e-2,
        -1.166_383_4e-1,
        1.402_972e-1,
        -6.344_221e-2,
        -1.323_566_1e-1,
        1.256_955_7,
    ];
    let mut k = V::splat(K[0]);
    k = k.mul_add(q, V::splat(K[1]));
    k = k.mul_add(q, V::splat(K[2]));
    k = k.mul_add(q, V::splat(K[3]));
    k = k.mul_add(q, V::splat(K[4]));
    k = k.mul_add(q, V::splat(K[5]));
    k = k.mul_add(q, V::splat(K[6]));
    k = k.mul_add(q, V::splat(K[7]));
    k = k.mul_add(q, V::splat(K[8]));
    k = k.mul_add(q, V::splat(K[9]));
    k = k.mul_add(q, V::splat(K[10]));
    let d = a.mul_add(V::splat(std::f32::consts::SQRT_2), V::splat(1.0));
    // exp(-(a^2 + e)/2) with e the rounding error of a^2: the exponent carries no rounding.
    let s = a.mul(a);
    let e = a.mul_residual(a, s);
    let g = simd::exp_with_tail(s.mul(V::splat(-0.5)), e.mul(V::splat(-0.5)));
    let lower = V::splat(0.5).mul(g).mul(k.div(d)); // Phi(-a)
    let phi = x.select_lt(V::splat(0.0), lower, V::splat(1.0).sub(lower));
    (phi, g)
}

#[inline(always)]
unsafe fn forward_block_generic<V: SimdF32>(x: &[f32], y: &mut [f32]) {
    let (px, py) = (x.as_ptr(), y.as_mut_ptr());
    lanes_loop!(V, x.len(), |at| {
        let v = at.load(px, 0.0);
        let (cdf, _) = normal_cdf(v);
        // max(-20, x) sends -inf to a finite factor of Phi = 0 (NaN passes through).
        at.store(V::splat(-20.0).max(v).mul(cdf), py);
    });
}

#[inline(always)]
unsafe fn backward_block_generic<V: SimdF32>(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;
    let (px, pg, pd) = (x.as_ptr(), dy.as_ptr(), dx.as_mut_ptr());
    lanes_loop!(V, x.len(), |at| {
        let v = at.load(px, 0.0);
        let (cdf, e) = normal_cdf(v);
        let pdf = e.mul(V::splat(FRAC_1_SQRT_2PI));
        // x clamped to +-20 so that x phi(x) = 0, not NaN, at x = +-inf.
        let v = V::splat(20.0).min(V::splat(-20.0).max(v));
        at.store(at.load(pg, 0.0).mul(v.mul_add(pdf, cdf)), pd);
    });
}

isa_dispatch! {
    fn forward_block(x: &[f32], y: &mut [f32]) = forward_block_generic;
}
isa_dispatch! {
    fn backward_block(x: &[f32], dy: &[f32], dx: &mut [f32]) = backward_block_generic;
}
