//! Elementwise add / sub / mul / div with broadcasting (numpy rules: shapes aligned at the right,
//! size-1 or missing dims repeat), and affine maps with scalars.
//!
//! z = f(a, b), a, b broadcast to z's shape.  Backward: the gradient for each operand is
//! computed at z's shape, then summed over the dims that operand was repeated along (`sum_to`).

use crate::backend::{self, BinaryOp, MapOp};
use crate::{EngineError, Result, Tensor};

/// The shape both operands broadcast to.
pub(crate) fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for k in 0..rank {
        let da = if k + a.len() >= rank {
            a[k + a.len() - rank]
        } else {
            1
        };
        let db = if k + b.len() >= rank {
            b[k + b.len() - rank]
        } else {
            1
        };
        out[k] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(EngineError::shape(op, a, b)),
        };
    }
    Ok(out)
}

fn binary(a: &Tensor, b: &Tensor, kind: BinaryOp) -> Result<Tensor> {
    let name = kind.name();
    a.check_dtype(name, b)?;
    let shape = broadcast_shape(name, a.shape(), b.shape())?;
    let data = backend::binary(kind, a, b, &shape)?;
    let (ac, bc) = (a.detach(), b.detach());
    let (a_shape, b_shape) = (a.shape().to_vec(), b.shape().to_vec());
    let (need_a, need_b) = (a.requires_grad(), b.requires_grad());
    let backward = Box::new(move |g: &Tensor| {
        let (ga, gb) = match kind {
            // d(a+b) = da + db;  d(a-b) = da - db
            BinaryOp::Add => (need_a.then(|| g.clone()), need_b.then(|| g.clone())),
            BinaryOp::Sub => (
                need_a.then(|| g.clone()),
                need_b.then(|| g.neg()).transpose()?,
            ),
            // d(ab) = b da + a db
            BinaryOp::Mul => (
                need_a.then(|| g.mul(&bc)).transpose()?,
                need_b.then(|| g.mul(&ac)).transpose()?,
            ),
            // d(a/b) = da / b - a / b^2 db
            BinaryOp::Div => (
                need_a.then(|| g.div(&bc)).transpose()?,
                need_b
                    .then(|| g.mul(&ac)?.div(&bc.mul(&bc)?)?.neg())
                    .transpose()?,
            ),
        };
        Ok(vec![
            ga.map(|t| t.sum_to(&a_shape)).transpose()?,
            gb.map(|t| t.sum_to(&b_shape)).transpose()?,
        ])
    });
    Ok(Tensor::from_storage_op(
        data,
        &shape,
        name,
        &[a, b],
        backward,
    ))
}

impl Tensor {
    /// a + b, broadcasting.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Add)
    }
    /// a - b, broadcasting.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Sub)
    }
    /// a * b (elementwise), broadcasting.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Mul)
    }
    /// a / b (elementwise), broadcasting.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Div)
    }

    /// y = x * scale + shift.  dx = dy * scale.
    pub fn affine(&self, scale: f64, shift: f64) -> Result<Tensor> {
        let y = backend::map(MapOp::Affine(scale, shift), "affine", self)?;
        Ok(Tensor::from_storage_op(
            y,
            self.shape(),
            "affine",
            &[self],
            Box::new(move |g| Ok(vec![Some(g.affine(scale, 0.0)?)])),
        ))
    }
    pub fn add_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(1.0, s)
    }
    pub fn mul_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(s, 0.0)
    }
    pub fn sub_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(1.0, -s)
    }
    pub fn div_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(1.0 / s, 0.0)
    }
    pub fn neg(&self) -> Result<Tensor> {
        self.affine(-1.0, 0.0)
    }
}
