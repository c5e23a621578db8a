//! AdamW for parameters on the GPU: the moments m and v live beside the parameter as f32 device
//! tensors and one fused kernel per tensor updates p, m and v in place (`Tensor::cuda_adamw_step`,
//! kernels/cuda/optim.cu); the bias corrections are computed on the host in f64. Nothing is read
//! back during a step. The checkpoint form is the host path's (`adamw.m.<name>` and
//! `adamw.v.<name>` as F32 tensors), so a run saved on one device resumes on the other.

use crate::kernels::cuda::optim::AdamWStep;
use crate::{DType, Device, Result, Tensor};
use std::collections::HashMap;

/// m and v of each parameter on the GPU, by checkpoint name.
#[derive(Clone, Debug, Default)]
pub(super) struct DeviceMoments(HashMap<String, [Tensor; 2]>);

impl DeviceMoments {
    /// One AdamW step of the CUDA parameter `p` (checkpoint name `name`) with gradient `g`;
    /// m and v start at zero on the first step.
    pub(super) fn step(&mut self, name: &str, p: &Tensor, g: &Tensor, h: &AdamWStep) -> Result<()> {
        if !self.0.contains_key(name) {
            let zeros = || Tensor::zeros(p.shape(), DType::F32).to(p.device());
            self.0.insert(name.to_string(), [zeros()?, zeros()?]);
        }
        let [m, v] = &self.0[name];
        p.cuda_adamw_step(g, m, v, h)
    }

    /// m and v of `name` read back as F32 host tensors (for checkpoints), if it has them.
    pub(super) fn state(&self, name: &str) -> Result<Option<[Tensor; 2]>> {
        let Some([m, v]) = self.0.get(name) else {
            return Ok(None);
        };
        let _guard = crate::no_grad();
        let host = |t: &Tensor| t.to(Device::Cpu);
        Ok(Some([host(m)?, host(v)?]))
    }

    /// Restores m and v (host tensors of any float dtype) of the CUDA parameter `p`.
    pub(super) fn load(&mut self, name: &str, p: &Tensor, m: &Tensor, v: &Tensor) -> Result<()> {
        let _guard = crate::no_grad();
        let device = |t: &Tensor| t.try_to_dtype(DType::F32)?.to(p.device());
        self.0.insert(name.to_string(), [device(m)?, device(v)?]);
        Ok(())
    }
}

/// The fused kernel's hyper-parameters for step `t` (f32, as the kernel takes them).
pub(super) fn adamw_step(
    lr: f64,
    weight_decay: f64,
    betas: (f64, f64),
    eps: f64,
    t: u64,
) -> AdamWStep {
    AdamWStep {
        lr: lr as f32,
        weight_decay: weight_decay as f32,
        beta1: betas.0 as f32,
        beta2: betas.1 as f32,
        eps: eps as f32,
        step: t,
    }
}
