//! Fast LayerNorm against the reference, on every ISA path this CPU has.

use super::*;
use crate::cpu::elementwise::testutil::*;

fn shapes() -> Vec<(usize, usize)> {
    SIZES
        .iter()
        .flat_map(|&r| SIZES.iter().map(move |&c| (r, c)))
        .chain([(1000, 513)])
        .collect()
}

struct Case {
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    dy: Vec<f32>,
}

/// Rows of N(offset, ~1.7) with offsets up to 8: a large mean tests the two-pass variance.
fn case(rng: &mut Rng, rows: usize, cols: usize) -> Case {
    let mut x = rng.vec(rows * cols, -3.0, 3.0);
    for row in x.chunks_mut(cols) {
        let offset = rng.uniform(-8.0, 8.0);
        row.iter_mut().for_each(|v| *v += offset);
    }
    Case {
        x,
        gamma: rng.vec(cols, 0.5, 1.5),
        beta: rng.vec(cols, -1.0, 1.0),
        dy: rng.vec(rows * cols, -1.0, 1.0),
    }
}

const EPS: f32 = 1e-5;

#[test]
fn layernorm_matches_reference_on_every_isa() {
    let mut rng = Rng::new(31);
    for isa in Isa::available() {
        for (rows, cols) in shapes() {
            let c = case(&mut rng, rows, cols);
            let n = rows * cols;
            let name = |op: &str| format!("{op} {} {rows}x{cols}", isa.name());
            let (mut y, mut mean, mut rstd) = (poisoned(n), poisoned(rows), poisoned(rows));
            forward_with(
                isa, &c.x, &c.gamma, &c.beta, EPS, &mut y, &mut mean, &mut rstd, cols,
            );
            let (mut y_ref, mut mean_ref, mut rstd_ref) =
                (poisoned(n), poisoned(rows), poisoned(rows));
            layernorm_forward_reference(
                &c.x,
                &c.gamma,
                &c.beta,
                EPS,
                &mut y_ref,
                &mut mean_ref,
                &mut rstd_ref,
                cols,
            );
            // Sums in another order: mean to ~ulp(8) absolute, xhat to a few ulp of |xhat| <= 4.
            assert_close(&name("mean"), &mean, &mean_ref, 2e-6, 1e-6);
            assert_close(&name("rstd"), &rstd, &rstd_ref, 0.0, 1e-5);
            assert_close(&name("y"), &y, &y_ref, 1e-5, 1e-5);

            let (mut dx, mut dg, mut db) = (poisoned(n), poisoned(cols), poisoned(cols));
            backward_with(
                isa, &c.x, &c.gamma, &mean, &rstd, &c.dy, &mut dx, &mut dg, &mut db, cols,
            );
            let (mut dx_ref, mut dg_ref, mut db_ref) =
                (poisoned(n), poisoned(cols), poisoned(cols));
            layernorm_backward_reference(
                &c.x,
                &c.gamma,
                &mean,
                &rstd,
                &c.dy,
                &mut dx_ref,
                &mut dg_ref,
                &mut db_ref,
                cols,
            );
            // dx: rstd (up to 316 when cols = 1) times terms of size ~1.
            assert_close(&name("dx"), &dx, &dx_ref, 1e-5, 1e-4);
            // dgamma, dbeta: sums of `rows` terms of size <= 4 in another order.
            assert_close(&name("dgamma"), &dg, &dg_ref, 1e-6 * rows as f32, 1e-5);
            assert_close(&name("dbeta"), &db, &db_ref, 1e-6 * rows as f32, 1e-5);
        }
    }
}

#[test]
fn layernorm_is_deterministic_across_thread_counts() {
    let mut rng = Rng::new(32);
    let (rows, cols) = (1000, 513);
    let c = case(&mut rng, rows, cols);
    let n = rows * cols;
    let run = || {
        let (mut y, mut mean, mut rstd) = (poisoned(n), poisoned(rows), poisoned(rows));
        layernorm_forward(
            &c.x, &c.gamma, &c.beta, EPS, &mut y, &mut mean, &mut rstd, cols,
        );
        let (mut dx, mut dg, mut db) = (poisoned(n), poisoned(cols), poisoned(cols));
        layernorm_backward(
            &c.x, &c.gamma, &mean, &rstd, &c.dy, &mut dx, &mut dg, &mut db, cols,
        );
        [y, mean, rstd, dx, dg, db]
    };
    let (one, two) = (with_threads(1, run), with_threads(2, run));
    for (i, what) in ["y", "mean", "rstd", "dx", "dgamma", "dbeta"]
        .iter()
        .enumerate()
    {
        assert_bitwise(what, &one[i], &two[i]);
    }
}
