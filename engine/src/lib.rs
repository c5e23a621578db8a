//! DinoNAT's tensor engine: tensors with views, reverse-mode autodiff, and ops built on
//! `dinonat-kernels`.
//!
//! Reading order: [`autograd`] (the whole autodiff in one short file), [`tensor`] (the handle,
//! views and storage), then `ops/` (one file per op family: shapes checked, the backend's forward,
//! one backward for every device), then `backend/` (the only place that matches on device x
//! dtype). f32 tensors run the kernels' fast paths; f64 tensors run their plain references, which
//! is what the gradient checks ([`gradcheck`]) use; BF16 tensors are stored in 2 bytes and
//! computed in f32.

pub use dinonat_kernels as kernels;

pub mod autograd;
mod backend;
pub mod dtype;
pub mod error;
pub mod gradcheck;
pub mod io;
pub mod layout;
pub mod nn;
mod ops;
pub mod optim;
pub mod pool;
pub mod profile;
pub mod recompute;
pub mod rng;
pub mod storage;
pub mod tensor;

pub use autograd::{enable_grad, is_grad_enabled, no_grad, Gradients, NoGradGuard};
pub use dtype::{DType, Element};
pub use error::{EngineError, Result};
/// bfloat16, the element type of `DType::BF16` tensors.
pub use half::bf16;
pub use kernels::cuda::GemmPrecision;
pub use layout::Layout;
pub use rng::{Rng, RowWindow, SplitMix64};
pub use storage::{
    cuda_gemm_precision, device_memory, gemm_precision, gemm_precision_scope, synchronize, Device,
    GemmPrecisionScope,
};
pub use tensor::Tensor;
