//! The BF16 dot-product GEMM: operands packed as BF16 pairs of consecutive k, a microkernel that
//! takes one pair of products per step (`vdpbf16ps`), f32 accumulators (docs/gemm.md, "BF16").
//!
//! Same loop nest, task grid and determinism rule as the f32 driver (`driver.rs`): all of B is
//! packed once (shared), tasks are rectangles of C in whole tiles, k is never split, so every
//! element of C is one fixed sequence of pair steps for any thread count. Packing:
//!
//! - a pair is one u32: the BF16 (RNE) of the even k in the low half, of the odd k in the high half
//!   (the lane order of `vdpbf16ps`); an odd k ends with the pair (x, 0);
//! - A block -> MR-row panels, pair q of row i at `dst[panel * MR * kq + q * MR + i]` (the AMX
//!   kernel packs its own tile layout, `PairKernel::pack_a`);
//! - B -> for each KC block of rows, NR-column panels, pair q of column j at
//!   `dst[pc / 2 * n_pad + panel * kq * NR + q * NR + j]` (rows of 16 columns are AMX's VNNI
//!   layout of B, so the AMX kernel reads this panel as two tiles).
//!
//! kq, the pairs of a KC block, is rounded up to `KQ_ALIGN` (16 for AMX tiles: zero pairs).
//! Rows and columns past the edge are zero pairs; only the valid corner of a tile is stored.

use rayon::prelude::*;

use super::driver::{split_tiles, with_scratch, A_BUF, B_BUF, SERIAL_MAX_FMAS};
#[cfg(target_arch = "x86_64")]
use super::pairs_avx512;
use super::view::{Bias, View, ViewMut};
use crate::cpu::bf16::bf16_from_f32;

/// One microkernel call: C[0..mr, 0..nr] = alpha * sum_q dot(A pair q, B pair q) + beta * C
/// (C not read when beta == 0).
pub(crate) struct PairTile {
    /// Pairs of k in this block.
    pub kq: usize,
    /// Packed A micro-panel: pair q of row i at `a[q * MR + i]`.
    pub a: *const u32,
    /// Packed B micro-panel: pair q of column j at `b[q * NR + j]`.
    pub b: *const u32,
    pub c: *mut f32,
    pub c_rs: usize,
    pub mr: usize,
    pub nr: usize,
    pub alpha: f32,
    pub beta: f32,
}

/// A pair microkernel and its blocking (KC counts k, not pairs, and is a multiple of
/// 2 * KQ_ALIGN).
pub(crate) trait PairKernel {
    const MR: usize;
    const NR: usize;
    const KC: usize;
    const MC: usize;
    const NC: usize;
    /// The pairs of each KC block are padded with zero pairs to a multiple of this.
    const KQ_ALIGN: usize = 1;
    /// Packs rows i0..i0+mc, k p0..p0+kc of A into MR-row panels of `kq` pairs (MR * kq each).
    fn pack_a(a: View, rows: (usize, usize), ks: (usize, usize), kq: usize, dst: &mut [u32]) {
        pack_pairs(a, rows, ks, Self::MR, kq, dst)
    }
    /// Called on a thread before the first tile of a task, and [`PairKernel::end`] after its last
    /// (the AMX kernel loads and releases its tile configuration there).
    ///
    /// # Safety
    /// The processor must have what the kernel runs on.
    unsafe fn begin() {}
    /// # Safety
    /// As [`PairKernel::begin`].
    unsafe fn end() {}
    /// # Safety
    /// `t` must describe readable MR x kq and kq x NR packed pairs and a writable mr x nr C, on a
    /// thread between `begin` and `end`.
    unsafe fn tile(t: &PairTile);
}

/// Two values rounded to BF16 as one pair: `even` in the low half, `odd` in the high half.
#[inline(always)]
pub(crate) fn pair(even: f32, odd: f32) -> u32 {
    bf16_from_f32(even).to_bits() as u32 | (bf16_from_f32(odd).to_bits() as u32) << 16
}

/// Element (r, p) of `v`.
///
/// # Safety
/// (r, p) must lie inside the matrix `v` views.
#[inline(always)]
unsafe fn at(v: View, r: usize, p: usize) -> f32 {
    *v.ptr.add(r * v.rs + p * v.cs)
}

