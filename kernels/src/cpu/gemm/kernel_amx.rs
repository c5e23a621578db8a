//! AMX BF16 microkernel: a 32 x 32 block of C in four 16 x 16 f32 tiles (tmm0..3), fed per step
//! of 32 k by two A tiles (tmm4, 5: 16 rows x 16 pairs) and two B tiles (tmm6, 7: 16 pairs x 16
//! columns, the VNNI layout), four `tdpbf16ps` per step. Eight tiles is all palette 1 has: 2 x 2
//! is the only blocking that uses each loaded tile twice (1 x 3 would load 4 tiles for 3 products).
//! Generic over [`TileOps`]: [`AmxTiles`] is the hardware (`asm!`), `EmulatedTiles` the scalar
//! model the tests run everywhere. First run on AMX hardware on an Emerald Rapids Xeon (family 6,
//! model 207), where its tests passed; dispatched by default since (`isa::bf16_gemm_choice`).
//! Per step, the loads are interleaved with the products that need them (A0 B0, then B1, then
//! A1), so a product can start while the next tile loads.
//!
//! Layouts (kq, the pairs of a KC block, padded to 16 with zero pairs by the pair driver):
//! - A: 32-row panels, one 16 x 16-pair tile after another: step s, half h (rows 16h..16h+16),
//!   pair q of row r at `[panel * 32 * kq + (2 s + h) * 256 + r * 16 + q]`; each tile is 1 KiB
//!   contiguous (`tileloadd` stride 64 bytes);
//! - B: the pair driver's 32-column panels, pair q of column j at `[q * 32 + j]`: rows of 16
//!   columns at a 128-byte stride are the two B tiles of a step, 64 bytes apart.
//!
//! Edges: rows, columns and k past the matrix are zeros in the packed panels (they add 0); the
//! tiles go through a 32 x 32 f32 scratch, of which only the valid corner reaches C, as
//! `alpha * acc + beta * c` (fused, the AVX-512 kernel's store where the processor has AVX-512).
//! A whole 32 x 32 block with alpha 1 and beta 0 (every KC block of a plain product with k <= KC,
//! the NAT shapes) is stored from the tiles to C directly: the same values, without the scratch.

use std::marker::PhantomData;

use super::pairs::{pair, PairKernel, PairTile};
use super::tiles::{TileConfig, TileOps};
use super::view::View;

/// The AMX microkernel on the tiles `U`.
pub(crate) struct Amx<U>(PhantomData<U>);

const MR: usize = 32;
const NR: usize = 32;
/// Pairs per tile row.
const TQ: usize = 16;

/// Every tile 16 rows x 64 bytes: C tiles 16 x 16 f32, A tiles 16 rows x 16 pairs, B tiles
/// 16 pairs x 16 columns.
pub(super) static CONFIG: TileConfig = TileConfig::new([(16, 64); 8]);

/// The four C tiles side by side: rows 0..16 = tiles 0 | 1, rows 16..32 = tiles 2 | 3.
#[repr(C, align(64))]
struct Acc([[f32; NR]; MR]);

impl<U: TileOps> PairKernel for Amx<U> {
    const MR: usize = MR;
    const NR: usize = NR;
    /// A and B micro-panels of 32 x 512 BF16 are 32 KiB each; the A block 256 KiB and the B
    /// block 512 KiB stay in a Sapphire Rapids core's 2 MiB L2 (KC 256 / 1024 and MC 128 / 512 were
    /// not told apart on the noisy AMX machine: docs/gemm.md, "AMX").
    const KC: usize = 512;
    const MC: usize = 256;
    const NC: usize = 512;
    const KQ_ALIGN: usize = TQ;

    fn pack_a(a: View, rows: (usize, usize), ks: (usize, usize), kq: usize, dst: &mut [u32]) {
        pack_a_tiles(a, rows, ks, kq, dst)
    }

    unsafe fn begin() {
        U::begin(&CONFIG)
    }

    unsafe fn end() {
        U::end()
    }

