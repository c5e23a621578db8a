//! 2-D convolution, NCHW, as im2col + GEMM (kernels::cpu::conv, docs/conv.md).
//! x [N, C, H, W], weight [O, C, kh, kw], bias [O] -> y [N, O, oh, ow].
//! Per group of images, with cols = im2col(x_group) [C kh kw, G oh ow] and W as [O, C kh kw]
//! (the CPU backend: backend/cpu/conv.rs):
//!   Y = W cols + b;   dW += dY cols^T;   dcols = W^T dY, dx = col2im(dcols);   db = sum dy.
//! The column matrix is recomputed in backward instead of kept (it is kh kw times larger than x).

use crate::backend::{self, Conv2dGeometry};
use crate::{EngineError, Result, Tensor};

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
        let shape = [n, o, geom.out_h(), geom.out_w()];
        let data = backend::conv2d_forward(x, weight, bias, geom)?;
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
                let (dx, dw, db) = backend::conv2d_backward(&xd, &wd, g, geom, has_bias)?;
                let mut grads = vec![
                    Some(Tensor::from_storage(dx, xd.shape())),
                    Some(Tensor::from_storage(dw, wd.shape())),
                ];
                grads.extend(db.map(|db| Some(Tensor::from_storage(db, &[o]))));
                Ok(grads)
            }),
        ))
    }
}
