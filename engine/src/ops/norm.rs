//! LayerNorm (kernels::cpu::layernorm, docs/layernorm.md) and L2 normalisation over the last axis.

use crate::backend;
use crate::{EngineError, Result, Tensor};

impl Tensor {
    /// y = (x - mean) / sqrt(var + eps) * gamma + beta over the last axis (biased variance).
    /// x [.., C], gamma [C], beta [C] -> y [.., C]. Forward saves mean and 1/std per row.
    pub fn layer_norm(&self, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
        let x = self;
        x.check_dtype("layer_norm", gamma)?;
        x.check_dtype("layer_norm", beta)?;
        let cols = x.shape().last().copied().unwrap_or(0);
        if x.rank() == 0 || cols == 0 || gamma.shape() != [cols] {
            return Err(EngineError::shape("layer_norm", x.shape(), gamma.shape()));
        }
        if beta.shape() != [cols] {
            return Err(EngineError::shape("layer_norm", x.shape(), beta.shape()));
        }
        let rows = x.numel() / cols;
        let [y, mean, rstd] = backend::layernorm_forward(x, gamma, beta, eps)?;
        let (mean, rstd) = (
            Tensor::from_storage(mean, &[rows]),
            Tensor::from_storage(rstd, &[rows]),
        );
        let (xd, gd) = (x.detach(), gamma.detach());
        Ok(Tensor::from_storage_op(
            y,
            x.shape(),
            "layer_norm",
            &[x, gamma, beta],
            Box::new(move |g| {
                let [dx, dgamma, dbeta] = backend::layernorm_backward(&xd, &gd, &mean, &rstd, g)?;
                Ok(vec![
                    Some(Tensor::from_storage(dx, xd.shape())),
                    Some(Tensor::from_storage(dgamma, &[cols])),
                    Some(Tensor::from_storage(dbeta, &[cols])),
                ])
            }),
        ))
    }

    /// y = x / max(||x||_2, eps) over the last axis (as torch.nn.functional.normalize).
    /// x [.., C] -> y [.., C].  With r = ||x||: dx = (dy - y * sum(dy * y)) / r when r > eps,
    /// else dy / eps.
    pub fn l2_normalize(&self, eps: f64) -> Result<Tensor> {
        let cols = self.shape().last().copied().unwrap_or(0);
        if self.rank() == 0 || cols == 0 {
            return Err(EngineError::arg(
                "l2_normalize",
                self.shape(),
                "needs a non-empty last axis",
            ));
        }
        let [y, norms] = backend::l2_normalize_forward(self, eps)?;
        let norms = Tensor::from_storage(norms, &[self.numel() / cols]);
        let y = Tensor::from_storage(y, self.shape());
        let saved = y.clone();
        Ok(Tensor::from_storage_op_like(
            &y,
            "l2_normalize",
            &[self],
            Box::new(move |g| {
                let dx = backend::l2_normalize_backward(&saved, &norms, g, eps)?;
                Ok(vec![Some(Tensor::from_storage(dx, saved.shape()))])
            }),
        ))
    }
}
