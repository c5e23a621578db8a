//! CPU kernels. Each module holds a fast f32 kernel (SIMD + rayon, dispatched on [`isa::active`])
//! and the plain `*_reference` it is tested against.
//!
//! Conventions shared by every kernel here:
//! - outputs are written (`=`), never accumulated, unless a function's doc says otherwise, and a
//!   kernel never reads its output buffer first (tests poison outputs with NaN);
//! - row-wise kernels take a flat row-major buffer and the row length `cols`; rows = len / cols;
//! - parallel reductions combine fixed chunks in a fixed order, so results are bitwise identical
//!   whatever the number of threads.

pub mod attention;
pub mod bf16;
pub mod conv;
pub mod elementwise;
pub mod gelu;
pub mod gemm;
pub mod isa;
pub mod layernorm;
pub mod neighborhood_attention;
pub mod softmax;
