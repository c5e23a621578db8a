//! DinoNAT compute kernels.
//!
//! Pure compute: slices (or device buffers) in, slices out. Nothing here knows about tensors or
//! autodiff, so every kernel can be tested and benchmarked alone. Each optimised kernel keeps its
//! plain reference beside it (`*_reference`, generic over [`Float`] so the engine can run f64
//! gradient checks through the same definitions), and a test compares the two.
//!
//! CPU kernels dispatch at run time on the instruction set the processor has ([`cpu::isa`]):
//! AVX-512 -> AVX2+FMA -> portable, so a binary built without `-C target-cpu` still uses the best path.
//!
//! The problem descriptors both backends share live with the kernel family they describe, above
//! `cpu` and `cuda`: [`gemm`] (matrix layouts, batch strides), [`conv`] (the im2col geometry),
//! [`attention`] (q/k/v views, the full-attention problem), [`neighborhood_attention`] (the NA
//! problem and window rule) and [`elementwise`] (the binary and unary maps).

pub mod attention;
pub mod conv;
pub mod cpu;
pub mod cuda;
pub mod elementwise;
pub mod float;
pub mod gemm;
pub mod neighborhood_attention;

pub use float::Float;
