//! Products on the CPU: batched matmul and linear on the kernels' GEMM
//! with strided operands: a transposed view is passed as a column-major layout, never copied.

use super::{storage, CpuKernels};
use crate::kernels::gemm::{BatchStrides, MatrixLayout as Mat};
use crate::layout::Layout;
use crate::storage::Storage;
use crate::Tensor;

/// The GEMM layout of the last two dims of `l`.
fn matrix_layout(l: &Layout) -> Mat {
    let r = l.shape.len();
    Mat {
        row_stride: l.strides[r - 2],
        col_stride: l.strides[r - 1],
    }
}

/// `t`'s layout broadcast to `batch + [rows, cols]`.
fn batched_layout(t: &Tensor, batch: &[usize]) -> Layout {
    let mut full = batch.to_vec();
    full.extend_from_slice(&t.shape()[t.rank() - 2..]);
    t.layout().broadcast_to(&full).expect("batch shape checked")
}

/// Storage offsets of the matrices of `l` over its first `dims` batch dims, in row-major order.
fn outer_offsets(l: &Layout, dims: usize) -> Vec<usize> {
    let outer = Layout {
        shape: l.shape[..dims].to_vec(),
        strides: l.strides[..dims].to_vec(),
        offset: l.offset,
    };
    let mut offsets = Vec::with_capacity(outer.numel());
    outer.for_each_offset(|o| offsets.push(o));
    offsets
}

pub(crate) fn matmul<T: CpuKernels>(
    a: &Tensor,
    b: &Tensor,
    batch: &[usize],
    (m, k, n): (usize, usize, usize),
) -> Storage {
    let count: usize = batch.iter().product();
    let mut c = T::alloc(count * m * n);
    if c.is_empty() {
        return storage(c);
    }
    // [.., m, k] @ [k, n] with mergeable leading dims: one GEMM of (count * m) rows.
    if b.rank() == 2 && a.layout().dims_merge(0, a.rank() - 1) {
        a.with_strided(|sa: &[T], la| {
            b.with_strided(|sb: &[T], lb| {
                T::gemm(
                    count * m,
                    k,
                    n,
                    T::ONE,
                    &sa[la.offset..],
                    matrix_layout(la),
                    &sb[lb.offset..],
                    matrix_layout(lb),
                    T::ZERO,
                    &mut c,
                    Mat::row_major(n),
                )
            })
        });
        return storage(c);
    }
    // The trailing batch dims that merge into one stride in both operands go to one batched GEMM
    // call; the remaining leading batch dims are looped over (no copies, even for the permuted
    // heads of a fused QKV projection).
    let (la, lb) = (batched_layout(a, batch), batched_layout(b, batch));
    let nb = batch.len();
    let split = (0..=nb)
        .find(|&s| la.dims_merge(s, nb) && lb.dims_merge(s, nb))
        .unwrap_or(nb);
    let inner: usize = batch[split..].iter().product();
    let stride = |l: &Layout| if split == nb { 0 } else { l.strides[nb - 1] };
    let strides = BatchStrides {
        count: inner,
        a: stride(&la),
        b: stride(&lb),
        c: m * n,
    };
    let (offsets_a, offsets_b) = (outer_offsets(&la, split), outer_offsets(&lb, split));
    a.with_strided(|sa: &[T], _| {
        b.with_strided(|sb: &[T], _| {
            for ((oa, ob), cc) in offsets_a
                .iter()
                .zip(&offsets_b)
                .zip(c.chunks_mut(inner * m * n))
            {
                T::gemm_batched(
                    strides,
                    m,
                    k,
                    n,
                    &sa[*oa..],
                    matrix_layout(&la),
                    &sb[*ob..],
                    matrix_layout(&lb),
                    cc,
                    Mat::row_major(n),
                );
            }
        })
    });
    storage(c)
}

/// y = x W^T + b: the GEMM adds the bias to each block of y as it completes (C never read).
pub(crate) fn linear<T: CpuKernels>(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Storage {
    let (out_f, in_f) = (weight.shape()[0], weight.shape()[1]);
    let rows: usize = x.shape()[..x.rank() - 1].iter().product();
    let xm = if x.layout().dims_merge(0, x.rank() - 1) {
        x.clone()
    } else {
        x.detach().contiguous()
    };
    let mut y = T::alloc(rows * out_f);
    if !y.is_empty() {
        xm.with_strided(|sx: &[T], lx| {
            weight.with_strided(|sw: &[T], lw| {
                let la = Mat {
                    row_stride: if x.rank() >= 2 {
                        lx.strides[x.rank() - 2]
                    } else {
                        in_f
                    },
                    col_stride: lx.strides[x.rank() - 1],
                };
                // W^T [in, out]: element (p, j) = W[j, p]
                let lwt = Mat {
                    row_stride: lw.strides[1],
                    col_stride: lw.strides[0],
                };
                let (a, w) = (&sx[lx.offset..], &sw[lw.offset..]);
                let ly = Mat::row_major(out_f);
                let mut gemm = |bs: Option<&[T]>| {
                    T::gemm_bias((rows, in_f, out_f), (a, la), (w, lwt), (&mut y, ly), bs)
                };
                match bias {
                    Some(b) => b.with_contiguous(|bs: &[T]| gemm(Some(bs))),
                    None => gemm(None),
                }
            })
        });
    }
    storage(y)
}
