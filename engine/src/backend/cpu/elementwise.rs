//! Elementwise and row-wise ops on the CPU: binary ops with broadcasting, unary maps, GELU,
//! softmax, layer norm and L2 normalisation (forward and backward kernels).

use super::{storage, CpuKernels};
use crate::kernels::elementwise::{BinaryOp, MapOp};
use crate::storage::Storage;
use crate::{Element, Tensor};
use rayon::prelude::*;

/// Below this many elements a loop stays on one thread.
const PARALLEL_MIN: usize = 1 << 15;

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

/// a op b at the broadcast `shape`.
pub(crate) fn binary<T: CpuKernels>(
    op: BinaryOp,
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
) -> Storage {
    storage(match op {
        BinaryOp::Add => zip_map::<T>(a, b, shape, |x, y| x + y),
        BinaryOp::Sub => zip_map::<T>(a, b, shape, |x, y| x - y),
        BinaryOp::Mul => zip_map::<T>(a, b, shape, |x, y| x * y),
        BinaryOp::Div => zip_map::<T>(a, b, shape, |x, y| x / y),
    })
}

/// Applies `f` to every element.
fn map1<T: Element>(x: &Tensor, f: impl Fn(T) -> T + Sync) -> Vec<T> {
    x.with_contiguous(|s: &[T]| {
        let mut out = T::alloc(s.len());
        map2(&mut out, s, s, |v, _| f(v));
        out
    })
}

/// f(x) elementwise (the parameters converted to T once, outside the loop).
pub(crate) fn map<T: CpuKernels>(op: MapOp, x: &Tensor) -> Storage {
    storage(match op {
        MapOp::Affine(scale, shift) => {
            let (s, h) = (T::from_f64(scale), T::from_f64(shift));
            map1::<T>(x, |v| v * s + h)
        }
        MapOp::Exp => map1::<T>(x, |v| v.exp()),
        MapOp::Log => map1::<T>(x, |v| v.ln()),
        MapOp::Sqrt => map1::<T>(x, |v| v.sqrt()),
        MapOp::Pow(p) => {
            let pt = T::from_f64(p);
            map1::<T>(x, |v| v.powf(pt))
        }
        MapOp::Max(_) | MapOp::Step(_) => map1::<T>(x, |v| op.apply(v)),
    })
}

pub(crate) fn gelu_forward<T: CpuKernels>(x: &Tensor) -> Storage {
    storage(x.with_contiguous(|s: &[T]| {
        let mut y = T::alloc(s.len());
        T::gelu_forward(s, &mut y);
        y
    }))
}

pub(crate) fn gelu_backward<T: CpuKernels>(x: &Tensor, g: &Tensor) -> Storage {
    storage(x.with_contiguous(|xs: &[T]| {
        g.with_contiguous(|gs: &[T]| {
            let mut dx = T::alloc(xs.len());
            T::gelu_backward(xs, gs, &mut dx);
            dx
        })
    }))
}

fn last_axis(t: &Tensor) -> usize {
    t.shape()[t.rank() - 1]
}

pub(crate) fn softmax_forward<T: CpuKernels>(x: &Tensor, log: bool) -> Storage {
    let cols = last_axis(x);
    storage(x.with_contiguous(|s: &[T]| {
        let mut y = T::alloc(s.len());
        match log {
            false => T::softmax_forward(s, &mut y, cols),
            true => T::log_softmax_forward(s, &mut y, cols),
        }
        y
    }))
}

pub(crate) fn softmax_backward<T: CpuKernels>(y: &Tensor, g: &Tensor, log: bool) -> Storage {
    let cols = last_axis(y);
    storage(y.with_contiguous(|ys: &[T]| {
        g.with_contiguous(|gs: &[T]| {
            let mut dx = T::alloc(ys.len());
            match log {
                false => T::softmax_backward(ys, gs, &mut dx, cols),
                true => T::log_softmax_backward(ys, gs, &mut dx, cols),
            }
            dx
        })
    }))
}

