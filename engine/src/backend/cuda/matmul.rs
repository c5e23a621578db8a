//! Products on the GPU: batched matmul, linear and conv2d (batched im2col + GEMM) on the CUDA
//! GEMM at the calling thread's precision (`storage::cuda_gemm_precision`: the innermost
//! `gemm_precision_scope`'s, else FP32 SIMT).

use super::{alloc, buffer, storage, zeros};
use crate::kernels::conv::Conv2dGeometry;
use crate::kernels::cuda::reduce as kr;
use crate::kernels::cuda::{conv as kconv, gemm, CudaSlice, GpuDevice};
use crate::kernels::elementwise::BinaryOp;
use crate::kernels::gemm::{BatchStrides, MatrixLayout as Mat};
use crate::layout::Layout;
use crate::storage::{cuda_err, cuda_gemm_precision, Storage};
use crate::{Result, Tensor};

/// A matrix operand of a batched GEMM: a view whose batch dims merge into one stride (or a copy).
struct Operand {
    t: Tensor,
    mat: Mat,
    batch_stride: usize,
}

fn operand(t: &Tensor, batch: &[usize]) -> Result<Operand> {
    let r = t.rank();
    let mut shape = batch.to_vec();
    shape.extend_from_slice(&t.shape()[r - 2..]);
    let mut v = t.detach().broadcast_to(&shape)?;
    let nb = batch.len();
    if v.layout().offset != 0 || !v.layout().dims_merge(0, nb) {
        // (`Tensor::contiguous` keeps a contiguous view at an offset; the GEMM needs offset 0)
        v = Tensor::from_storage(super::contiguous(&v)?, v.shape());
    }
    let l: &Layout = v.layout();
    let (rs, cs) = (l.strides[nb], l.strides[nb + 1]);
    let batch_stride = if nb == 0 { 0 } else { l.strides[nb - 1] };
    Ok(Operand {
        mat: Mat {
            row_stride: rs,
            col_stride: cs,
        },
        batch_stride,
        t: v,
    })
}

/// C = A B for a batch (A [.., m, k], B [.., k, n], broadcast batch) into a fresh buffer.
fn gemm_into(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    batch: &[usize],
    (m, k, n): (usize, usize, usize),
) -> Result<(&'static GpuDevice, CudaSlice<f32>)> {
    let count: usize = batch.iter().product();
    let (oa, ob) = (operand(a, batch)?, operand(b, batch)?);
    let mut out_shape = batch.to_vec();
    out_shape.extend([m, n]);
    let (ga, gb) = (oa.t.read_storage(), ob.t.read_storage());
    let (sa, sb) = (buffer(op, a, &ga)?, buffer(op, b, &gb)?);
    let dev = sa.dev;
    let empty = count * m * n == 0 || k == 0;
    // (k = 0: C = 0 and no kernel runs, so only then is C zero-filled)
    let mut c = match empty {
        true => zeros(dev, op, &out_shape)?,
        false => alloc(dev, op, &out_shape)?,
    };
    if !empty {
        let strides = BatchStrides {
            count,
            a: oa.batch_stride,
            b: ob.batch_stride,
            c: m * n,
        };
        let (pa, pb) = (
            (sa.f32(op, a.shape())?, oa.mat),
            (sb.f32(op, b.shape())?, ob.mat),
        );
        gemm::gemm_batched(
            dev,
            cuda_gemm_precision(),
            strides,
            m,
            k,
            n,
            1.0,
            pa.0,
            pa.1,
            pb.0,
            pb.1,
            0.0,
            &mut c,
            Mat::row_major(n),
        )
        .map_err(cuda_err(op, a.shape()))?;
    }
    Ok((dev, c))
}

pub(crate) fn matmul(
    a: &Tensor,
    b: &Tensor,
    batch: &[usize],
    mkn: (usize, usize, usize),
) -> Result<Storage> {
    let (dev, c) = gemm_into("matmul", a, b, batch, mkn)?;
    Ok(storage(dev, c))
}

/// `y` plus `bias` [o] along axis 1 of `shape` ([rows, o] or [N, o, pixels]), read through a
/// stride-0 view.
fn add_bias(y: Tensor, bias: &Tensor, shape: &[usize]) -> Result<Storage> {
    let mut along = vec![1; shape.len()];
    along[1] = bias.numel();
    let b = bias.reshape(&along)?.broadcast_to(shape)?;
    super::binary(BinaryOp::Add, &y, &b, shape)
}

