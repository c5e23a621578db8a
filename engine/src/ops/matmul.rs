//! Matrix multiply (batched, broadcast over leading dims) and linear layers, on the kernels' GEMM
//! with strided operands: a transposed view is passed as a column-major layout, never copied.
//! Backward derivation: docs/matmul.md (dA = dC B^T, dB = A^T dC).

use super::binary::broadcast_shape;
use crate::kernels::cpu::gemm::{BatchStrides, Layout as Mat};
use crate::kernels::Float;
use crate::layout::Layout;
use crate::{with_dtype, Element, EngineError, Result, Tensor};

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

fn matmul_forward<T: Element>(
    a: &Tensor,
    b: &Tensor,
    batch: &[usize],
    m: usize,
    k: usize,
    n: usize,
) -> Vec<T> {
    let count: usize = batch.iter().product();
    let mut c = T::alloc(count * m * n);
    if c.is_empty() {
        return c;
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
        return c;
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
    c
}

impl Tensor {
    /// C = A B.  a [.., m, k], b [.., k, n] -> c [batch.., m, n], batch dims broadcast.
    pub fn matmul(&self, b: &Tensor) -> Result<Tensor> {
        let a = self;
        a.check_dtype("matmul", b)?;
        if a.rank() < 2 || b.rank() < 2 || a.shape()[a.rank() - 1] != b.shape()[b.rank() - 2] {
            return Err(EngineError::shape("matmul", a.shape(), b.shape()));
        }
        let (m, k, n) = (
            a.shape()[a.rank() - 2],
            a.shape()[a.rank() - 1],
            b.shape()[b.rank() - 1],
        );
        let batch = broadcast_shape(
            "matmul",
            &a.shape()[..a.rank() - 2],
            &b.shape()[..b.rank() - 2],
        )
        .map_err(|_| EngineError::shape("matmul", a.shape(), b.shape()))?;
        if a.is_cuda() || b.is_cuda() {
            return super::cuda::matmul(a, b, &batch, (m, k, n));
        }
        let mut shape = batch.clone();
        shape.extend([m, n]);
        let data = with_dtype!(a.dtype(), T => T::wrap(matmul_forward::<T>(a, b, &batch, m, k, n)));
        let (ad, bd) = (a.detach(), b.detach());
        let (need_a, need_b) = (a.requires_grad(), b.requires_grad());
        Ok(Tensor::from_storage_op(
            data,
            &shape,
            "matmul",
            &[a, b],
            Box::new(move |g| {
                // dA = dC B^T, summed over the batch dims A was broadcast along
                let ga = need_a
                    .then(|| g.matmul(&bd.t()?)?.sum_to(ad.shape()))
                    .transpose()?;
                // dB = A^T dC; for a shared 2-d B, all rows of the batch in one GEMM
                let gb = need_b
                    .then(|| {
                        if k == 0 {
                            Ok(Tensor::zeros(bd.shape(), bd.dtype()))
                        } else if bd.rank() == 2 && ad.rank() > 2 {
                            let rows = ad.numel() / k;
                            ad.reshape(&[rows, k])?.t()?.matmul(&g.reshape(&[rows, n])?)
                        } else {
                            ad.t()?.matmul(g)?.sum_to(bd.shape())
                        }
                    })
                    .transpose()?;
                Ok(vec![ga, gb])
            }),
        ))
    }

    /// y = x W^T + b.  x [.., in], weight [out, in], bias [out] -> y [.., out]. The bias is
    /// written into y first and the GEMM adds to it (beta = 1), one pass over y.
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let x = self;
        x.check_dtype("linear", weight)?;
        if x.rank() < 1 || weight.rank() != 2 || x.shape()[x.rank() - 1] != weight.shape()[1] {
            return Err(EngineError::shape("linear", x.shape(), weight.shape()));
        }
        let (out_f, in_f) = (weight.shape()[0], weight.shape()[1]);
        if let Some(b) = bias {
            x.check_dtype("linear", b)?;
            if b.shape() != [out_f] {
                return Err(EngineError::shape(
                    "linear (bias)",
                    weight.shape(),
                    b.shape(),
                ));
            }
        }
        if x.is_cuda() || weight.is_cuda() {
            return super::cuda::linear(x, weight, bias);
        }
        let rows: usize = x.shape()[..x.rank() - 1].iter().product();
        let mut shape = x.shape().to_vec();
        *shape.last_mut().expect("rank >= 1") = out_f;
        let xm = if x.layout().dims_merge(0, x.rank() - 1) {
            x.clone()
        } else {
            x.detach().contiguous()
        };
        let data = with_dtype!(x.dtype(), T => {
            let mut y = T::alloc(rows * out_f);
            let beta = match bias {
                Some(b) => {
                    b.with_contiguous(|bs: &[T]| y.chunks_mut(out_f.max(1)).for_each(|r| r.copy_from_slice(bs)));
                    T::ONE
                }
                None => T::ZERO,
            };
            if !y.is_empty() {
                xm.with_strided(|sx: &[T], lx| {
                    weight.with_strided(|sw: &[T], lw| {
                        let la = Mat { row_stride: if x.rank() >= 2 { lx.strides[x.rank() - 2] } else { in_f }, col_stride: lx.strides[x.rank() - 1] };
                        // W^T [in, out]: element (p, j) = W[j, p]
                        let lwt = Mat { row_stride: lw.strides[1], col_stride: lw.strides[0] };
                        T::gemm(rows, in_f, out_f, T::ONE, &sx[lx.offset..], la, &sw[lw.offset..], lwt, beta, &mut y, Mat::row_major(out_f))
                    })
                });
            }
            T::wrap(y)
        });
        let (xd, wd) = (x.detach(), weight.detach());
        let (need_x, need_w) = (x.requires_grad(), weight.requires_grad());
        let mut inputs = vec![x, weight];
        inputs.extend(bias);
        let has_bias = bias.is_some();
        Ok(Tensor::from_storage_op(
            data,
            &shape,
            "linear",
            &inputs,
            Box::new(move |g| {
                let g2 = g.reshape(&[rows, out_f])?;
                // dx = dy W;  dW = dy^T x;  db = sum of dy over rows
                let gx = need_x
                    .then(|| g2.matmul(&wd)?.reshape(xd.shape()))
                    .transpose()?;
                let gw = need_w
                    .then(|| g2.t()?.matmul(&xd.reshape(&[rows, in_f])?))
                    .transpose()?;
                let mut grads = vec![gx, gw];
                if has_bias {
                    grads.push(Some(g2.sum(0, false)?));
                }
                Ok(grads)
            }),
        ))
    }
}
