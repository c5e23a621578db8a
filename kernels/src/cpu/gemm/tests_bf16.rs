//! The BF16 GEMM paths (`cargo test --release -p dinonat-kernels gemm::tests_bf16`).
//!
//! - Round-while-packing, on every f32 instruction set: bit for bit the f32 GEMM of the operands
//!   rounded to BF16 first (awkward sizes, transposed / padded / strided operands, NaN-poisoned C).
//! - The pair driver with the scalar emulation of `vdpbf16ps`: bit for bit a plain per-element loop
//!   over the same pairs and KC blocks (checks the pair packing, odd k, edges, the task grid).
//! - Every BF16 path the processor has (the AVX512-BF16 instruction where present, else a printed
//!   skip) against the f64 reference on the rounded operands: |C - C_exact| <= (k + 4) eps_f32
//!   (|alpha| sum_p |a_ip b_pj| + |beta c_ij|), the f32 bound of tests.rs (products of BF16 values
//!   are exact in f32, so only the f32 additions round).
//! - 1 and 2 threads bitwise identical; batched = one call per item, bitwise.
//!
//! Every pair path includes the AMX tiles, emulated everywhere and real where present
//! (`tests_tiles.rs` has the tile emulator's own tests).

use super::pairs::{dpbf16_lane, pair};
use super::tests::{check_path, matrix, rounded, run_in_pool, Rng, Store, AWKWARD};
use super::*;

fn round_paths() -> Vec<Path> {
    Isa::available().into_iter().map(Path::Round).collect()
}

/// The emulated pair and tile kernels, and the real ones where the processor has them: each path
/// is run by name, so a machine with AMX still tests the AVX512-BF16 kernel below it.
pub(super) fn pair_paths() -> Vec<Path> {
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut v = vec![
        Path::Pairs(PairPath::Emulated),
        Path::Pairs(PairPath::EmulatedTiles),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        if isa::bf16_gemm_detected() >= Bf16Gemm::DpBf16 {
            v.push(Path::Pairs(PairPath::Avx512Bf16));
        } else {
            eprintln!(
                "skip: this CPU has no avx512bf16; the vdpbf16ps kernel is checked only where it runs"
            );
        }
        v.extend(tile_paths().into_iter().skip(1));
    }
    v
}

/// The emulated AMX tiles, and the hardware ones where this process may use them.
pub(super) fn tile_paths() -> Vec<Path> {
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut v = vec![Path::Pairs(PairPath::EmulatedTiles)];
    #[cfg(target_arch = "x86_64")]
    match isa::amx_support() {
        Ok(()) if isa::bf16_gemm_detected() >= Bf16Gemm::Amx => v.push(Path::Pairs(PairPath::Amx)),
        Ok(()) => eprintln!("skip: AMX without avx512bf16; the AMX kernel is not run"),
        Err(why) => eprintln!("skip: {why}; the AMX kernel is checked only where it runs"),
    }
    v
}