/// Packs rows i0..i0+mc, k columns p0..p0+kc of `v` into panels of `w` rows and `kq` pairs
/// (kq >= kc / 2; pairs past kc are zero): pair q of row i at `dst[panel * w * kq + q * w + i]`.
/// A block is packed as it is (w = MR); a B block as its transpose (rows = columns of B,
/// w = NR), which gives B's panel layout. Two layouts read contiguous memory: rows one apart
/// (a row-major B, a column-major A: each pair of k is two contiguous runs of rows, stored
/// contiguously) and k one apart (a row-major A: each row is a contiguous run of pairs); any
/// other view is read element by element ([`pack_pairs_strided`]). Same pairs in every case.
pub(crate) fn pack_pairs(
    v: View,
    rows: (usize, usize),
    ks: (usize, usize),
    w: usize,
    kq: usize,
    dst: &mut [u32],
) {
    assert!(
        dst.len() >= rows.1.div_ceil(w) * w * kq,
        "pack_pairs: dst too short"
    );
    #[cfg(target_arch = "x86_64")]
    if pairs_avx512::available() && (v.rs == 1 || v.cs == 1) {
        // SAFETY: the processor has AVX-512 BW (checked), dst holds every panel (asserted); the
        // caller's bounds on `v` as below.
        return unsafe { pack_pairs_avx512(v, rows, ks, w, kq, dst) };
    }
    pack_pairs_scalar(v, rows, ks, w, kq, dst)
}

/// [`pack_pairs`] with scalar rounding (processors without AVX-512 BW).
pub(crate) fn pack_pairs_scalar(
    v: View,
    (i0, mc): (usize, usize),
    (p0, kc): (usize, usize),
    w: usize,
    kq: usize,
    dst: &mut [u32],
) {
    if v.rs != 1 && v.cs != 1 {
        return pack_pairs_strided(v, (i0, mc), (p0, kc), w, kq, dst);
    }
    for (panel, out) in dst.chunks_mut(w * kq).take(mc.div_ceil(w)).enumerate() {
        let i = i0 + panel * w;
        let rows = w.min(i0 + mc - i);
        // SAFETY (both arms): rows i..i+rows, columns p0..p0+kc lie inside `v` (checked by the
        // caller), so every run below is inside the matrix.
        if v.rs == 1 {
            for (q, o) in out.chunks_mut(w).take(kq).enumerate() {
                let p = p0 + 2 * q;
                if 2 * q >= kc {
                    o.fill(0);
                    continue;
                }
                let run =
                    |p: usize| unsafe { std::slice::from_raw_parts(v.ptr.add(p * v.cs + i), rows) };
                let (even, (o, rest)) = (run(p), o.split_at_mut(rows));
                if 2 * q + 1 < kc {
                    let odd = run(p + 1);
                    o.iter_mut()
                        .zip(even.iter().zip(odd))
                        .for_each(|(d, (&e, &x))| *d = pair(e, x));
                } else {
                    o.iter_mut().zip(even).for_each(|(d, &e)| *d = pair(e, 0.0));
                }
                rest.fill(0);
            }
        } else {
            let full = kc / 2;
            for r in 0..w {
                if r >= rows {
                    (0..kq).for_each(|q| out[q * w + r] = 0);
                    continue;
                }
                let row = unsafe { std::slice::from_raw_parts(v.ptr.add((i + r) * v.rs + p0), kc) };
                for (q, two) in row.chunks_exact(2).enumerate() {
                    out[q * w + r] = pair(two[0], two[1]);
                }
                if kc % 2 == 1 {
                    out[full * w + r] = pair(row[kc - 1], 0.0);
                }
                (kc.div_ceil(2)..kq).for_each(|q| out[q * w + r] = 0);
            }
        }
    }
}

