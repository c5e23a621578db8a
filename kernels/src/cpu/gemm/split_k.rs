//! Split-k for GEMMs with a long k and a small C: a linear layer's weight gradient
//! dW = X^T dY (m, n = the layer's widths, k = every token of the batch).
//!
//! The driver parallelises over tiles of C only. When C has few tiles and k is long, its tasks
//! are few and each re-reads (and re-packs) a whole operand from memory, so a 64 x 16384 x 192
//! product runs at half the rate of the same work with a long m. Here k is cut into chunks whose
//! boundaries depend on the shape alone, each chunk's product goes to its own m x n partial
//! (one thread each, every operand read once), and the partials are summed in chunk order:
//!
//! ```text
//! C = alpha * (P_0 + P_1 + ... + P_{c-1}) + beta * C,   P_t = op(A)[:, k_t] op(B)[k_t, :]
//! ```
//!
//! The chunks and the order of the sum do not depend on the thread count, so results are
//! bitwise identical for 1 and N threads (another summation order than the unsplit GEMM, so
//! not bitwise identical to it; within f32 rounding of it).

use rayon::prelude::*;

use super::view::{Bias, View, ViewMut};

/// k at least this long, ...
const MIN_K: usize = 4096;
/// ... at least this many times the larger side of C, ...
const K_PER_SIDE: usize = 16;
/// ... and C at most this many elements (the partials stay small: chunks x m x n floats).
const MAX_C: usize = 1 << 16;
/// Chunks of about this many k (a multiple of 64, so BF16 pairs and KC blocks stay whole).
const CHUNK: usize = 1024;
/// At most this many chunks.
const MAX_CHUNKS: usize = 16;

/// The k-ranges of a split GEMM, or None when the shape is not split. A function of the shape
/// only (never of the thread count).
pub(crate) fn chunks(m: usize, k: usize, n: usize) -> Option<Vec<(usize, usize)>> {
    if k < MIN_K || k < K_PER_SIDE * m.max(n) || m * n > MAX_C {
        return None;
    }
    let count = (k / CHUNK).clamp(2, MAX_CHUNKS);
    let len = k.div_ceil(count).div_ceil(64) * 64;
    Some(
        (0..k)
            .step_by(len)
            .map(|p0| (p0, (p0 + len).min(k)))
            .collect(),
    )
}

/// C = alpha * op(A) op(B) + beta * C (+ bias on every row) over the k-ranges `ranges`;
/// `part(p0, p1, c)` writes the product of one range into an m x n row-major slice `c` (beta = 0,
/// alpha = 1, one thread).
pub(crate) fn gemm(
    m: usize,
    n: usize,
    ranges: &[(usize, usize)],
    (alpha, beta, bias): (f32, f32, Bias),
    c: ViewMut,
    parallel: bool,
    part: impl Fn(usize, usize, &mut [f32]) + Sync,
) {
    let mut partials = vec![0.0f32; ranges.len() * m * n];
    let one = |(t, p): (usize, &mut [f32])| part(ranges[t].0, ranges[t].1, p);
    if parallel && rayon::current_num_threads() > 1 {
        partials.par_chunks_mut(m * n).enumerate().for_each(one);
    } else {
        partials.chunks_mut(m * n).enumerate().for_each(one);
    }
    for i in 0..m {
        // SAFETY: row i of C has n elements at c.ptr + i * c.rs.
        let row = unsafe { std::slice::from_raw_parts_mut(c.offset(i * c.rs), n) };
        for (j, x) in row.iter_mut().enumerate() {
            let mut s = 0.0f32;
            for t in 0..ranges.len() {
                s += partials[t * m * n + i * n + j];
            }
            *x = if beta == 0.0 {
                alpha * s
            } else {
                alpha * s + beta * *x
            };
        }
    }
    // SAFETY: C is m x n and the caller checked the bias length.
    unsafe { bias.add(c, 0..m, 0..n) }
}

/// A view of the k-range p0.. of op(A) (m x k: columns) or of op(B) (k x n: rows).
pub(crate) fn a_cols(a: View, p0: usize) -> View {
    a.offset(p0 * a.cs)
}

pub(crate) fn b_rows(b: View, p0: usize) -> View {
    b.offset(p0 * b.rs)
}
