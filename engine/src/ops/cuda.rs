//! The CUDA side of the ops (docs/gpu-ops.md): each op below is called by its CPU twin when an
//! input lives on the GPU. Kernels: dinonat_kernels::cuda. Backward functions first bring the
//! incoming gradient to the GPU (the loss's seed is made on the host), then use CUDA ops or
//! kernels only. Ops with no kernel here return "op X is not available on CUDA" from their CPU
//! twin (`Tensor::cpu_only`).

use super::binary::broadcast_shape;
use super::shape::split_dims;
use crate::kernels::cpu::conv::Conv2dGeometry;
use crate::kernels::cpu::gemm::{BatchStrides, Layout as Mat};
use crate::kernels::cuda::optim::{self as kopt, AdamWStep};
use crate::kernels::cuda::reduce::{self as kr, BinaryOp, MapOp, View};
use crate::kernels::cuda::{conv as kconv, elementwise, gemm, layernorm as kln, softmax as ksm};
use crate::kernels::cuda::{CudaSlice, GpuDevice};
use crate::layout::Layout;
use crate::storage::{cuda_err, cuda_gemm_precision, Device};
use crate::{EngineError, Result, Tensor};

/// The gradient on the GPU (the seed of backward is a host tensor).
pub(crate) fn on_gpu(g: &Tensor) -> Result<Tensor> {
    if g.is_cuda() {
        Ok(g.clone())
    } else {
        g.to(Device::Cuda(0))
    }
}

/// Whether the op runs on the GPU: true when every input is a CUDA tensor, false when every one is
/// on the host, the error "operands on different devices" otherwise.
pub(crate) fn all_cuda(op: &'static str, ts: &[&Tensor]) -> Result<bool> {
    let first = ts[0];
    for t in &ts[1..] {
        same_device(op, first, t)?;
    }
    Ok(first.is_cuda())
}

/// The device buffer of a CUDA tensor's storage (an engine bug otherwise: callers check the
/// device first).
pub(crate) fn cuda_slice<'a>(
    op: &'static str,
    t: &Tensor,
    guard: &'a crate::storage::Storage,
) -> Result<&'a crate::storage::CudaStorage> {
    guard.cuda().ok_or_else(|| {
        EngineError::arg(
            op,
            t.shape(),
            "expected a CUDA tensor, got a CPU one (use .to)",
        )
    })
}

fn same_device(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.device() != b.device() {
        return Err(EngineError::arg(
            op,
            a.shape(),
            format!(
                "operands on different devices ({:?} and {:?}; copy one with .to)",
                a.device(),
                b.device()
            ),
        ));
    }
    Ok(())
}

pub(crate) fn alloc(dev: &GpuDevice, op: &'static str, shape: &[usize]) -> Result<CudaSlice<f32>> {
    let n: usize = shape.iter().product();
    dev.zeros::<f32>(n.max(1)).map_err(cuda_err(op, shape))
}

