//! Row-wise softmax and log-softmax (numerically stable), forward and backward.
//! Math: docs/softmax.md.
//!
//! Shapes: x, y, dy, dx are [rows, cols] row-major; every op works on one row at a time.
//!
//! The fast kernels (version 2; version 1 was the reference, scalar exp per element) make two
//! passes over each row: the max, then `y = exp(x - max)` stored while the sum accumulates in
//! vector lanes, then `y *= 1/sum` over the row just written, still in L1 for rows up to a few
//! thousand floats. Memory traffic is one read of x and one write of y, the same as a copy.
//! Rows run in parallel (rayon) above `PAR_MIN_ELEMS` elements; no cross-row reduction, so the
//! result does not depend on the thread count.

use crate::cpu::elementwise::reduce::{max_lanes, sum_lanes};
use crate::cpu::elementwise::simd::{self, isa_dispatch, lanes_loop, SimdF32};
use crate::cpu::elementwise::{rows_per_task, PAR_MIN_ELEMS};
use crate::cpu::isa::{self, Isa};
use crate::Float;
use rayon::prelude::*;

#[cfg(test)]
mod tests;

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

/// Fast f32 softmax: y = softmax(x) per row of `cols`.
pub fn softmax_forward(x: &[f32], y: &mut [f32], cols: usize) {
    forward_with(isa::active(), false, x, y, cols)
}
/// Fast f32 softmax backward: dx = y * (dy - sum(dy * y)) per row.
pub fn softmax_backward(y: &[f32], dy: &[f32], dx: &mut [f32], cols: usize) {
    backward_with(isa::active(), false, y, dy, dx, cols)
}
/// Fast f32 log-softmax: y = x - logsumexp(x) per row.
pub fn log_softmax_forward(x: &[f32], y: &mut [f32], cols: usize) {
    forward_with(isa::active(), true, x, y, cols)
}
/// Fast f32 log-softmax backward: dx = dy - exp(y) * sum(dy) per row.
pub fn log_softmax_backward(y: &[f32], dy: &[f32], dx: &mut [f32], cols: usize) {
    backward_with(isa::active(), true, y, dy, dx, cols)
}

fn check(what: &str, lens: &[usize], cols: usize) {
    let n = lens[0];
    assert!(cols > 0 || n == 0, "{what}: cols = 0 for {n} elements");
    assert!(
        n.is_multiple_of(cols.max(1)),
        "{what}: {n} elements is not a whole number of rows of {cols}"
    );
    assert!(
        lens.iter().all(|&l| l == n),
        "{what}: buffers of different lengths {lens:?}"
    );
}

pub(crate) fn forward_with(isa: Isa, log: bool, x: &[f32], y: &mut [f32], cols: usize) {
    check(
        if log {
            "log_softmax_forward"
        } else {
            "softmax_forward"
        },
        &[x.len(), y.len()],
        cols,
    );
    if x.is_empty() {
        return;
    }
    if x.len() < PAR_MIN_ELEMS {
        forward_rows(isa, log, x, y, cols);
    } else {
        let task = rows_per_task(cols) * cols;
        x.par_chunks(task)
            .zip(y.par_chunks_mut(task))
            .for_each(|(xc, yc)| forward_rows(isa, log, xc, yc, cols));
    }
}

pub(crate) fn backward_with(
    isa: Isa,
    log: bool,
    y: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    cols: usize,
) {
    let what = if log {
        "log_softmax_backward"
    } else {
        "softmax_backward"
    };
    check(what, &[y.len(), dy.len(), dx.len()], cols);
    if y.is_empty() {
        return;
    }
    if y.len() < PAR_MIN_ELEMS {
        backward_rows(isa, log, y, dy, dx, cols);
    } else {
        let task = rows_per_task(cols) * cols;
        y.par_chunks(task)
            .zip(dy.par_chunks(task))
            .zip(dx.par_chunks_mut(task))
            .for_each(|((yc, gc), dc)| backward_rows(isa, log, yc, gc, dc, cols));
    }
}

#[inline(always)]
unsafe fn forward_rows_generic<V: SimdF32>(log: bool, x: &[f32], y: &mut [f32], cols: usize) {
    for (xr, yr) in x.chunks(cols).zip(y.chunks_mut(cols)) {
        let m = V::splat(max_lanes::<V>(xr));
        let (px, py) = (xr.as_ptr(), yr.as_mut_ptr());
        let mut acc = V::splat(0.0);
        if log {
            // sum exp(x - m), then y = (x - m) - ln(sum)
            lanes_loop!(V, cols, |at| {
                acc = acc.add(simd::exp(at.load(px, f32::NEG_INFINITY).sub(m)));
            });
            // (x - m) - ln(sum) rather than x - (m + ln sum): x - m is exact for the entries
            // that matter, so the error is ulp(ln sum), not ulp(m) (the reference's).
            let ln_sum = V::splat(acc.reduce_add().ln());
            lanes_loop!(V, cols, |at| {
                at.store(at.load(px, 0.0).sub(m).sub(ln_sum), py);
            });
        } else {
            lanes_loop!(V, cols, |at| {
                let e = simd::exp(at.load(px, f32::NEG_INFINITY).sub(m));
                acc = acc.add(e);
                at.store(e, py);
            });
            let inv = V::splat(1.0 / acc.reduce_add());
            lanes_loop!(V, cols, |at| {
                at.store(at.load(py, 0.0).mul(inv), py);
            });
        }
    }
}

#[inline(always)]
unsafe fn backward_rows_generic<V: SimdF32>(
    log: bool,
    y: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    cols: usize,
) {
    for ((yr, gr), dr) in y.chunks(cols).zip(dy.chunks(cols)).zip(dx.chunks_mut(cols)) {
        let (py, pg, pd) = (yr.as_ptr(), gr.as_ptr(), dr.as_mut_ptr());
        if log {
            // dx = dy - exp(y) * sum(dy)
            let s = V::splat(sum_lanes::<V>(gr));
            lanes_loop!(V, cols, |at| {
                let e = simd::exp(at.load(py, 0.0));
                at.store(at.load(pg, 0.0).sub(e.mul(s)), pd);
            });
        } else {
            // dx = y * (dy - sum(dy * y))
            let mut acc = V::splat(0.0);
            lanes_loop!(V, cols, |at| {
                acc = at.load(py, 0.0).mul_add(at.load(pg, 0.0), acc);
            });
            let dot = V::splat(acc.reduce_add());
            lanes_loop!(V, cols, |at| {
                at.store(at.load(py, 0.0).mul(at.load(pg, 0.0).sub(dot)), pd);
            });
        }
    }
}

isa_dispatch! {
    fn forward_rows(log: bool, x: &[f32], y: &mut [f32], cols: usize) = forward_rows_generic;
}
isa_dispatch! {
    fn backward_rows(log: bool, y: &[f32], dy: &[f32], dx: &mut [f32], cols: usize) = backward_rows_generic;
}
