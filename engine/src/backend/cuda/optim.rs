//! The optimiser updates on the GPU, in place and not recorded in the graph: one fused AdamW
//! step and the DINO teacher's EMA (kernels/cuda/optim.cu).

use crate::kernels::cuda::optim::{self as kopt, AdamWStep};
use crate::storage::cuda_err;
use crate::{EngineError, Result, Tensor};

/// A CUDA tensor that an in-place update may write: contiguous from offset 0, of `shape`.
fn check_in_place(op: &'static str, t: &Tensor, shape: &[usize]) -> Result<()> {
    if !t.is_cuda() {
        return Err(EngineError::arg(
            op,
            t.shape(),
            "needs CUDA tensors (this is the CUDA update)",
        ));
    }
    if t.shape() != shape {
        return Err(EngineError::shape(op, shape, t.shape()));
    }
    if !t.is_contiguous() || t.layout().offset != 0 {
        return Err(EngineError::arg(
            op,
            t.shape(),
            "needs contiguous tensors at offset 0",
        ));
    }
    Ok(())
}

impl Tensor {
    /// One fused AdamW step on this CUDA parameter, in place (not recorded in the graph):
    /// p <- p (1 - lr wd); m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2;
    /// p <- p - lr (m / bc1) / (sqrt(v / bc2) + eps). `m` and `v` are CUDA tensors of p's shape
    /// (zeros before the first step); lr and weight decay are this tensor's (kernels/cuda/optim.cu).
    pub fn cuda_adamw_step(
        &self,
        grad: &Tensor,
        m: &Tensor,
        v: &Tensor,
        h: &AdamWStep,
    ) -> Result<()> {
        const OP: &str = "cuda_adamw_step";
        for t in [self, m, v] {
            check_in_place(OP, t, self.shape())?;
        }
        if !grad.is_cuda() || grad.shape() != self.shape() {
            return Err(EngineError::shape(OP, self.shape(), grad.shape()));
        }
        let distinct = [
            (self, m),
            (self, v),
            (m, v),
            (grad, self),
            (grad, m),
            (grad, v),
        ];
        if distinct.iter().any(|(a, b)| a.shares_storage(b)) {
            return Err(EngineError::arg(
                OP,
                self.shape(),
                "p, grad, m and v must be distinct buffers",
            ));
        }
        let n = self.numel();
        grad.with_cuda(OP, |dev, gs| {
            let mut ps = self.write_storage();
            let mut ms = m.write_storage();
            let mut vs = v.write_storage();
            let (p, mm, vv) = (
                ps.cuda_mut().expect("cuda"),
                ms.cuda_mut().expect("cuda"),
                vs.cuda_mut().expect("cuda"),
            );
            kopt::adamw_step(dev, n, h, &mut p.data, gs, &mut mm.data, &mut vv.data)
                .map_err(cuda_err(OP, self.shape()))
        })
    }

    /// teacher <- momentum * teacher + (1 - momentum) * student, in place on this CUDA tensor
    /// (the DINO teacher's EMA; not recorded in the graph).
    pub fn cuda_ema_update(&self, student: &Tensor, momentum: f64) -> Result<()> {
        const OP: &str = "cuda_ema_update";
        check_in_place(OP, self, self.shape())?;
        if !student.is_cuda() || student.shape() != self.shape() {
            return Err(EngineError::shape(OP, self.shape(), student.shape()));
        }
        if self.shares_storage(student) {
            return Err(EngineError::arg(
                OP,
                self.shape(),
                "teacher and student must be distinct buffers",
            ));
        }
        let n = self.numel();
        student.with_cuda(OP, |dev, ss| {
            let mut ts = self.write_storage();
            let t = ts.cuda_mut().expect("cuda");
            kopt::ema_update(dev, n, momentum as f32, &mut t.data, ss)
                .map_err(cuda_err(OP, self.shape()))
        })
    }
}
