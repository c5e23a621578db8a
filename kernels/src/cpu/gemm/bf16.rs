//! The BF16 GEMM: C = alpha * bf16(op(A)) * bf16(op(B)) + beta * C, both operands rounded to
//! BF16 (to nearest even) as they are packed, products summed in f32, C in f32 (docs/gemm.md,
//! "BF16"). Paths ([`Bf16Gemm`], chosen at run time by [`isa::bf16_gemm_active`]): AVX512-BF16
//! pair dot products where the processor has them, else rounding while packing into the f32
//! panels of the f32 kernel. Same API, layouts and BLAS conventions as [`super::sgemm`].

use super::{run, run_batched, BatchStrides, MatrixLayout, Path};
use crate::cpu::isa::{self, Bf16Gemm};

/// C = alpha * bf16(op(A)) * bf16(op(B)) + beta * C on the best BF16 path of this process.
pub fn sgemm_bf16(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    la: MatrixLayout,
    b: &[f32],
    lb: MatrixLayout,
    beta: f32,
    c: &mut [f32],
    lc: MatrixLayout,
) {
    sgemm_bf16_with(
        isa::bf16_gemm_active(),
        m,
        k,
        n,
        alpha,
        a,
        la,
        b,
        lb,
        beta,
        c,
        lc,
    )
}

/// [`sgemm_bf16`] on a chosen path. Panics when the processor lacks it.
pub fn sgemm_bf16_with(
    path: Bf16Gemm,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    la: MatrixLayout,
    b: &[f32],
    lb: MatrixLayout,
    beta: f32,
    c: &mut [f32],
    lc: MatrixLayout,
) {
    run(
        Path::bf16(path),
        m,
        k,
        n,
        alpha,
        a,
        la,
        b,
        lb,
        beta,
        c,
        lc,
        None,
    )
}

/// [`sgemm_bf16`] plus `bias` (n values) on every row of C (see [`super::sgemm_bias`]).
pub fn sgemm_bf16_bias(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    la: MatrixLayout,
    b: &[f32],
    lb: MatrixLayout,
    beta: f32,
    c: &mut [f32],
    lc: MatrixLayout,
    bias: &[f32],
) {
    let path = Path::bf16(isa::bf16_gemm_active());
    run(path, m, k, n, alpha, a, la, b, lb, beta, c, lc, Some(bias))
}

/// A batch of BF16 GEMMs (see [`super::sgemm_batched`]).
pub fn sgemm_bf16_batched(
    batch: BatchStrides,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    la: MatrixLayout,
    b: &[f32],
    lb: MatrixLayout,
    beta: f32,
    c: &mut [f32],
    lc: MatrixLayout,
) {
    let path = isa::bf16_gemm_active();
    sgemm_bf16_batched_with(path, batch, m, k, n, alpha, a, la, b, lb, beta, c, lc)
}

/// [`sgemm_bf16_batched`] on a chosen path.
pub fn sgemm_bf16_batched_with(
    path: Bf16Gemm,
    batch: BatchStrides,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    la: MatrixLayout,
    b: &[f32],
    lb: MatrixLayout,
    beta: f32,
    c: &mut [f32],
    lc: MatrixLayout,
) {
    let p = Path::bf16(path);
    run_batched(p, batch, m, k, n, alpha, a, la, b, lb, beta, c, lc)
}
