//! Errors as values: every message names the op and the shapes or dtypes it was given.

use crate::DType;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum EngineError {
    /// Two operands whose shapes do not fit together (e.g. `matmul: [2, 3] x [4, 5]`).
    ShapeMismatch {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
    },
    /// Two operands of different element types.
    DTypeMismatch {
        op: &'static str,
        lhs: DType,
        rhs: DType,
    },
    /// An argument out of range for the shape it applies to (axis, index, size, probability).
    InvalidArgument {
        op: &'static str,
        shape: Vec<usize>,
        message: String,
    },
}

impl EngineError {
    pub(crate) fn shape(op: &'static str, lhs: &[usize], rhs: &[usize]) -> EngineError {
        EngineError::ShapeMismatch {
            op,
            lhs: lhs.to_vec(),
            rhs: rhs.to_vec(),
        }
    }
    pub(crate) fn arg(op: &'static str, shape: &[usize], message: impl Into<String>) -> Self {
        EngineError::InvalidArgument {
            op,
            shape: shape.to_vec(),
            message: message.into(),
        }
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::ShapeMismatch { op, lhs, rhs } => {
                write!(f, "{op}: shape mismatch between {lhs:?} and {rhs:?}")
            }
            EngineError::DTypeMismatch { op, lhs, rhs } => {
                write!(f, "{op}: dtype mismatch between {lhs:?} and {rhs:?}")
            }
            EngineError::InvalidArgument { op, shape, message } => {
                write!(f, "{op}: {message} (tensor shape {shape:?})")
            }
        }
    }
}

impl std::error::Error for EngineError {}

pub type Result<T> = std::result::Result<T, EngineError>;
