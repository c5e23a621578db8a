//! 2-D convolution as im2col + GEMM (kernels::cpu::conv, docs/conv.md), on NCHW images
//! ([`Tensor::conv2d`]) or channels-last ones ([`Tensor::conv2d_channels_last`]); the weight is
//! PyTorch's [O, C, kh, kw] in both, the bias [O].
//! NCHW, per group of images, with cols = im2col(x_group) [C kh kw, G oh ow] and W as
//! [O, C kh kw] (the CPU backend: backend/cpu/conv.rs):
//!   Y = W cols + b;   dW += dY cols^T;   dcols = W^T dY, dx = col2im(dcols);   db = sum dy.
//! Channels last, with cols [G oh ow, kh kw C] and Wp the weight as [O, kh kw C]
//! (backend/cpu/conv_channels_last.rs):
//!   Y = cols Wp^T + b;   dWp += dY^T cols;   dcols = dY Wp, dx = col2im(dcols);   db = sum dY.
//! The column matrix is recomputed in backward instead of kept (it is kh kw times larger than x).

use crate::backend::{self, Conv2dGeometry};
use crate::storage::Device;
use crate::{EngineError, Result, Tensor};

/// The geometry of a conv2d of images with `c` channels of `h` x `w` (checked against the
/// weight's and bias' shapes; `op` and `x` name the call in errors).
fn geometry(
    op: &'static str,
    x: &Tensor,
    (c, h, w): (usize, usize, usize),
    weight: &Tensor,
    bias: Option<&Tensor>,
    (stride, padding): ((usize, usize), (usize, usize)),
) -> Result<Conv2dGeometry> {
    x.check_dtype(op, weight)?;
    if x.rank() != 4 || weight.rank() != 4 || c != weight.shape()[1] {
        return Err(EngineError::shape(op, x.shape(), weight.shape()));
    }
    let (o, kh, kw) = (weight.shape()[0], weight.shape()[2], weight.shape()[3]);
    if stride.0 == 0
        || stride.1 == 0
        || h + 2 * padding.0 < kh
        || w + 2 * padding.1 < kw
        || kh == 0
        || kw == 0
    {
        return Err(EngineError::arg(
            op,
            x.shape(),
            format!(
                "kernel {kh}x{kw}, stride {stride:?}, padding {padding:?} do not fit the image"
            ),
        ));
    }
    if let Some(b) = bias {
        x.check_dtype(op, b)?;
        if b.shape() != [o] {
            let what = if op == "conv2d" {
                "conv2d (bias)"
            } else {
                "conv2d (channels last, bias)"
            };
            return Err(EngineError::shape(what, weight.shape(), b.shape()));
        }
    }
    Ok(Conv2dGeometry {
        channels: c,
        height: h,
        width: w,
        kernel_h: kh,
        kernel_w: kw,
        stride_h: stride.0,
        stride_w: stride.1,
        pad_h: padding.0,
        pad_w: padding.1,
    })
}

/// The four dimensions of a rank-4 tensor (zeros for another rank: [`geometry`] rejects it).
fn dims4(x: &Tensor) -> [usize; 4] {
    <[usize; 4]>::try_from(x.shape()).unwrap_or([0; 4])
}

impl Tensor {
    /// Convolution of NCHW images with `stride` and zero `padding` given as (rows, columns).
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        let x = self;
        let [n, c, h, w] = dims4(x);
        let geom = geometry("conv2d", x, (c, h, w), weight, bias, (stride, padding))?;
        let o = weight.shape()[0];
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

    /// Convolution of channels-last images x [N, H, W, C] -> [N, oh, ow, O], the same
    /// convolution as [`Tensor::conv2d`] of x permuted to NCHW, permuted back (the weight stays
    /// [O, C, kh, kw]). On the CPU its own kernels (no permute, no dx for an x that needs no
    /// gradient); on CUDA exactly that composition.
    pub fn conv2d_channels_last(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        let x = self;
        if let Device::Cuda(_) = x.device() {
            let y = x
                .permute(&[0, 3, 1, 2])?
                .conv2d(weight, bias, stride, padding)?;
            return y.permute(&[0, 2, 3, 1]);
        }
        let op = "conv2d (channels last)";
        let [n, h, w, c] = dims4(x);
        let geom = geometry(op, x, (c, h, w), weight, bias, (stride, padding))?;
        let o = weight.shape()[0];
        let shape = [n, geom.out_h(), geom.out_w(), o];
        let data = backend::conv2d_channels_last_forward(x, weight, bias, geom)?;
        let (xd, wd) = (x.detach(), weight.detach());
        let mut inputs = vec![x, weight];
        inputs.extend(bias);
        let needs = (x.requires_grad(), bias.is_some());
        Ok(Tensor::from_storage_op(
            data,
            &shape,
            "conv2d_channels_last",
            &inputs,
            Box::new(move |g| {
                let (dx, dw, db) =
                    backend::conv2d_channels_last_backward(&xd, &wd, g, geom, needs)?;
                let mut grads = vec![
                    dx.map(|dx| Tensor::from_storage(dx, xd.shape())),
                    Some(Tensor::from_storage(dw, wd.shape())),
                ];
                grads.extend(db.map(|db| Some(Tensor::from_storage(db, &[o]))));
                Ok(grads)
            }),
        ))
    }
}
