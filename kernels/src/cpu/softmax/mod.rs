//! Row-wise softmax and log-softmax (numerically stable), forward and backward.
//! Math: docs/softmax.md.

use crate::Float;

/// y = softmax(x) per row of length `cols`.
pub fn softmax_forward_reference<T: Float>(x: &[T], y: &mut [T], cols: usize) {
    for (xr, yr) in x.chunks(cols).zip(y.chunks_mut(cols)) {
        let m = xr.iter().fold(T::NEG_INFINITY, |a, &b| a.max(b));
        let mut s = T::ZERO;
        for (yi, &xi) in yr.iter_mut().zip(xr) {
            *yi = (xi - m).exp();
            s += *yi;
        }
        for yi in yr.iter_mut() {
            *yi /= s;
        }
    }
}

/// dx = y * (dy - sum(dy * y)) per row, from the forward output y.
pub fn softmax_backward_reference<T: Float>(y: &[T], dy: &[T], dx: &mut [T], cols: usize) {
    for ((yr, dyr), dxr) in y.chunks(cols).zip(dy.chunks(cols)).zip(dx.chunks_mut(cols)) {
        let mut dot = T::ZERO;
        for (&a, &b) in yr.iter().zip(dyr) {
            dot += a * b;
        }
        for ((d, &a), &b) in dxr.iter_mut().zip(yr).zip(dyr) {
            *d = a * (b - dot);
        }
    }
}

/// y = x - logsumexp(x) per row.
pub fn log_softmax_forward_reference<T: Float>(x: &[T], y: &mut [T], cols: usize) {
    for (xr, yr) in x.chunks(cols).zip(y.chunks_mut(cols)) {
        let m = xr.iter().fold(T::NEG_INFINITY, |a, &b| a.max(b));
        let mut s = T::ZERO;
        for &xi in xr {
            s += (xi - m).exp();
        }
        let lse = m + s.ln();
        for (yi, &xi) in yr.iter_mut().zip(xr) {
            *yi = xi - lse;
        }
    }
}

/// dx = dy - exp(y) * sum(dy) per row, from the forward output y.
pub fn log_softmax_backward_reference<T: Float>(y: &[T], dy: &[T], dx: &mut [T], cols: usize) {
    for ((yr, dyr), dxr) in y.chunks(cols).zip(dy.chunks(cols)).zip(dx.chunks_mut(cols)) {
        let mut s = T::ZERO;
        for &b in dyr {
            s += b;
        }
        for ((d, &a), &b) in dxr.iter_mut().zip(yr).zip(dyr) {
            *d = b - a.exp() * s;
        }
    }
}

/// Fast f32 softmax (placeholder: the reference).
pub fn softmax_forward(x: &[f32], y: &mut [f32], cols: usize) {
    softmax_forward_reference(x, y, cols)
}
/// Fast f32 softmax backward (placeholder: the reference).
pub fn softmax_backward(y: &[f32], dy: &[f32], dx: &mut [f32], cols: usize) {
    softmax_backward_reference(y, dy, dx, cols)
}
/// Fast f32 log-softmax (placeholder: the reference).
pub fn log_softmax_forward(x: &[f32], y: &mut [f32], cols: usize) {
    log_softmax_forward_reference(x, y, cols)
}
/// Fast f32 log-softmax backward (placeholder: the reference).
pub fn log_softmax_backward(y: &[f32], dy: &[f32], dx: &mut [f32], cols: usize) {
    log_softmax_backward_reference(y, dy, dx, cols)
}
