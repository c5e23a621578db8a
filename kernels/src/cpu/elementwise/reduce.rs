//! Deterministic reductions: sum of all elements, sums and maxima over the last axis (per row),
//! sums over rows (per column).
//!
//! Parallel reductions cut the input into fixed chunks ([`REDUCE_CHUNK`] elements, or
//! [`REDUCE_ROWS`] rows), reduce each chunk alone, and combine the chunk results in chunk order
//! on one thread: the result is bitwise the same for 1, 2 or 64 threads.

use super::simd::{isa_dispatch, SimdF32};
use super::{rows_per_task, PAR_MIN_ELEMS};
use crate::cpu::isa::{self, Isa};
use crate::Float;
use rayon::prelude::*;

/// Elements per chunk of a deterministic parallel reduction (fixed, independent of thread count).
pub const REDUCE_CHUNK: usize = 4096;
/// Rows per chunk of a column reduction (fixed, independent of thread count).
pub const REDUCE_ROWS: usize = 64;

fn rows_of(len: usize, cols: usize, what: &str) -> usize {
    assert!(cols > 0 || len == 0, "{what}: cols = 0 for {len} elements");
    assert!(
        len.is_multiple_of(cols.max(1)),
        "{what}: {len} elements is not a whole number of rows of {cols}"
    );
    len / cols.max(1)
}

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

/// out[r] = sum_j x[r, j].
pub fn sum_rows_reference<T: Float>(x: &[T], out: &mut [T], cols: usize) {
    let rows = rows_of(x.len(), cols, "sum_rows");
    assert_eq!(
        out.len(),
        rows,
        "sum_rows: out has {} elements for {rows} rows",
        out.len()
    );
    for (o, xr) in out.iter_mut().zip(x.chunks(cols)) {
        *o = xr.iter().fold(T::ZERO, |a, &b| a + b);
    }
}

/// out[j] = sum_r x[r, j] (rows added in order).
pub fn sum_cols_reference<T: Float>(x: &[T], out: &mut [T], cols: usize) {
    rows_of(x.len(), cols, "sum_cols");
    assert_eq!(
        out.len(),
        cols,
        "sum_cols: out has {} elements for {cols} cols",
        out.len()
    );
    out.iter_mut().for_each(|o| *o = T::ZERO);
    for xr in x.chunks(cols) {
        out.iter_mut().zip(xr).for_each(|(o, &v)| *o += v);
    }
}

/// out[r] = max_j x[r, j] (-inf for an empty row; a row holding NaN gives an unspecified value).
pub fn max_rows_reference<T: Float>(x: &[T], out: &mut [T], cols: usize) {
    let rows = rows_of(x.len(), cols, "max_rows");
    assert_eq!(
        out.len(),
        rows,
        "max_rows: out has {} elements for {rows} rows",
        out.len()
    );
    for (o, xr) in out.iter_mut().zip(x.chunks(cols)) {
        *o = xr.iter().fold(T::NEG_INFINITY, |a, &b| a.max(b));
    }
}

/// Fast f32 sum: each [`REDUCE_CHUNK`] is summed in f32 vector lanes (64 partial sums of 64
/// elements), chunk sums are added in f64 in chunk order. Deterministic for any thread count.
pub fn sum(x: &[f32]) -> f32 {
    sum_with(isa::active(), x)
}

pub(crate) fn sum_with(isa: Isa, x: &[f32]) -> f32 {
    let partials: Vec<f32> = if x.len() < PAR_MIN_ELEMS {
        x.chunks(REDUCE_CHUNK).map(|c| chunk_sum(isa, c)).collect()
    } else {
        x.par_chunks(REDUCE_CHUNK)
            .map(|c| chunk_sum(isa, c))
            .collect()
    };
    partials.iter().fold(0.0f64, |a, &b| a + b as f64) as f32
}

/// Sum of a slice in f32 vector lanes (4 accumulators), lanes combined in a fixed order.
#[inline(always)]
pub(crate) unsafe fn sum_lanes<V: SimdF32>(x: &[f32]) -> f32 {
    let (n, l) = (x.len(), V::LANES);
    let p = x.as_ptr();
    let mut acc = [V::splat(0.0); 4];
    let mut i = 0;
    while i + 4 * l <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            *a = a.add(V::load(p.add(i + k * l)));
        }
        i += 4 * l;
    }
    while i + l <= n {
        acc[0] = acc[0].add(V::load(p.add(i)));
        i += l;
    }
    if i < n {
        acc[1] = acc[1].add(V::load_partial(p.add(i), n - i, 0.0));
    }
    acc[0].add(acc[1]).add(acc[2].add(acc[3])).reduce_add()
}

/// Maximum of a slice (-inf if empty).
#[inline(always)]
pub(crate) unsafe fn max_lanes<V: SimdF32>(x: &[f32]) -> f32 {
    let (n, l) = (x.len(), V::LANES);
    let p = x.as_ptr();
    let mut acc = [V::splat(f32::NEG_INFINITY); 4];
    let mut i = 0;
    while i + 4 * l <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            *a = a.max(V::load(p.add(i + k * l)));
        }
        i += 4 * l;
    }
    while i + l <= n {
        acc[0] = acc[0].max(V::load(p.add(i)));
        i += l;
    }
    if i < n {
        acc[1] = acc[1].max(V::load_partial(p.add(i), n - i, f32::NEG_INFINITY));
    }
    acc[0].max(acc[1]).max(acc[2].max(acc[3])).reduce_max()
}

