//! Elementwise maps: binary ops with the second operand broadcast by repetition, their scalar
//! form, and unary maps. Every output element is written (`=`) except in [`axpy`] (`+=`).
//!
//! Broadcast by repetition covers the common case with one rule: a bias [C] added to every row
//! of [N, C] is `b.len() == C`; a scalar is `b.len() == 1`. (A per-row operand [N] against
//! [N, C] is not a repetition.) The gradient of the repeated operand is a column sum:
//! `db = sum_cols(dout viewed as [N, C])`, see `reduce`.

use super::simd::{self, isa_dispatch, SimdF32};
use super::{PAR_MIN_ELEMS, PAR_TASK_ELEMS};
use crate::cpu::isa::{self, Isa};
use crate::Float;
use rayon::prelude::*;

pub use crate::elementwise::BinaryOp;

fn check_binary(a: usize, b: usize, out: usize) {
    assert_eq!(a, out, "binary op: a has {a} elements but out has {out}");
    assert!(
        b > 0 || a == 0,
        "binary op: empty second operand for {a} elements"
    );
}

/// out[i] = a[i] op b[i % b.len()].
pub fn binary_reference<T: Float>(op: BinaryOp, a: &[T], b: &[T], out: &mut [T]) {
    check_binary(a.len(), b.len(), out.len());
    for (i, (o, &x)) in out.iter_mut().zip(a).enumerate() {
        *o = op.apply(x, b[i % b.len()]);
    }
}

/// out[i] = a[i] op s.
pub fn binary_scalar_reference<T: Float>(op: BinaryOp, a: &[T], s: T, out: &mut [T]) {
    check_binary(a.len(), 1, out.len());
    for (o, &x) in out.iter_mut().zip(a) {
        *o = op.apply(x, s);
    }
}

/// Fast f32 `out[i] = a[i] op b[i % b.len()]` (exact: same result as the reference bit for bit).
pub fn binary(op: BinaryOp, a: &[f32], b: &[f32], out: &mut [f32]) {
    binary_with(isa::active(), op, a, b, out)
}

/// Fast f32 `out[i] = a[i] op s`.
pub fn binary_scalar(op: BinaryOp, a: &[f32], s: f32, out: &mut [f32]) {
    binary_with(isa::active(), op, a, &[s], out)
}

pub(crate) fn binary_with(isa: Isa, op: BinaryOp, a: &[f32], b: &[f32], out: &mut [f32]) {
    check_binary(a.len(), b.len(), out.len());
    if a.is_empty() {
        return;
    }
    // A short b is tiled to >= 256 elements so the vector loop never runs on tiny blocks.
    let tiled: Vec<f32>;
    let b = if b.len() < 256 {
        tiled = b
            .iter()
            .cycle()
            .take(b.len() * 256usize.div_ceil(b.len()))
            .copied()
            .collect();
        &tiled[..]
    } else {
        b
    };
    let m = b.len();
    let run = |a: &[f32], out: &mut [f32]| {
        for (ac, oc) in a.chunks(m).zip(out.chunks_mut(m)) {
            binary_block(isa, op, ac, &b[..ac.len()], oc);
        }
    };
    if a.len() < PAR_MIN_ELEMS {
        run(a, out);
    } else {
        // Tasks start at multiples of m, so the broadcast pattern restarts at each task.
        let task = m * PAR_TASK_ELEMS.div_ceil(m);
        a.par_chunks(task)
            .zip(out.par_chunks_mut(task))
            .for_each(|(ac, oc)| run(ac, oc));
    }
}

/// Applies `$e` to matching vectors of two equal-length slices, then to the tail.
macro_rules! zip_loop {
    ($V:ty, $a:expr, $b:expr, $out:expr, |$x:ident, $y:ident| $e:expr) => {{
        let (a, b, out): (&[f32], &[f32], &mut [f32]) = ($a, $b, $out);
        let n = out.len();
        let l = <$V>::LANES;
        let (pa, pb, po) = (a.as_ptr(), b.as_ptr(), out.as_mut_ptr());
        let mut i = 0;
        while i + l <= n {
            let $x = <$V>::load(pa.add(i));
            let $y = <$V>::load(pb.add(i));
            ($e).store(po.add(i));
            i += l;
        }
        if i < n {
            let $x = <$V>::load_partial(pa.add(i), n - i, 1.0);
            let $y = <$V>::load_partial(pb.add(i), n - i, 1.0);
            ($e).store_partial(po.add(i), n - i);
        }
    }};
}

#[inline(always)]
unsafe fn binary_block_generic<V: SimdF32>(op: BinaryOp, a: &[f32], b: &[f32], out: &mut [f32]) {
    match op {
        BinaryOp::Add => zip_loop!(V, a, b, out, |x, y| x.add(y)),
        BinaryOp::Sub => zip_loop!(V, a, b, out, |x, y| x.sub(y)),
        BinaryOp::Mul => zip_loop!(V, a, b, out, |x, y| x.mul(y)),
        BinaryOp::Div => zip_loop!(V, a, b, out, |x, y| x.div(y)),
    }
}