/// y = x W^T (+ b): one GEMM on the transposed view of W, then the broadcast bias.
pub(crate) fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Storage> {
    let (out_f, in_f) = (weight.shape()[0], weight.shape()[1]);
    let rows: usize = x.shape()[..x.rank() - 1].iter().product();
    let x2 = x.detach().reshape(&[rows, in_f])?;
    let (dev, y) = gemm_into(
        "linear",
        &x2,
        &weight.detach().t()?,
        &[],
        (rows, in_f, out_f),
    )?;
    match bias {
        Some(b) => {
            let y = Tensor::from_storage(storage(dev, y), &[rows, out_f]);
            add_bias(y, &b.detach(), &[rows, out_f])
        }
        None => Ok(storage(dev, y)),
    }
}

/// The column matrices [N, C kh kw, oh ow] of a batch of images.
fn im2col(x: &Tensor, geom: &Conv2dGeometry) -> Result<Tensor> {
    const OP: &str = "conv2d";
    let nimg = x.shape()[0];
    let shape = [nimg, geom.col_rows(), geom.col_cols()];
    x.with_cuda(OP, |dev, xs| {
        let mut cols = alloc(dev, OP, &shape)?;
        kconv::im2col(dev, geom, nimg, xs, &mut cols).map_err(cuda_err(OP, x.shape()))?;
        Ok(Tensor::from_storage(storage(dev, cols), &shape))
    })
}

pub(crate) fn conv2d_forward(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    geom: Conv2dGeometry,
) -> Result<Storage> {
    let (nimg, o) = (x.shape()[0], weight.shape()[0]);
    let (kk, p) = (geom.col_rows(), geom.col_cols());
    let cols = im2col(x, &geom)?;
    let w2 = weight.detach().reshape(&[o, kk])?;
    let (dev, y) = gemm_into("conv2d", &w2, &cols, &[nimg], (o, kk, p))?;
    match bias {
        Some(b) => {
            let y = Tensor::from_storage(storage(dev, y), &[nimg, o, p]);
            add_bias(y, &b.detach(), &[nimg, o, p])
        }
        None => Ok(storage(dev, y)),
    }
}

pub(crate) fn conv2d_backward(
    x: &Tensor,
    weight: &Tensor,
    g: &Tensor,
    geom: Conv2dGeometry,
    with_bias: bool,
) -> Result<(Storage, Storage, Option<Storage>)> {
    const OP: &str = "conv2d backward";
    let (nimg, o) = (x.shape()[0], weight.shape()[0]);
    let (kk, p) = (geom.col_rows(), geom.col_cols());
    let g = g.detach().reshape(&[nimg, o, p])?;
    let cols = im2col(x, &geom)?;
    let w2 = weight.detach().reshape(&[o, kk])?;
    // dcols_n = W^T dy_n, dx_n = col2im(dcols_n)
    let (dev, dcols) = gemm_into(OP, &w2.t()?, &g, &[nimg], (kk, o, p))?;
    let mut dx = alloc(dev, OP, x.shape())?;
    kconv::col2im(dev, &geom, nimg, &dcols, &mut dx).map_err(cuda_err(OP, x.shape()))?;
    // dW = sum_n dy_n cols_n^T: one product per image, summed in image order
    let (_, dw_n) = gemm_into(OP, &g, &cols.transpose(1, 2)?, &[nimg], (o, p, kk))?;
    let mut dw = alloc(dev, OP, &[o * kk])?;
    kr::sum_rows(dev, nimg, o * kk, &dw_n, &mut dw).map_err(cuda_err(OP, weight.shape()))?;
    let db = match with_bias {
        // db = sum over images and pixels: rows of p, then the images
        true => g.with_cuda(OP, |dev, gs| {
            let mut per_image = alloc(dev, OP, &[nimg * o])?;
            kr::sum_last(dev, nimg * o, p, gs, &mut per_image).map_err(cuda_err(OP, &[o]))?;
            let mut db = alloc(dev, OP, &[o])?;
            kr::sum_rows(dev, nimg, o, &per_image, &mut db).map_err(cuda_err(OP, &[o]))?;
            Ok(Some(storage(dev, db)))
        })?,
        false => None,
    };
    Ok((storage(dev, dx), storage(dev, dw), db))
}
