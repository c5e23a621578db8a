//! The AMX path (`cargo test --release -p dinonat-kernels gemm::tests_tiles`).
//!
//! - The tile emulator against the Intel SDM by hand: configuration bytes, loads and stores with
//!   strides and the zeroing past a tile's shape, `tdpbf16ps`'s two sums per element (even and odd
//!   products apart, then added to C), DAZ / FTZ, the shape checks of the instruction.
//! - The AMX driver on emulated tiles: bit for bit a plain per-element loop over the same KC
//!   blocks, 16-pair steps and sums (packing, 32 x 32 blocking, zero padding of M, N and K, the
//!   scratch store of edge tiles, alpha / beta, the task grid).
//! - Every tile path (emulated; the `asm!` one where the process has AMX, else a printed skip)
//!   against the f64 reference on the BF16-rounded operands at awkward and NAT shapes, with the
//!   (k + 4) eps_f32 bound of tests.rs. The cube, 1 vs 2 threads and batched run in
//!   tests_bf16.rs, whose pair paths include these.
//! - The BF16 dispatch: AMX where present unless DINONAT_AMX=0, DINONAT_ISA caps it lower.
//! - `amx_smoke` (ignored: `cargo test --release -p dinonat-kernels amx_smoke -- --ignored`, on
//!   an AMX machine): one tile product on the hardware against the emulator.

use super::kernel_amx::CONFIG;
use super::pairs::{dpbf16_lane, ftz, half, pair};
use super::tests::{check_path, Rng, Store};
use super::tests_bf16::{cases, check_bitwise, pairs_at, per_block, tile_paths, Operand, Shape};
use super::tiles::{fma_ftz, EmulatedTiles, TileConfig, TileOps};
use super::*;
use crate::cpu::isa::bf16_gemm_choice;

/// A small configuration: C (tile 0) 2 x 2 f32, A (1) 2 rows x 3 pairs, B (2) 3 pairs x 2
/// columns, tile 3 1 row x 20 bytes.
static SMALL: TileConfig = TileConfig::new([
    (2, 8),
    (2, 12),
    (3, 8),
    (1, 20),
    (0, 0),
    (0, 0),
    (0, 0),
    (0, 0),
]);

