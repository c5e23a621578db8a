//! SGEMM: C = alpha * op(A) * op(B) + beta * C, with C m x n, op(A) m x k, op(B) k x n
//! (shapes are written m x k x n everywhere).
//!
//! Operands are described by a [`MatrixLayout`] of element strides, which covers row-major,
//! column-major (a transposed operand) and general strided views. When `beta == 0`, C is not read,
//! so NaN or garbage in C never propagates. When `alpha == 0` or `k == 0`, A and B are not read
//! (C = beta * C), as in BLAS.
//!
//! Version 2 of the kernel (version 1 is [`gemm_reference`], the triple loop): Goto/BLIS blocking
//! with packed panels (`pack.rs`), a blocked loop nest parallel over tiles of C (`driver.rs`) and a
//! register-tile microkernel per instruction set, chosen at run time ([`crate::cpu::isa::active`]):
//! AVX-512 14 x 32, AVX2+FMA 6 x 16, portable 4 x 8. The blocking and the measured speed are in
//! docs/gemm.md. A long k with a small C is cut into chunks fixed by the shape alone
//! (`split_k.rs`); otherwise k is never split. Every element of C is the same sequence of
//! operations for any thread count: results are bitwise identical for 1 and N threads.

mod bf16;
mod driver;
mod kernel_amx;
#[cfg(target_arch = "x86_64")]
mod kernel_avx2;
#[cfg(target_arch = "x86_64")]
mod kernel_avx512;
#[cfg(target_arch = "x86_64")]
mod kernel_avx512bf16;
mod kernel_portable;
mod pack;
mod pairs;
#[cfg(target_arch = "x86_64")]
mod pairs_avx512;
mod split_k;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bf16;
#[cfg(test)]
mod tests_bias;
#[cfg(test)]
mod tests_split_k;
#[cfg(test)]
mod tests_tiles;
mod tiles;
mod view;

pub use bf16::{
    sgemm_bf16, sgemm_bf16_batched, sgemm_bf16_batched_with, sgemm_bf16_bias, sgemm_bf16_with,
};

use crate::cpu::isa::{self, Bf16Gemm, Isa};
use crate::Float;
use rayon::prelude::*;
use view::{Bias, View, ViewMut};

/// The old name of [`MatrixLayout`], kept for callers above the engine.
pub use crate::gemm::MatrixLayout as Layout;
pub use crate::gemm::{BatchStrides, MatrixLayout};

/// The plain triple loop every fast GEMM is tested against (accumulates in T).
pub fn gemm_reference<T: Float>(
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: &[T],
    la: MatrixLayout,
    b: &[T],
    lb: MatrixLayout,
    beta: T,
    c: &mut [T],
    lc: MatrixLayout,
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
///
/// Panics (an invariant, not user input) when a buffer is shorter than its layout needs.
pub fn sgemm(
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
    sgemm_with(isa::active(), m, k, n, alpha, a, la, b, lb, beta, c, lc)
}

/// [`sgemm`] on a chosen instruction-set path (tests and benchmarks run every available one).
/// Panics when the processor lacks `isa`.
pub fn sgemm_with(
    isa: Isa,
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
    let path = Path::F32(isa);
    run(path, m, k, n, alpha, a, la, b, lb, beta, c, lc, None)
}

/// C = alpha * op(A) * op(B) + beta * C + 1 bias^T: `bias` (n values) added to every row of C, in
/// the same pass that writes C (a linear layer: y = x W^T + b with beta = 0, C never read).
///
/// Panics (an invariant, not user input) when a buffer is shorter than its layout needs or `bias`
/// is shorter than n.
pub fn sgemm_bias(
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
    let path = Path::F32(isa::active());
    run(path, m, k, n, alpha, a, la, b, lb, beta, c, lc, Some(bias))
}

/// How a GEMM multiplies: the f32 microkernel of an instruction set, the same with both operands
/// rounded to BF16 while packing, or BF16 pairs of k on a pair microkernel.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Path {
    F32(Isa),
    Round(Isa),
    Pairs(PairPath),
}

