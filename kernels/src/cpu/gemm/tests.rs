//! Every available ISA path against `gemm_reference` in f64.
//!
//! Tolerance: |ours - exact| <= (k + 4) * eps_f32 * (|alpha| sum_p |a_ip||b_pj| + |beta||c_ij|),
//! the textbook bound for a length-k sum of products in f32 (k u, u = eps/2) with a factor 2 and
//! a few roundings of alpha and beta to spare. Padding and unused elements of every buffer are NaN,
//! so reading outside a view, or reading C when beta == 0, fails the test.

use super::*;

pub(super) struct Rng(pub u64);

impl Rng {
    /// Uniform in [-1, 1).
    pub fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// How an operand is stored.
#[derive(Clone, Copy, Debug)]
pub(super) enum Store {
    /// Row-major, `pad` extra elements per row.
    Rows(usize),
    /// Column-major (a transposed operand), `pad` extra per column.
    Cols(usize),
    /// Every other column, rows `2 * cols + 1` apart: neither stride is 1.
    Strided,
}

/// A rows x cols matrix with random values inside the view and NaN everywhere else.
pub(super) fn matrix(
    rng: &mut Rng,
    rows: usize,
    cols: usize,
    s: Store,
) -> (Vec<f32>, MatrixLayout) {
    let l = match s {
        Store::Rows(pad) => MatrixLayout {
            row_stride: cols + pad,
            col_stride: 1,
        },
        Store::Cols(pad) => MatrixLayout {
            row_stride: 1,
            col_stride: rows + pad,
        },
        Store::Strided => MatrixLayout {
            row_stride: 2 * cols + 1,
            col_stride: 2,
        },
    };
    let mut v = vec![f32::NAN; l.min_len(rows, cols) + 3];
    for i in 0..rows {
        for j in 0..cols {
            v[i * l.row_stride + j * l.col_stride] = rng.next();
        }
    }
    (v, l)
}

/// Every element rounded to BF16 and widened back (NaN padding stays NaN).
pub(super) fn rounded(x: &[f32]) -> Vec<f32> {
    x.iter()
        .map(|&v| crate::cpu::bf16::round_to_bf16(v))
        .collect()
}

fn to64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// One product on one f32 path; beta == 0 poisons C with NaN.
fn check(
    isa: Isa,
    rng: &mut Rng,
    mkn: (usize, usize, usize),
    sa: Store,
    sb: Store,
    sc: Store,
    alpha: f32,
    beta: f32,
) {
    check_path(Path::F32(isa), rng, mkn, sa, sb, sc, alpha, beta)
}

/// One product on any path against the f64 reference (on the BF16-rounded operands for a BF16
/// path); beta == 0 poisons C with NaN.
pub(super) fn check_path(
    path: Path,
    rng: &mut Rng,
    mkn: (usize, usize, usize),
    sa: Store,
    sb: Store,
    sc: Store,
    alpha: f32,
    beta: f32,
) {
    check_path_bias(path, rng, mkn, (sa, sb, sc), alpha, beta, false)
}

/// [`check_path`], with a random bias added to every row of C when `with_bias`.
pub(super) fn check_path_bias(
    path: Path,
    rng: &mut Rng,
    (m, k, n): (usize, usize, usize),
    (sa, sb, sc): (Store, Store, Store),
    alpha: f32,
    beta: f32,
    with_bias: bool,
) {
    let bias: Option<Vec<f32>> = with_bias.then(|| (0..n).map(|_| rng.next()).collect());
    let (a, la) = matrix(rng, m, k, sa);
    let (b, lb) = matrix(rng, k, n, sb);
    let (mut c, lc) = matrix(rng, m, n, sc);
    if beta == 0.0 {
        for i in 0..m {
            for j in 0..n {
                c[i * lc.row_stride + j * lc.col_stride] = f32::NAN;
            }
        }
    }
    let c_in = c.clone();
    run(
        path,
        m,
        k,
        n,
        alpha,
        &a,
        la,
        &b,
        lb,
        beta,
        &mut c,
        lc,
        bias.as_deref(),
    );
    let (a, b) = match path {
        Path::F32(_) => (a, b),
        _ => (rounded(&a), rounded(&b)),
    };

    let zero_nan = |x: &[f32]| -> Vec<f64> {
        x.iter()
            .map(|&v| if v.is_nan() { 0.0 } else { v as f64 })
            .collect()
    };
    let (a64, b64) = (zero_nan(&a), zero_nan(&b));
    let mut exact = zero_nan(&c_in);
    gemm_reference(
        m,
        k,
        n,
        alpha as f64,
        &a64,
        la,
        &b64,
        lb,
        beta as f64,
        &mut exact,
        lc,
    );
    let abs = |x: &[f64]| -> Vec<f64> { x.iter().map(|v| v.abs()).collect() };
    let mut scale = abs(&zero_nan(&c_in));
    let (aa, ba) = (abs(&a64), abs(&b64));
    gemm_reference(
        m,
        k,
        n,
        (alpha as f64).abs(),
        &aa,
        la,
        &ba,
        lb,
        (beta as f64).abs(),
        &mut scale,
        lc,
    );
    for (j, &v) in bias.iter().flatten().enumerate() {
        for i in 0..m {
            let at = i * lc.row_stride + j * lc.col_stride;
            exact[at] += v as f64;
            scale[at] += (v as f64).abs();
        }
    }
    let tol = (k as f64 + 4.0) * f32::EPSILON as f64;
    for i in 0..m {
        for j in 0..n {
            let at = i * lc.row_stride + j * lc.col_stride;
            let err = (c[at] as f64 - exact[at]).abs();
            assert!(
                err <= tol * scale[at] + 1e-30,
                "{path:?} {m}x{k}x{n} A {sa:?} B {sb:?} C {sc:?} alpha {alpha} beta {beta} \
                 bias {with_bias}: \
                 C[{i},{j}] = {} expected {} (tol {})",
                c[at],
                exact[at],
                tol * scale[at]
            );
        }
    }
    // Nothing outside the view of C was written.
    let inside: std::collections::HashSet<usize> = (0..m)
        .flat_map(|i| (0..n).map(move |j| i * lc.row_stride + j * lc.col_stride))
        .collect();
    for (x, (&after, &before)) in c.iter().zip(&c_in).enumerate() {
        if !inside.contains(&x) {
            assert!(
                after.to_bits() == before.to_bits(),
                "{path:?} {m}x{k}x{n}: wrote C[{x}] outside the view"
            );
        }
    }
}

pub(super) const AWKWARD: [usize; 5] = [1, 3, 7, 33, 257];

#[test]
fn sgemm_matches_reference_on_awkward_sizes_all_transposes() {
    let mut rng = Rng(1);
    let stores = [
        (Store::Rows(0), Store::Rows(0)),
        (Store::Cols(0), Store::Rows(0)),
        (Store::Rows(0), Store::Cols(0)),
        (Store::Cols(0), Store::Cols(0)),
    ];
    for isa in Isa::available() {
        for &m in &AWKWARD {
            for &k in &AWKWARD {
                for &n in &AWKWARD {
                    for (t, &(sa, sb)) in stores.iter().enumerate() {
                        // Alternate plain (alpha 1, beta 0 on NaN C) and scaled accumulate.
                        let (alpha, beta) = if (m + k + n + t) % 2 == 0 {
                            (1.0, 0.0)
                        } else {
                            (-0.75, 1.5)
                        };
                        check(
                            isa,
                            &mut rng,
                            (m, k, n),
                            sa,
                            sb,
                            Store::Rows(0),
                            alpha,
                            beta,
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn sgemm_matches_reference_on_bigger_blocked_sizes() {
    // 100x300x129: k spans two KC blocks; 350x520x530: several MC / NC blocks and n large enough
    // that row-major A is packed, B packed once and shared; 25088-like tall-skinny shape scaled
    // down; 120x300x512: B packed by each task.
    let mut rng = Rng(2);
    for isa in Isa::available() {
        check(
            isa,
            &mut rng,
            (100, 300, 129),
            Store::Rows(0),
            Store::Rows(0),
            Store::Rows(0),
            1.0,
            0.0,
        );
        check(
            isa,
            &mut rng,
            (100, 300, 129),
            Store::Cols(0),
            Store::Cols(0),
            Store::Rows(0),
            0.5,
            -2.0,
        );
        check(
            isa,
            &mut rng,
            (350, 520, 530),
            Store::Rows(0),
            Store::Rows(0),
            Store::Rows(0),
            1.0,
            0.0,
        );
        check(
            isa,
            &mut rng,
            (350, 520, 530),
            Store::Cols(0),
            Store::Rows(0),
            Store::Rows(0),
            1.0,
            1.0,
        );
        check(
            isa,
            &mut rng,
            (1500, 64, 192),
            Store::Rows(0),
            Store::Rows(0),
            Store::Rows(0),
            1.0,
            0.0,
        );
        // Small m with B rows 512 apart: B packed per task (one task per column range).
        check(
            isa,
            &mut rng,
            (120, 300, 512),
            Store::Rows(0),
            Store::Rows(0),
            Store::Rows(0),
            1.0,
            0.0,
        );
    }
}

#[test]
fn sgemm_general_strided_views() {
    let mut rng = Rng(3);
    for isa in Isa::available() {
        for &(m, k, n) in &[(7, 33, 3), (33, 7, 257), (257, 33, 33), (40, 300, 70)] {
            // Row-major with padding (row_stride > cols) on every operand.
            check(
                isa,
                &mut rng,
                (m, k, n),
                Store::Rows(5),
                Store::Rows(3),
                Store::Rows(2),
                2.0,
                0.5,
            );
            // Neither stride 1: packing's general path, and C through the temporary.
            check(
                isa,
                &mut rng,
                (m, k, n),
                Store::Strided,
                Store::Strided,
                Store::Strided,
                -1.0,
                0.0,
            );
            check(
                isa,
                &mut rng,
                (m, k, n),
                Store::Strided,
                Store::Rows(1),
                Store::Strided,
                1.0,
                3.0,
            );
            // Column-major C: computed as C^T = B^T A^T.
            check(
                isa,
                &mut rng,
                (m, k, n),
                Store::Rows(0),
                Store::Cols(2),
                Store::Cols(1),
                1.0,
                0.0,
            );
            check(
                isa,
                &mut rng,
                (m, k, n),
                Store::Cols(3),
                Store::Rows(0),
                Store::Cols(0),
                0.25,
                -1.0,
            );
        }
    }
}

#[test]
fn sgemm_degenerate_k_and_alpha() {
    for isa in Isa::available() {
        // k = 0 and alpha = 0: C = beta * C, A and B never read (they are NaN here).
        for &(k, alpha) in &[(0usize, 1.0f32), (5, 0.0)] {
            let a = vec![f32::NAN; 3 * k];
            let b = vec![f32::NAN; k * 4];
            let mut c = vec![f32::NAN; 12];
            sgemm_with(
                isa,
                3,
                k,
                4,
                alpha,
                &a,
                MatrixLayout::row_major(k),
                &b,
                MatrixLayout::row_major(4),
                0.0,
                &mut c,
                MatrixLayout::row_major(4),
            );
            assert!(
                c.iter().all(|&v| v == 0.0),
                "{}: beta 0 must give zeros",
                isa.name()
            );
            let mut c = vec![2.0; 12];
            sgemm_with(
                isa,
                3,
                k,
                4,
                alpha,
                &a,
                MatrixLayout::row_major(k),
                &b,
                MatrixLayout::row_major(4),
                0.5,
                &mut c,
                MatrixLayout::row_major(4),
            );
            assert!(c.iter().all(|&v| v == 1.0), "{}: C = beta C", isa.name());
        }
    }
}

pub(super) fn run_in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn sgemm_bitwise_identical_for_1_and_2_threads() {
    let mut rng = Rng(4);
    for &(m, k, n, ta) in &[
        (300, 200, 100, false),
        (1000, 64, 192, false),
        (130, 513, 700, true),
        (120, 300, 512, false),
    ] {
        let (a, la) = matrix(
            &mut rng,
            m,
            k,
            if ta { Store::Cols(0) } else { Store::Rows(0) },
        );
        let (b, lb) = matrix(&mut rng, k, n, Store::Rows(0));
        let (c0, lc) = matrix(&mut rng, m, n, Store::Rows(0));
        for isa in Isa::available() {
            let go = |threads: usize| {
                let mut c = c0.clone();
                run_in_pool(threads, || {
                    sgemm_with(isa, m, k, n, 1.5, &a, la, &b, lb, 0.5, &mut c, lc)
                });
                c
            };
            let (one, two) = (go(1), go(2));
            assert!(
                one.iter()
                    .zip(&two)
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "{} {m}x{k}x{n}: 1 and 2 threads differ",
                isa.name()
            );
        }
    }
}

#[test]
fn sgemm_batched_matches_reference_contiguous_and_interleaved() {
    let mut rng = Rng(5);
    let (m, k, n) = (33, 7, 20);
    for isa in Isa::available() {
        for &count in &[1usize, 3, 4] {
            // Contiguous items (parallel across items when there are enough).
            let a: Vec<f32> = (0..count * m * k).map(|_| rng.next()).collect();
            let b: Vec<f32> = (0..count * k * n).map(|_| rng.next()).collect();
            let mut c = vec![f32::NAN; count * m * n];
            let batch = BatchStrides {
                count,
                a: m * k,
                b: k * n,
                c: m * n,
            };
            let (la, lb, lc) = (
                MatrixLayout::row_major(k),
                MatrixLayout::row_major(n),
                MatrixLayout::row_major(n),
            );
            let out = run_in_pool(2, || {
                sgemm_batched_with(isa, batch, m, k, n, 1.0, &a, la, &b, lb, 0.0, &mut c, lc);
                c
            });
            // Interleaved "heads": item t owns columns t*n.. of each row of one [m, count*n] C,
            // and reads B transposed.
            let lbt = MatrixLayout::col_major(k);
            let mut ci = vec![f32::NAN; m * count * n];
            let lci = MatrixLayout::row_major(count * n);
            let bi = BatchStrides {
                count,
                a: m * k,
                b: k * n,
                c: n,
            };
            let outi = run_in_pool(2, || {
                sgemm_batched_with(isa, bi, m, k, n, 1.0, &a, la, &b, lbt, 0.0, &mut ci, lci);
                ci
            });
            for t in 0..count {
                let mut want = vec![0.0f64; m * n];
                let mut want_t = vec![0.0f64; m * n];
                let (a64, b64) = (to64(&a[t * m * k..]), to64(&b[t * k * n..]));
                gemm_reference(
                    m,
                    k,
                    n,
                    1.0,
                    &a64,
                    la,
                    &b64,
                    lb,
                    0.0,
                    &mut want,
                    MatrixLayout::row_major(n),
                );
                gemm_reference(
                    m,
                    k,
                    n,
                    1.0,
                    &a64,
                    la,
                    &b64,
                    lbt,
                    0.0,
                    &mut want_t,
                    MatrixLayout::row_major(n),
                );
                for i in 0..m {
                    for j in 0..n {
                        let got = out[t * m * n + i * n + j] as f64;
                        let goti = outi[i * count * n + t * n + j] as f64;
                        let tol = (k as f64 + 4.0) * f32::EPSILON as f64 * k as f64;
                        assert!(
                            (got - want[i * n + j]).abs() <= tol,
                            "{} batch {t}: C[{i},{j}] {got}",
                            isa.name()
                        );
                        assert!(
                            (goti - want_t[i * n + j]).abs() <= tol,
                            "{} interleaved batch {t}: C[{i},{j}] {goti}",
                            isa.name()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn distinct_elements_accepts_real_layouts_and_rejects_aliasing() {
    assert!(distinct_elements(5, 7, MatrixLayout::row_major(7)));
    assert!(distinct_elements(5, 7, MatrixLayout::col_major(5)));
    assert!(distinct_elements(
        5,
        7,
        MatrixLayout {
            row_stride: 32,
            col_stride: 1
        }
    ));
    assert!(distinct_elements(
        1,
        7,
        MatrixLayout {
            row_stride: 0,
            col_stride: 1
        }
    ));
    assert!(!distinct_elements(
        5,
        7,
        MatrixLayout {
            row_stride: 0,
            col_stride: 1
        }
    ));
    assert!(!distinct_elements(
        5,
        7,
        MatrixLayout {
            row_stride: 3,
            col_stride: 1
        }
    ));
    assert!(!distinct_elements(
        1,
        5,
        MatrixLayout {
            row_stride: 0,
            col_stride: 0
        }
    ));
}
