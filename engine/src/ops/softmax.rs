//! Softmax and log-softmax over the last axis (kernels::cpu::softmax, math in docs/softmax.md).
//! x [.., n] -> y [.., n].  Backward uses the saved output y:
//! softmax: dx = y * (dy - sum(dy * y));  log-softmax: dx = dy - exp(y) * sum(dy).

use crate::{with_dtype, Element, EngineError, Result, Tensor};

#[derive(Clone, Copy)]
enum Kind {
    Softmax,
    LogSoftmax,
}

fn last_axis_op(x: &Tensor, kind: Kind) -> Result<Tensor> {
    let name = match kind {
        Kind::Softmax => "softmax",
        Kind::LogSoftmax => "log_softmax",
    };
    if x.rank() == 0 || x.shape()[x.rank() - 1] == 0 {
        return Err(EngineError::arg(
            name,
            x.shape(),
            "needs a non-empty last axis",
        ));
    }
    if x.is_cuda() {
        return super::cuda::softmax(x, matches!(kind, Kind::LogSoftmax), name);
    }
    let cols = x.shape()[x.rank() - 1];
    with_dtype!(x.dtype(), T => {
        let y = x.with_contiguous(|s: &[T]| {
            let mut y = T::alloc(s.len());
            match kind {
                Kind::Softmax => T::softmax_forward(s, &mut y, cols),
                Kind::LogSoftmax => T::log_softmax_forward(s, &mut y, cols),
            }
            y
        });
        let y = Tensor::from_data(y, x.shape());
        let saved = y.clone();
        Ok(Tensor::from_storage_op_like(&y, name, &[x], Box::new(move |g| {
            let dx = saved.with_contiguous(|ys: &[T]| g.with_contiguous(|gs: &[T]| {
                let mut dx = T::alloc(ys.len());
                match kind {
                    Kind::Softmax => T::softmax_backward(ys, gs, &mut dx, cols),
                    Kind::LogSoftmax => T::log_softmax_backward(ys, gs, &mut dx, cols),
                }
                dx
            }));
            Ok(vec![Some(Tensor::from_data(dx, saved.shape()))])
        })))
    })
}

impl Tensor {
    /// softmax over the last axis.
    pub fn softmax(&self) -> Result<Tensor> {
        last_axis_op(self, Kind::Softmax)
    }
    /// log(softmax(x)) over the last axis, computed stably.
    pub fn log_softmax(&self) -> Result<Tensor> {
        last_axis_op(self, Kind::LogSoftmax)
    }
}
