//! Reductions: sum / mean / max over one axis (keepdim option), sum and mean of all elements,
//! mean over tokens. x [outer, n, inner] -> y [outer, (1,) inner] viewing the axis as n.

use super::shape::{check_dim, split_dims};
use crate::kernels::Float;
use crate::{with_dtype, Element, Result, Tensor};
use rayon::prelude::*;

fn reduced_shape(shape: &[usize], dim: usize, keepdim: bool) -> Vec<usize> {
    let mut s = shape.to_vec();
    if keepdim {
        s[dim] = 1;
    } else {
        s.remove(dim);
    }
    s
}

/// out[o, i] = fold over j of x[o, j, i]; each output row written by one thread (deterministic).
fn reduce_axis<T: Element>(
    x: &[T],
    (outer, n, inner): (usize, usize, usize),
    init: T,
    f: impl Fn(T, T) -> T + Sync,
) -> Vec<T> {
    let mut out = T::alloc(outer * inner);
    if inner == 0 || n == 0 {
        out.fill(init);
        return out;
    }
    let parallel = x.len() >= 1 << 16;
    if inner == 1 {
        // the last axis: each output folds one contiguous row
        let fold = |(o, row): (&mut T, &[T])| *o = row.iter().fold(init, |a, &v| f(a, v));
        if parallel {
            out.par_iter_mut()
                .zip(x.par_chunks(n))
                .with_min_len(256)
                .for_each(fold);
        } else {
            out.iter_mut().zip(x.chunks(n)).for_each(fold);
        }
        return out;
    }
    let row = |(o, dst): (usize, &mut [T])| {
        dst.fill(init);
        for j in 0..n {
            let src = &x[(o * n + j) * inner..(o * n + j + 1) * inner];
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = f(*d, v);
            }
        }
    };
    if parallel {
        out.par_chunks_mut(inner).enumerate().for_each(row);
    } else {
        out.chunks_mut(inner).enumerate().for_each(row);
    }
    out
}

impl Tensor {
    /// Sum over `dim`.  dx = dy broadcast back over `dim`.
    pub fn sum(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        check_dim("sum", self, dim)?;
        let dims = split_dims(self.shape(), dim);
        let shape = reduced_shape(self.shape(), dim, keepdim);
        let (in_shape, keep_shape) = (
            self.shape().to_vec(),
            reduced_shape(self.shape(), dim, true),
        );
        if self.is_cuda() {
            return super::cuda::sum(self, dim, keepdim, &shape);
        }
        with_dtype!(self.dtype(), T => {
            let y = self.with_contiguous(|x: &[T]| reduce_axis(x, dims, T::ZERO, |a, b| a + b));
            Ok(Tensor::from_op(y, &shape, "sum", &[self], Box::new(move |g| {
                Ok(vec![Some(g.reshape(&keep_shape)?.broadcast_to(&in_shape)?.contiguous())])
            })))
        })
    }

    /// Mean over `dim`.
    pub fn mean(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        check_dim("mean", self, dim)?;
        let n = self.shape()[dim] as f64;
        self.sum(dim, keepdim)?.mul_scalar(1.0 / n)
    }

    /// Mean over the token axis: x [B, T, C] -> y [B, C].
    pub fn mean_tokens(&self) -> Result<Tensor> {
        if self.rank() != 3 {
            return Err(crate::EngineError::arg(
                "mean_tokens",
                self.shape(),
                "needs [batch, tokens, channels]",
            ));
        }
        self.mean(1, false)
    }

    /// Max over `dim`.  dx = dy at the (first) position of the max, 0 elsewhere.
    pub fn max(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        check_dim("max", self, dim)?;
        Tensor::cpu_only("max", &[self])?;
        let (outer, n, inner) = split_dims(self.shape(), dim);
        if n == 0 {
            return Err(crate::EngineError::arg(
                "max",
                self.shape(),
                format!("axis {dim} is empty"),
            ));
        }
        let shape = reduced_shape(self.shape(), dim, keepdim);
        let in_shape = self.shape().to_vec();
        with_dtype!(self.dtype(), T => {
            let (y, argmax) = self.with_contiguous(|x: &[T]| {
                let mut y = T::alloc(outer * inner);
                let mut argmax = vec![0usize; outer * inner];
                for o in 0..outer {
                    for i in 0..inner {
                        let (mut best, mut at) = (x[o * n * inner + i], 0);
                        for j in 1..n {
                            let v = x[(o * n + j) * inner + i];
                            if v > best {
                                best = v;
                                at = j;
                            }
                        }
                        y[o * inner + i] = best;
                        argmax[o * inner + i] = at;
                    }
                }
                (y, argmax)
            });
            Ok(Tensor::from_op(y, &shape, "max", &[self], Box::new(move |g| {
                let mut dx = T::alloc_zeroed(outer * n * inner);
                g.with_contiguous(|gs: &[T]| {
                    for o in 0..outer {
                        for i in 0..inner {
                            dx[(o * n + argmax[o * inner + i]) * inner + i] = gs[o * inner + i];
                        }
                    }
                });
                Ok(vec![Some(Tensor::from_data(dx, &in_shape))])
            })))
        })
    }

    /// Sum of all elements (a 0-d tensor); fixed-chunk order, the same for any thread count.
    pub fn sum_all(&self) -> Result<Tensor> {
        if self.is_cuda() {
            return self
                .reshape(&[1, self.numel()])?
                .sum(1, false)?
                .reshape(&[]);
        }
        let in_shape = self.shape().to_vec();
        with_dtype!(self.dtype(), T => {
            let total = self.with_contiguous(|x: &[T]| T::sum(x));
            Ok(Tensor::from_op(vec![total], &[], "sum_all", &[self], Box::new(move |g| {
                Ok(vec![Some(Tensor::full(&in_shape, g.item()?, g.dtype()))])
            })))
        })
    }

    /// Mean of all elements (a 0-d tensor).
    pub fn mean_all(&self) -> Result<Tensor> {
        let n = self.numel().max(1) as f64;
        self.sum_all()?.mul_scalar(1.0 / n)
    }
}