/// The pair microkernels: the AVX512-BF16 instruction or the AMX tiles, or the scalar emulation
/// of either (tests).
#[derive(Clone, Copy, Debug)]
pub(crate) enum PairPath {
    #[cfg_attr(not(test), allow(dead_code))]
    Emulated,
    #[cfg(target_arch = "x86_64")]
    Avx512Bf16,
    #[cfg_attr(not(test), allow(dead_code))]
    EmulatedTiles,
    #[cfg(target_arch = "x86_64")]
    Amx,
}

impl Path {
    /// The path of a BF16 GEMM choice (round-while-packing runs on the active f32 kernel).
    pub(crate) fn bf16(p: Bf16Gemm) -> Path {
        match p {
            Bf16Gemm::RoundPack => Path::Round(isa::active()),
            #[cfg(target_arch = "x86_64")]
            Bf16Gemm::DpBf16 => Path::Pairs(PairPath::Avx512Bf16),
            #[cfg(target_arch = "x86_64")]
            Bf16Gemm::Amx => Path::Pairs(PairPath::Amx),
            #[cfg(not(target_arch = "x86_64"))]
            Bf16Gemm::DpBf16 | Bf16Gemm::Amx => {
                panic!(
                    "sgemm_bf16: the {} path needs an x86-64 processor",
                    p.name()
                )
            }
        }
    }
}

/// One GEMM on `path` (plus a bias on every row of C), lengths checked.
pub(crate) fn run(
    path: Path,
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
    bias: Option<&[f32]>,
) {
    check_lengths(1, (0, 0, 0), m, k, n, a, la, b, lb, c, lc);
    if let Some(bias) = bias {
        assert!(
            bias.len() >= n,
            "sgemm {m}x{k}x{n}: a bias of {} values for {n} columns",
            bias.len()
        );
    }
    let (a, b) = (view(a, la), view(b, lb));
    let bias = Bias::of(bias);
    // SAFETY: lengths checked above; `c` is borrowed mutably for the whole call.
    unsafe {
        gemm_views(
            path,
            m,
            k,
            n,
            alpha,
            a,
            b,
            beta,
            c.as_mut_ptr(),
            lc,
            true,
            bias,
        )
    }
}

