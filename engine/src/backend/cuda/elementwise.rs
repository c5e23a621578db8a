//! Elementwise, row-wise and layout ops on the GPU (kernels::cuda::{reduce, elementwise,
//! softmax, layernorm}).

use super::{alloc, buffer, storage, zeros};
use crate::kernels::cuda::reduce::{self as kr, View};
use crate::kernels::cuda::{elementwise as kel, layernorm as kln, softmax as ksm};
use crate::kernels::cuda::{CudaSlice, GpuDevice};
use crate::kernels::elementwise::{BinaryOp, MapOp};
use crate::layout::split_dims;
use crate::layout::Layout;
use crate::storage::{cuda_err, Storage};
use crate::{Result, Tensor};

/// a op b at the broadcast `shape`, both read in place through their (broadcast) strides.
pub(crate) fn binary(op: BinaryOp, a: &Tensor, b: &Tensor, shape: &[usize]) -> Result<Storage> {
    let name = op.name();
    let la = a.layout().broadcast_to(shape).expect("broadcast shape");
    let lb = b.layout().broadcast_to(shape).expect("broadcast shape");
    let (ga, gb) = (a.read_storage(), b.read_storage());
    let (sa, sb) = (buffer(name, a, &ga)?, buffer(name, b, &gb)?);
    let dev = sa.dev;
    let mut out = alloc(dev, name, shape)?;
    let va = View {
        data: sa.f32(name, a.shape())?,
        strides: &la.strides,
        offset: la.offset,
    };
    let vb = View {
        data: sb.f32(name, b.shape())?,
        strides: &lb.strides,
        offset: lb.offset,
    };
    kr::binary_strided(dev, op, shape, va, vb, &mut out).map_err(cuda_err(name, shape))?;
    Ok(storage(dev, out))
}

