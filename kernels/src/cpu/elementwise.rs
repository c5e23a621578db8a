//! Elementwise maps and reductions. Reductions split the input into fixed chunks and combine the
//! partial sums in chunk order, so the result is bitwise the same for any thread count.

use crate::Float;

/// Elements per chunk of a deterministic parallel reduction (fixed, independent of thread count).
pub const REDUCE_CHUNK: usize = 4096;

/// Sum of all elements: f64 accumulation within fixed chunks, chunks added in order.
pub fn sum_reference<T: Float>(x: &[T]) -> T {
    let mut total = 0.0f64;
    for chunk in x.chunks(REDUCE_CHUNK) {
        let mut s = 0.0f64;
        for &v in chunk {
            s += v.to_f64();
        }
        total += s;
    }
    T::from_f64(total)
}

/// Fast f32 sum (placeholder: the reference).
pub fn sum(x: &[f32]) -> f32 {
    sum_reference(x)
}
