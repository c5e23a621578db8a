//! The teacher: an exponential moving average of the student (docs/optim.md), updated every
//! iteration after the optimiser step:  θt <- m θt + (1 - m) θs.
//!
//! Every entry of the stores is averaged (trained and fixed ones, as the reference walks
//! `parameters()`), matched by name; the teacher never receives gradients. On the GPU each entry
//! is one fused in-place kernel (`Tensor::cuda_ema_update`).

use dinonat_engine::nn::ParamStore;
use dinonat_engine::{DType, EngineError, Result};

/// θt <- m θt + (1 - m) θs for every entry of `teacher`, taken by name from `student`.
pub fn ema_update(teacher: &ParamStore, student: &ParamStore, momentum: f64) -> Result<()> {
    for (name, t) in teacher.iter() {
        let s = student
            .get(name)
            .ok_or_else(|| EngineError::InvalidArgument {
                op: "ema_update",
                shape: t.tensor.shape().to_vec(),
                message: format!("the student has no parameter '{name}'"),
            })?;
        if s.shape() != t.tensor.shape() {
            return Err(EngineError::InvalidArgument {
                op: "ema_update",
                shape: t.tensor.shape().to_vec(),
                message: format!("student's '{name}' has shape {:?}", s.shape()),
            });
        }
        if t.tensor.is_cuda() {
            // on the GPU: one fused kernel per tensor, in place, nothing read back
            t.tensor.cuda_ema_update(s, momentum)?;
            continue;
        }
        match t.tensor.dtype() {
            DType::F32 => {
                let s = s.to_vec::<f32>()?;
                let m = momentum as f32;
                t.tensor.update_in_place(|d: &mut [f32]| {
                    for (x, y) in d.iter_mut().zip(&s) {
                        *x = m * *x + (1.0 - m) * y;
                    }
                })?;
            }
            DType::F64 => {
                let s = s.to_vec::<f64>()?;
                t.tensor.update_in_place(|d: &mut [f64]| {
                    for (x, y) in d.iter_mut().zip(&s) {
                        *x = momentum * *x + (1.0 - momentum) * y;
                    }
                })?;
            }
            other => {
                return Err(EngineError::InvalidArgument {
                    op: "ema_update",
                    shape: t.tensor.shape().to_vec(),
                    message: format!("'{name}': dtype {other:?} not supported"),
                })
            }
        }
    }
    Ok(())
}