isa_dispatch! {
    fn binary_block(op: BinaryOp, a: &[f32], b: &[f32], out: &mut [f32]) = binary_block_generic;
}

/// The unary maps with a fast kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UnaryOp {
    Exp,
    Ln,
    Sqrt,
    /// y = alpha * x
    Scale,
    /// y += alpha * x
    Axpy,
}

pub fn exp_reference<T: Float>(x: &[T], y: &mut [T]) {
    y.iter_mut().zip(x).for_each(|(o, &v)| *o = v.exp());
}
pub fn ln_reference<T: Float>(x: &[T], y: &mut [T]) {
    y.iter_mut().zip(x).for_each(|(o, &v)| *o = v.ln());
}
pub fn sqrt_reference<T: Float>(x: &[T], y: &mut [T]) {
    y.iter_mut().zip(x).for_each(|(o, &v)| *o = v.sqrt());
}
/// y = alpha * x.
pub fn scale_reference<T: Float>(x: &[T], alpha: T, y: &mut [T]) {
    y.iter_mut().zip(x).for_each(|(o, &v)| *o = alpha * v);
}
/// y += alpha * x (accumulates into y).
pub fn axpy_reference<T: Float>(alpha: T, x: &[T], y: &mut [T]) {
    y.iter_mut().zip(x).for_each(|(o, &v)| *o += alpha * v);
}

/// Fast f32 exp: the vector exp of `simd` (within 2 ulp of `f32::exp` for normal results;
/// exp(-inf) = 0, exp(inf) = inf, NaN stays NaN; results below 2^-126 may lose precision).
pub fn exp(x: &[f32], y: &mut [f32]) {
    unary_with(isa::active(), UnaryOp::Exp, 0.0, x, y)
}
/// Fast f32 natural log: the vector ln of `simd` (within 2 ulp, measured 0.7; ln(0) = -inf, ln(x<0) = NaN,
/// ln(inf) = inf, NaN stays NaN, subnormals handled).
pub fn ln(x: &[f32], y: &mut [f32]) {
    unary_with(isa::active(), UnaryOp::Ln, 0.0, x, y)
}
/// Fast f32 square root (IEEE, exact).
pub fn sqrt(x: &[f32], y: &mut [f32]) {
    unary_with(isa::active(), UnaryOp::Sqrt, 0.0, x, y)
}
/// Fast f32 y = alpha * x (exact).
pub fn scale(x: &[f32], alpha: f32, y: &mut [f32]) {
    unary_with(isa::active(), UnaryOp::Scale, alpha, x, y)
}
/// Fast f32 y += alpha * x (one fused multiply-add per element on the FMA paths).
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    unary_with(isa::active(), UnaryOp::Axpy, alpha, x, y)
}

pub(crate) fn unary_with(isa: Isa, op: UnaryOp, alpha: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(
        x.len(),
        y.len(),
        "{op:?}: x has {} elements but y has {}",
        x.len(),
        y.len()
    );
    if x.len() < PAR_MIN_ELEMS {
        unary_block(isa, op, alpha, x, y);
    } else {
        x.par_chunks(PAR_TASK_ELEMS)
            .zip(y.par_chunks_mut(PAR_TASK_ELEMS))
            .for_each(|(xc, yc)| unary_block(isa, op, alpha, xc, yc));
    }
}

#[inline(always)]
unsafe fn unary_block_generic<V: SimdF32>(op: UnaryOp, alpha: f32, x: &[f32], y: &mut [f32]) {
    let a = V::splat(alpha);
    match op {
        UnaryOp::Exp => zip_loop!(V, x, x, y, |v, _u| simd::exp(v)),
        UnaryOp::Ln => zip_loop!(V, x, x, y, |v, _u| simd::ln(v)),
        UnaryOp::Sqrt => zip_loop!(V, x, x, y, |v, _u| v.sqrt()),
        UnaryOp::Scale => zip_loop!(V, x, x, y, |v, _u| a.mul(v)),
        UnaryOp::Axpy => {
            let (n, l) = (x.len(), V::LANES);
            let (px, py) = (x.as_ptr(), y.as_mut_ptr());
            let mut i = 0;
            while i + l <= n {
                a.mul_add(V::load(px.add(i)), V::load(py.add(i)))
                    .store(py.add(i));
                i += l;
            }
            if i < n {
                let v = V::load_partial(px.add(i), n - i, 0.0);
                a.mul_add(v, V::load_partial(py.add(i), n - i, 0.0))
                    .store_partial(py.add(i), n - i);
            }
        }
    }
}

isa_dispatch! {
    fn unary_block(op: UnaryOp, alpha: f32, x: &[f32], y: &mut [f32]) = unary_block_generic;
}