isa_dispatch! {
    /// Sum of a slice in f32 vector lanes (4 accumulators), lanes combined in a fixed order.
    pub(crate) fn chunk_sum(x: &[f32]) -> f32 = sum_lanes;
}
isa_dispatch! {
    /// Maximum of a slice (-inf if empty).
    pub(crate) fn chunk_max(x: &[f32]) -> f32 = max_lanes;
}

/// Fast f32 row sums (each row summed in vector lanes; rows in parallel, deterministic).
pub fn sum_rows(x: &[f32], out: &mut [f32], cols: usize) {
    rows_with(isa::active(), false, x, out, cols)
}
/// Fast f32 row maxima (exact).
pub fn max_rows(x: &[f32], out: &mut [f32], cols: usize) {
    rows_with(isa::active(), true, x, out, cols)
}

pub(crate) fn rows_with(isa: Isa, max: bool, x: &[f32], out: &mut [f32], cols: usize) {
    let what = if max { "max_rows" } else { "sum_rows" };
    let rows = rows_of(x.len(), cols, what);
    assert_eq!(
        out.len(),
        rows,
        "{what}: out has {} elements for {rows} rows",
        out.len()
    );
    if x.is_empty() {
        return;
    }
    let run = |x: &[f32], out: &mut [f32]| {
        for (o, xr) in out.iter_mut().zip(x.chunks(cols)) {
            *o = if max {
                chunk_max(isa, xr)
            } else {
                chunk_sum(isa, xr)
            };
        }
    };
    if x.len() < PAR_MIN_ELEMS {
        run(x, out);
    } else {
        let rpt = rows_per_task(cols);
        x.par_chunks(rpt * cols)
            .zip(out.par_chunks_mut(rpt))
            .for_each(|(xc, oc)| run(xc, oc));
    }
}

/// Fast f32 column sums: rows are summed in fixed chunks of [`REDUCE_ROWS`] (chunks in
/// parallel), chunk partials are added in chunk order. Deterministic for any thread count.
pub fn sum_cols(x: &[f32], out: &mut [f32], cols: usize) {
    sum_cols_with(isa::active(), x, out, cols)
}

pub(crate) fn sum_cols_with(isa: Isa, x: &[f32], out: &mut [f32], cols: usize) {
    rows_of(x.len(), cols, "sum_cols");
    assert_eq!(
        out.len(),
        cols,
        "sum_cols: out has {} elements for {cols} cols",
        out.len()
    );
    reduce_row_chunks(x.len() / cols.max(1), cols, out, |r0, r1, acc| {
        col_sum_block(isa, &x[r0 * cols..r1 * cols], acc)
    });
}

/// The deterministic row-chunk reduction shared with LayerNorm's dgamma/dbeta: `partial(r0, r1,
/// acc)` writes into `acc` (length `width`) the contribution of rows r0..r1; chunks of
/// [`REDUCE_ROWS`] rows are reduced (in parallel when large) and added into `out` in chunk order.
pub(crate) fn reduce_row_chunks(
    rows: usize,
    width: usize,
    out: &mut [f32],
    partial: impl Fn(usize, usize, &mut [f32]) + Sync,
) {
    let chunks = rows.div_ceil(REDUCE_ROWS);
    let bounds = |c: usize| (c * REDUCE_ROWS, ((c + 1) * REDUCE_ROWS).min(rows));
    out.iter_mut().for_each(|o| *o = 0.0);
    if chunks == 0 {
        return;
    }
    let mut partials = vec![0.0f32; chunks * width];
    if rows * width < PAR_MIN_ELEMS {
        for (c, acc) in partials.chunks_mut(width).enumerate() {
            let (r0, r1) = bounds(c);
            partial(r0, r1, acc);
        }
    } else {
        partials
            .par_chunks_mut(width)
            .enumerate()
            .for_each(|(c, acc)| {
                let (r0, r1) = bounds(c);
                partial(r0, r1, acc);
            });
    }
    for acc in partials.chunks(width) {
        out.iter_mut().zip(acc).for_each(|(o, &v)| *o += v);
    }
}

#[inline(always)]
unsafe fn col_sum_block_generic<V: SimdF32>(x: &[f32], acc: &mut [f32]) {
    let cols = acc.len();
    acc.copy_from_slice(&x[..cols]);
    let (l, pa) = (V::LANES, acc.as_mut_ptr());
    for xr in x.chunks(cols).skip(1) {
        let px = xr.as_ptr();
        let mut j = 0;
        while j + l <= cols {
            V::load(pa.add(j)).add(V::load(px.add(j))).store(pa.add(j));
            j += l;
        }
        if j < cols {
            let s = V::load_partial(pa.add(j), cols - j, 0.0);
            s.add(V::load_partial(px.add(j), cols - j, 0.0))
                .store_partial(pa.add(j), cols - j);
        }
    }
}

isa_dispatch! {
    /// acc[j] = sum over the rows of x of x[r, j] (x holds at least one row of acc.len()).
    fn col_sum_block(x: &[f32], acc: &mut [f32]) = col_sum_block_generic;
}