/// The packers to check against a reference: the scalar one, and the AVX-512 one where the
/// processor has it (called directly, whatever `DINONAT_ISA` says), else a printed skip.
pub(super) fn packers<P>(scalar: P, simd: P) -> Vec<(&'static str, P)> {
    let mut v = vec![("scalar", scalar)];
    #[cfg(target_arch = "x86_64")]
    if super::pairs_avx512::supported() {
        v.push(("avx512", simd));
    } else {
        eprintln!("skip: no AVX-512 BW; the vector pair packers are not run");
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
    v
}

/// Test matrices: awkward values with `cpu::bf16::rounding_cases` (NaN payloads a plain
/// rounding would turn into infinity, ties both ways, the carry at MAX) spread among them.
pub(super) fn pair_test_data(len: usize) -> Vec<f32> {
    let specials = crate::cpu::bf16::rounding_cases();
    (0..len)
        .map(|x| match x % (specials.len() + 7) {
            k if k < specials.len() => specials[k],
            _ => ((x * 7919 % 1000) as f32 - 500.0) * 0.0137,
        })
        .collect()
}

/// m x k x n.
pub(super) type Shape = (usize, usize, usize);
/// A shape, the stores of A, B and C, alpha and beta.
pub(super) type Case = (Shape, Store, Store, Store, f32, f32);

const TRANSPOSES: [(Store, Store); 4] = [
    (Store::Rows(0), Store::Rows(0)),
    (Store::Cols(0), Store::Rows(0)),
    (Store::Rows(0), Store::Cols(0)),
    (Store::Cols(0), Store::Cols(0)),
];

/// Shapes and storages past the awkward cube: several KC / MC / NC blocks, odd k over blocks,
/// tall-skinny (A read in place by the f32 path), a transposed weight gradient, small m (B read in
/// place or packed per task), padded and strided operands, column-major and strided C.
fn bigger_cases() -> Vec<(Shape, Store, Store, Store)> {
    let (r, c) = (Store::Rows(0), Store::Cols(0));
    vec![
        ((100, 300, 129), r, r, r),
        ((350, 300, 530), r, r, r),
        ((100, 513, 70), c, r, r),
        ((1500, 64, 192), r, c, r),
        ((64, 600, 192), c, r, r),
        ((20, 70, 300), r, r, r),
        ((120, 300, 512), r, r, r),
        ((37, 45, 29), Store::Rows(3), Store::Rows(5), Store::Rows(2)),
        ((37, 45, 29), Store::Strided, Store::Cols(4), Store::Cols(3)),
        ((37, 46, 29), Store::Strided, Store::Strided, Store::Strided),
        ((60, 33, 50), r, r, c),
    ]
}

/// Every (shape, A, B, C store, alpha, beta) case: the awkward cube over the four transposes
/// (alternating plain and scaled-accumulate) and the bigger cases both ways.
pub(super) fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for &m in &AWKWARD {
        for &k in &AWKWARD {
            for &n in &AWKWARD {
                for (t, &(sa, sb)) in TRANSPOSES.iter().enumerate() {
                    let (alpha, beta) = if (m + k + n + t) % 2 == 0 {
                        (1.0, 0.0)
                    } else {
                        (-0.75, 1.5)
                    };
                    v.push(((m, k, n), sa, sb, Store::Rows(0), alpha, beta));
                }
            }
        }
    }
    for (t, (mkn, sa, sb, sc)) in bigger_cases().into_iter().enumerate() {
        let (alpha, beta) = if t % 2 == 0 { (1.0, 0.0) } else { (0.5, -1.25) };
        v.push((mkn, sa, sb, sc, alpha, beta));
    }
    v
}

/// Operands and C for one case; C's view is NaN when beta == 0 (it must not be read).
#[allow(clippy::type_complexity)]
fn operands(
    rng: &mut Rng,
    (m, k, n): (usize, usize, usize),
    (sa, sb, sc): (Store, Store, Store),
    beta: f32,
) -> (
    (Vec<f32>, MatrixLayout),
    (Vec<f32>, MatrixLayout),
    (Vec<f32>, MatrixLayout),
) {
    let (a, b) = (matrix(rng, m, k, sa), matrix(rng, k, n, sb));
    let (mut c, lc) = matrix(rng, m, n, sc);
    if beta == 0.0 {
        for i in 0..m {
            for j in 0..n {
                c[i * lc.row_stride + j * lc.col_stride] = f32::NAN;
            }
        }
    }
    (a, b, (c, lc))
}

fn same_bits(x: &[f32], y: &[f32]) -> bool {
    x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
}

#[test]
fn round_while_packing_is_the_f32_gemm_of_rounded_operands_bit_for_bit() {
    let mut rng = Rng(11);
    let mut changed = 0;
    for isa in Isa::available() {
        for ((m, k, n), sa, sb, sc, alpha, beta) in cases() {
            let ((a, la), (b, lb), (c, lc)) = operands(&mut rng, (m, k, n), (sa, sb, sc), beta);
            let mut ours = c.clone();
            run(
                Path::Round(isa),
                m,
                k,
                n,
                alpha,
                &a,
                la,
                &b,
                lb,
                beta,
                &mut ours,
                lc,
                None,
            );
            let mut want = c.clone();
            let (ar, br) = (rounded(&a), rounded(&b));
            sgemm_with(isa, m, k, n, alpha, &ar, la, &br, lb, beta, &mut want, lc);
            // Whole buffers: the NaN padding outside the view must be untouched too.
            assert!(
                same_bits(&ours, &want),
                "{} {m}x{k}x{n} A {sa:?} B {sb:?} C {sc:?}: round-while-packing differs from \
                 the f32 GEMM of the rounded operands",
                isa.name()
            );
            let mut plain = c.clone();
            sgemm_with(isa, m, k, n, alpha, &a, la, &b, lb, beta, &mut plain, lc);
            changed += !same_bits(&ours, &plain) as usize;
        }
    }
    // The rounding really happens (a no-op would pass the comparison above on exact inputs).
    assert!(changed > 100, "only {changed} products changed by rounding");
}

/// An operand and its layout.
pub(super) type Operand<'a> = (&'a [f32], MatrixLayout);

