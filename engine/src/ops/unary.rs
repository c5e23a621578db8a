//! Elementwise functions: exp, log, sqrt, pow (scalar exponent), GELU (erf form, docs/gelu.md).
//! x [..] -> y [..], same shape.

use super::binary::map1;
use crate::kernels::Float;
use crate::{with_dtype, Element, Result, Tensor};

impl Tensor {
    /// y = e^x.  dx = dy * y.
    pub fn exp(&self) -> Result<Tensor> {
        if self.is_cuda() {
            return super::cuda::exp(self);
        }
        with_dtype!(self.dtype(), T => {
            let y = Tensor::from_data(map1::<T>(self, |v| v.exp()), self.shape());
            let saved = y.clone();
            Ok(Tensor::from_storage_op_like(&y, "exp", &[self], Box::new(move |g| Ok(vec![Some(g.mul(&saved)?)]))))
        })
    }

    /// y = ln x.  dx = dy / x.
    pub fn log(&self) -> Result<Tensor> {
        if self.is_cuda() {
            return super::cuda::log(self);
        }
        with_dtype!(self.dtype(), T => {
            let x = self.detach();
            let y = map1::<T>(self, |v| v.ln());
            Ok(Tensor::from_op(y, self.shape(), "log", &[self], Box::new(move |g| Ok(vec![Some(g.div(&x)?)]))))
        })
    }

    /// y = sqrt(x).  dx = dy / (2 y).
    pub fn sqrt(&self) -> Result<Tensor> {
        if self.is_cuda() {
            return super::cuda::sqrt(self);
        }
        with_dtype!(self.dtype(), T => {
            let y = Tensor::from_data(map1::<T>(self, |v| v.sqrt()), self.shape());
            let saved = y.clone();
            Ok(Tensor::from_storage_op_like(&y, "sqrt", &[self], Box::new(move |g| {
                Ok(vec![Some(g.div(&saved)?.mul_scalar(0.5)?)])
            })))
        })
    }

    /// y = x^p.  dx = dy * p * x^(p-1).
    pub fn powf(&self, p: f64) -> Result<Tensor> {
        if self.is_cuda() {
            return super::cuda::powf(self, p);
        }
        with_dtype!(self.dtype(), T => {
            let x = self.detach();
            let pt = T::from_f64(p);
            let y = map1::<T>(self, |v| v.powf(pt));
            Ok(Tensor::from_op(y, self.shape(), "powf", &[self], Box::new(move |g| {
                Ok(vec![Some(g.mul(&x.powf(p - 1.0)?.mul_scalar(p)?)?)])
            })))
        })
    }

    /// GELU, erf form (kernels::cpu::gelu).  dx = dy * (Phi(x) + x phi(x)).
    pub fn gelu(&self) -> Result<Tensor> {
        if self.is_cuda() {
            return super::cuda::gelu(self);
        }
        with_dtype!(self.dtype(), T => {
            let x = self.detach();
            let y = self.with_contiguous(|s: &[T]| {
                let mut y = T::alloc(s.len());
                T::gelu_forward(s, &mut y);
                y
            });
            Ok(Tensor::from_op(y, self.shape(), "gelu", &[self], Box::new(move |g| {
                let dx = x.with_contiguous(|xs: &[T]| g.with_contiguous(|gs: &[T]| {
                    let mut dx = T::alloc(xs.len());
                    T::gelu_backward(xs, gs, &mut dx);
                    dx
                }));
                Ok(vec![Some(Tensor::from_data(dx, x.shape()))])
            })))
        })
    }
}
