//! A bias on every row of C (`sgemm_bias`, `sgemm_bf16_bias`) on every path against the f64
//! reference plus the bias: row-major C (added per finished block in the drivers), column-major
//! and strided C (added afterwards), split-k shapes, several row blocks and tasks, and k = 0.
//! Tolerance as in `tests.rs`, with |bias| added to the scale.

use super::tests::{check_path_bias, Rng, Store};
use super::tests_bf16::pair_paths;
use super::*;

#[test]
fn bias_matches_reference_on_every_path_and_layout() {
    let mut rng = Rng(21);
    let mut paths: Vec<Path> = Isa::available().into_iter().map(Path::F32).collect();
    paths.extend(Isa::available().into_iter().map(Path::Round));
    paths.extend(pair_paths());
    let r = Store::Rows(0);
    let cases = [
        // (m, k, n), stores of A, B, C, alpha, beta
        ((1, 1, 1), (r, r, r), 1.0, 0.0),
        ((7, 33, 3), (Store::Cols(1), r, Store::Rows(2)), 1.0, 0.0),
        ((350, 70, 130), (r, r, r), 1.0, 0.0),
        ((129, 300, 513), (r, Store::Cols(0), r), 0.5, 1.0),
        ((33, 17, 65), (r, r, Store::Cols(1)), 1.0, 0.0),
        ((33, 17, 65), (r, r, Store::Strided), -1.0, 0.5),
        ((13, 4099, 33), (Store::Cols(0), r, r), 1.0, 0.0),
        ((5, 0, 9), (r, r, r), 1.0, 0.0),
    ];
    for path in paths {
        for (mkn, stores, alpha, beta) in cases {
            check_path_bias(path, &mut rng, mkn, stores, alpha, beta, true);
        }
    }
}

#[test]
fn public_bias_entry_points_add_the_bias_once() {
    // y = x W^T + b through the public functions, against the same GEMM without a bias plus b.
    let (m, k, n) = (37, 21, 19);
    let mut rng = Rng(22);
    let x: Vec<f32> = (0..m * k).map(|_| rng.next()).collect();
    let w: Vec<f32> = (0..n * k).map(|_| rng.next()).collect();
    let b: Vec<f32> = (0..n).map(|_| rng.next()).collect();
    let (lx, lwt, ly) = (
        MatrixLayout::row_major(k),
        MatrixLayout::col_major(k),
        MatrixLayout::row_major(n),
    );
    for bf16 in [false, true] {
        let (mut want, mut got) = (vec![f32::NAN; m * n], vec![f32::NAN; m * n]);
        let (x, w, b) = (&x[..], &w[..], &b[..]);
        if bf16 {
            sgemm_bf16(m, k, n, 1.0, x, lx, w, lwt, 0.0, &mut want, ly);
            sgemm_bf16_bias(m, k, n, 1.0, x, lx, w, lwt, 0.0, &mut got, ly, b);
        } else {
            sgemm(m, k, n, 1.0, x, lx, w, lwt, 0.0, &mut want, ly);
            sgemm_bias(m, k, n, 1.0, x, lx, w, lwt, 0.0, &mut got, ly, b);
        }
        for i in 0..m {
            for j in 0..n {
                let (g, e) = (got[i * n + j], want[i * n + j] + b[j]);
                assert!(
                    (g - e).abs() <= 1e-6 * (1.0 + e.abs()),
                    "y[{i},{j}] = {g}, want {e}"
                );
            }
        }
    }
}
