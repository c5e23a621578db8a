//! Reductions: sum / mean / max over one axis (keepdim option), sum and mean of all elements,
//! mean over tokens. x [outer, n, inner] -> y [outer, (1,) inner] viewing the axis as n.

use super::shape::check_dim;
use crate::backend;
use crate::layout::split_dims;
use crate::{Result, Tensor};

fn reduced_shape(shape: &[usize], dim: usize, keepdim: bool) -> Vec<usize> {
    let mut s = shape.to_vec();
    if keepdim {
        s[dim] = 1;
    } else {
        s.remove(dim);
    }
    s
}

impl Tensor {
    /// Sum over `dim`.  dx = dy broadcast back over `dim`.
    pub fn sum(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        check_dim("sum", self, dim)?;
        let shape = reduced_shape(self.shape(), dim, keepdim);
        let (in_shape, keep_shape) = (
            self.shape().to_vec(),
            reduced_shape(self.shape(), dim, true),
        );
        let y = backend::sum_axis(self, dim)?;
        Ok(Tensor::from_storage_op(
            y,
            &shape,
            "sum",
            &[self],
            Box::new(move |g| {
                Ok(vec![Some(
                    g.reshape(&keep_shape)?
                        .broadcast_to(&in_shape)?
                        .try_contiguous()?,
                )])
            }),
        ))
    }

    /// Mean over `dim`.
    pub fn mean(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        check_dim("mean", self, dim)?;
        let n = self.shape()[dim] as f64;
        self.sum(dim, keepdim)?.mul_scalar(1.0 / n)
    }

    /// Mean over the token axis: x [B, T, C] -> y [B, C].
    pub fn mean_tokens(&self) -> Result<Tensor> {
        if self.rank() != 3 {
            return Err(crate::EngineError::arg(
                "mean_tokens",
                self.shape(),
                "needs [batch, tokens, channels]",
            ));
        }
        self.mean(1, false)
    }

    /// Max over `dim`.  dx = dy at the (first) position of the max, 0 elsewhere.
    pub fn max(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        check_dim("max", self, dim)?;
        let dims = split_dims(self.shape(), dim);
        if dims.1 == 0 {
            return Err(crate::EngineError::arg(
                "max",
                self.shape(),
                format!("axis {dim} is empty"),
            ));
        }
        let shape = reduced_shape(self.shape(), dim, keepdim);
        let in_shape = self.shape().to_vec();
        let (y, argmax) = backend::max_axis(self, dim)?;
        Ok(Tensor::from_storage_op(
            y,
            &shape,
            "max",
            &[self],
            Box::new(move |g| {
                let dx = backend::max_backward(g, &argmax, dims)?;
                Ok(vec![Some(Tensor::from_storage(dx, &in_shape))])
            }),
        ))
    }

    /// Sum of all elements (a 0-d tensor); fixed-chunk order, the same for any thread count.
    /// dx = dy broadcast to x's shape.
    pub fn sum_all(&self) -> Result<Tensor> {
        let in_shape = self.shape().to_vec();
        let total = backend::sum_all(self)?;
        Ok(Tensor::from_storage_op(
            total,
            &[],
            "sum_all",
            &[self],
            Box::new(move |g| Ok(vec![Some(g.broadcast_to(&in_shape)?.try_contiguous()?)])),
        ))
    }

    /// Mean of all elements (a 0-d tensor).
    pub fn mean_all(&self) -> Result<Tensor> {
        let n = self.numel().max(1) as f64;
        self.sum_all()?.mul_scalar(1.0 / n)
    }
}
