//! The scalar types the reference kernels are generic over (f32 for everything, f64 for gradient
//! checks), and bfloat16, which the engine stores but computes in f32 (each method widens, computes
//! in f32 and rounds once, to nearest even).

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

/// A real floating-point scalar: `f32`, `f64` or `half::bf16`.
pub trait Float:
    Copy
    + Debug
    + Default
    + Send
    + Sync
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    fn powf(self, p: Self) -> Self;
    /// The error function, correctly rounded to within an ulp or two (libm).
    fn erf(self) -> Self;
    fn max(self, other: Self) -> Self;
    fn min(self, other: Self) -> Self;
    fn is_finite(self) -> bool;
}

macro_rules! impl_float {
    ($t:ty, $erf:path) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn powf(self, p: Self) -> Self {
                <$t>::powf(self, p)
            }
            #[inline(always)]
            fn erf(self) -> Self {
                $erf(self)
            }
            #[inline(always)]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            #[inline(always)]
            fn min(self, other: Self) -> Self {
                <$t>::min(self, other)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
        }
    };
}

impl_float!(f32, libm::erff);
impl_float!(f64, libm::erf);

/// bf16 arithmetic as `half` does it: widen to f32, compute, round once to nearest even.
impl Float for half::bf16 {
    const ZERO: Self = half::bf16::ZERO;
    const ONE: Self = half::bf16::ONE;
    const NEG_INFINITY: Self = half::bf16::NEG_INFINITY;
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        crate::cpu::bf16::bf16_from_f64(x)
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        crate::cpu::bf16::f32_from_bf16(self) as f64
    }
    #[inline(always)]
    fn exp(self) -> Self {
        Self::from_f32(self.to_f32().exp())
    }
    #[inline(always)]
    fn ln(self) -> Self {
        Self::from_f32(self.to_f32().ln())
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        Self::from_f32(self.to_f32().sqrt())
    }
    #[inline(always)]
    fn abs(self) -> Self {
        Self::from_bits(self.to_bits() & 0x7FFF)
    }
    #[inline(always)]
    fn powf(self, p: Self) -> Self {
        Self::from_f32(self.to_f32().powf(p.to_f32()))
    }
    #[inline(always)]
    fn erf(self) -> Self {
        Self::from_f32(libm::erff(self.to_f32()))
    }
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        Self::from_f32(self.to_f32().max(other.to_f32()))
    }
    #[inline(always)]
    fn min(self, other: Self) -> Self {
        Self::from_f32(self.to_f32().min(other.to_f32()))
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        self.to_f32().is_finite()
    }
}
