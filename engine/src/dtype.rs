//! Element types. `DType` is the run-time tag; [`Element`] is the compile-time side (how a host
//! buffer of each type is wrapped, sliced and allocated). Which kernels each type runs (fast f32,
//! the plain f64 references for gradient checks, BF16 widened to f32) is the backend's business:
//! `backend::cpu`.

use crate::kernels::Float;
use crate::pool;
use crate::storage::CpuStorage;

/// The element type of a tensor. Open for growth (F16 next), so code outside this crate must not
/// match it exhaustively.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    /// bfloat16 (`half::bf16`): stored in 2 bytes, computed in f32 (docs/autodiff.md, "Data
    /// types"), on the host and on CUDA.
    BF16,
}

impl DType {
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
            DType::BF16 => 2,
        }
    }
}

/// Runs `$body` with the type alias `$T` bound to the Rust type of `$dtype`.
#[macro_export]
#[doc(hidden)]
macro_rules! with_dtype {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::DType::F32 => {
                #[allow(dead_code)]
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                #[allow(dead_code)]
                type $T = f64;
                $body
            }
            $crate::DType::BF16 => {
                #[allow(dead_code)]
                type $T = $crate::bf16;
                $body
            }
        }
    };
}

/// A scalar type a CPU tensor can hold (the storage side; the kernels each dtype runs are
/// `backend::cpu::CpuKernels`).
pub trait Element: Float {
    const DTYPE: DType;
    fn wrap(v: Vec<Self>) -> CpuStorage;
    fn slice(s: &CpuStorage) -> Option<&[Self]>;
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
    /// A buffer of `len` elements with unspecified contents (from the pool for f32).
    fn alloc(len: usize) -> Vec<Self>;
    fn alloc_zeroed(len: usize) -> Vec<Self>;
    /// Returns a scratch buffer to the pool.
    fn recycle(v: Vec<Self>);
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn wrap(v: Vec<f32>) -> CpuStorage {
        CpuStorage::F32(v)
    }
    fn slice(s: &CpuStorage) -> Option<&[f32]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [f32]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn alloc(len: usize) -> Vec<f32> {
        pool::take_f32(len)
    }
    fn alloc_zeroed(len: usize) -> Vec<f32> {
        pool::take_f32_zeroed(len)
    }
    fn recycle(v: Vec<f32>) {
        pool::give_f32(v)
    }
}

impl Element for f64 {
    const DTYPE: DType = DType::F64;
    fn wrap(v: Vec<f64>) -> CpuStorage {
        CpuStorage::F64(v)
    }
    fn slice(s: &CpuStorage) -> Option<&[f64]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [f64]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn alloc(len: usize) -> Vec<f64> {
        vec![0.0; len]
    }
    fn alloc_zeroed(len: usize) -> Vec<f64> {
        vec![0.0; len]
    }
    fn recycle(_v: Vec<f64>) {}
}

impl Element for half::bf16 {
    const DTYPE: DType = DType::BF16;
    fn wrap(v: Vec<half::bf16>) -> CpuStorage {
        CpuStorage::BF16(v)
    }
    fn slice(s: &CpuStorage) -> Option<&[half::bf16]> {
        match s {
            CpuStorage::BF16(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [half::bf16]> {
        match s {
            CpuStorage::BF16(v) => Some(v),
            _ => None,
        }
    }
    fn alloc(len: usize) -> Vec<half::bf16> {
        vec![half::bf16::ZERO; len]
    }
    fn alloc_zeroed(len: usize) -> Vec<half::bf16> {
        vec![half::bf16::ZERO; len]
    }
    fn recycle(_v: Vec<half::bf16>) {}
}
