//! Elementwise add / sub / mul / div with broadcasting (numpy rules: shapes aligned at the right,
//! size-1 or missing dims repeat), and affine maps with scalars.
//!
//! z = f(a, b), a, b broadcast to z's shape.  Backward: the gradient for each operand is
//! computed at z's shape, then summed over the dims that operand was repeated along (`sum_to`).

use crate::kernels::cuda::reduce::BinaryOp as CudaBinary;
use crate::kernels::Float;
use crate::{with_dtype, Element, EngineError, Result, Tensor};
use rayon::prelude::*;

/// Below this many elements a loop stays on one thread.
const PARALLEL_MIN: usize = 1 << 15;

/// The shape both operands broadcast to.
pub(crate) fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for k in 0..rank {
        let da = if k + a.len() >= rank {
            a[k + a.len() - rank]
        } else {
            1
        };
        let db = if k + b.len() >= rank {
            b[k + b.len() - rank]
        } else {
            1
        };
        out[k] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(EngineError::shape(op, a, b)),
        };
    }
    Ok(out)
}

/// Whether `small` (leading 1s dropped) equals the trailing dims of `shape`.
fn is_suffix(small: &[usize], shape: &[usize]) -> bool {
    let lead = small.iter().take_while(|&&d| d == 1).count();
    let small = &small[lead..];
    small.len() <= shape.len() && shape[shape.len() - small.len()..] == *small
}

/// If `small` equals `shape` on some leading dims and is 1 on all the others, the number of
/// elements of `shape` each value of `small` covers.
fn per_row_block(small: &[usize], shape: &[usize]) -> Option<usize> {
    if small.len() != shape.len() {
        return None;
    }
    let j = small.iter().zip(shape).take_while(|(a, b)| a == b).count();
    small[j..]
        .iter()
        .all(|&d| d == 1)
        .then(|| shape[j..].iter().product::<usize>())
        .filter(|&block| block > 0)
}

fn map2<T: Element>(out: &mut [T], a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync) {
    if out.len() >= PARALLEL_MIN {
        out.par_iter_mut()
            .zip(a.par_iter().zip(b.par_iter()))
            .for_each(|(o, (&x, &y))| *o = f(x, y));
    } else {
        for (o, (&x, &y)) in out.iter_mut().zip(a.iter().zip(b)) {
            *o = f(x, y);
        }
    }
}

/// Calls `f(out_row, x_row)` for consecutive rows of length `m`, rows in parallel when large.
fn for_each_row<T: Element>(out: &mut [T], x: &[T], m: usize, f: impl Fn(&mut [T], &[T]) + Sync) {
    if out.len() >= PARALLEL_MIN {
        out.par_chunks_mut(m)
            .zip(x.par_chunks(m))
            .with_min_len(PARALLEL_MIN / m + 1)
            .for_each(|(o, xr)| f(o, xr));
    } else {
        out.chunks_mut(m)
            .zip(x.chunks(m))
            .for_each(|(o, xr)| f(o, xr));
    }
}

/// Elements of `t` broadcast to `shape`, row-major (a gather, for the general case).
fn expanded<T: Element>(t: &Tensor, shape: &[usize]) -> Vec<T> {
    t.with_strided(|s: &[T], l| {
        let l = l
            .broadcast_to(shape)
            .expect("shape checked by broadcast_shape");
        let mut v = T::alloc(l.numel());
        let mut i = 0;
        l.for_each_offset(|o| {
            v[i] = s[o];
            i += 1;
        });
        v
    })
}

/// z = f(a, b) at the broadcast shape; fast paths for equal shapes and a trailing-dims operand.
fn zip_map<T: Element>(
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
    f: impl Fn(T, T) -> T + Sync,
) -> Vec<T> {
    let n: usize = shape.iter().product();
    let mut out = T::alloc(n);
    if a.shape() == shape && b.shape() == shape {
        a.with_contiguous(|x: &[T]| b.with_contiguous(|y: &[T]| map2(&mut out, x, y, &f)));
    } else if a.shape() == shape && is_suffix(b.shape(), shape) && b.numel() > 0 {
        // b repeats over the leading dims of a (a bias, a per-channel scale)
        let m = b.numel();
        a.with_contiguous(|x: &[T]| {
            b.with_contiguous(|y: &[T]| for_each_row(&mut out, x, m, |o, xr| map2(o, xr, y, &f)))
        });
    } else if b.shape() == shape && is_suffix(a.shape(), shape) && a.numel() > 0 {
        let m = a.numel();
        a.with_contiguous(|x: &[T]| {
            b.with_contiguous(|y: &[T]| for_each_row(&mut out, y, m, |o, yr| map2(o, x, yr, &f)))
        });
    } else if let (true, Some(block)) = (a.shape() == shape, per_row_block(b.shape(), shape)) {
        // one b value per block of a (a per-sample scale such as the drop-path mask [B, 1, 1])
        a.with_contiguous(|x: &[T]| {
            b.with_contiguous(|y: &[T]| {
                let rows = out.chunks_mut(block).zip(x.chunks(block)).zip(y);
                for ((o, xr), &v) in rows {
                    o.iter_mut().zip(xr).for_each(|(o, &u)| *o = f(u, v));
                }
            })
        });
    } else {
        let (x, y) = (expanded::<T>(a, shape), expanded::<T>(b, shape));
        map2(&mut out, &x, &y, &f);
        T::recycle(x);
        T::recycle(y);
    }
    out
}