fn f32_bytes(x: &[f32]) -> Vec<u8> {
    x.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn u32_bytes(x: &[u32]) -> Vec<u8> {
    x.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// C (2 x 2, loaded from `c`) += A B on the SMALL tiles; the result as 2 rows of 2.
fn small_product(c: [f32; 4], a: [u32; 6], b: [u32; 6]) -> [f32; 4] {
    let mut u = EmulatedTiles::unit(&SMALL);
    let mut out = [0.0f32; 4];
    // SAFETY: every buffer holds the rows x bytes of its tile at the given stride.
    unsafe {
        u.load::<0>(f32_bytes(&c).as_ptr(), 8);
        u.load::<1>(u32_bytes(&a).as_ptr(), 12);
        u.load::<2>(u32_bytes(&b).as_ptr(), 8);
        u.dpbf16ps::<0, 1, 2>();
        u.store::<0>(out.as_mut_ptr() as *mut u8, 8);
    }
    out
}

#[test]
fn tile_config_is_the_ldtilecfg_layout() {
    let b = &SMALL.0;
    assert_eq!((b[0], b[1]), (1, 0), "palette 1, start_row 0");
    assert_eq!(
        &b[16..24],
        &[8, 0, 12, 0, 8, 0, 20, 0],
        "colsb: u16 per tile from byte 16"
    );
    assert_eq!(
        &b[48..53],
        &[2, 2, 3, 1, 0],
        "rows: u8 per tile from byte 48"
    );
    assert!(b[2..16].iter().chain(&b[24..48]).all(|&x| x == 0));
    assert_eq!((CONFIG.rows(7), CONFIG.colsb(7)), (16, 64));
    assert_eq!(std::mem::align_of::<TileConfig>(), 64);
}

#[test]
fn emulated_loads_and_stores_follow_the_tile_shape() {
    let mut u = EmulatedTiles::unit(&SMALL);
    // Tile 3 is 1 row x 20 bytes: a load reads 20 bytes, the rest of the tile is zero.
    let src: Vec<u8> = (1..=64).collect();
    let mut dst = [0xAAu8; 64];
    // SAFETY: 64 readable and writable bytes; the tile reads and writes 20.
    unsafe {
        u.load::<3>(src.as_ptr(), 64);
        u.store::<3>(dst.as_mut_ptr(), 64);
    }
    assert_eq!(&dst[..20], &src[..20]);
    assert!(
        dst[20..].iter().all(|&x| x == 0xAA),
        "store wrote past colsb"
    );
    // Strides: rows of C 8 bytes wide read from rows 12 bytes apart.
    let rows = [1.0f32, 2.0, -7.0, 3.0, 4.0, -7.0];
    let mut out = [0.0f32; 6];
    // SAFETY: 2 rows at stride 12 bytes within 24 bytes, both ways.
    unsafe {
        u.load::<0>(f32_bytes(&rows).as_ptr(), 12);
        u.store::<0>(out.as_mut_ptr() as *mut u8, 12);
    }
    assert_eq!(out, [1.0, 2.0, 0.0, 3.0, 4.0, 0.0]);
}

#[test]
fn emulated_tdpbf16ps_follows_the_sdm() {
    let p = |even: f32, odd: f32| pair(even, odd);
    let t = 2f32.powi(-12);
    let z = p(0.0, 0.0);
    // C[0][0] = 1: one pair of products 2^-24 each. Summed apart and added once: 1 + 2^-23
    // (vdpbf16ps adds each to the accumulator in turn: 1 + 2^-24 rounds back to 1, twice).
    let a = [p(t, t), z, z, z, z, z];
    let b = [p(t, t), z, z, z, z, z];
    let r = small_product([1.0, 0.0, 0.0, 0.0], a, b);
    assert_eq!(r[0], 1.0 + 2f32.powi(-23));
    assert_eq!(dpbf16_lane(1.0, a[0], b[0]), 1.0);
    // Each half is its own chain of FMAs over k, rounded at each step: even products 1, 2^-24,
    // 2^-24 sum to 1 (two ties to even), not 1 + 2^-23.
    let a = [p(1.0, 0.0), p(t, 0.0), p(t, 0.0), z, z, z];
    let b = [p(1.0, 0.0), z, p(t, 0.0), z, p(t, 0.0), z];
    let r = small_product([0.0; 4], a, b);
    assert_eq!(r[0], 1.0, "the even chain rounds at every step");
    // Rows and columns: C[m][n] = sum_k A pair (m, k) . B pair (k, n), 2 x 2 with small integers.
    let a = [
        p(1.0, 2.0),
        p(3.0, 4.0),
        p(5.0, 6.0),
        p(-1.0, 0.5),
        z,
        p(2.0, 2.0),
    ];
    let b = [
        p(1.0, 1.0),
        p(2.0, 0.0),
        p(0.0, 1.0),
        p(1.0, -1.0),
        p(3.0, 0.5),
        p(0.0, 0.0),
    ];
    let r = small_product([10.0, 20.0, 30.0, 40.0], a, b);
    let want = [
        10.0 + (1.0 + 2.0) + 4.0 + (15.0 + 3.0),
        20.0 + 2.0 + (3.0 - 4.0) + 0.0,
        30.0 + (-1.0 + 0.5) + 0.0 + (6.0 + 1.0),
        40.0 - 2.0 + 0.0 + 0.0,
    ];
    assert_eq!(r, want);
    // BF16 subnormal inputs read as zero; a subnormal result is flushed to zero, sign kept.
    let sub = f32::from_bits(0x0040_0000);
    let r = small_product(
        [0.0; 4],
        [p(sub, 0.0), z, z, z, z, z],
        [p(4.0, 0.0), z, z, z, z, z],
    );
    assert_eq!(r[0], 0.0);
    let small = f32::MIN_POSITIVE;
    let r = fma_ftz(-small, 0.5, 0.0);
    assert!(r == 0.0 && r.is_sign_negative(), "{r:e}");
    let (a, b) = (
        [p(-small, 0.0), z, z, z, z, z],
        [p(0.5, 0.0), z, z, z, z, z],
    );
    // even -0 + odd +0 = +0 (RNE), then C = 0 + 0.
    assert_eq!(small_product([0.0; 4], a, b)[0].to_bits(), 0);
    // The FMA is fused: a product below the normal range is not flushed before the addition.
    let tiny = 2f32.powi(-70);
    assert_eq!(fma_ftz(tiny, tiny, small), small + 2f32.powi(-140));
    // Each addition rounds to nearest even: 2^24 + 1 -> 2^24, 2^24 + 3 -> 2^24 + 4.
    assert_eq!(fma_ftz(1.0, 1.0, 16777216.0), 16777216.0);
    assert_eq!(fma_ftz(3.0, 1.0, 16777216.0), 16777220.0);
}

#[test]
#[should_panic(expected = "do not agree")]
fn emulated_tdpbf16ps_refuses_shapes_the_instruction_refuses() {
    let mut u = EmulatedTiles::unit(&SMALL);
    // A (tile 1) has 3 pairs per row; tile 3 as B has 1 row.
    // SAFETY: no memory is touched.
    unsafe { u.dpbf16ps::<0, 1, 3>() }
}

/// The AMX GEMM on emulated tiles written as a plain loop per element: KC = 512 blocks of k,
/// pairs padded to 16 per block, per 16-pair step two FMA chains (even, odd) added, then to the
/// block's sum; then `alpha * sum + beta * c` (fused) per block.
fn tile_reference(
    mkn: Shape,
    alpha: f32,
    a: Operand,
    b: Operand,
    beta: f32,
    c: (&mut [f32], MatrixLayout),
) {
    per_block(mkn, 512, (alpha, beta), c, |i, j, pc, kc| {
        let mut acc = 0.0f32;
        for s in 0..kc.div_ceil(32) {
            let (mut even, mut odd) = (0.0f32, 0.0f32);
            for q in 0..16 {
                let (ap, bp) = pairs_at(a, b, (i, j), pc + 32 * s + 2 * q, pc + kc);
                even = fma_ftz(half(ap, false), half(bp, false), even);
                odd = fma_ftz(half(ap, true), half(bp, true), odd);
            }
            acc = ftz(acc + ftz(even + odd));
        }
        acc
    })
}

/// Shapes past the cube of tests_bf16.rs for the tile paths: the sizes of the task, odd k over
/// three KC blocks, and the NAT shapes of `bench gemm` with fewer rows (k and n as they are).
const TILE_SHAPES: [(usize, usize, usize); 10] = [
    (1, 1, 1),
    (17, 33, 65),
    (100, 37, 250),
    (70, 1100, 45),
    (401, 64, 192),
    (401, 64, 64),
    (401, 192, 64),
    (201, 128, 384),
    (40, 512, 2048),
    (33, 31, 95),
];

#[test]
fn amx_driver_with_emulated_tiles_is_the_plain_tile_loop_bit_for_bit() {
    let r = Store::Rows(0);
    let more = TILE_SHAPES.iter().enumerate().map(|(t, &mkn)| {
        let (alpha, beta) = if t % 2 == 0 { (1.0, 0.0) } else { (-0.5, 0.75) };
        (mkn, r, r, r, alpha, beta)
    });
    let path = Path::Pairs(PairPath::EmulatedTiles);
    check_bitwise(
        path,
        &mut Rng(21),
        cases().into_iter().chain(more).collect(),
        tile_reference,
    );
}

/// The tile packer (scalar, and AVX-512 where the processor has it) against the element-by-element
/// reference, bit for bit: row-major, column-major and strided A, rows and k cut short inside a
/// tile and a panel, k over several 32-k steps, the rounding cases of `cpu::bf16`; `dst` poisoned.
#[test]
fn amx_tile_packer_equals_its_reference() {
    use super::kernel_amx::pack_a_tiles_scalar;
    use super::tests_bf16::{packers, pair_test_data};
    use super::view::View;
    type Packer = fn(View, (usize, usize), (usize, usize), usize, &mut [u32]);
    let (rows, cols) = (71, 101);
    let data = pair_test_data(rows * cols * 2);
    let ptr = data.as_ptr();
    let views = [
        View {
            ptr,
            rs: cols,
            cs: 1,
        },
        View {
            ptr,
            rs: 1,
            cs: rows,
        },
        View {
            ptr,
            rs: 2 * cols,
            cs: 2,
        },
    ];
    #[cfg(target_arch = "x86_64")]
    let simd: Packer = |a, rows, ks, kq, dst| {
        if a.rs != 1 && a.cs != 1 {
            return pack_a_tiles_scalar(a, rows, ks, kq, dst);
        }
        // SAFETY: run only where supported (packers); a unit stride (checked); bounds below.
        unsafe { super::kernel_amx::pack_a_tiles_avx512(a, rows, ks, kq, dst) }
    };
    #[cfg(not(target_arch = "x86_64"))]
    let simd: Packer = pack_a_tiles_scalar;
    for v in views {
        for (i0, mc, p0, kc) in [
            (0, rows, 0, cols),
            (3, 40, 5, 64),
            (1, 17, 2, 33),
            (9, 1, 0, 1),
        ] {
            let kq = kc.div_ceil(2).next_multiple_of(16);
            let len = mc.div_ceil(32) * 32 * kq;
            let mut want = vec![0xDEAD_BEEFu32; len];
            tile_pack_reference(v, (i0, mc), (p0, kc), kq, &mut want);
            for (name, pack) in packers(pack_a_tiles_scalar as Packer, simd) {
                let mut got = vec![0xDEAD_BEEFu32; len];
                pack(v, (i0, mc), (p0, kc), kq, &mut got);
                let at = (v.rs, v.cs, i0, mc, p0, kc);
                assert!(got == want, "{name}: (rs, cs, i0, mc, p0, kc) {at:?}");
            }
        }
    }
}

/// The tile layout written out per element (module doc of kernel_amx.rs): pair q of row r of
/// half h at step s is `dst[panel * 32 * kq + (2 s + h) * 256 + r * 16 + q]`.
fn tile_pack_reference(
    a: super::view::View,
    (i0, mc): (usize, usize),
    (p0, kc): (usize, usize),
    kq: usize,
    dst: &mut [u32],
) {
    let at = |i: usize, p: usize| {
        if i < i0 + mc && p < p0 + kc {
            // SAFETY: inside the matrix the test built.
            unsafe { *a.ptr.add(i * a.rs + p * a.cs) }
        } else {
            0.0
        }
    };
    for panel in 0..mc.div_ceil(32) {
        for s in 0..kq / 16 {
            for h in 0..2 {
                for r in 0..16 {
                    for q in 0..16 {
                        let (i, p) = (i0 + panel * 32 + h * 16 + r, p0 + 2 * (s * 16 + q));
                        dst[panel * 32 * kq + (2 * s + h) * 256 + r * 16 + q] =
                            pair(at(i, p), at(i, p + 1));
                    }
                }
            }
        }
    }
}

#[test]
fn tile_paths_match_the_f64_reference_at_awkward_and_nat_shapes() {
    let mut rng = Rng(22);
    let (r, c) = (Store::Rows(0), Store::Cols(0));
    for path in tile_paths() {
        for (t, &mkn) in TILE_SHAPES.iter().enumerate() {
            let (alpha, beta) = if t % 2 == 0 { (1.0, 0.0) } else { (1.25, -0.5) };
            let sa = if t % 3 == 0 { c } else { r };
            check_path(path, &mut rng, mkn, sa, r, r, alpha, beta);
        }
    }
}

#[test]
fn bf16_dispatch_picks_amx_unless_refused_and_lowers_on_request() {
    use Bf16Gemm::*;
    for fast in [true, false] {
        let choice = |best, isa, amx| bf16_gemm_choice(best, fast, isa, amx);
        // AVX512-BF16 by default only where it outruns f32 FMAs; on request wherever it exists.
        let dp = if fast { DpBf16 } else { RoundPack };
        // AMX by default where present; DINONAT_AMX=0 refuses it.
        assert_eq!(choice(Amx, None, None), Amx);
        assert_eq!(choice(Amx, None, Some("1")), Amx);
        assert_eq!(choice(Amx, None, Some("0")), dp);
        assert_eq!(choice(Amx, Some("amx"), None), Amx);
        assert_eq!(choice(DpBf16, None, None), dp);
        // DINONAT_ISA forces lower paths whatever DINONAT_AMX says.
        assert_eq!(choice(Amx, Some("avx512bf16"), None), DpBf16);
        assert_eq!(choice(Amx, Some("avx512bf16"), Some("1")), DpBf16);
        assert_eq!(choice(DpBf16, Some("avx512bf16"), None), DpBf16);
        for f32_path in ["avx512", "avx2", "portable"] {
            assert_eq!(choice(Amx, Some(f32_path), None), RoundPack);
            assert_eq!(choice(DpBf16, Some(f32_path), None), RoundPack);
        }
        // Never above what the processor has.
        assert_eq!(choice(DpBf16, None, Some("1")), dp);
        assert_eq!(choice(RoundPack, Some("avx512bf16"), None), RoundPack);
        assert_eq!(choice(RoundPack, Some("amx"), Some("1")), RoundPack);
        assert_eq!(choice(RoundPack, None, None), RoundPack);
    }
    // This process: AMX is detected exactly when the OS grants it (and avx512bf16 is there).
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        isa::bf16_gemm_detected() == Amx,
        isa::amx_support().is_ok() && std::arch::is_x86_feature_detected!("avx512bf16")
    );
    if std::env::var("DINONAT_AMX").as_deref() == Ok("0") {
        assert!(isa::bf16_gemm_active() < Amx);
    }
}

/// One 16 x 32 by 32 x 16 BF16 tile product on the hardware, against the emulator: equal on
/// small integers (exact in any order of summation), within the f32 bound on random values (the
/// number of elements that differ from the emulator in the last bits is printed).
#[cfg(target_arch = "x86_64")]
#[test]
#[ignore = "needs AMX: cargo test --release -p dinonat-kernels amx_smoke -- --ignored"]
fn amx_smoke() {
    use super::kernel_amx::AmxTiles;
    if let Err(why) = isa::amx_support() {
        eprintln!("skip: {why}");
        return;
    }
    fn product<U: TileOps>(a: &[u32], b: &[u32]) -> Vec<f32> {
        let mut c = vec![0.0f32; 256];
        // SAFETY: AMX is present (checked) for the hardware; 1 KiB tiles at a 64-byte stride.
        unsafe {
            U::begin(&CONFIG);
            let mut u = U::unit(&CONFIG);
            u.zero::<0>();
            u.load::<4>(a.as_ptr() as *const u8, 64);
            u.load::<6>(b.as_ptr() as *const u8, 64);
            u.dpbf16ps::<0, 4, 6>();
            u.store::<0>(c.as_mut_ptr() as *mut u8, 64);
            U::end();
        }
        c
    }
    let mut rng = Rng(23);
    let ints: Vec<u32> = (0..512)
        .map(|i| pair((i % 7) as f32 - 3.0, (i % 5) as f32 - 2.0))
        .collect();
    let (a, b) = ints.split_at(256);
    assert_eq!(
        product::<AmxTiles>(a, b),
        product::<EmulatedTiles>(a, b),
        "small integers"
    );
    let vals: Vec<u32> = (0..512).map(|_| pair(rng.next(), rng.next())).collect();
    let (a, b) = vals.split_at(256);
    let (hw, emu) = (product::<AmxTiles>(a, b), product::<EmulatedTiles>(a, b));
    let mut differ = 0;
    for m in 0..16 {
        for n in 0..16 {
            let (mut exact, mut scale) = (0.0f64, 0.0f64);
            for k in 0..16 {
                for odd in [false, true] {
                    let x = half(a[m * 16 + k], odd) as f64 * half(b[k * 16 + n], odd) as f64;
                    (exact, scale) = (exact + x, scale + x.abs());
                }
            }
            let got = hw[m * 16 + n] as f64;
            assert!(
                (got - exact).abs() <= 36.0 * f32::EPSILON as f64 * scale,
                "C[{m}][{n}] = {got} expected {exact}"
            );
            differ += (hw[m * 16 + n].to_bits() != emu[m * 16 + n].to_bits()) as usize;
        }
    }
    eprintln!("amx_smoke: {differ} of 256 elements differ from the emulator in the last bits");
}
