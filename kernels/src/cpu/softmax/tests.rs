//! Fast softmax / log-softmax against the references, on every ISA path this CPU has.

use super::*;
use crate::cpu::elementwise::testutil::*;

fn shapes() -> Vec<(usize, usize)> {
    SIZES
        .iter()
        .flat_map(|&r| SIZES.iter().map(move |&c| (r, c)))
        .chain([(1000, 513)])
        .collect()
}

/// Inputs: uniform [-5, 5], large magnitudes [-80, 80], and [-80, 80] with about one entry in
/// eight set to -inf (but never a whole row, which is NaN by definition).
fn inputs(rng: &mut Rng, rows: usize, cols: usize) -> Vec<(&'static str, Vec<f32>)> {
    let n = rows * cols;
    let mut masked = rng.vec(n, -80.0, 80.0);
    for (i, v) in masked.iter_mut().enumerate() {
        if i % cols != 0 && rng.next_u64().is_multiple_of(8) {
            *v = f32::NEG_INFINITY;
        }
    }
    vec![
        ("small", rng.vec(n, -5.0, 5.0)),
        ("large", rng.vec(n, -80.0, 80.0)),
        ("-inf", masked),
    ]
}

#[test]
fn softmax_matches_reference_on_every_isa() {
    let mut rng = Rng::new(21);
    for isa in Isa::available() {
        for (rows, cols) in shapes() {
            for (kind, x) in inputs(&mut rng, rows, cols) {
                let n = rows * cols;
                let name = |op: &str| format!("{op} {} {rows}x{cols} {kind}", isa.name());
                let (mut got, mut want) = (poisoned(n), poisoned(n));
                // exp within 2 ulp and sums in a different order: a few ulp per output.
                forward_with(isa, false, &x, &mut got, cols);
                softmax_forward_reference(&x, &mut want, cols);
                assert_close(&name("softmax"), &got, &want, 1e-9, 4e-6);
                let y = want.clone();
                // log-softmax against f64: (x - max) is exact, ln(sum) <= ln(cols) has error
                // ~ulp(7); the f32 reference's x - lse would be off by ulp(80) = 8e-6 here.
                forward_with(isa, true, &x, &mut got, cols);
                let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                let mut want64 = vec![0.0f64; n];
                log_softmax_forward_reference(&x64, &mut want64, cols);
                want = want64.iter().map(|&v| v as f32).collect();
                assert_close(&name("log_softmax"), &got, &want, 2e-6, 2.4e-7);
                let ly = want.clone();

                let dy = rng.vec(n, -1.0, 1.0);
                backward_with(isa, false, &y, &dy, &mut got, cols);
                softmax_backward_reference(&y, &dy, &mut want, cols);
                assert_close(&name("softmax_backward"), &got, &want, 1e-6, 1e-5);
                // sum(dy) of up to 513 terms in another order: ~1e-6 absolute per output.
                backward_with(isa, true, &ly, &dy, &mut got, cols);
                log_softmax_backward_reference(&ly, &dy, &mut want, cols);
                assert_close(&name("log_softmax_backward"), &got, &want, 1e-5, 1e-5);
            }
        }
    }
}

#[test]
fn softmax_rows_sum_to_one_and_extremes() {
    // A single +80 among -80s: everything else underflows to exactly 0.
    let x = [-80.0, 80.0, -80.0, f32::NEG_INFINITY, -80.0, -80.0, -80.0];
    for isa in Isa::available() {
        let mut y = poisoned(7);
        forward_with(isa, false, &x, &mut y, 7);
        assert_eq!(y, [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0], "{}", isa.name());
        forward_with(isa, true, &x, &mut y, 7);
        assert_eq!(y[1], 0.0, "{}", isa.name());
        assert_eq!(y[3], f32::NEG_INFINITY, "{}", isa.name());
        assert_close("log_softmax(-80)", &y[..1], &[-160.0], 0.0, 1e-7);
    }
}

#[test]
fn softmax_is_deterministic_across_thread_counts() {
    let mut rng = Rng::new(22);
    let (rows, cols) = (1000, 513);
    let x = rng.vec(rows * cols, -5.0, 5.0);
    let run = || {
        let mut y = poisoned(x.len());
        softmax_forward(&x, &mut y, cols);
        y
    };
    assert_bitwise("softmax", &with_threads(1, run), &with_threads(2, run));
}