/// The frame of the plain per-element references: for each element of C and each block of `kc`
/// k, `block(i, j, p0, kc)` is the block's f32 sum, then `alpha * sum + beta * c` (fused; beta
/// of later blocks 1), as the drivers store it.
pub(super) fn per_block(
    (m, k, n): Shape,
    kc_max: usize,
    (alpha, beta): (f32, f32),
    (c, lc): (&mut [f32], MatrixLayout),
    block: impl Fn(usize, usize, usize, usize) -> f32,
) {
    for i in 0..m {
        for j in 0..n {
            let ci = i * lc.row_stride + j * lc.col_stride;
            for pc in (0..k).step_by(kc_max) {
                let v = alpha * block(i, j, pc, kc_max.min(k - pc));
                let beta = if pc == 0 { beta } else { 1.0 };
                c[ci] = if beta == 0.0 {
                    v
                } else {
                    beta.mul_add(c[ci], v)
                };
            }
        }
    }
}

/// The pairs of row i of A and column j of B at k = p, p + 1 (k >= end reads as 0).
pub(super) fn pairs_at(
    a: Operand,
    b: Operand,
    (i, j): (usize, usize),
    p: usize,
    end: usize,
) -> (u32, u32) {
    let at = |(x, l): Operand, r: usize, s: usize| x[r * l.row_stride + s * l.col_stride];
    let ak = |p: usize| if p < end { at(a, i, p) } else { 0.0 };
    let bk = |p: usize| if p < end { at(b, p, j) } else { 0.0 };
    (pair(ak(p), ak(p + 1)), pair(bk(p), bk(p + 1)))
}

/// The pair GEMM of the emulated kernel, written as a plain loop per element: pairs of k in
/// KC = 256 blocks, `vdpbf16ps` per pair, then `alpha * acc + beta * c` (fused) per block.
fn pair_reference(
    mkn: Shape,
    alpha: f32,
    a: Operand,
    b: Operand,
    beta: f32,
    c: (&mut [f32], MatrixLayout),
) {
    per_block(mkn, 256, (alpha, beta), c, |i, j, pc, kc| {
        let mut acc = 0.0f32;
        for q in 0..kc.div_ceil(2) {
            let (ap, bp) = pairs_at(a, b, (i, j), pc + 2 * q, pc + kc);
            acc = dpbf16_lane(acc, ap, bp);
        }
        acc
    })
}

/// A plain per-element loop: shape, alpha, A, B, beta, C.
pub(super) type Reference =
    fn(Shape, f32, (&[f32], MatrixLayout), (&[f32], MatrixLayout), f32, (&mut [f32], MatrixLayout));

/// `path` bit for bit against `reference` on every case (strided C skipped: it goes through a
/// temporary, which rounds `v + beta c` apart; checked in tolerance).
pub(super) fn check_bitwise(path: Path, rng: &mut Rng, cases: Vec<Case>, reference: Reference) {
    for ((m, k, n), sa, sb, sc, alpha, beta) in cases {
        if matches!(sc, Store::Strided) {
            continue;
        }
        let ((a, la), (b, lb), (c, lc)) = operands(rng, (m, k, n), (sa, sb, sc), beta);
        let mut ours = c.clone();
        run(
            path, m, k, n, alpha, &a, la, &b, lb, beta, &mut ours, lc, None,
        );
        let mut want = c.clone();
        reference((m, k, n), alpha, (&a, la), (&b, lb), beta, (&mut want, lc));
        assert!(
            same_bits(&ours, &want),
            "{path:?} {m}x{k}x{n} A {sa:?} B {sb:?} C {sc:?} alpha {alpha} beta {beta}: the \
             driver differs from the plain per-element loop"
        );
    }
}

#[test]
fn pair_driver_with_emulated_kernel_is_the_plain_pair_loop_bit_for_bit() {
    let path = Path::Pairs(PairPath::Emulated);
    check_bitwise(path, &mut Rng(12), cases(), pair_reference);
}

#[test]
fn every_bf16_path_matches_the_f64_reference_on_rounded_operands() {
    // Round-while-packing on the bigger cases only: on the cube it equals the f32 GEMM of the
    // rounded operands bit for bit (above), which tests.rs checks against the reference.
    let mut rng = Rng(13);
    let bigger = cases().split_off(AWKWARD.len().pow(3) * TRANSPOSES.len());
    for path in round_paths() {
        for &(mkn, sa, sb, sc, alpha, beta) in &bigger {
            check_path(path, &mut rng, mkn, sa, sb, sc, alpha, beta);
        }
    }
    for path in pair_paths() {
        for (mkn, sa, sb, sc, alpha, beta) in cases() {
            check_path(path, &mut rng, mkn, sa, sb, sc, alpha, beta);
        }
    }
}