/// a op b with broadcasting; backward as the CPU's (ops on the gradient, then `sum_to`).
pub(crate) fn binary(a: &Tensor, b: &Tensor, kind: BinaryOp, name: &'static str) -> Result<Tensor> {
    same_device(name, a, b)?;
    let shape = broadcast_shape(name, a.shape(), b.shape())?;
    let la = a.layout().broadcast_to(&shape).expect("broadcast shape");
    let lb = b.layout().broadcast_to(&shape).expect("broadcast shape");
    let ga = a.read_storage();
    let gb = b.read_storage();
    let (sa, sb) = (ga.cuda().expect("cuda"), gb.cuda().expect("cuda"));
    let dev = sa.dev;
    let mut out = alloc(dev, name, &shape)?;
    let va = View {
        data: &sa.data,
        strides: &la.strides,
        offset: la.offset,
    };
    let vb = View {
        data: &sb.data,
        strides: &lb.strides,
        offset: lb.offset,
    };
    kr::binary_strided(dev, kind, &shape, va, vb, &mut out).map_err(cuda_err(name, &shape))?;
    drop((ga, gb));
    let (ac, bc) = (a.detach(), b.detach());
    let (a_shape, b_shape) = (a.shape().to_vec(), b.shape().to_vec());
    let (need_a, need_b) = (a.requires_grad(), b.requires_grad());
    Ok(Tensor::from_cuda_op(
        out,
        dev,
        &shape,
        name,
        &[a, b],
        Box::new(move |g| {
            let g = on_gpu(g)?;
            let (ga, gb) = match kind {
                BinaryOp::Add => (need_a.then(|| g.clone()), need_b.then(|| g.clone())),
                BinaryOp::Sub => (
                    need_a.then(|| g.clone()),
                    need_b.then(|| g.neg()).transpose()?,
                ),
                BinaryOp::Mul => (
                    need_a.then(|| g.mul(&bc)).transpose()?,
                    need_b.then(|| g.mul(&ac)).transpose()?,
                ),
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
        }),
    ))
}

/// y = f(x) elementwise (kernel `map_f32`), recorded as `name` with `backward`.
fn map_op(
    x: &Tensor,
    op: MapOp,
    name: &'static str,
    backward: impl Fn(&Tensor, &Tensor) -> Result<Tensor> + Send + Sync + 'static,
) -> Result<Tensor> {
    let n = x.numel();
    let (dev, y) = x.with_cuda(name, |dev, xs| {
        let mut y = alloc(dev, name, x.shape())?;
        kr::map(dev, op, n, xs, &mut y).map_err(cuda_err(name, x.shape()))?;
        Ok((dev, y))
    })?;
    let saved_x = x.detach();
    Ok(Tensor::from_cuda_op(
        y,
        dev,
        x.shape(),
        name,
        &[x],
        Box::new(move |g| {
            let g = on_gpu(g)?;
            Ok(vec![Some(backward(&g, &saved_x)?)])
        }),
    ))
}

pub(crate) fn affine(x: &Tensor, scale: f64, shift: f64) -> Result<Tensor> {
    map_op(
        x,
        MapOp::Affine(scale as f32, shift as f32),
        "affine",
        move |g, _| g.affine(scale, 0.0),
    )
}

pub(crate) fn exp(x: &Tensor) -> Result<Tensor> {
    map_op(x, MapOp::Exp, "exp", |g, x| g.mul(&x.exp()?))
}

pub(crate) fn log(x: &Tensor) -> Result<Tensor> {
    map_op(x, MapOp::Log, "log", |g, x| g.div(x))
}

pub(crate) fn sqrt(x: &Tensor) -> Result<Tensor> {
    map_op(x, MapOp::Sqrt, "sqrt", |g, x| {
        g.div(&x.sqrt()?)?.mul_scalar(0.5)
    })
}

pub(crate) fn powf(x: &Tensor, p: f64) -> Result<Tensor> {
    map_op(x, MapOp::Pow(p as f32), "powf", move |g, x| {
        g.mul(&x.powf(p - 1.0)?.mul_scalar(p)?)
    })
}

/// max(x, eps); backward: dy where x > eps, else 0.
fn clamp_min(x: &Tensor, eps: f64) -> Result<Tensor> {
    map_op(x, MapOp::Max(eps as f32), "clamp_min", move |g, x| {
        let n = x.numel();
        let (dev, mask) = x.with_cuda("clamp_min", |dev, xs| {
            let mut m = alloc(dev, "clamp_min", x.shape())?;
            kr::map(dev, MapOp::Step(eps as f32), n, xs, &mut m)
                .map_err(cuda_err("clamp_min", x.shape()))?;
            Ok((dev, m))
        })?;
        g.mul(&Tensor::from_cuda(mask, dev, x.shape()))
    })
}

pub(crate) fn gelu(x: &Tensor) -> Result<Tensor> {
    let n = x.numel();
    let (dev, y) = x.with_cuda("gelu", |dev, xs| {
        let mut y = alloc(dev, "gelu", x.shape())?;
        elementwise::gelu_forward(dev, n, xs, &mut y).map_err(cuda_err("gelu", x.shape()))?;
        Ok((dev, y))
    })?;
    let xd = x.detach();
    Ok(Tensor::from_cuda_op(
        y,
        dev,
        x.shape(),
        "gelu",
        &[x],
        Box::new(move |g| {
            let g = on_gpu(g)?;
            let (dev, dx) = xd.with_cuda("gelu backward", |dev, xs| {
                g.with_cuda("gelu backward", |_, gs| {
                    let mut dx = alloc(dev, "gelu backward", xd.shape())?;
                    elementwise::gelu_backward(dev, n, xs, gs, &mut dx)
                        .map_err(cuda_err("gelu backward", xd.shape()))?;
                    Ok((dev, dx))
                })
            })?;
            Ok(vec![Some(Tensor::from_cuda(dx, dev, xd.shape()))])
        }),
    ))
}

/// Sum over `dim`: last axis by rows, first by columns (deterministic chunks), else the axis is
/// moved last first. Backward: broadcast of dy (views and a strided copy).
pub(crate) fn sum(x: &Tensor, dim: usize, keepdim: bool, shape: &[usize]) -> Result<Tensor> {
    let (outer, n, inner) = split_dims(x.shape(), dim);
    let src = if inner == 1 || outer == 1 {
        x.detach()
    } else {
        let mut perm: Vec<usize> = (0..x.rank()).filter(|&k| k != dim).collect();
        perm.push(dim);
        x.detach().permute(&perm)?
    };
    let (dev, y) = src.with_cuda("sum", |dev, xs| {
        let mut y = alloc(dev, "sum", &[outer * inner])?;
        if outer == 1 && inner != 1 {
            kr::sum_rows(dev, n, inner, xs, &mut y)
        } else {
            kr::sum_last(dev, outer * inner, n, xs, &mut y)
        }
        .map_err(cuda_err("sum", x.shape()))?;
        Ok((dev, y))
    })?;
    let in_shape = x.shape().to_vec();
    let mut keep_shape = in_shape.clone();
    keep_shape[dim] = 1;
    let _ = keepdim;
    Ok(Tensor::from_cuda_op(
        y,
        dev,
        shape,
        "sum",
        &[x],
        Box::new(move |g| {
            let g = on_gpu(g)?;
            Ok(vec![Some(
                g.reshape(&keep_shape)?
                    .broadcast_to(&in_shape)?
                    .contiguous(),
            )])
        }),
    ))
}

/// Softmax (`log` false) or log-softmax over the last axis; backward from the saved output.
pub(crate) fn softmax(x: &Tensor, log: bool, name: &'static str) -> Result<Tensor> {
    let cols = x.shape()[x.rank() - 1];
    let rows = x.numel() / cols;
    let (dev, y) = x.with_cuda(name, |dev, xs| {
        let mut y = alloc(dev, name, x.shape())?;
        ksm::softmax_forward(dev, log, rows, cols, xs, &mut y)
            .map_err(cuda_err(name, x.shape()))?;
        Ok((dev, y))
    })?;
    let y = Tensor::from_cuda(y, dev, x.shape());
    let saved = y.clone();
    Ok(Tensor::from_storage_op_like(
        &y,
        name,
        &[x],
        Box::new(move |g| {
            let g = on_gpu(g)?;
            let dx = saved.with_cuda(name, |dev, ys| {
                g.with_cuda(name, |_, gs| {
                    let mut dx = alloc(dev, name, saved.shape())?;
                    ksm::softmax_backward(dev, log, rows, cols, ys, gs, &mut dx)
                        .map_err(cuda_err(name, saved.shape()))?;
                    Ok(dx)
                })
            })?;
            Ok(vec![Some(Tensor::from_cuda(dx, dev, saved.shape()))])
        }),
    ))
}

pub(crate) fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    same_device("layer_norm", x, gamma)?;
    same_device("layer_norm", x, beta)?;
    let cols = x.shape()[x.rank() - 1];
    let rows = x.numel() / cols;
    let (dev, y, mean, rstd) = x.with_cuda("layer_norm", |dev, xs| {
        gamma.with_cuda("layer_norm", |_, gs| {
            beta.with_cuda("layer_norm", |_, bs| {
                let mut y = alloc(dev, "layer_norm", x.shape())?;
                let mut mean = alloc(dev, "layer_norm", &[rows])?;
                let mut rstd = alloc(dev, "layer_norm", &[rows])?;
                kln::layernorm_forward(
                    dev, rows, cols, eps as f32, xs, gs, bs, &mut y, &mut mean, &mut rstd,
                )
                .map_err(cuda_err("layer_norm", x.shape()))?;
                Ok((dev, y, mean, rstd))
            })
        })
    })?;
    let mean = Tensor::from_cuda(mean, dev, &[rows]);
    let rstd = Tensor::from_cuda(rstd, dev, &[rows]);
    let (xd, gd) = (x.detach(), gamma.detach());
    Ok(Tensor::from_cuda_op(
        y,
        dev,
        x.shape(),
        "layer_norm",
        &[x, gamma, beta],
        Box::new(move |g| {
            let g = on_gpu(g)?;
            let op = "layer_norm backward";
            let (dx, dgamma, dbeta) = xd.with_cuda(op, |dev, xs| {
                gd.with_cuda(op, |_, gs| {
                    mean.with_cuda(op, |_, ms| {
                        rstd.with_cuda(op, |_, rs| {
                            g.with_cuda(op, |_, dys| {
                                let mut dx = alloc(dev, op, xd.shape())?;
                                let mut dgamma = alloc(dev, op, &[cols])?;
                                let mut dbeta = alloc(dev, op, &[cols])?;
                                kln::layernorm_backward(
                                    dev,
                                    rows,
                                    cols,
                                    xs,
                                    gs,
                                    ms,
                                    rs,
                                    dys,
                                    &mut dx,
                                    &mut dgamma,
                                    &mut dbeta,
                                )
                                .map_err(cuda_err(op, xd.shape()))?;
                                Ok((dx, dgamma, dbeta))
                            })
                        })
                    })
                })
            })?;
            Ok(vec![
                Some(Tensor::from_cuda(dx, dev, xd.shape())),
                Some(Tensor::from_cuda(dgamma, dev, &[cols])),
                Some(Tensor::from_cuda(dbeta, dev, &[cols])),
            ])
        }),
    ))
}

