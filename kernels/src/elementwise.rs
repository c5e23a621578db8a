//! The elementwise maps both backends run (`cpu::elementwise`, `cuda::reduce`): one
//! [`BinaryOp`] for the four arithmetic ops and one [`MapOp`] for the unary maps.

use crate::Float;

/// The four arithmetic binary operations. The discriminants are the op codes of the CUDA kernel
/// `binary_strided_f32` (kernels/cuda/reduce.cu).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add = 0,
    Sub = 1,
    Mul = 2,
    Div = 3,
}

impl BinaryOp {
    pub const ALL: [BinaryOp; 4] = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div];

    #[inline(always)]
    pub fn apply<T: Float>(self, a: T, b: T) -> T {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
        }
    }

    /// The op's name in the engine ("add", "sub", "mul", "div").
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }
}

/// The unary elementwise maps. Parameters are f64 so that f64 tensors keep them exactly; the CUDA
/// kernel `map_f32` takes them rounded to f32.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MapOp {
    /// p0 * x + p1
    Affine(f64, f64),
    Exp,
    Log,
    Sqrt,
    /// x^p
    Pow(f64),
    /// max(x, p)
    Max(f64),
    /// 1 where x > p, else 0
    Step(f64),
}

impl MapOp {
    /// The map of one element.
    #[inline(always)]
    pub fn apply<T: Float>(self, x: T) -> T {
        match self {
            MapOp::Affine(a, b) => x * T::from_f64(a) + T::from_f64(b),
            MapOp::Exp => x.exp(),
            MapOp::Log => x.ln(),
            MapOp::Sqrt => x.sqrt(),
            MapOp::Pow(p) => x.powf(T::from_f64(p)),
            MapOp::Max(p) => x.max(T::from_f64(p)),
            MapOp::Step(p) => {
                if x > T::from_f64(p) {
                    T::ONE
                } else {
                    T::ZERO
                }
            }
        }
    }
}
