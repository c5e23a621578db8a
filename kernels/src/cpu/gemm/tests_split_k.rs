//! Split-k GEMMs (a long k, a small C) on every path against the f64 reference, the chunks
//! themselves, and bitwise equality across thread counts. Tolerance as in `tests.rs`.

use super::tests::{check_path, matrix, run_in_pool, Rng, Store};
use super::tests_bf16::pair_paths;
use super::*;

/// Shapes that split (k >= 4096, k >= 16 max(m, n), m n <= 65536), none a multiple of a tile.
const SPLIT: [(usize, usize, usize); 3] = [(13, 4099, 33), (1, 5000, 3), (70, 8191, 130)];

fn all_paths() -> Vec<Path> {
    let mut v: Vec<Path> = Isa::available().into_iter().map(Path::F32).collect();
    v.extend(Isa::available().into_iter().map(Path::Round));
    v.extend(pair_paths());
    v
}

#[test]
fn chunks_cover_k_in_order_and_depend_on_the_shape_only() {
    for &(m, k, n) in &SPLIT {
        let r = split_k::chunks(m, k, n).expect("a split shape");
        assert!(
            r.len() >= 2 && r.len() <= 16,
            "{m}x{k}x{n}: {} chunks",
            r.len()
        );
        assert_eq!(r[0].0, 0);
        assert_eq!(r.last().unwrap().1, k);
        for w in r.windows(2) {
            assert_eq!(w[0].1, w[1].0, "{m}x{k}x{n}: chunks not contiguous");
            assert_eq!(
                w[0].0 % 64,
                0,
                "{m}x{k}x{n}: a chunk starts off a multiple of 64"
            );
        }
        let again = run_in_pool(1, || split_k::chunks(m, k, n));
        assert_eq!(Some(r), again);
    }
    // Not split: k short, k not long against C's sides, or C too large.
    for &(m, k, n) in &[
        (64, 4095, 64),
        (300, 4096, 10),
        (257, 100_000, 257),
        (1, 64, 1),
    ] {
        assert_eq!(split_k::chunks(m, k, n), None, "{m}x{k}x{n}");
    }
}

#[test]
fn split_k_matches_reference_on_every_path() {
    let mut rng = Rng(11);
    for path in all_paths() {
        for &mkn in &SPLIT {
            // The weight-gradient layout (A read transposed), then others; C poisoned when
            // beta == 0, and a general strided C (through the temporary).
            let cases = [
                (Store::Cols(0), Store::Rows(0), Store::Rows(0), 1.0, 0.0),
                (Store::Cols(3), Store::Rows(1), Store::Rows(2), 0.5, 1.0),
                (Store::Rows(0), Store::Cols(0), Store::Cols(1), -1.5, 0.25),
                (Store::Strided, Store::Strided, Store::Strided, 1.0, -2.0),
            ];
            for (sa, sb, sc, alpha, beta) in cases {
                check_path(path, &mut rng, mkn, sa, sb, sc, alpha, beta);
            }
        }
    }
}

#[test]
fn split_k_bitwise_identical_for_1_2_and_3_threads() {
    let mut rng = Rng(12);
    for &(m, k, n) in &SPLIT {
        let (a, la) = matrix(&mut rng, m, k, Store::Cols(0));
        let (b, lb) = matrix(&mut rng, k, n, Store::Rows(0));
        let (c0, lc) = matrix(&mut rng, m, n, Store::Rows(0));
        for path in all_paths() {
            let go = |threads: usize| {
                let mut c = c0.clone();
                run_in_pool(threads, || {
                    run(path, m, k, n, 1.5, &a, la, &b, lb, 0.5, &mut c, lc, None)
                });
                c
            };
            let one = go(1);
            for t in [2, 3] {
                assert!(
                    one.iter()
                        .zip(&go(t))
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{path:?} {m}x{k}x{n}: 1 and {t} threads differ"
                );
            }
        }
    }
}
