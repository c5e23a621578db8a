//! AVX512-BF16 microkernel: a 14 x 32 tile of C in 28 zmm f32 accumulators, as the AVX-512 f32
//! kernel, but each step takes a pair of k: one zmm of B holds 16 columns x (k even, k odd) as
//! BF16, A's pair for row i is broadcast as one 32-bit value, and `vdpbf16ps` adds both products
//! to every lane (`acc + a_odd * b_odd + a_even * b_even`, see `pairs::dpbf16_lane`). Twice the
//! multiply-adds per instruction of the f32 FMA; same edge handling (2/4/8-row copies for a
//! partial last row panel, masked stores) and the same inline store.

use std::arch::x86_64::*;
use std::mem::transmute;

use super::kernel_avx512::{lanes, store_rows};
use super::pairs::{PairKernel, PairTile};

pub(crate) struct Avx512Bf16;

const MR: usize = 14;
const NR: usize = 32;

impl PairKernel for Avx512Bf16 {
    const MR: usize = MR;
    const NR: usize = NR;
    const KC: usize = 256;
    const MC: usize = 14 * 24;
    const NC: usize = 512;

    unsafe fn tile(t: &PairTile) {
        match t.mr {
            0..=2 => tile::<2>(t),
            3..=4 => tile::<4>(t),
            5..=8 => tile::<8>(t),
            _ => tile::<MR>(t),
        }
    }
}

#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn tile<const ROWS: usize>(t: &PairTile) {
    // ROWS accumulator rows; the packed A panel keeps its MR-row layout whatever ROWS is.
    let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
    let (mut a, mut b) = (t.a, t.b);
    for _ in 0..t.kq {
        let b0: __m512bh = transmute(_mm512_loadu_ps(b as *const f32));
        let b1: __m512bh = transmute(_mm512_loadu_ps(b.add(16) as *const f32));
        for (i, row) in acc.iter_mut().enumerate() {
            let ai: __m512bh = transmute(_mm512_set1_epi32(*a.add(i) as i32));
            row[0] = _mm512_dpbf16_ps(row[0], ai, b0);
            row[1] = _mm512_dpbf16_ps(row[1], ai, b1);
        }
        a = a.add(MR);
        b = b.add(NR);
    }
    // Stored inline (a macro, not `store_tile`): passing the accumulators to a function cost the
    // f32 AVX-512 kernel 2.5x (kernel_avx512.rs); inline, they stay in zmm registers.
    store_rows!(acc, t.c, t.c_rs, (t.mr, t.nr), (t.alpha, t.beta));
}