    unsafe fn tile(t: &PairTile) {
        let mut u = U::unit(&CONFIG);
        u.zero::<0>();
        u.zero::<1>();
        u.zero::<2>();
        u.zero::<3>();
        let (mut a, mut b) = (t.a as *const u8, t.b as *const u8);
        for _ in 0..t.kq / TQ {
            u.load::<4>(a, 64);
            u.load::<6>(b, 128);
            u.dpbf16ps::<0, 4, 6>();
            u.load::<7>(b.add(64), 128);
            u.dpbf16ps::<1, 4, 7>();
            u.load::<5>(a.add(1024), 64);
            u.dpbf16ps::<2, 5, 6>();
            u.dpbf16ps::<3, 5, 7>();
            a = a.add(2048);
            b = b.add(2048);
        }
        if t.mr == MR && t.nr == NR && t.alpha == 1.0 && t.beta == 0.0 {
            // C = acc: the tiles go straight to C, as they would through the scratch.
            let (p, s) = (t.c as *mut u8, 4 * t.c_rs);
            u.store::<0>(p, s);
            u.store::<1>(p.add(64), s);
            u.store::<2>(p.add(16 * s), s);
            u.store::<3>(p.add(16 * s + 64), s);
            return;
        }
        let mut acc = Acc([[0.0; NR]; MR]);
        let p = acc.0.as_mut_ptr() as *mut u8;
        u.store::<0>(p, 128);
        u.store::<1>(p.add(64), 128);
        u.store::<2>(p.add(16 * 128), 128);
        u.store::<3>(p.add(16 * 128 + 64), 128);
        store(&acc, t);
    }
}

/// C[0..mr, 0..nr] = alpha * acc + beta * C (C not read when beta == 0).
///
/// # Safety
/// `t.c` must hold mr rows of nr writable floats, `t.c_rs` apart.
unsafe fn store(acc: &Acc, t: &PairTile) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        use std::arch::x86_64::__m512;
        // SAFETY: 32 rows of 32 f32 at 64-byte alignment are 32 rows of two zmm.
        let v = &*(acc as *const Acc as *const [[__m512; 2]; MR]);
        let tile = (t.mr, t.nr);
        return super::kernel_avx512::store_tile(v, t.c, t.c_rs, tile, (t.alpha, t.beta));
    }
    for (i, row) in acc.0.iter().enumerate().take(t.mr) {
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

/// Packs rows i0..i0+mc, k p0..p0+kc of `a` as 32-row panels of 16 x 16-pair tiles (module doc),
/// kq pairs per row (a multiple of 16); rows and k past the block are zero.
pub(super) fn pack_a_tiles(
    a: View,
    rows: (usize, usize),
    ks: (usize, usize),
    kq: usize,
    dst: &mut [u32],
) {
    #[cfg(target_arch = "x86_64")]
    if super::pairs_avx512::available() && (a.rs == 1 || a.cs == 1) {
        // SAFETY: the processor has AVX-512 BW (checked); the caller's bounds as below.
        return unsafe { pack_a_tiles_avx512(a, rows, ks, kq, dst) };
    }
    pack_a_tiles_scalar(a, rows, ks, kq, dst)
}

/// [`pack_a_tiles`] sixteen pairs at a time: a row-major A gives a tile row (16 pairs) from 32
/// consecutive floats; a column-major A gives a tile column (pair q of 16 rows) from two runs,
/// scattered 16 pairs apart. The same pairs as [`pack_a_tiles_scalar`].
///
/// # Safety
/// The processor must have AVX-512 BW; `a.rs == 1` or `a.cs == 1`; rows i0..i0+mc, k p0..p0+kc
/// inside `a`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn pack_a_tiles_avx512(
    a: View,
    (i0, mc): (usize, usize),
    (p0, kc): (usize, usize),
    kq: usize,
    dst: &mut [u32],
) {
    use super::pairs_avx512::{pairs_consecutive, pairs_split, store_pairs, store_pairs_strided};
    for (panel, out) in dst.chunks_mut(MR * kq).take(mc.div_ceil(MR)).enumerate() {
        let i = i0 + panel * MR;
        let rows = MR.min(i0 + mc - i);
        for (t, tile) in out.chunks_exact_mut(TQ * TQ).enumerate() {
            let (s, h) = (t / 2, t % 2);
            let (k0, valid) = (2 * TQ * s, rows.saturating_sub(h * TQ));
            let o = tile.as_mut_ptr();
            if a.cs == 1 {
                for r in 0..TQ {
                    let row = a.ptr.wrapping_add((i + h * TQ + r) * a.rs + p0 + k0);
                    let n = if r < valid { kc.saturating_sub(k0) } else { 0 };
                    store_pairs(o.add(r * TQ), pairs_consecutive(row, n.min(2 * TQ)), TQ);
                }
            } else {
                for q in 0..TQ {
                    let (e, x) = (k0 + 2 * q, k0 + 2 * q + 1);
                    let run = |p: usize| a.ptr.wrapping_add((p0 + p) * a.cs + i + h * TQ);
                    let n_e = if e < kc { valid.min(TQ) } else { 0 };
                    let n_o = if x < kc { valid.min(TQ) } else { 0 };
                    let pairs = pairs_split(run(e), run(x), n_e, n_o);
                    store_pairs_strided(o.add(q), TQ, pairs, TQ);
                }
            }
        }
    }
}