/// The fast layouts of [`pack_pairs`] sixteen pairs at a time (`pairs_avx512`): rows one apart,
/// a pair of k is two runs, one vector of pairs per 16 rows; k one apart, a row is runs of 32
/// floats, each vector of 16 pairs scattered `w` apart. Same pairs as the scalar packers.
///
/// # Safety
/// The processor must have AVX-512 BW; `v.rs == 1` or `v.cs == 1`; rows i0..i0+mc, k p0..p0+kc
/// inside `v`; `dst` at least `mc.div_ceil(w) * w * kq` long.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn pack_pairs_avx512(
    v: View,
    (i0, mc): (usize, usize),
    (p0, kc): (usize, usize),
    w: usize,
    kq: usize,
    dst: &mut [u32],
) {
    use pairs_avx512::{pairs_consecutive, pairs_split, store_pairs, store_pairs_strided};
    for (panel, out) in dst.chunks_mut(w * kq).take(mc.div_ceil(w)).enumerate() {
        let i = i0 + panel * w;
        let rows = w.min(i0 + mc - i);
        let o = out.as_mut_ptr();
        if v.rs == 1 {
            for q in 0..kq {
                let (e, x) = (2 * q, 2 * q + 1);
                let n_e = if e < kc { rows } else { 0 };
                let n_o = if x < kc { rows } else { 0 };
                let run = |p: usize| v.ptr.wrapping_add((p0 + p) * v.cs + i);
                for r in (0..w).step_by(16) {
                    let (ne, no) = (n_e.saturating_sub(r), n_o.saturating_sub(r));
                    let pairs = pairs_split(run(e).wrapping_add(r), run(x).wrapping_add(r), ne, no);
                    store_pairs(o.add(q * w + r), pairs, (w - r).min(16));
                }
            }
        } else {
            for r in 0..w {
                let row = v.ptr.wrapping_add((i + r) * v.rs + p0);
                let n = if r < rows { kc } else { 0 };
                for q in (0..kq).step_by(16) {
                    let pairs = pairs_consecutive(row.wrapping_add(2 * q), n.saturating_sub(2 * q));
                    store_pairs_strided(o.add(q * w + r), w, pairs, (kq - q).min(16));
                }
            }
        }
    }
}

/// [`pack_pairs`] element by element, for any view (the reference of its fast layouts).
pub(crate) fn pack_pairs_strided(
    v: View,
    (i0, mc): (usize, usize),
    (p0, kc): (usize, usize),
    w: usize,
    kq: usize,
    dst: &mut [u32],
) {
    for (panel, out) in dst.chunks_mut(w * kq).take(mc.div_ceil(w)).enumerate() {
        let i = i0 + panel * w;
        let rows = w.min(i0 + mc - i);
        for q in 0..kq {
            let (p, odd) = (p0 + 2 * q, 2 * q + 1 < kc);
            for (r, o) in out[q * w..(q + 1) * w].iter_mut().enumerate() {
                // SAFETY: rows i..i+rows, columns p0..p0+kc lie inside `v` (checked by the caller).
                *o = if r < rows && p < p0 + kc {
                    unsafe { pair(at(v, i + r, p), if odd { at(v, i + r, p + 1) } else { 0.0 }) }
                } else {
                    0
                };
            }
        }
    }
}

