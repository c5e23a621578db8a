//! CUDA kernels: CUDA C sources (`kernels/cuda/*.cu`) compiled at run time with NVRTC and launched
//! through cudarc (dynamic loading: nothing here needs CUDA to build). See docs/gpu.md.
//!
//! - [`device`]: the guarded, process-wide [`GpuDevice`] (no libcuda or no GPU is an error value,
//!   never a panic), upload/download helpers, and the per-process module cache.
//! - [`nvrtc`]: the embedded sources and their NVRTC compilation, usable without a GPU.
//! - [`elementwise`]: add, scale, axpy, GELU forward/backward, f32 <-> bf16 (the CPU's rounding).
//! - [`gemm`]: SIMT FP32, TF32 and BF16 tensor-core GEMMs ([`GemmPrecision`]); its dev corner
//!   (`gemm::dev`, feature `gemm-dev`) forces kernels and takes bf16 / B^T operands.
//! - [`select`]: max with its positions, index_select, and their backwards.
//! - [`neighborhood_attention_mma`]: NA on tensor cores (opt-in, `DINONAT_NA_MMA=1`; never run on a GPU).
//! - [`signature`]: each launch's PTX entry signature (a table beside every family's launches),
//!   checked against the compiled PTX.

pub mod attention;
pub mod conv;
pub mod device;
pub mod elementwise;
pub mod gemm;
pub mod layernorm;
pub mod neighborhood_attention;
pub mod neighborhood_attention_mma;
pub mod nvrtc;
pub mod optim;
pub mod reduce;
pub mod select;
pub mod signature;
pub mod softmax;

pub use device::{skip_gpu_test, GpuDevice, GpuInfo, REQUIRE_GPU};
pub use gemm::GemmPrecision;

/// Device buffers and the bf16 type, re-exported so callers need not depend on cudarc or half.
pub use cudarc::driver::CudaSlice;
pub use half::bf16;

/// Errors of the CUDA side are plain messages (they name the kernel, the shape or the flag).
pub type Result<T> = std::result::Result<T, String>;

/// Turn a panic payload (cudarc panics when a library cannot be loaded) into a message.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}
