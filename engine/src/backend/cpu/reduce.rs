//! Reductions on the CPU: sum and max over one axis, the sum of all elements. An axis is viewed
//! as x [outer, n, inner] -> y [outer, inner].

use super::{storage, CpuKernels};
use crate::layout::split_dims;
use crate::storage::Storage;
use crate::{Element, Tensor};
use rayon::prelude::*;

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

pub(crate) fn sum_axis<T: CpuKernels>(x: &Tensor, dim: usize) -> Storage {
    let dims = split_dims(x.shape(), dim);
    storage(x.with_contiguous(|s: &[T]| reduce_axis(s, dims, T::ZERO, |a, b| a + b)))
}

pub(crate) fn sum_all<T: CpuKernels>(x: &Tensor) -> Storage {
    storage(vec![x.with_contiguous(|s: &[T]| T::sum(s))])
}

pub(crate) fn max_axis<T: CpuKernels>(x: &Tensor, dim: usize) -> (Storage, Vec<usize>) {
    let (outer, n, inner) = split_dims(x.shape(), dim);
    let (y, argmax) = x.with_contiguous(|x: &[T]| {
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
    (storage(y), argmax)
}

pub(crate) fn max_backward<T: CpuKernels>(
    g: &Tensor,
    argmax: &[usize],
    (outer, n, inner): (usize, usize, usize),
) -> Storage {
    let mut dx = T::alloc_zeroed(outer * n * inner);
    g.with_contiguous(|gs: &[T]| {
        for o in 0..outer {
            for i in 0..inner {
                dx[(o * n + argmax[o * inner + i]) * inner + i] = gs[o * inner + i];
            }
        }
    });
    storage(dx)
}