/// C = alpha * A * B + beta * C (+ `bias` on every row) with both operands rounded to BF16 (pairs
/// of k per step), for an m x k A, k x n B and m x n C (unit column stride), k >= 1 and m, n >= 1.
pub(crate) fn gemm<K: PairKernel>(
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
    let threads = rayon::current_num_threads();
    let parallel = parallel && m * n * k > SERIAL_MAX_FMAS && threads > 1;
    let (m_step, n_step) = if parallel {
        split_tiles((K::MR, K::NR), m, k, n, threads)
    } else {
        (m, n)
    };
    let n_pad = n.div_ceil(K::NR) * K::NR;
    let bt = View {
        ptr: b.ptr,
        rs: b.cs,
        cs: b.rs,
    };
    let kq_of = |kc: usize| kc.div_ceil(2).next_multiple_of(K::KQ_ALIGN);
    // The scratch is f32; pairs are u32 of the same size and alignment. Every KC block but the
    // last has KC / 2 pairs, a multiple of KQ_ALIGN.
    with_scratch(&B_BUF, kq_of(k) * n_pad, |bbuf| {
        let bp = ViewMut {
            ptr: bbuf.as_mut_ptr(),
            rs: 0,
        };
        let (n_blocks, k_blocks) = (n.div_ceil(K::NC), k.div_ceil(K::KC));
        let pack_piece = |idx: usize| {
            let (pc, jc) = (idx / n_blocks * K::KC, idx % n_blocks * K::NC);
            let (kc, nc) = (K::KC.min(k - pc), K::NC.min(n - jc));
            let kq = kq_of(kc);
            let len = nc.div_ceil(K::NR) * K::NR * kq;
            // SAFETY: piece (pc, jc) owns its own range of the kq_of(k) * n_pad pairs.
            let out = unsafe {
                let p = bp.offset(pc / 2 * n_pad + jc * kq) as *mut u32;
                std::slice::from_raw_parts_mut(p, len)
            };
            pack_pairs(bt, (jc, nc), (pc, kc), K::NR, kq, out);
        };
        if parallel && k * n >= 1 << 16 {
            (0..k_blocks * n_blocks)
                .into_par_iter()
                .for_each(pack_piece);
        } else {
            (0..k_blocks * n_blocks).for_each(pack_piece);
        }
        let nt = n.div_ceil(n_step);
        let task = |t: usize| {
            let (i0, j0) = (t / nt * m_step, t % nt * n_step);
            let (i1, j1) = ((i0 + m_step).min(m), (j0 + n_step).min(n));
            with_scratch(&A_BUF, K::MC * K::KC / 2, |abuf| {
                // SAFETY: the f32 scratch reinterpreted as pairs (same size and alignment).
                let ablock = unsafe {
                    std::slice::from_raw_parts_mut(abuf.as_mut_ptr() as *mut u32, abuf.len())
                };
                // SAFETY: dispatch checked the processor before choosing K.
                unsafe { K::begin() };
                for ic in (i0..i1).step_by(K::MC) {
                    let mc = K::MC.min(i1 - ic);
                    for pc in (0..k).step_by(K::KC) {
                        let kc = K::KC.min(k - pc);
                        let kq = kq_of(kc);
                        K::pack_a(a, (ic, mc), (pc, kc), kq, ablock);
                        for jc in (j0..j1).step_by(K::NC) {
                            for ir in (0..mc).step_by(K::MR) {
                                for jr in (jc..(jc + K::NC).min(j1)).step_by(K::NR) {
                                    let t = PairTile {
                                        kq,
                                        a: ablock[ir * kq..].as_ptr(),
                                        b: bp.offset(pc / 2 * n_pad + jr * kq) as *const u32,
                                        c: c.offset((ic + ir) * c.rs + jr),
                                        c_rs: c.rs,
                                        mr: K::MR.min(mc - ir),
                                        nr: K::NR.min(n - jr),
                                        alpha,
                                        beta: if pc == 0 { beta } else { 1.0 },
                                    };
                                    // SAFETY: packed panels and the C tile as the contract says.
                                    unsafe { K::tile(&t) }
                                }
                            }
                        }
                    }
                    // SAFETY: rows ic..ic+mc, columns j0..j1 are this task's, now complete.
                    unsafe { bias.add(c, ic..ic + mc, j0..j1) };
                }
                // SAFETY: as begin.
                unsafe { K::end() };
            })
        };
        let tasks = m.div_ceil(m_step) * nt;
        if parallel {
            (0..tasks).into_par_iter().for_each(task);
        } else {
            (0..tasks).for_each(task);
        }
    })
}

/// One lane of `vdpbf16ps` in scalar code (Intel SDM): acc + a_odd * b_odd, rounded to f32,
/// then + a_even * b_even, rounded; products of two BF16 are exact in f32; subnormal inputs read
/// as zero and subnormal results are flushed to zero (the instruction's fixed DAZ / FTZ / RNE).
#[inline(always)]
pub(crate) fn dpbf16_lane(acc: f32, a: u32, b: u32) -> f32 {
    let t = ftz(acc + half(a, true) * half(b, true));
    ftz(t + half(a, false) * half(b, false))
}

/// The even (low) or odd (high) BF16 of a pair as f32, a subnormal read as zero.
#[inline(always)]
pub(crate) fn half(pair: u32, odd: bool) -> f32 {
    ftz(f32::from_bits(if odd {
        pair & 0xFFFF_0000
    } else {
        pair << 16
    }))
}

/// Subnormal -> zero of the same sign (the fixed DAZ / FTZ of the BF16 dot-product instructions).
#[inline(always)]
pub(crate) fn ftz(x: f32) -> f32 {
    if x.is_subnormal() {
        0.0 * x
    } else {
        x
    }
}