/// out = a op b on row-major buffers of `shape`, with `b` read through `b_strides` (0 = repeat).
fn binary_buffers(
    dev: &'static GpuDevice,
    op: (BinaryOp, &'static str),
    shape: &[usize],
    a: &CudaSlice<f32>,
    b: (&CudaSlice<f32>, &[usize]),
) -> Result<CudaSlice<f32>> {
    let mut out = alloc(dev, op.1, shape)?;
    let a_strides = crate::layout::contiguous_strides(shape);
    let va = View {
        data: a,
        strides: &a_strides,
        offset: 0,
    };
    let vb = View {
        data: b.0,
        strides: b.1,
        offset: 0,
    };
    kr::binary_strided(dev, op.0, shape, va, vb, &mut out).map_err(cuda_err(op.1, shape))?;
    Ok(out)
}

fn map_buffer(
    dev: &'static GpuDevice,
    op: MapOp,
    name: &'static str,
    shape: &[usize],
    x: &CudaSlice<f32>,
) -> Result<CudaSlice<f32>> {
    let n = shape.iter().product();
    let mut y = alloc(dev, name, shape)?;
    kr::map(dev, op, n, x, &mut y).map_err(cuda_err(name, shape))?;
    Ok(y)
}

pub(crate) fn map(op: MapOp, name: &'static str, x: &Tensor) -> Result<Storage> {
    x.with_cuda(name, |dev, xs| {
        Ok(storage(dev, map_buffer(dev, op, name, x.shape(), xs)?))
    })
}

pub(crate) fn gelu_forward(x: &Tensor) -> Result<Storage> {
    let n = x.numel();
    x.with_cuda("gelu", |dev, xs| {
        let mut y = alloc(dev, "gelu", x.shape())?;
        kel::gelu_forward(dev, n, xs, &mut y).map_err(cuda_err("gelu", x.shape()))?;
        Ok(storage(dev, y))
    })
}

pub(crate) fn gelu_backward(x: &Tensor, g: &Tensor) -> Result<Storage> {
    const OP: &str = "gelu backward";
    let n = x.numel();
    x.with_cuda(OP, |dev, xs| {
        g.with_cuda(OP, |_, gs| {
            let mut dx = alloc(dev, OP, x.shape())?;
            kel::gelu_backward(dev, n, xs, gs, &mut dx).map_err(cuda_err(OP, x.shape()))?;
            Ok(storage(dev, dx))
        })
    })
}

/// (rows, cols) of a tensor viewed as rows of its last axis.
fn rows_cols(t: &Tensor) -> (usize, usize) {
    let cols = t.shape()[t.rank() - 1];
    (t.numel() / cols, cols)
}

pub(crate) fn softmax_forward(x: &Tensor, log: bool) -> Result<Storage> {
    let (rows, cols) = rows_cols(x);
    x.with_cuda("softmax", |dev, xs| {
        let mut y = alloc(dev, "softmax", x.shape())?;
        ksm::softmax_forward(dev, log, rows, cols, xs, &mut y)
            .map_err(cuda_err("softmax", x.shape()))?;
        Ok(storage(dev, y))
    })
}

pub(crate) fn softmax_backward(y: &Tensor, g: &Tensor, log: bool) -> Result<Storage> {
    const OP: &str = "softmax backward";
    let (rows, cols) = rows_cols(y);
    y.with_cuda(OP, |dev, ys| {
        g.with_cuda(OP, |_, gs| {
            let mut dx = alloc(dev, OP, y.shape())?;
            ksm::softmax_backward(dev, log, rows, cols, ys, gs, &mut dx)
                .map_err(cuda_err(OP, y.shape()))?;
            Ok(storage(dev, dx))
        })
    })
}

pub(crate) fn layernorm_forward(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<[Storage; 3]> {
    const OP: &str = "layer_norm";
    let (rows, cols) = rows_cols(x);
    x.with_cuda(OP, |dev, xs| {
        gamma.with_cuda(OP, |_, gs| {
            beta.with_cuda(OP, |_, bs| {
                let mut y = alloc(dev, OP, x.shape())?;
                let mut mean = alloc(dev, OP, &[rows])?;
                let mut rstd = alloc(dev, OP, &[rows])?;
                let (m, r) = (&mut mean, &mut rstd);
                kln::layernorm_forward(dev, rows, cols, eps as f32, xs, gs, bs, &mut y, m, r)
                    .map_err(cuda_err(OP, x.shape()))?;
                Ok([storage(dev, y), storage(dev, mean), storage(dev, rstd)])
            })
        })
    })
}

pub(crate) fn layernorm_backward(
    x: &Tensor,
    gamma: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    g: &Tensor,
) -> Result<[Storage; 3]> {
    const OP: &str = "layer_norm backward";
    let (rows, cols) = rows_cols(x);
    x.with_cuda(OP, |dev, xs| {
        gamma.with_cuda(OP, |_, gs| {
            mean.with_cuda(OP, |_, ms| {
                rstd.with_cuda(OP, |_, rs| {
                    g.with_cuda(OP, |_, dys| {
                        let mut dx = alloc(dev, OP, x.shape())?;
                        let mut dgamma = alloc(dev, OP, &[cols])?;
                        let mut dbeta = alloc(dev, OP, &[cols])?;
                        let (dg, db) = (&mut dgamma, &mut dbeta);
                        kln::layernorm_backward(
                            dev, rows, cols, xs, gs, ms, rs, dys, &mut dx, dg, db,
                        )
                        .map_err(cuda_err(OP, x.shape()))?;
                        Ok([storage(dev, dx), storage(dev, dgamma), storage(dev, dbeta)])
                    })
                })
            })
        })
    })
}

/// norms = sqrt(sum of squares per row); y = x / max(norms, eps).
pub(crate) fn l2_normalize_forward(x: &Tensor, eps: f64) -> Result<[Storage; 2]> {
    const OP: &str = "l2_normalize";
    let (rows, cols) = rows_cols(x);
    let shape = [rows, cols];
    x.with_cuda(OP, |dev, xs| {
        let row = [1, 0];
        let squares = binary_buffers(dev, (BinaryOp::Mul, OP), &shape, xs, (xs, &[cols, 1]))?;
        let mut sums = alloc(dev, OP, &[rows])?;
        kr::sum_last(dev, rows, cols, &squares, &mut sums).map_err(cuda_err(OP, x.shape()))?;
        let norms = map_buffer(dev, MapOp::Sqrt, OP, &[rows], &sums)?;
        let d = map_buffer(dev, MapOp::Max(eps), OP, &[rows], &norms)?;
        let y = binary_buffers(dev, (BinaryOp::Div, OP), &shape, xs, (&d, &row))?;
        Ok([storage(dev, y), storage(dev, norms)])
    })
}

/// dx = (dy - m y <dy, y>) / max(r, eps) with m = 1 where r > eps, else 0.
pub(crate) fn l2_normalize_backward(
    y: &Tensor,
    norms: &Tensor,
    g: &Tensor,
    eps: f64,
) -> Result<Storage> {
    const OP: &str = "l2_normalize backward";
    let (rows, cols) = rows_cols(y);
    let shape = [rows, cols];
    let (full, row) = ([cols, 1], [1, 0]);
    y.with_cuda(OP, |dev, ys| {
        norms.with_cuda(OP, |_, rs| {
            g.with_cuda(OP, |_, gs| {
                let products = binary_buffers(dev, (BinaryOp::Mul, OP), &shape, ys, (gs, &full))?;
                let mut dot = alloc(dev, OP, &[rows])?;
                kr::sum_last(dev, rows, cols, &products, &mut dot)
                    .map_err(cuda_err(OP, y.shape()))?;
                let mask = map_buffer(dev, MapOp::Step(eps), OP, &[rows], rs)?;
                let masked =
                    binary_buffers(dev, (BinaryOp::Mul, OP), &[rows], &dot, (&mask, &[1]))?;
                let t = binary_buffers(dev, (BinaryOp::Mul, OP), &shape, ys, (&masked, &row))?;
                let u = binary_buffers(dev, (BinaryOp::Sub, OP), &shape, gs, (&t, &full))?;
                let d = map_buffer(dev, MapOp::Max(eps), OP, &[rows], rs)?;
                let dx = binary_buffers(dev, (BinaryOp::Div, OP), &shape, &u, (&d, &row))?;
                Ok(storage(dev, dx))
            })
        })
    })
}

/// Sum over `dim`: last axis by rows, first by columns (deterministic chunks), else the axis is
/// moved last first.
pub(crate) fn sum_axis(x: &Tensor, dim: usize) -> Result<Storage> {
    let (outer, n, inner) = split_dims(x.shape(), dim);
    let src = if inner == 1 || outer == 1 {
        x.detach()
    } else {
        let mut perm: Vec<usize> = (0..x.rank()).filter(|&k| k != dim).collect();
        perm.push(dim);
        x.detach().permute(&perm)?
    };
    src.with_cuda("sum", |dev, xs| {
        let mut y = alloc(dev, "sum", &[outer * inner])?;
        if outer == 1 && inner != 1 {
            kr::sum_rows(dev, n, inner, xs, &mut y)
        } else {
            kr::sum_last(dev, outer * inner, n, xs, &mut y)
        }
        .map_err(cuda_err("sum", x.shape()))?;
        Ok(storage(dev, y))
    })
}

pub(crate) fn sum_all(x: &Tensor) -> Result<Storage> {
    let n = x.numel();
    x.with_cuda("sum_all", |dev, xs| {
        let mut y = alloc(dev, "sum_all", &[1])?;
        kr::sum_last(dev, 1, n, xs, &mut y).map_err(cuda_err("sum_all", x.shape()))?;
        Ok(storage(dev, y))
    })
}

/// A row-major copy of a view.
pub(crate) fn contiguous(x: &Tensor) -> Result<Storage> {
    let guard = x.read_storage();
    let s = buffer("contiguous", x, &guard)?;
    let l = x.layout();
    let mut out = alloc(s.dev, "contiguous", x.shape())?;
    let data = s.f32("contiguous", x.shape())?;
    kr::strided_copy(s.dev, data, &l.shape, &l.strides, l.offset, &mut out)
        .map_err(cuda_err("contiguous", x.shape()))?;
    Ok(storage(s.dev, out))
}

/// `g` written into zeros of shape `full` at `region`.
pub(crate) fn scatter_into_zeros(g: &Tensor, full: &[usize], region: &Layout) -> Result<Storage> {
    const OP: &str = "narrow backward";
    g.with_cuda(OP, |dev, gs| {
        let mut out = zeros(dev, OP, full)?;
        let (shape, strides) = (&region.shape, &region.strides);
        kr::strided_scatter(dev, gs, shape, strides, region.offset, &mut out)
            .map_err(cuda_err(OP, full))?;
        Ok(storage(dev, out))
    })
}

/// `tensors` joined along `dim`: each piece written into its region of the output (the pieces
/// cover every element, so the output is not zero-filled).
pub(crate) fn cat(tensors: &[Tensor], dim: usize, shape: &[usize]) -> Result<Storage> {
    const OP: &str = "cat";
    let dev = {
        let guard = tensors[0].read_storage();
        buffer(OP, &tensors[0], &guard)?.dev
    };
    let mut out = alloc(dev, OP, shape)?;
    let mut start = 0;
    for t in tensors {
        let n = t.shape()[dim];
        let region = Layout::contiguous(shape).narrow(dim, start, n);
        if t.numel() > 0 {
            t.with_cuda(OP, |_, ts| {
                let (sh, st) = (&region.shape, &region.strides);
                kr::strided_scatter(dev, ts, sh, st, region.offset, &mut out)
                    .map_err(cuda_err(OP, shape))
            })?;
        }
        start += n;
    }
    Ok(storage(dev, out))
}

/// Copies `src`'s elements (any layout) into `dst`'s place in its storage, in place.
pub(crate) fn assign(dst: &Tensor, src: &Tensor) -> Result<()> {
    const OP: &str = "assign";
    let src = match src.shares_storage(dst) {
        // one storage: read a copy first (the write lock below excludes reading it)
        true => Tensor::from_storage(contiguous(src)?, src.shape()),
        false => src.clone(),
    };
    src.with_cuda(OP, |dev, ss| {
        let mut guard = dst.write_storage();
        let d = guard
            .cuda_mut()
            .ok_or_else(|| crate::storage::not_on_cuda(OP, dst.shape()))?;
        let l = dst.layout();
        let d = d.f32_mut(OP, dst.shape())?;
        kr::strided_scatter(dev, ss, &l.shape, &l.strides, l.offset, d)
            .map_err(cuda_err(OP, dst.shape()))
    })
}