/// x / max(||x||, eps) over the last axis, composed of CUDA ops (autodiff through them). A row
/// of zeros gives a NaN gradient here (the CPU op gives dy / eps).
pub(crate) fn l2_normalize(x: &Tensor, eps: f64) -> Result<Tensor> {
    let last = x.rank() - 1;
    let r = x.mul(x)?.sum(last, true)?.sqrt()?;
    x.div(&clamp_min(&r, eps)?)
}

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
        v = contiguous(&v)?;
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

/// Runs C = A B for a batch (A [.., m, k], B [.., k, n], broadcast batch) into a fresh buffer.
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
    let ga = oa.t.read_storage();
    let gb = ob.t.read_storage();
    let (sa, sb) = (ga.cuda().expect("cuda"), gb.cuda().expect("cuda"));
    let dev = sa.dev;
    let mut c = alloc(dev, op, &out_shape)?;
    if count * m * n > 0 && k > 0 {
        let strides = BatchStrides {
            count,
            a: oa.batch_stride,
            b: ob.batch_stride,
            c: m * n,
        };
        gemm::gemm_batched(
            dev,
            cuda_gemm_precision(),
            strides,
            m,
            k,
            n,
            1.0,
            &sa.data,
            oa.mat,
            &sb.data,
            ob.mat,
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
    (m, k, n): (usize, usize, usize),
) -> Result<Tensor> {
    same_device("matmul", a, b)?;
    let (dev, c) = gemm_into("matmul", a, b, batch, (m, k, n))?;
    let mut shape = batch.to_vec();
    shape.extend([m, n]);
    let (ad, bd) = (a.detach(), b.detach());
    let (need_a, need_b) = (a.requires_grad(), b.requires_grad());
    Ok(Tensor::from_cuda_op(
        c,
        dev,
        &shape,
        "matmul",
        &[a, b],
        Box::new(move |g| {
            let g = on_gpu(g)?;
            let ga = need_a
                .then(|| g.matmul(&bd.t()?)?.sum_to(ad.shape()))
                .transpose()?;
            let gb = need_b
                .then(|| {
                    if bd.rank() == 2 && ad.rank() > 2 {
                        let rows = ad.numel() / k;
                        ad.reshape(&[rows, k])?.t()?.matmul(&g.reshape(&[rows, n])?)
                    } else {
                        ad.t()?.matmul(&g)?.sum_to(bd.shape())
                    }
                })
                .transpose()?;
            Ok(vec![ga, gb])
        }),
    ))
}

/// y = x W^T + b, composed of CUDA ops (matmul on a transposed view, broadcast add).
pub(crate) fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    same_device("linear", x, weight)?;
    let (out_f, in_f) = (weight.shape()[0], weight.shape()[1]);
    let rows: usize = x.shape()[..x.rank() - 1].iter().product();
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("rank >= 1") = out_f;
    let mut y = x.reshape(&[rows, in_f])?.matmul(&weight.t()?)?;
    if let Some(b) = bias {
        y = y.add(b)?;
    }
    y.reshape(&shape)
}

