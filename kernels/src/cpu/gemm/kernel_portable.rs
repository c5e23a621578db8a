//! Portable microkernel: a 4 x 8 tile in plain Rust arrays, written so LLVM keeps its
//! 8 accumulator vectors in registers for whatever baseline the target has (SSE2 on x86-64 has 16
//! xmm registers: a 4 x 16 tile measured 3x slower from spills; NEON on aarch64). Multiply then
//! add (no fused multiply-add: without hardware FMA `mul_add` would be a library call).

use super::driver::{MicroKernel, Tile};

pub(crate) struct Portable;

const MR: usize = 4;
const NR: usize = 8;

impl MicroKernel for Portable {
    const MR: usize = MR;
    const NR: usize = NR;
    const KC: usize = 256;
    const MC: usize = 4 * 64;
    const NC: usize = 512;

    unsafe fn tile_packed_a(t: &Tile) {
        tile::<true>(t)
    }
    unsafe fn tile_rows_a(t: &Tile) {
        tile::<false>(t)
    }
}

#[inline(always)]
unsafe fn tile<const PACKED: bool>(t: &Tile) {
    let mut acc = [[0.0f32; NR]; MR];
    let a_rs = if PACKED { 1 } else { t.a_rs };
    let a_step = if PACKED { MR } else { 1 };
    let mut a = t.a;
    let mut b = t.b;
    for _ in 0..t.kc {
        let brow = *(b as *const [f32; NR]);
        let mut ap = [0.0f32; MR];
        for (i, x) in ap.iter_mut().enumerate() {
            *x = *a.add(i * a_rs);
        }
        rank1(&mut acc, &ap, &brow);
        a = a.wrapping_add(a_step);
        b = b.wrapping_add(t.b_rs);
    }
    for (i, row) in acc.iter().enumerate() {
        if i < t.mr {
            let c = std::slice::from_raw_parts_mut(t.c.add(i * t.c_rs), t.nr);
            if t.beta == 0.0 {
                for (cj, &v) in c.iter_mut().zip(row) {
                    *cj = t.alpha * v;
                }
            } else {
                for (cj, &v) in c.iter_mut().zip(row) {
                    *cj = t.alpha * v + t.beta * *cj;
                }
            }
        }
    }
}

/// acc += a b^T for one column of A and one row of B (LLVM turns the rows into vector ops).
#[inline(always)]
fn rank1(acc: &mut [[f32; NR]; MR], a: &[f32; MR], b: &[f32; NR]) {
    for (row, &ai) in acc.iter_mut().zip(a) {
        for (cj, &bj) in row.iter_mut().zip(b) {
            *cj += ai * bj;
        }
    }
}
