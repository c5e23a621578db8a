//! The optimiser updates on the GPU, in place and not recorded in the graph: one fused AdamW
//! step, the DINO teacher's EMA, DINO's centre update and the per-tensor gradient clipping
//! (kernels/cuda/optim.cu). None of them reads a value back to the host.

use crate::kernels::cuda::optim::{self as kopt, AdamWStep};
use crate::kernels::cuda::reduce as kr;
use crate::kernels::cuda::CudaSlice;
use crate::kernels::elementwise::MapOp;
use crate::storage::{cuda_err, not_on_cuda, Storage};
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

/// The f32 device buffer of `t` under its write guard (a CPU or BF16 tensor is an error: the
/// optimisers keep f32 master weights).
fn device_f32<'a>(
    op: &'static str,
    t: &Tensor,
    guard: &'a mut Storage,
) -> Result<&'a mut CudaSlice<f32>> {
    guard
        .cuda_mut()
        .ok_or_else(|| not_on_cuda(op, t.shape()))?
        .f32_mut(op, t.shape())
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
                device_f32(OP, self, &mut ps)?,
                device_f32(OP, m, &mut ms)?,
                device_f32(OP, v, &mut vs)?,
            );
            kopt::adamw_step(dev, n, h, p, gs, mm, vv).map_err(cuda_err(OP, self.shape()))
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
            let t = device_f32(OP, self, &mut ts)?;
            kopt::ema_update(dev, n, momentum as f32, t, ss).map_err(cuda_err(OP, self.shape()))
        })
    }

    /// DINO's centre update in place on this CUDA centre c [K] from the teacher's logits
    /// t [rows, K]: c <- m c + (1 - m) * (sum over rows of t) / rows (the column sums in fixed
    /// chunks, so a rerun is bitwise identical; not recorded in the graph).
    pub fn cuda_center_update(&self, teacher: &Tensor, momentum: f64) -> Result<()> {
        const OP: &str = "cuda_center_update";
        let k = self.numel();
        check_in_place(OP, self, &[k])?;
        if !teacher.is_cuda() || teacher.rank() != 2 || teacher.shape()[1] != k {
            return Err(EngineError::arg(
                OP,
                teacher.shape(),
                format!("teacher logits must be a CUDA tensor [rows, {k}]"),
            ));
        }
        let rows = teacher.shape()[0];
        if rows == 0 {
            return Err(EngineError::arg(OP, teacher.shape(), "no teacher rows"));
        }
        teacher.with_cuda(OP, |dev, ts| {
            let err = cuda_err(OP, teacher.shape());
            let mut sums = super::alloc(dev, OP, &[k])?;
            kr::sum_rows(dev, rows, k, ts, &mut sums).map_err(&err)?;
            let mut mean = super::alloc(dev, OP, &[k])?;
            let scale = MapOp::Affine(1.0 / rows as f64, 0.0);
            kr::map(dev, scale, k, &sums, &mut mean).map_err(&err)?;
            let mut cs = self.write_storage();
            let c = device_f32(OP, self, &mut cs)?;
            kopt::ema_update(dev, k, momentum as f32, c, &mean).map_err(&err)
        })
    }

    /// DINO's per-tensor clipping of this CUDA gradient g: (g * min(1, max_norm / (||g|| + 1e-6)),
    /// ||g||), both on the device (the norm a 0-d tensor; nothing is read back).
    pub(crate) fn cuda_clip_grad_norm(&self, max_norm: f64) -> Result<(Tensor, Tensor)> {
        const OP: &str = "clip_grad_norms";
        let norm = {
            let _guard = crate::no_grad();
            self.detach().mul(&self.detach())?.sum_all()?.sqrt()?
        };
        let n = self.numel();
        let clipped = self.with_cuda(OP, |dev, gs| {
            norm.with_cuda(OP, |_, ns| {
                let mut out = super::alloc(dev, OP, self.shape())?;
                kopt::clip_scale(dev, n, max_norm as f32, gs, ns, &mut out)
                    .map_err(cuda_err(OP, self.shape()))?;
                Ok(super::storage(dev, out))
            })
        })?;
        Ok((Tensor::from_storage(clipped, self.shape()), norm))
    }
}