/// [`pack_a_tiles`] element by element, for any view (the reference of its fast layouts).
pub(super) fn pack_a_tiles_scalar(
    a: View,
    (i0, mc): (usize, usize),
    (p0, kc): (usize, usize),
    kq: usize,
    dst: &mut [u32],
) {
    for (panel, out) in dst.chunks_mut(MR * kq).take(mc.div_ceil(MR)).enumerate() {
        let i = i0 + panel * MR;
        let rows = MR.min(i0 + mc - i);
        for (t, tile) in out.chunks_exact_mut(TQ * TQ).enumerate() {
            let (s, h) = (t / 2, t % 2);
            for (r, row) in tile.chunks_exact_mut(TQ).enumerate() {
                let ir = h * TQ + r;
                for (q, o) in row.iter_mut().enumerate() {
                    let p = 2 * (s * TQ + q);
                    // SAFETY: rows i..i+rows, k p0..p0+kc lie inside `a` (checked by the caller).
                    let at = |p: usize| unsafe { *a.ptr.add((i + ir) * a.rs + (p0 + p) * a.cs) };
                    *o = if ir < rows && p < kc {
                        pair(at(p), if p + 1 < kc { at(p + 1) } else { 0.0 })
                    } else {
                        0
                    };
                }
            }
        }
    }
}

/// The hardware tiles: each operation one instruction through `asm!` (the AMX intrinsics and
/// target features are not stable in Rust 1.95; LLVM's assembler takes the mnemonics anyway).
#[cfg(target_arch = "x86_64")]
pub(crate) struct AmxTiles;

#[cfg(target_arch = "x86_64")]
impl TileOps for AmxTiles {
    unsafe fn begin(cfg: &'static TileConfig) {
        std::arch::asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
    }

    unsafe fn end() {
        std::arch::asm!("tilerelease", options(nostack, nomem));
    }

    fn unit(_: &'static TileConfig) -> Self {
        AmxTiles
    }

    unsafe fn zero<const T: usize>(&mut self) {
        std::arch::asm!("tilezero tmm{t}", t = const T, options(nostack, nomem));
    }

    unsafe fn load<const T: usize>(&mut self, src: *const u8, stride: usize) {
        std::arch::asm!("tileloadd tmm{t}, [{p} + {s} * 1]", t = const T, p = in(reg) src,
            s = in(reg) stride, options(nostack, readonly));
    }

    unsafe fn dpbf16ps<const C: usize, const A: usize, const B: usize>(&mut self) {
        std::arch::asm!("tdpbf16ps tmm{c}, tmm{a}, tmm{b}", c = const C, a = const A,
            b = const B, options(nostack, nomem));
    }

    unsafe fn store<const T: usize>(&mut self, dst: *mut u8, stride: usize) {
        std::arch::asm!("tilestored [{p} + {s} * 1], tmm{t}", t = const T, p = in(reg) dst,
            s = in(reg) stride, options(nostack));
    }
}