/// The scalar emulation of the AVX512-BF16 microkernel (same tile and blocking), run on every
/// machine so the pair packing and the driver are tested where the instruction is missing.
pub(crate) struct Emulated;

/// The emulated tile: 14 x 32, as the AVX512-BF16 kernel.
const EMU_MR: usize = 14;
const EMU_NR: usize = 32;

impl PairKernel for Emulated {
    const MR: usize = EMU_MR;
    const NR: usize = EMU_NR;
    const KC: usize = 256;
    const MC: usize = EMU_MR * 24;
    const NC: usize = 512;

    unsafe fn tile(t: &PairTile) {
        let mut acc = [[0.0f32; EMU_NR]; EMU_MR];
        for q in 0..t.kq {
            let b = std::slice::from_raw_parts(t.b.add(q * EMU_NR), EMU_NR);
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = *t.a.add(q * EMU_MR + i);
                for (x, &bj) in row.iter_mut().zip(b) {
                    *x = dpbf16_lane(*x, ai, bj);
                }
            }
        }
        for (i, row) in acc.iter().enumerate().take(t.mr) {
            for (j, &v) in row.iter().enumerate().take(t.nr) {
                let c = t.c.add(i * t.c_rs + j);
                let v = t.alpha * v;
                *c = if t.beta == 0.0 {
                    v
                } else {
                    t.beta.mul_add(*c, v)
                };
            }
        }
    }
}

#[cfg(test)]
mod pack_tests {
    use super::super::tests_bf16::{packers, pair_test_data};
    use super::*;

    type Packer = fn(View, (usize, usize), (usize, usize), usize, usize, &mut [u32]);

    /// The fast layouts of [`pack_pairs`] (scalar and AVX-512) against [`pack_pairs_strided`], bit
    /// for bit: row-major, column-major and strided views of awkward sizes, odd and even kc, kq
    /// padded past kc, panels cut short, several 16-pair chunks; `dst` poisoned.
    #[test]
    fn pack_pairs_fast_layouts_equal_the_strided_reference() {
        let (rows, cols) = (37, 71);
        let data = pair_test_data(rows * cols * 3);
        let views = [
            View {
                ptr: data.as_ptr(),
                rs: cols,
                cs: 1,
            },
            View {
                ptr: data.as_ptr(),
                rs: 1,
                cs: rows,
            },
            View {
                ptr: data.as_ptr(),
                rs: 3 * cols,
                cs: 3,
            },
        ];
        for v in views {
            for (i0, mc, p0, kc, w, kq) in [
                (0, rows, 0, cols, 14, 36),
                (3, 30, 2, 7, 32, 4),
                (5, 9, 1, 28, 14, 16),
                (0, 1, 0, 1, 16, 1),
                (2, 33, 4, 20, 14, 16),
                (1, 35, 3, 67, 32, 34),
                (0, rows, 0, cols, 14, 40),
                (4, 17, 0, 64, 16, 32),
            ] {
                let len = mc.div_ceil(w) * w * kq;
                let (mut got, mut want) = (vec![0xDEAD_BEEFu32; len], vec![0xDEAD_BEEFu32; len]);
                pack_pairs_strided(v, (i0, mc), (p0, kc), w, kq, &mut want);
                #[cfg(target_arch = "x86_64")]
                let simd: Packer = |v, rows, ks, w, kq, dst| {
                    if v.rs != 1 && v.cs != 1 {
                        return pack_pairs_strided(v, rows, ks, w, kq, dst);
                    }
                    // SAFETY: run only where supported (packers); a unit stride (checked);
                    // bounds as pack_pairs.
                    unsafe { pack_pairs_avx512(v, rows, ks, w, kq, dst) }
                };
                #[cfg(not(target_arch = "x86_64"))]
                let simd: Packer = pack_pairs_scalar;
                for (name, pack) in packers(pack_pairs_scalar as Packer, simd) {
                    got.fill(0xDEAD_BEEF);
                    pack(v, (i0, mc), (p0, kc), w, kq, &mut got);
                    assert_eq!(
                        got, want,
                        "{name}: rs {} cs {}, rows {i0}+{mc}, k {p0}+{kc}, w {w}, kq {kq}",
                        v.rs, v.cs
                    );
                }
            }
        }
    }
}
