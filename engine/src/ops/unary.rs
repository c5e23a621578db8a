//! Elementwise functions: exp, log, sqrt, pow (scalar exponent), GELU (erf form, docs/gelu.md).
//! x [..] -> y [..], same shape.

use crate::backend::{self, MapOp};
use crate::{Result, Tensor};

impl Tensor {
    /// y = e^x.  dx = dy * y.
    pub fn exp(&self) -> Result<Tensor> {
        let y = Tensor::from_storage(backend::map(MapOp::Exp, "exp", self)?, self.shape());
        let saved = y.clone();
        Ok(Tensor::from_storage_op_like(
            &y,
            "exp",
            &[self],
            Box::new(move |g| Ok(vec![Some(g.mul(&saved)?)])),
        ))
    }

    /// y = ln x.  dx = dy / x.
    pub fn log(&self) -> Result<Tensor> {
        let x = self.detach();
        let y = backend::map(MapOp::Log, "log", self)?;
        Ok(Tensor::from_storage_op(
            y,
            self.shape(),
            "log",
            &[self],
            Box::new(move |g| Ok(vec![Some(g.div(&x)?)])),
        ))
    }

    /// y = sqrt(x).  dx = dy / (2 y).
    pub fn sqrt(&self) -> Result<Tensor> {
        let y = Tensor::from_storage(backend::map(MapOp::Sqrt, "sqrt", self)?, self.shape());
        let saved = y.clone();
        Ok(Tensor::from_storage_op_like(
            &y,
            "sqrt",
            &[self],
            Box::new(move |g| Ok(vec![Some(g.div(&saved)?.mul_scalar(0.5)?)])),
        ))
    }

    /// y = x^p.  dx = dy * p * x^(p-1).
    pub fn powf(&self, p: f64) -> Result<Tensor> {
        let x = self.detach();
        let y = backend::map(MapOp::Pow(p), "powf", self)?;
        Ok(Tensor::from_storage_op(
            y,
            self.shape(),
            "powf",
            &[self],
            Box::new(move |g| Ok(vec![Some(g.mul(&x.powf(p - 1.0)?.mul_scalar(p)?)?)])),
        ))
    }

    /// GELU, erf form (kernels::cpu::gelu).  dx = dy * (Phi(x) + x phi(x)).
    pub fn gelu(&self) -> Result<Tensor> {
        let x = self.detach();
        let y = backend::gelu_forward(self)?;
        Ok(Tensor::from_storage_op(
            y,
            self.shape(),
            "gelu",
            &[self],
            Box::new(move |g| {
                let dx = backend::gelu_backward(&x, g)?;
                Ok(vec![Some(Tensor::from_storage(dx, x.shape()))])
            }),
        ))
    }
}
