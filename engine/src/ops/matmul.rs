//! Matrix multiply (batched, broadcast over leading dims) and linear layers (the GEMMs with
//! strided operands are in backend/{cpu,cuda}/matmul.rs: a transposed view is never copied).
//! Backward derivation: docs/matmul.md (dA = dC B^T, dB = A^T dC).

use super::binary::broadcast_shape;
use crate::backend;
use crate::{EngineError, Result, Tensor};

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
        let mut shape = batch.clone();
        shape.extend([m, n]);
        let data = backend::matmul(a, b, &batch, (m, k, n))?;
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
                            Tensor::zeros(bd.shape(), bd.dtype()).to(bd.device())
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

    /// y = x W^T + b.  x [.., in], weight [out, in], bias [out] -> y [.., out].
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
        let rows: usize = x.shape()[..x.rank() - 1].iter().product();
        let mut shape = x.shape().to_vec();
        *shape.last_mut().expect("rank >= 1") = out_f;
        let data = backend::linear(x, weight, bias)?;
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