/// conv2d as batched im2col + GEMM; the bias is a broadcast add (its own backward).
pub(crate) fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    geom: Conv2dGeometry,
    shape: [usize; 4],
) -> Result<Tensor> {
    same_device("conv2d", x, weight)?;
    let (nimg, o) = (shape[0], shape[1]);
    let (kk, p) = (geom.col_rows(), geom.col_cols());
    let op = "conv2d";
    let cols = x.with_cuda(op, |dev, xs| {
        let mut cols = alloc(dev, op, &[nimg, kk, p])?;
        kconv::im2col(dev, &geom, nimg, xs, &mut cols).map_err(cuda_err(op, x.shape()))?;
        Ok(Tensor::from_cuda(cols, dev, &[nimg, kk, p]))
    })?;
    let w2 = weight.detach().reshape(&[o, kk])?;
    let (dev, y) = gemm_into(op, &w2, &cols, &[nimg], (o, kk, p))?;
    let (xd, wd) = (x.detach(), weight.detach());
    let y = Tensor::from_cuda_op(
        y,
        dev,
        &shape,
        op,
        &[x, weight],
        Box::new(move |g| {
            let g = on_gpu(g)?.reshape(&[nimg, o, p])?;
            let op = "conv2d backward";
            // dcols_n = W^T dy_n, dx_n = col2im(dcols_n)
            let (dev, dcols) = gemm_into(op, &w2.t()?, &g, &[nimg], (kk, o, p))?;
            let mut dx = alloc(dev, op, xd.shape())?;
            kconv::col2im(dev, &geom, nimg, &dcols, &mut dx).map_err(cuda_err(op, xd.shape()))?;
            // dW = sum_n dy_n cols_n^T: one product per image, summed in image order
            let (_, dw_n) = gemm_into(op, &g, &cols.transpose(1, 2)?, &[nimg], (o, p, kk))?;
            let mut dw = alloc(dev, op, &[o * kk])?;
            kr::sum_rows(dev, nimg, o * kk, &dw_n, &mut dw).map_err(cuda_err(op, wd.shape()))?;
            Ok(vec![
                Some(Tensor::from_cuda(dx, dev, xd.shape())),
                Some(Tensor::from_cuda(dw, dev, wd.shape())),
            ])
        }),
    );
    match bias {
        Some(b) => y.add(&b.reshape(&[1, o, 1, 1])?),
        None => Ok(y),
    }
}

