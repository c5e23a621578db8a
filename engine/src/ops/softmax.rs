//! Softmax and log-softmax over the last axis (kernels::cpu::softmax, math in docs/softmax.md).
//! x [.., n] -> y [.., n].  Backward uses the saved output y:
//! softmax: dx = y * (dy - sum(dy * y));  log-softmax: dx = dy - exp(y) * sum(dy).

use crate::backend;
use crate::{EngineError, Result, Tensor};

fn last_axis_op(x: &Tensor, log: bool) -> Result<Tensor> {
    let name = if log { "log_softmax" } else { "softmax" };
    if x.rank() == 0 || x.shape()[x.rank() - 1] == 0 {
        return Err(EngineError::arg(
            name,
            x.shape(),
            "needs a non-empty last axis",
        ));
    }
    let y = Tensor::from_storage(backend::softmax_forward(x, log)?, x.shape());
    let saved = y.clone();
    Ok(Tensor::from_storage_op_like(
        &y,
        name,
        &[x],
        Box::new(move |g| {
            let dx = backend::softmax_backward(&saved, g, log)?;
            Ok(vec![Some(Tensor::from_storage(dx, saved.shape()))])
        }),
    ))
}

impl Tensor {
    /// softmax over the last axis.
    pub fn softmax(&self) -> Result<Tensor> {
        last_axis_op(self, false)
    }
    /// log(softmax(x)) over the last axis, computed stably.
    pub fn log_softmax(&self) -> Result<Tensor> {
        last_axis_op(self, true)
    }
}
