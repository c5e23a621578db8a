//! 2-D convolution, NCHW, as im2col + GEMM (kernels::cpu::conv, docs/conv.md).
//! x [N, C, H, W], weight [O, C, kh, kw], bias [O] -> y [N, O, oh, ow].
//! Per image, with cols = im2col(x_n) [C kh kw, oh ow] and W as [O, C kh kw]:
//!   y_n = W cols + b;   dW += dy_n cols^T;   dcols = W^T dy_n, dx_n = col2im(dcols);   db = sum dy.
//! The column matrix is recomputed in backward instead of kept (it is kh kw times larger than x).

use crate::kernels::cpu::conv::Conv2dGeometry;
use crate::kernels::cpu::gemm::Layout as Mat;
use crate::kernels::Float;
use crate::{with_dtype, Element, EngineError, Result, Tensor};

impl Tensor {
    /// Convolution with `stride` and zero `padding` given as (rows, columns).
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        let x = self;
        x.check_dtype("conv2d", weight)?;
        if x.rank() != 4 || weight.rank() != 4 || x.shape()[1] != weight.shape()[1] {
            return Err(EngineError::shape("conv2d", x.shape(), weight.shape()));
        }
        let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        let (o, kh, kw) = (weight.shape()[0], weight.shape()[2], weight.shape()[3]);
        if stride.0 == 0
            || stride.1 == 0
            || h + 2 * padding.0 < kh
            || w + 2 * padding.1 < kw
            || kh == 0
            || kw == 0
        {
            return Err(EngineError::arg(
                "conv2d",
                x.shape(),
                format!(
                    "kernel {kh}x{kw}, stride {stride:?}, padding {padding:?} do not fit the image"
                ),
            ));
        }
        if let Some(b) = bias {
            x.check_dtype("conv2d", b)?;
            if b.shape() != [o] {
                return Err(EngineError::shape(
                    "conv2d (bias)",
                    weight.shape(),
                    b.shape(),
                ));
            }
        }
        let geom = Conv2dGeometry {
            channels: c,
            height: h,
            width: w,
            kernel_h: kh,
            kernel_w: kw,
            stride_h: stride.0,
            stride_w: stride.1,
            pad_h: padding.0,
            pad_w: padding.1,
        };
        let (k, p) = (geom.col_rows(), geom.col_cols());
        let shape = [n, o, geom.out_h(), geom.out_w()];
        let image_len = c * h * w;
        if x.is_cuda() || weight.is_cuda() {
            return super::cuda::conv2d(x, weight, bias, geom, shape);
        }
        let data = with_dtype!(x.dtype(), T => {
            let mut y = T::alloc(n * o * p);
            let mut cols = T::alloc(k * p);
            let bias_values = bias.map(|b| b.to_vec::<T>()).transpose()?;
            x.with_contiguous(|xs: &[T]| weight.with_contiguous(|ws: &[T]| {
                for (img, yn) in xs.chunks(image_len).zip(y.chunks_mut(o * p)) {
                    T::im2col(&geom, img, &mut cols);
                    let beta = match &bias_values {
                        Some(bv) => {
                            for (row, &b) in yn.chunks_mut(p).zip(bv) {
                                row.fill(b);
                            }
                            T::ONE
                        }
                        None => T::ZERO,
                    };
                    T::gemm(o, k, p, T::ONE, ws, Mat::row_major(k), &cols, Mat::row_major(p), beta, yn, Mat::row_major(p));
                }
            }));
            T::recycle(cols);
            T::wrap(y)
        });
        let (xd, wd) = (x.detach(), weight.detach());
        let mut inputs = vec![x, weight];
        inputs.extend(bias);
        let has_bias = bias.is_some();
        Ok(Tensor::from_storage_op(
            data,
            &shape,
            "conv2d",
            &inputs,
            Box::new(move |g| {
                with_dtype!(g.dtype(), T => {
                    let mut dx = T::alloc(n * image_len);
                    let mut dw = T::alloc_zeroed(o * k);
                    let mut db = vec![T::ZERO; o];
                    let mut cols = T::alloc(k * p);
                    let mut dcols = T::alloc(k * p);
                    xd.with_contiguous(|xs: &[T]| wd.with_contiguous(|ws: &[T]| g.with_contiguous(|gs: &[T]| {
                        for ((img, dimg), gn) in xs.chunks(image_len).zip(dx.chunks_mut(image_len)).zip(gs.chunks(o * p)) {
                            T::im2col(&geom, img, &mut cols);
                            // dW += dy_n [O, P] cols^T [P, K]
                            T::gemm(o, p, k, T::ONE, gn, Mat::row_major(p), &cols, Mat::col_major(p), T::ONE, &mut dw, Mat::row_major(k));
                            // dcols [K, P] = W^T [K, O] dy_n [O, P]
                            T::gemm(k, o, p, T::ONE, ws, Mat::col_major(k), gn, Mat::row_major(p), T::ZERO, &mut dcols, Mat::row_major(p));
                            T::col2im(&geom, &dcols, dimg);
                            for (d, row) in db.iter_mut().zip(gn.chunks(p)) {
                                for &v in row {
                                    *d += v;
                                }
                            }
                        }
                    })));
                    T::recycle(cols);
                    T::recycle(dcols);
                    let mut grads = vec![
                        Some(Tensor::from_data(dx, xd.shape())),
                        Some(Tensor::from_data(dw, wd.shape())),
                    ];
                    if has_bias {
                        grads.push(Some(Tensor::from_data(db, &[o])));
                    }
                    Ok(grads)
                })
            }),
        ))
    }
}