#[test]
fn bf16_paths_bitwise_identical_for_1_and_2_threads() {
    let mut rng = Rng(14);
    for (m, k, n) in [
        (350, 520, 530),
        (1500, 64, 192),
        (64, 600, 192),
        (77, 301, 1000),
    ] {
        let ((a, la), (b, lb), (c, lc)) = operands(
            &mut rng,
            (m, k, n),
            (Store::Rows(0), Store::Rows(0), Store::Rows(0)),
            0.5,
        );
        for path in round_paths().into_iter().chain(pair_paths()) {
            let on = |threads| {
                let mut c = c.clone();
                run_in_pool(threads, || {
                    run(path, m, k, n, 1.5, &a, la, &b, lb, 0.5, &mut c, lc, None)
                });
                c
            };
            assert!(
                same_bits(&on(1), &on(2)),
                "{path:?} {m}x{k}x{n}: 1 and 2 threads differ"
            );
        }
    }
}

#[test]
fn bf16_batched_is_one_call_per_item_bit_for_bit() {
    let mut rng = Rng(15);
    let (count, m, k, n) = (6, 33, 71, 40);
    let a: Vec<f32> = (0..count * m * k).map(|_| rng.next()).collect();
    let b: Vec<f32> = (0..count * k * n).map(|_| rng.next()).collect();
    let (la, lb, lc) = (
        MatrixLayout::row_major(k),
        MatrixLayout::row_major(n),
        MatrixLayout::row_major(n),
    );
    let batch = BatchStrides {
        count,
        a: m * k,
        b: k * n,
        c: m * n,
    };
    for path in round_paths().into_iter().chain(pair_paths()) {
        for threads in [1, 2] {
            let mut c = vec![f32::NAN; count * m * n];
            run_in_pool(threads, || {
                run_batched(path, batch, m, k, n, 1.0, &a, la, &b, lb, 0.0, &mut c, lc)
            });
            for t in 0..count {
                let mut want = vec![f32::NAN; m * n];
                let (at, bt) = (&a[t * m * k..], &b[t * k * n..]);
                run(path, m, k, n, 1.0, at, la, bt, lb, 0.0, &mut want, lc, None);
                assert!(
                    same_bits(&c[t * m * n..(t + 1) * m * n], &want),
                    "{path:?} item {t}, {threads} threads"
                );
            }
        }
    }
}

#[test]
fn emulated_dpbf16_lane_follows_the_instruction() {
    let p = |even: f32, odd: f32| pair(even, odd);
    // odd pair first, each addition rounded: 1 + 2^-24 rounds back to 1 twice (a single rounding
    // of the sum of both products would give 1 + 2^-23)
    let tiny = 2f32.powi(-12);
    assert_eq!(dpbf16_lane(1.0, p(tiny, tiny), p(tiny, tiny)), 1.0);
    // the order is visible: acc = 2^24, odd product -1 then even +1 ... each step exact here
    assert_eq!(dpbf16_lane(3.0, p(2.0, 1.5), p(0.5, -2.0)), 3.0 - 3.0 + 1.0);
    // products of BF16 values are exact in f32: (1 + 2^-7)^2 = 1 + 2^-6 + 2^-14
    let x = 1.0 + 2f32.powi(-7);
    assert_eq!(
        dpbf16_lane(0.0, p(x, 0.0), p(x, 0.0)),
        1.0 + 2f32.powi(-6) + 2f32.powi(-14)
    );
    // inputs are rounded to BF16 (to nearest even) when packed: 1 + 2^-8 is a tie -> 1
    assert_eq!(
        dpbf16_lane(0.0, p(1.0 + 2f32.powi(-8), 0.0), p(1.0, 0.0)),
        1.0
    );
    // subnormal BF16 inputs read as zero; subnormal results flush to zero (sign kept)
    let sub = f32::from_bits(0x0040_0000); // a BF16 subnormal (exactly representable)
    assert_eq!(dpbf16_lane(0.0, p(sub, 0.0), p(4.0, 0.0)), 0.0);
    let small = f32::MIN_POSITIVE; // 2^-126, normal; times 0.5 is subnormal
    let r = dpbf16_lane(0.0, p(-small, 0.0), p(0.5, 0.0));
    assert!(r == 0.0 && r.is_sign_negative(), "{r:e}");
    // an odd k pads with (x, 0): the zero half adds nothing
    assert_eq!(dpbf16_lane(2.0, p(3.0, 0.0), p(-1.0, 0.0)), -1.0);
}

#[test]
fn bf16_gemm_dispatch_names_the_paths_this_cpu_has() {
    let avail = Bf16Gemm::available();
    assert_eq!(avail.last(), Some(&Bf16Gemm::RoundPack));
    assert_eq!(avail[0], isa::bf16_gemm_detected());
    assert!(isa::bf16_gemm_active() <= isa::bf16_gemm_detected());
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        avail.contains(&Bf16Gemm::DpBf16),
        std::arch::is_x86_feature_detected!("avx512bf16")
    );
}
