//! Elementwise maps and reductions, each fast f32 kernel beside its generic `*_reference`.
//!
//! - [`maps`]: binary ops with the second operand broadcast by repetition
//!   (`out[i] = a[i] op b[i % b.len()]`), a scalar form, and unary maps (exp, ln, sqrt, scale, axpy);
//! - [`reduce`]: sum, row sums, column sums, row maxima. Reductions split the input into fixed
//!   chunks and combine the partial results in chunk order, so the result is bitwise the same for
//!   any thread count.
//!
//! [`simd`] holds the vector abstraction (AVX-512F / AVX2+FMA / portable) and the vector exp the
//! other CPU kernels (softmax, GELU) share.

pub mod maps;
pub mod reduce;
pub(crate) mod simd;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;

pub use maps::*;
pub use reduce::*;

/// Inputs with fewer elements than this run on the calling thread: below it, rayon's fork/join
/// costs more than the work (a few microseconds).
pub const PAR_MIN_ELEMS: usize = 1 << 15;

/// Elements per rayon task for elementwise work (a multiple of every vector width).
pub(crate) const PAR_TASK_ELEMS: usize = 1 << 14;

/// Rows per rayon task for a row-wise kernel with rows of `cols` elements.
pub(crate) fn rows_per_task(cols: usize) -> usize {
    (PAR_TASK_ELEMS / cols.max(1)).max(1)
}
