//! LayerNorm (kernels::cpu::layernorm, docs/layernorm.md) and L2 normalisation over the last axis.

use crate::kernels::Float;
use crate::{with_dtype, Element, EngineError, Result, Tensor};

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
        if x.is_cuda() || gamma.is_cuda() || beta.is_cuda() {
            return super::cuda::layer_norm(x, gamma, beta, eps);
        }
        let rows = x.numel() / cols;
        with_dtype!(x.dtype(), T => {
            let mut mean = vec![T::ZERO; rows];
            let mut rstd = vec![T::ZERO; rows];
            let y = x.with_contiguous(|xs: &[T]| gamma.with_contiguous(|gs: &[T]| beta.with_contiguous(|bs: &[T]| {
                let mut y = T::alloc(xs.len());
                T::layernorm_forward(xs, gs, bs, T::from_f64(eps), &mut y, &mut mean, &mut rstd, cols);
                y
            })));
            let (xd, gd) = (x.detach(), gamma.detach());
            Ok(Tensor::from_op(y, x.shape(), "layer_norm", &[x, gamma, beta], Box::new(move |g| {
                let mut dx = T::alloc(rows * cols);
                let mut dgamma = vec![T::ZERO; cols];
                let mut dbeta = vec![T::ZERO; cols];
                xd.with_contiguous(|xs: &[T]| gd.with_contiguous(|gs: &[T]| g.with_contiguous(|dys: &[T]| {
                    T::layernorm_backward(xs, gs, &mean, &rstd, dys, &mut dx, &mut dgamma, &mut dbeta, cols)
                })));
                Ok(vec![
                    Some(Tensor::from_data(dx, xd.shape())),
                    Some(Tensor::from_data(dgamma, &[cols])),
                    Some(Tensor::from_data(dbeta, &[cols])),
                ])
            })))
        })
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
        if self.is_cuda() {
            return super::cuda::l2_normalize(self, eps);
        }
        with_dtype!(self.dtype(), T => {
            let eps_t = T::from_f64(eps);
            let (y, norms) = self.with_contiguous(|xs: &[T]| {
                let mut y = T::alloc(xs.len());
                let mut norms = Vec::with_capacity(xs.len() / cols);
                for (xr, yr) in xs.chunks(cols).zip(y.chunks_mut(cols)) {
                    let mut ss = T::ZERO;
                    for &v in xr {
                        ss += v * v;
                    }
                    let r = ss.sqrt();
                    let d = r.max(eps_t);
                    for (o, &v) in yr.iter_mut().zip(xr) {
                        *o = v / d;
                    }
                    norms.push(r);
                }
                (y, norms)
            });
            let y = Tensor::from_data(y, self.shape());
            let saved = y.clone();
            Ok(Tensor::from_storage_op_like(&y, "l2_normalize", &[self], Box::new(move |g| {
                let dx = saved.with_contiguous(|ys: &[T]| g.with_contiguous(|gs: &[T]| {
                    let mut dx = T::alloc(ys.len());
                    for (((yr, gr), dr), &r) in ys.chunks(cols).zip(gs.chunks(cols)).zip(dx.chunks_mut(cols)).zip(&norms) {
                        if r > eps_t {
                            let mut dot = T::ZERO;
                            for (&a, &b) in yr.iter().zip(gr) {
                                dot += a * b;
                            }
                            for ((d, &a), &b) in dr.iter_mut().zip(yr).zip(gr) {
                                *d = (b - a * dot) / r;
                            }
                        } else {
                            for (d, &b) in dr.iter_mut().zip(gr) {
                                *d = b / eps_t;
                            }
                        }
                    }
                    dx
                }));
                Ok(vec![Some(Tensor::from_data(dx, saved.shape()))])
            })))
        })
    }
}