/// A row-major copy of a CUDA view (backward: identity).
pub(crate) fn contiguous(x: &Tensor) -> Result<Tensor> {
    let guard = x.read_storage();
    let s = guard.cuda().expect("cuda");
    let dev = s.dev;
    let l = x.layout();
    let mut buf = alloc(dev, "contiguous", x.shape())?;
    kr::strided_copy(dev, &s.data, &l.shape, &l.strides, l.offset, &mut buf)
        .map_err(cuda_err("contiguous", x.shape()))?;
    drop(guard);
    Ok(Tensor::from_cuda_op(
        buf,
        dev,
        x.shape(),
        "contiguous",
        &[x],
        Box::new(|g| Ok(vec![Some(g.clone())])),
    ))
}

/// The backward of narrow on the GPU: `g` written into zeros of shape `full` at `region`.
pub(crate) fn scatter_into_zeros(g: &Tensor, full: &[usize], region: &Layout) -> Result<Tensor> {
    let g = on_gpu(g)?;
    g.with_cuda("narrow backward", |dev, gs| {
        let mut out = alloc(dev, "narrow backward", full)?;
        kr::strided_scatter(
            dev,
            gs,
            &region.shape,
            &region.strides,
            region.offset,
            &mut out,
        )
        .map_err(cuda_err("narrow backward", full))?;
        Ok(Tensor::from_cuda(out, dev, full))
    })
}