#[derive(Clone, Copy)]
enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

fn binary(a: &Tensor, b: &Tensor, kind: BinaryOp) -> Result<Tensor> {
    let name = match kind {
        BinaryOp::Add => "add",
        BinaryOp::Sub => "sub",
        BinaryOp::Mul => "mul",
        BinaryOp::Div => "div",
    };
    a.check_dtype(name, b)?;
    if a.is_cuda() || b.is_cuda() {
        let k = match kind {
            BinaryOp::Add => CudaBinary::Add,
            BinaryOp::Sub => CudaBinary::Sub,
            BinaryOp::Mul => CudaBinary::Mul,
            BinaryOp::Div => CudaBinary::Div,
        };
        return super::cuda::binary(a, b, k, name);
    }
    let shape = broadcast_shape(name, a.shape(), b.shape())?;
    let data = with_dtype!(a.dtype(), T => {
        let v = match kind {
            BinaryOp::Add => zip_map::<T>(a, b, &shape, |x, y| x + y),
            BinaryOp::Sub => zip_map::<T>(a, b, &shape, |x, y| x - y),
            BinaryOp::Mul => zip_map::<T>(a, b, &shape, |x, y| x * y),
            BinaryOp::Div => zip_map::<T>(a, b, &shape, |x, y| x / y),
        };
        T::wrap(v)
    });
    let (ac, bc) = (a.detach(), b.detach());
    let (a_shape, b_shape) = (a.shape().to_vec(), b.shape().to_vec());
    let (need_a, need_b) = (a.requires_grad(), b.requires_grad());
    let backward = Box::new(move |g: &Tensor| {
        let (ga, gb) = match kind {
            // d(a+b) = da + db;  d(a-b) = da - db
            BinaryOp::Add => (need_a.then(|| g.clone()), need_b.then(|| g.clone())),
            BinaryOp::Sub => (
                need_a.then(|| g.clone()),
                need_b.then(|| g.neg()).transpose()?,
            ),
            // d(ab) = b da + a db
            BinaryOp::Mul => (
                need_a.then(|| g.mul(&bc)).transpose()?,
                need_b.then(|| g.mul(&ac)).transpose()?,
            ),
            // d(a/b) = da / b - a / b^2 db
            BinaryOp::Div => (
                need_a.then(|| g.div(&bc)).transpose()?,
                need_b
                    .then(|| g.mul(&ac)?.div(&bc.mul(&bc)?)?.neg())
                    .transpose()?,
            ),
        };
        Ok(vec![
            ga.map(|t| t.sum_to(&a_shape)).transpose()?,
            gb.map(|t| t.sum_to(&b_shape)).transpose()?,
        ])
    });
    Ok(Tensor::from_storage_op(
        data,
        &shape,
        name,
        &[a, b],
        backward,
    ))
}

impl Tensor {
    /// a + b, broadcasting.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Add)
    }
    /// a - b, broadcasting.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Sub)
    }
    /// a * b (elementwise), broadcasting.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Mul)
    }
    /// a / b (elementwise), broadcasting.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Div)
    }

    /// y = x * scale + shift.  dx = dy * scale.
    pub fn affine(&self, scale: f64, shift: f64) -> Result<Tensor> {
        if self.is_cuda() {
            return super::cuda::affine(self, scale, shift);
        }
        with_dtype!(self.dtype(), T => {
            let (s, h) = (T::from_f64(scale), T::from_f64(shift));
            let out = self.with_contiguous(|x: &[T]| {
                let mut out = T::alloc(x.len());
                map2(&mut out, x, x, |v, _| v * s + h);
                out
            });
            Ok(Tensor::from_op(out, self.shape(), "affine", &[self], Box::new(move |g| {
                Ok(vec![Some(g.affine(scale, 0.0)?)])
            })))
        })
    }
    pub fn add_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(1.0, s)
    }
    pub fn mul_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(s, 0.0)
    }
    pub fn sub_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(1.0, -s)
    }
    pub fn div_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(1.0 / s, 0.0)
    }
    pub fn neg(&self) -> Result<Tensor> {
        self.affine(-1.0, 0.0)
    }
}

/// Applies `f` to every element (forward helper for unary ops).
pub(crate) fn map1<T: Element>(x: &Tensor, f: impl Fn(T) -> T + Sync) -> Vec<T> {
    x.with_contiguous(|s: &[T]| {
        let mut out = T::alloc(s.len());
        map2(&mut out, s, s, |v, _| f(v));
        out
    })
}
