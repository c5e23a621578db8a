//! SGEMM: C = alpha * op(A) * op(B) + beta * C, with C m x n, op(A) m x k, op(B) k x n
//! (shapes are written m x k x n everywhere).
//!
//! Operands are described by a [`Layout`] of element strides, which covers row-major,
//! column-major (a transposed operand) and general strided views. When `beta == 0`, C is not read,
//! so NaN or garbage in C never propagates.

use crate::Float;

/// Element strides of a matrix view: element (i, j) lives at `i * row_stride + j * col_stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub row_stride: usize,
    pub col_stride: usize,
}

impl Layout {
    /// A row-major matrix with `cols` columns (leading dimension = cols).
    pub fn row_major(cols: usize) -> Layout {
        Layout {
            row_stride: cols,
            col_stride: 1,
        }
    }
    /// A column-major matrix with `rows` rows; a row-major matrix read transposed.
    pub fn col_major(rows: usize) -> Layout {
        Layout {
            row_stride: 1,
            col_stride: rows,
        }
    }
    /// The smallest buffer length that holds a `rows x cols` matrix with this layout.
    pub fn min_len(self, rows: usize, cols: usize) -> usize {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * self.row_stride + (cols - 1) * self.col_stride + 1
        }
    }
}

/// Strides between consecutive matrices of a batch (in elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchStrides {
    pub count: usize,
    pub a: usize,
    pub b: usize,
    pub c: usize,
}

/// The plain triple loop every fast GEMM is tested against (accumulates in T).
#[allow(clippy::too_many_arguments)]
pub fn gemm_reference<T: Float>(
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: &[T],
    la: Layout,
    b: &[T],
    lb: Layout,
    beta: T,
    c: &mut [T],
    lc: Layout,
) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = T::ZERO;
            for p in 0..k {
                acc += a[i * la.row_stride + p * la.col_stride]
                    * b[p * lb.row_stride + j * lb.col_stride];
            }
            let ci = &mut c[i * lc.row_stride + j * lc.col_stride];
            *ci = if beta == T::ZERO {
                alpha * acc
            } else {
                alpha * acc + beta * *ci
            };
        }
    }
}

/// C = alpha * op(A) * op(B) + beta * C in f32, the fastest path the CPU has.
/// (Placeholder: delegates to the reference until the blocked kernel lands.)
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    la: Layout,
    b: &[f32],
    lb: Layout,
    beta: f32,
    c: &mut [f32],
    lc: Layout,
) {
    gemm_reference(m, k, n, alpha, a, la, b, lb, beta, c, lc)
}

/// A batch of independent SGEMMs; matrix `t` of each operand starts at `t * stride`.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched(
    batch: BatchStrides,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    la: Layout,
    b: &[f32],
    lb: Layout,
    beta: f32,
    c: &mut [f32],
    lc: Layout,
) {
    for t in 0..batch.count {
        sgemm(
            m,
            k,
            n,
            alpha,
            &a[t * batch.a..],
            la,
            &b[t * batch.b..],
            lb,
            beta,
            &mut c[t * batch.c..],
            lc,
        );
    }
}