/// A CUDA tensor that an in-place update may write: contiguous from offset 0, of `shape`.
fn check_in_place(op: &'static str, t: &Tensor, shape: &[usize]) -> Result<()> {
    if !t.is_cuda() {
        return Err(EngineError::arg(
            op,
            t.shape(),
            "needs CUDA tensors (this is the CUDA update)",
        ));
    }
    if t.shape() != shape {
        return Err(EngineError::shape(op, shape, t.shape()));
    }
    if !t.is_contiguous() || t.layout().offset != 0 {
        return Err(EngineError::arg(
            op,
            t.shape(),
            "needs contiguous tensors at offset 0",
        ));
    }
    Ok(())
}

impl Tensor {
    /// One fused AdamW step on this CUDA parameter, in place (not recorded in the graph):
    /// p <- p (1 - lr wd); m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2;
    /// p <- p - lr (m / bc1) / (sqrt(v / bc2) + eps). `m` and `v` are CUDA tensors of p's shape
    /// (zeros before the first step); lr and weight decay are this tensor's (kernels/cuda/optim.cu).
    pub fn cuda_adamw_step(
        &self,
        grad: &Tensor,
        m: &Tensor,
        v: &Tensor,
        h: &AdamWStep,
    ) -> Result<()> {
        const OP: &str = "cuda_adamw_step";
        for t in [self, m, v] {
            check_in_place(OP, t, self.shape())?;
        }
        if !grad.is_cuda() || grad.shape() != self.shape() {
            return Err(EngineError::shape(OP, self.shape(), grad.shape()));
        }
        let distinct = [
            (self, m),
            (self, v),
            (m, v),
            (grad, self),
            (grad, m),
            (grad, v),
        ];
        if distinct.iter().any(|(a, b)| a.shares_storage(b)) {
            return Err(EngineError::arg(
                OP,
                self.shape(),
                "p, grad, m and v must be distinct buffers",
            ));
        }
        let n = self.numel();
        grad.with_cuda(OP, |dev, gs| {
            let mut ps = self.write_storage();
            let mut ms = m.write_storage();
            let mut vs = v.write_storage();
            let (p, mm, vv) = (
                ps.cuda_mut().expect("cuda"),
                ms.cuda_mut().expect("cuda"),
                vs.cuda_mut().expect("cuda"),
            );
            kopt::adamw_step(dev, n, h, &mut p.data, gs, &mut mm.data, &mut vv.data)
                .map_err(cuda_err(OP, self.shape()))
        })
    }

    /// teacher <- momentum * teacher + (1 - momentum) * student, in place on this CUDA tensor
    /// (the DINO teacher's EMA; not recorded in the graph).
    pub fn cuda_ema_update(&self, student: &Tensor, momentum: f64) -> Result<()> {
        const OP: &str = "cuda_ema_update";
        check_in_place(OP, self, self.shape())?;
        if !student.is_cuda() || student.shape() != self.shape() {
            return Err(EngineError::shape(OP, self.shape(), student.shape()));
        }
        if self.shares_storage(student) {
            return Err(EngineError::arg(
                OP,
                self.shape(),
                "teacher and student must be distinct buffers",
            ));
        }
        let n = self.numel();
        student.with_cuda(OP, |dev, ss| {
            let mut ts = self.write_storage();
            let t = ts.cuda_mut().expect("cuda");
            kopt::ema_update(dev, n, momentum as f32, &mut t.data, ss)
                .map_err(cuda_err(OP, self.shape()))
        })
    }
}
