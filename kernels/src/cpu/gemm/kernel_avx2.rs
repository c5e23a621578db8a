//! AVX2 + FMA microkernel: a 6 x 16 tile of C in 12 ymm accumulators (2 vectors of 8 per row).
//!
//! 12 accumulators + 2 B vectors + 1 broadcast = 15 of the 16 ymm registers; 12 independent FMA
//! chains cover 2 pipes x 4 cycles of latency. Same contract as the AVX-512 kernel: full tiles are
//! computed, stores are masked to the valid mr x nr corner.

use std::arch::x86_64::*;

use super::driver::{MicroKernel, Tile};

pub(crate) struct Avx2Fma;

const MR: usize = 6;
const NR: usize = 16;

impl MicroKernel for Avx2Fma {
    const MR: usize = MR;
    const NR: usize = NR;
    const KC: usize = 256;
    const MC: usize = 6 * 48;
    const NC: usize = 512;

    unsafe fn tile_packed_a(t: &Tile) {
        tile::<true>(t)
    }
    unsafe fn tile_rows_a(t: &Tile) {
        tile::<false>(t)
    }
}

/// All-ones in lanes 0..n (n <= 8), as the mask maskload/maskstore expect.
#[target_feature(enable = "avx2,fma")]
fn lanes(n: usize) -> __m256i {
    let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), idx)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const PACKED: bool>(t: &Tile) {
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    let a_rs = if PACKED { 1 } else { t.a_rs };
    let a_step = if PACKED { MR } else { 1 };
    let mut a = t.a;
    let mut b = t.b;
    // One cache line of the next A micro-panel per step: packed, line after line; in place,
    // row after row, then the next 16 columns.
    let mut pf = t.a_next;
    let mut pf_row = 0;
    for _ in 0..t.kc {
        let b0 = _mm256_loadu_ps(b);
        let b1 = _mm256_loadu_ps(b.add(8));
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = _mm256_broadcast_ss(&*a.add(i * a_rs));
            row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
            row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
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
    let m0 = lanes(t.nr);
    let m1 = lanes(t.nr.saturating_sub(8));
    let alpha = _mm256_set1_ps(t.alpha);
    let beta = _mm256_set1_ps(t.beta);
    for (i, row) in acc.iter().enumerate() {
        if i < t.mr {
            let c = t.c.add(i * t.c_rs);
            let c1 = c.wrapping_add(8);
            let mut v0 = _mm256_mul_ps(alpha, row[0]);
            let mut v1 = _mm256_mul_ps(alpha, row[1]);
            if t.beta != 0.0 {
                v0 = _mm256_fmadd_ps(beta, _mm256_maskload_ps(c, m0), v0);
                v1 = _mm256_fmadd_ps(beta, _mm256_maskload_ps(c1, m1), v1);
            }
            _mm256_maskstore_ps(c, m0, v0);
            _mm256_maskstore_ps(c1, m1, v1);
        }
    }
}
