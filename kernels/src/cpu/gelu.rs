//! GELU, erf form: y = x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2))). Math: docs/gelu.md.

use crate::Float;

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

/// Fast f32 forward (placeholder: the reference).
pub fn gelu_forward(x: &[f32], y: &mut [f32]) {
    gelu_forward_reference(x, y)
}
/// Fast f32 backward (placeholder: the reference).
pub fn gelu_backward(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    gelu_backward_reference(x, dy, dx)
}
