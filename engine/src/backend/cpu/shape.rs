//! Copies on the CPU: a strided view made row-major, the scatter of narrow's backward, cat,
//! index_select and dtype conversion.

use super::{storage, CpuKernels};
use crate::kernels::cpu::bf16::{narrow_f32, widen_to_f32};
use crate::layout::split_dims;
use crate::layout::Layout;
use crate::storage::{CpuStorage, Storage};
use crate::{bf16, DType, Element, Tensor};

pub(crate) fn contiguous<T: CpuKernels>(x: &Tensor) -> Storage {
    storage(x.with_contiguous(|s: &[T]| {
        let mut v = T::alloc(s.len());
        v.copy_from_slice(s);
        v
    }))
}

pub(crate) fn scatter_into_zeros<T: CpuKernels>(
    g: &Tensor,
    full: &[usize],
    region: &Layout,
) -> Storage {
    let mut out = T::alloc_zeroed(full.iter().product());
    g.with_contiguous(|gs: &[T]| {
        let mut i = 0;
        region.for_each_offset(|o| {
            out[o] += gs[i];
            i += 1;
        });
    });
    storage(out)
}

pub(crate) fn cat<T: CpuKernels>(tensors: &[Tensor], dim: usize, shape: &[usize]) -> Storage {
    let (outer, total, inner) = split_dims(shape, dim);
    let mut out = T::alloc(outer * total * inner);
    let mut start = 0;
    for t in tensors {
        let n = t.shape()[dim];
        t.with_contiguous(|s: &[T]| {
            for o in 0..outer {
                let dst = (o * total + start) * inner;
                out[dst..dst + n * inner].copy_from_slice(&s[o * n * inner..(o + 1) * n * inner]);
            }
        });
        start += n;
    }
    storage(out)
}

pub(crate) fn index_select<T: CpuKernels>(x: &Tensor, dim: usize, indices: &[usize]) -> Storage {
    let (outer, n, inner) = split_dims(x.shape(), dim);
    let m = indices.len();
    storage(x.with_contiguous(|s: &[T]| {
        let mut out = T::alloc(outer * m * inner);
        for o in 0..outer {
            for (j, &i) in indices.iter().enumerate() {
                let src = (o * n + i) * inner;
                out[(o * m + j) * inner..(o * m + j + 1) * inner]
                    .copy_from_slice(&s[src..src + inner]);
            }
        }
        out
    }))
}

pub(crate) fn index_select_backward<T: CpuKernels>(
    g: &Tensor,
    dim: usize,
    indices: &[usize],
    in_shape: &[usize],
) -> Storage {
    let (outer, n, inner) = split_dims(in_shape, dim);
    let m = indices.len();
    let mut dx = T::alloc_zeroed(outer * n * inner);
    g.with_contiguous(|gs: &[T]| {
        for o in 0..outer {
            for (j, &i) in indices.iter().enumerate() {
                let dst = (o * n + i) * inner;
                for (d, &v) in dx[dst..dst + inner]
                    .iter_mut()
                    .zip(&gs[(o * m + j) * inner..])
                {
                    *d += v;
                }
            }
        }
    });
    storage(dx)
}

/// The values of `x` (any host dtype) as `T`: f32 <-> BF16 by the kernels' conversions (RNE one
/// way, exact the other), every other pair through f64 (exact, or rounded once to nearest even
/// for f64 -> BF16).
pub(crate) fn to_dtype<T: Element>(x: &Tensor) -> Storage {
    match (x.dtype(), T::DTYPE) {
        (DType::F32, DType::BF16) => {
            Storage::Cpu(CpuStorage::BF16(x.with_contiguous(|s: &[f32]| {
                let mut v = bf16::alloc(s.len());
                narrow_f32(s, &mut v);
                v
            })))
        }
        (DType::BF16, DType::F32) => storage(x.with_contiguous(|s: &[bf16]| {
            let mut v = f32::alloc(s.len());
            widen_to_f32(s, &mut v);
            v
        })),
        _ => {
            let values = x.to_vec_f64();
            storage(values.iter().map(|&v| T::from_f64(v)).collect::<Vec<T>>())
        }
    }
}
