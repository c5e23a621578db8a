//! Drop-path (stochastic depth, Huang et al. 2016): during training each sample of the batch
//! keeps its residual branch with probability 1 - p, scaled by 1 / (1 - p) so the expectation is
//! unchanged. x [B, ..] -> y [B, ..];  y = x * mask[b], so dx = dy * mask[b] (through `mul`).
//! The mask is drawn on the host and multiplied on x's device.

use crate::rng::Rng;
use crate::{EngineError, Result, Tensor};

impl Tensor {
    /// Drop-path with drop probability `p` in [0, 1); the identity when not training or p = 0.
    /// The mask comes from `rng`, so a seeded run drops the same samples.
    pub fn drop_path(&self, p: f64, training: bool, rng: &mut Rng) -> Result<Tensor> {
        if !(0.0..1.0).contains(&p) {
            return Err(EngineError::arg(
                "drop_path",
                self.shape(),
                format!("drop probability {p} is not in [0, 1)"),
            ));
        }
        if !training || p == 0.0 || self.rank() == 0 {
            return Ok(self.clone());
        }
        let batch = self.shape()[0];
        let scale = 1.0 / (1.0 - p);
        let mask: Vec<f64> = rng
            .uniform_rows(batch)
            .into_iter()
            .map(|u| if u >= p { scale } else { 0.0 })
            .collect();
        let mut mask_shape = vec![1; self.rank()];
        mask_shape[0] = batch;
        let mask = Tensor::from_vec(mask, &mask_shape)?
            .try_to_dtype(self.dtype())?
            .to(self.device())?;
        self.mul(&mask)
    }
}
