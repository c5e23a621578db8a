//! AVX-512F microkernel: a 14 x 32 tile of C in 28 zmm accumulators (2 vectors of 16 per row).
//!
//! Per step p of the k-loop: load one row of the B micro-panel (2 zmm), broadcast each of the 14
//! values A[i, p] in turn into one register and issue 28 FMAs. 28 accumulators + 2 B vectors + 1
//! broadcast = 31 of the 32 zmm registers; 28 independent FMA chains hide the FMA latency
//! (4 cycles x 2 pipes needs >= 8). Edges: stores to C are masked to the valid nr columns and only
//! the valid mr rows are written; a partial last row panel (mr < 14) runs a copy of the kernel with
//! only 2, 4 or 8 rows of accumulators, so m = 128 does not pay for 140 rows.

use std::arch::x86_64::*;

use super::driver::{MicroKernel, Tile};

pub(crate) struct Avx512;

const MR: usize = 14;
const NR: usize = 32;

impl MicroKernel for Avx512 {
    const MR: usize = MR;
    const NR: usize = NR;
    const KC: usize = 256;
    const MC: usize = 14 * 24;
    const NC: usize = 512;

    unsafe fn tile_packed_a(t: &Tile) {
        match t.mr {
            0..=2 => tile::<2, true>(t),
            3..=4 => tile::<4, true>(t),
            5..=8 => tile::<8, true>(t),
            _ => tile::<MR, true>(t),
        }
    }
    unsafe fn tile_rows_a(t: &Tile) {
        tile::<MR, false>(t)
    }
}

/// Lanes 0..n set (n <= 16).
#[inline(always)]
pub(crate) fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// C[0..mr, 0..nr] = alpha * acc + beta * C (C not read when beta == 0), masked to the valid
/// corner, for `acc` rows of two `__m512`. A macro, so that it expands inside each register
/// kernel (AVX-512 f32 and BF16), whose accumulators then stay in zmm registers; in unsafe code
/// compiled for avx512f, with C holding mr rows of nr writable floats `c_rs` apart.
macro_rules! store_rows {
    ($acc:expr, $c:expr, $c_rs:expr, ($mr:expr, $nr:expr), ($alpha:expr, $beta:expr)) => {{
        let (c0, c_rs, mr, nr, beta_s) = ($c, $c_rs, $mr, $nr, $beta);
        let m0 = lanes(nr);
        let m1 = lanes(nr.saturating_sub(16));
        let (va, vb) = (_mm512_set1_ps($alpha), _mm512_set1_ps(beta_s));
        for (i, row) in $acc.iter().enumerate() {
            if i < mr {
                let c = c0.add(i * c_rs);
                let mut v0 = _mm512_mul_ps(va, row[0]);
                let mut v1 = _mm512_mul_ps(va, row[1]);
                if beta_s != 0.0 {
                    v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, c), v0);
                    v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, c.wrapping_add(16)), v1);
                }
                _mm512_mask_storeu_ps(c, m0, v0);
                _mm512_mask_storeu_ps(c.wrapping_add(16), m1, v1);
            }
        }
    }};
}
pub(crate) use store_rows;

#[target_feature(enable = "avx512f")]
unsafe fn tile<const ROWS: usize, const PACKED: bool>(t: &Tile) {
    // ROWS accumulator rows; packed A keeps its MR-row layout whatever ROWS is.
    let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
    let a_rs = if PACKED { 1 } else { t.a_rs };
    let a_step = if PACKED { MR } else { 1 };
    let mut a = t.a;
    let mut b = t.b;
    // One cache line of the next A micro-panel per step: packed, line after line; in place,
    // row after row, then the next 16 columns.
    let mut pf = t.a_next;
    let mut pf_row = 0;
    for i in 0..ROWS {
        if i < t.mr {
            _mm_prefetch::<_MM_HINT_T0>(t.c.add(i * t.c_rs) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(t.c.wrapping_add(i * t.c_rs + 16) as *const i8);
        }
    }
    for _ in 0..t.kc {
        let b0 = _mm512_loadu_ps(b);
        let b1 = _mm512_loadu_ps(b.add(16));
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = _mm512_set1_ps(*a.add(i * a_rs));
            row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
            row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
        }
        if !t.a_next.is_null() {
            _mm_prefetch::<_MM_HINT_T0>(pf as *const i8);
            if PACKED {
                pf = pf.wrapping_add(16);
            } else {
                pf_row += 1;
                pf = pf.wrapping_add(a_rs);
                if pf_row == MR {
                    pf_row = 0;
                    pf = pf.wrapping_sub(MR * a_rs).wrapping_add(16);
                }
            }
        }
        a = a.wrapping_add(a_step);
        b = b.wrapping_add(t.b_rs);
    }
    // Stored here (a macro, not a function): passing the accumulators to a function made the f32
    // GEMM 2.5x slower (measured: 198 -> 80 GFLOP/s at 1024^3 on 2 Ice Lake cores).
    store_rows!(acc, t.c, t.c_rs, (t.mr, t.nr), (t.alpha, t.beta));
}

/// C[0..mr, 0..nr] = alpha * acc + beta * C (C not read when beta == 0), masked to the valid
/// corner, for accumulators in memory: the AMX kernel's tiles stored as 32 rows of two zmm.
/// (The register kernels expand [`store_rows`] instead: through a function their accumulators
/// spilled.)
///
/// # Safety
/// C must hold mr rows of nr writable floats, `c_rs` apart.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn store_tile<const ROWS: usize>(
    acc: &[[__m512; 2]; ROWS],
    c: *mut f32,
    c_rs: usize,
    (mr, nr): (usize, usize),
    (alpha, beta): (f32, f32),
) {
    store_rows!(acc, c, c_rs, (mr, nr), (alpha, beta))
}