pub(crate) fn layernorm_forward<T: CpuKernels>(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> [Storage; 3] {
    let cols = last_axis(x);
    let rows = x.numel() / cols;
    let mut mean = vec![T::ZERO; rows];
    let mut rstd = vec![T::ZERO; rows];
    let y = x.with_contiguous(|xs: &[T]| {
        gamma.with_contiguous(|gs: &[T]| {
            beta.with_contiguous(|bs: &[T]| {
                let mut y = T::alloc(xs.len());
                let e = T::from_f64(eps);
                T::layernorm_forward(xs, gs, bs, e, &mut y, &mut mean, &mut rstd, cols);
                y
            })
        })
    });
    [storage(y), storage(mean), storage(rstd)]
}

pub(crate) fn layernorm_backward<T: CpuKernels>(
    x: &Tensor,
    gamma: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    g: &Tensor,
) -> [Storage; 3] {
    let cols = last_axis(x);
    let rows = x.numel() / cols;
    let mut dx = T::alloc(rows * cols);
    let mut dgamma = vec![T::ZERO; cols];
    let mut dbeta = vec![T::ZERO; cols];
    x.with_contiguous(|xs: &[T]| {
        gamma.with_contiguous(|gs: &[T]| {
            mean.with_contiguous(|ms: &[T]| {
                rstd.with_contiguous(|rs: &[T]| {
                    g.with_contiguous(|dys: &[T]| {
                        T::layernorm_backward(
                            xs,
                            gs,
                            ms,
                            rs,
                            dys,
                            &mut dx,
                            &mut dgamma,
                            &mut dbeta,
                            cols,
                        )
                    })
                })
            })
        })
    });
    [storage(dx), storage(dgamma), storage(dbeta)]
}

pub(crate) fn l2_normalize_forward<T: CpuKernels>(x: &Tensor, eps: f64) -> [Storage; 2] {
    let cols = last_axis(x);
    let eps_t = T::from_f64(eps);
    let (y, norms) = x.with_contiguous(|xs: &[T]| {
        let mut y = T::alloc(xs.len());
        let mut norms = Vec::with_capacity(xs.len() / cols);
        for (xr, yr) in xs.chunks(cols).zip(y.chunks_mut(cols)) {
            let mut ss = T::ZERO;
            for &v in xr {
                ss += v * v;
            }
            let r = ss.sqrt();
            let d = r.max(eps_t);
            for (o, &v) in yr.iter_mut().zip(xr) {
                *o = v / d;
            }
            norms.push(r);
        }
        (y, norms)
    });
    [storage(y), storage(norms)]
}

pub(crate) fn l2_normalize_backward<T: CpuKernels>(
    y: &Tensor,
    norms: &Tensor,
    g: &Tensor,
    eps: f64,
) -> Storage {
    let cols = last_axis(y);
    let eps_t = T::from_f64(eps);
    storage(y.with_contiguous(|ys: &[T]| {
        norms.with_contiguous(|norms: &[T]| {
            g.with_contiguous(|gs: &[T]| {
                let mut dx = T::alloc(ys.len());
                let rows = ys
                    .chunks(cols)
                    .zip(gs.chunks(cols))
                    .zip(dx.chunks_mut(cols));
                for (((yr, gr), dr), &r) in rows.zip(norms) {
                    if r > eps_t {
                        let mut dot = T::ZERO;
                        for (&a, &b) in yr.iter().zip(gr) {
                            dot += a * b;
                        }
                        for ((d, &a), &b) in dr.iter_mut().zip(yr).zip(gr) {
                            *d = (b - a * dot) / r;
                        }
                    } else {
                        for (d, &b) in dr.iter_mut().zip(gr) {
                            *d = b / eps_t;
                        }
                    }
                }
                dx
            })
        })
    }))
}