/// A batch of independent SGEMMs; matrix `t` of each operand starts at `t * stride`.
///
/// Runs the items in parallel (each on one thread) when there are enough of them and their C
/// matrices provably do not overlap; otherwise one after the other, each parallel inside.
pub fn sgemm_batched(
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
    sgemm_batched_with(
        isa::active(),
        batch,
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

/// [`sgemm_batched`] on a chosen instruction-set path.
pub fn sgemm_batched_with(
    isa: Isa,
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
    run_batched(
        Path::F32(isa),
        batch,
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

/// A batch of GEMMs on `path` (see [`sgemm_batched`]).
pub(crate) fn run_batched(
    path: Path,
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
    if batch.count == 0 {
        return;
    }
    let strides = (batch.a, batch.b, batch.c);
    check_lengths(batch.count, strides, m, k, n, a, la, b, lb, c, lc);
    let (av, bv) = (view(a, la), view(b, lb));
    let cp = ViewMut {
        ptr: c.as_mut_ptr(),
        rs: 0,
    };
    let item = move |t: usize, parallel: bool| {
        let (at, bt) = (av.offset(t * batch.a), bv.offset(t * batch.b));
        let ct = cp.offset(t * batch.c);
        // SAFETY: lengths checked above; items write disjoint parts of C when run in parallel.
        unsafe {
            gemm_views(
                path,
                m,
                k,
                n,
                alpha,
                at,
                bt,
                beta,
                ct,
                lc,
                parallel,
                Bias::NONE,
            )
        }
    };
    let threads = rayon::current_num_threads();
    let small = m * n * k < 1 << 20;
    let even = batch.count >= threads
        && (batch.count.is_multiple_of(threads) || batch.count >= 4 * threads);
    if threads > 1 && batch.count > 1 && (small || even) && c_items_disjoint(batch, m, n, lc) {
        (0..batch.count)
            .into_par_iter()
            .for_each(|t| item(t, false));
    } else {
        (0..batch.count).for_each(|t| item(t, true));
    }
}

/// Whether the C matrices of a batch cannot share an element: consecutive blocks, or the
/// interleaved layout of attention heads (item t owns columns t*stride.. of every row).
fn c_items_disjoint(batch: BatchStrides, m: usize, n: usize, lc: MatrixLayout) -> bool {
    let last = (batch.count - 1) * batch.c;
    batch.c >= lc.min_len(m, n)
        || (lc.col_stride == 1 && batch.c >= n && last + n <= lc.row_stride)
        || (lc.row_stride == 1 && batch.c >= m && last + m <= lc.col_stride)
}

fn check_lengths(
    count: usize,
    (sa, sb, sc): (usize, usize, usize),
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    la: MatrixLayout,
    b: &[f32],
    lb: MatrixLayout,
    c: &[f32],
    lc: MatrixLayout,
) {
    let need = |len: usize, stride: usize| {
        if len == 0 {
            0
        } else {
            (count - 1) * stride + len
        }
    };
    let (na, nb, nc) = (
        need(la.min_len(m, k), sa),
        need(lb.min_len(k, n), sb),
        need(lc.min_len(m, n), sc),
    );
    assert!(
        distinct_elements(m, n, lc),
        "sgemm {m}x{k}x{n}: the C layout {lc:?} maps two elements to one place"
    );
    assert!(
        a.len() >= na && b.len() >= nb && c.len() >= nc,
        "sgemm {m}x{k}x{n} (batch {count}): buffers A {} B {} C {} elements, layouts \
         {la:?} {lb:?} {lc:?} need {na} {nb} {nc}",
        a.len(),
        b.len(),
        c.len()
    );
}

/// Whether every element of a rows x cols view has its own place (so C can be written in
/// parallel): a sufficient test, the larger stride steps over the whole extent of the smaller.
fn distinct_elements(rows: usize, cols: usize, l: MatrixLayout) -> bool {
    let (small, large) = if l.row_stride <= l.col_stride {
        ((l.row_stride, rows), (l.col_stride, cols))
    } else {
        ((l.col_stride, cols), (l.row_stride, rows))
    };
    rows <= 1 && cols <= 1
        || (small.1 <= 1 || small.0 >= 1) && (large.1 <= 1 || large.0 >= (small.0 * small.1).max(1))
}

fn view(x: &[f32], l: MatrixLayout) -> View {
    View {
        ptr: x.as_ptr(),
        rs: l.row_stride,
        cs: l.col_stride,
    }
}

/// Chooses how C is written: unit column stride goes to the driver as is; a column-major C is
/// computed as C^T = op(B)^T op(A)^T (swap the operands, transpose their views); a general
/// strided C goes through a row-major temporary. `bias` (n values, or none) is added to every row.
///
/// # Safety
/// The views must cover m x k, k x n and m x n elements of live buffers; C is written.
unsafe fn gemm_views(
    path: Path,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: View,
    b: View,
    beta: f32,
    c: *mut f32,
    lc: MatrixLayout,
    parallel: bool,
    bias: Bias,
) {
    if m == 0 || n == 0 {
        return;
    }
    let t = |v: View| View {
        ptr: v.ptr,
        rs: v.cs,
        cs: v.rs,
    };
    if k == 0 || alpha == 0.0 {
        for i in 0..m {
            for j in 0..n {
                let x = c.add(i * lc.row_stride + j * lc.col_stride);
                *x = if beta == 0.0 { 0.0 } else { beta * *x };
            }
        }
    } else if lc.col_stride == 1 {
        let cv = ViewMut {
            ptr: c,
            rs: lc.row_stride,
        };
        // The drivers add the bias to each block of rows as it completes.
        return dispatch(path, m, k, n, alpha, a, b, beta, cv, parallel, bias);
    } else if lc.row_stride == 1 {
        let cv = ViewMut {
            ptr: c,
            rs: lc.col_stride,
        };
        let none = Bias::NONE;
        dispatch(path, n, k, m, alpha, t(b), t(a), beta, cv, parallel, none);
    } else {
        let mut tmp = vec![0.0f32; m * n];
        let cv = ViewMut {
            ptr: tmp.as_mut_ptr(),
            rs: n,
        };
        dispatch(path, m, k, n, alpha, a, b, 0.0, cv, parallel, Bias::NONE);
        for i in 0..m {
            for j in 0..n {
                let x = c.add(i * lc.row_stride + j * lc.col_stride);
                let v = tmp[i * n + j];
                *x = if beta == 0.0 { v } else { v + beta * *x };
            }
        }
    }
    // Every other C: the bias after the product (rare layouts; the row-major path returned).
    if bias.is_some() {
        for i in 0..m {
            for j in 0..n {
                *c.add(i * lc.row_stride + j * lc.col_stride) += *bias.0.add(j);
            }
        }
    }
}

fn dispatch(
    path: Path,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: View,
    b: View,
    beta: f32,
    c: ViewMut,
    parallel: bool,
    bias: Bias,
) {
    if let Some(ranges) = split_k::chunks(m, k, n) {
        let part = |p0: usize, p1: usize, p: &mut [f32]| {
            let (ap, bp) = (split_k::a_cols(a, p0), split_k::b_rows(b, p0));
            let pv = ViewMut {
                ptr: p.as_mut_ptr(),
                rs: n,
            };
            dispatch_one(path, m, p1 - p0, n, 1.0, ap, bp, 0.0, pv, false, Bias::NONE)
        };
        return split_k::gemm(m, n, &ranges, (alpha, beta, bias), c, parallel, part);
    }
    dispatch_one(path, m, k, n, alpha, a, b, beta, c, parallel, bias)
}

/// One GEMM, k whole, on the driver of `path`.
fn dispatch_one(
    path: Path,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: View,
    b: View,
    beta: f32,
    c: ViewMut,
    parallel: bool,
    bias: Bias,
) {
    let (isa, round) = match path {
        Path::F32(isa) => (isa, false),
        Path::Round(isa) => (isa, true),
        Path::Pairs(p) => return dispatch_pairs(p, m, k, n, alpha, a, b, beta, c, parallel, bias),
    };
    assert!(
        isa <= isa::detected(),
        "sgemm: the {} path needs an instruction set this processor lacks",
        isa.name()
    );
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => driver::gemm::<kernel_avx512::Avx512>(
            m, k, n, alpha, a, b, beta, c, parallel, round, bias,
        ),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => driver::gemm::<kernel_avx2::Avx2Fma>(
            m, k, n, alpha, a, b, beta, c, parallel, round, bias,
        ),
        _ => driver::gemm::<kernel_portable::Portable>(
            m, k, n, alpha, a, b, beta, c, parallel, round, bias,
        ),
    }
}

fn dispatch_pairs(
    p: PairPath,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: View,
    b: View,
    beta: f32,
    c: ViewMut,
    parallel: bool,
    bias: Bias,
) {
    match p {
        PairPath::Emulated => {
            pairs::gemm::<pairs::Emulated>(m, k, n, alpha, a, b, beta, c, parallel, bias)
        }
        #[cfg(target_arch = "x86_64")]
        PairPath::Avx512Bf16 => {
            assert!(
                isa::bf16_gemm_detected() >= Bf16Gemm::DpBf16,
                "sgemm_bf16: the avx512bf16 path needs an instruction set this processor lacks"
            );
            pairs::gemm::<kernel_avx512bf16::Avx512Bf16>(
                m, k, n, alpha, a, b, beta, c, parallel, bias,
            )
        }
        PairPath::EmulatedTiles => pairs::gemm::<kernel_amx::Amx<tiles::EmulatedTiles>>(
            m, k, n, alpha, a, b, beta, c, parallel, bias,
        ),
        #[cfg(target_arch = "x86_64")]
        PairPath::Amx => {
            assert!(
                isa::bf16_gemm_detected() >= Bf16Gemm::Amx,
                "sgemm_bf16: the amx path needs AMX tiles this process lacks ({})",
                isa::amx_support().err().unwrap_or("")
            );
            pairs::gemm::<kernel_amx::Amx<kernel_amx::AmxTiles>>(
                m, k, n, alpha, a, b, beta, c, parallel, bias,
            )
        }
    }
}
