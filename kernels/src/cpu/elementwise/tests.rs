//! Fast elementwise kernels against their references, on every ISA path this CPU has.

use super::maps::{binary_with, unary_with, UnaryOp};
use super::reduce::{rows_with, sum_cols_with, sum_with};
use super::testutil::*;
use super::*;
use crate::cpu::isa::Isa;

const OPS: [BinaryOp; 4] = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div];

/// Lengths: the awkward sizes plus one above the parallel threshold (1000 x 513).
fn lengths() -> Vec<usize> {
    let mut v = SIZES.to_vec();
    v.push(1000 * 513);
    v
}

#[test]
fn binary_broadcast_is_exact_on_every_isa() {
    let mut rng = Rng::new(1);
    for isa in Isa::available() {
        for n in lengths() {
            let a = rng.vec(n, -3.0, 3.0);
            for blen in [1, 3, 7, 33, 257, 513, n] {
                let b = rng.vec(blen, 0.5, 2.0);
                for op in OPS {
                    let mut want = poisoned(n);
                    binary_reference(op, &a, &b, &mut want);
                    let mut got = poisoned(n);
                    binary_with(isa, op, &a, &b, &mut got);
                    // Tolerance 0: one IEEE operation per element.
                    assert_bitwise(
                        &format!("{op:?} {} n={n} b={blen}", isa.name()),
                        &got,
                        &want,
                    );
                }
            }
        }
    }
    let (a, mut got, mut want) = (rng.vec(33, -1.0, 1.0), poisoned(33), poisoned(33));
    binary_scalar(BinaryOp::Mul, &a, 1.5, &mut got);
    binary_scalar_reference(BinaryOp::Mul, &a, 1.5, &mut want);
    assert_bitwise("binary_scalar", &got, &want);
}

#[test]
fn unary_maps_match_reference_on_every_isa() {
    let mut rng = Rng::new(2);
    for isa in Isa::available() {
        for n in lengths() {
            let x = rng.vec(n, -87.0, 88.0);
            let pos = rng.vec(n, 1e-3, 1e3);
            let name = |op: &str| format!("{op} {} n={n}", isa.name());
            let run = |op, alpha, x: &[f32]| {
                let mut y = poisoned(n);
                unary_with(isa, op, alpha, x, &mut y);
                y
            };
            let mut want = poisoned(n);
            // exp: within 2 ulp of the f64 exp rounded to f32.
            let exact: Vec<f32> = x.iter().map(|&v| (v as f64).exp() as f32).collect();
            assert_close(
                &name("exp"),
                &run(UnaryOp::Exp, 0.0, &x),
                &exact,
                0.0,
                2.4e-7,
            );
            // ln: within 2 ulp of the correctly rounded result (plus a 2e-7 floor near ln 1 = 0).
            let exact: Vec<f32> = pos.iter().map(|&v| (v as f64).ln() as f32).collect();
            assert_close(
                &name("ln"),
                &run(UnaryOp::Ln, 0.0, &pos),
                &exact,
                2e-7,
                2.4e-7,
            );
            sqrt_reference(&pos, &mut want);
            assert_bitwise(&name("sqrt"), &run(UnaryOp::Sqrt, 0.0, &pos), &want);
            scale_reference(&x, 0.37, &mut want);
            assert_bitwise(&name("scale"), &run(UnaryOp::Scale, 0.37, &x), &want);
            // axpy: fused on the FMA paths, so one rounding apart: 1 ulp of |alpha x| + |y|.
            let y0 = rng.vec(n, -1.0, 1.0);
            let (mut got, mut want) = (y0.clone(), y0.clone());
            axpy_reference(0.37, &pos, &mut want);
            unary_with(isa, UnaryOp::Axpy, 0.37, &pos, &mut got);
            assert_close(&name("axpy"), &got, &want, 2.4e-7, 2.4e-7);
        }
    }
}

#[test]
fn exp_sweep() {
    // Every 997th f32 in [-87.3, 88.7] (normal results): error vs f64 in ulp of the result.
    let lo = (-87.3f32).to_bits();
    let neg = (0x8000_0001u32..=lo).step_by(997);
    let pos = (0u32..=88.7f32.to_bits()).step_by(997);
    let x: Vec<f32> = neg.chain(pos).map(f32::from_bits).collect();
    for isa in Isa::available() {
        let mut y = poisoned(x.len());
        unary_with(isa, UnaryOp::Exp, 0.0, &x, &mut y);
        let mut worst = 0.0f64;
        for (&v, &got) in x.iter().zip(&y) {
            let exact = (v as f64).exp();
            worst = worst.max((got as f64 - exact).abs() / (exact * f32::EPSILON as f64));
        }
        println!("exp {}: max error {worst:.2} ulp", isa.name());
        assert!(worst <= 2.0, "exp {}: {worst} ulp", isa.name());
    }
}

#[test]
fn exp_special_values() {
    let x = [
        f32::NEG_INFINITY,
        f32::INFINITY,
        f32::NAN,
        -104.0,
        -87.3,
        0.0,
        88.7,
        88.8,
        -0.0,
    ];
    for isa in Isa::available() {
        let mut y = poisoned(x.len());
        unary_with(isa, UnaryOp::Exp, 0.0, &x, &mut y);
        assert_eq!(y[0], 0.0, "{}", isa.name());
        assert_eq!(y[1], f32::INFINITY, "{}", isa.name());
        assert!(y[2].is_nan(), "{}", isa.name());
        assert!(y[3] < 1e-44, "{}", isa.name());
        assert_close(
            "exp",
            &y[4..7],
            &[(-87.3f32).exp(), 1.0, 88.7f32.exp()],
            0.0,
            2.4e-7,
        );
        assert_eq!(y[7], f32::INFINITY, "{}", isa.name());
        assert_eq!(y[8], 1.0, "{}", isa.name());
    }
}

#[test]
fn ln_sweep_and_special_values() {
    // Every 389th f32 bit pattern from the smallest subnormal to +inf: ulp error vs f64.
    let x: Vec<f32> = (1u32..0x7f80_0000)
        .step_by(389)
        .map(f32::from_bits)
        .collect();
    let special = [
        0.0,
        -0.0,
        -1.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        1.0,
        f32::from_bits(1),
    ];
    for isa in Isa::available() {
        let mut y = poisoned(x.len());
        unary_with(isa, UnaryOp::Ln, 0.0, &x, &mut y);
        let mut worst = 0.0f64;
        for (&v, &got) in x.iter().zip(&y) {
            let exact = (v as f64).ln();
            let ulp = ((exact as f32).abs().max(f32::MIN_POSITIVE) as f64) * f32::EPSILON as f64;
            worst = worst.max((got as f64 - exact).abs() / ulp);
        }
        println!("ln {}: max error {worst:.2} ulp", isa.name());
        assert!(worst <= 2.0, "ln {}: {worst} ulp", isa.name());
        let mut y = poisoned(special.len());
        unary_with(isa, UnaryOp::Ln, 0.0, &special, &mut y);
        assert_eq!(y[..2], [f32::NEG_INFINITY; 2], "{}", isa.name());
        assert!(
            y[2].is_nan() && y[4].is_nan() && y[5].is_nan(),
            "{}",
            isa.name()
        );
        assert_eq!((y[3], y[6]), (f32::INFINITY, 0.0), "{}", isa.name());
        assert_close("ln(min subnormal)", &y[7..], &[-103.278_93], 0.0, 2.4e-7);
    }
}

#[test]
fn reductions_match_reference_on_every_isa() {
    let mut rng = Rng::new(3);
    let shapes: Vec<(usize, usize)> = SIZES
        .iter()
        .flat_map(|&r| SIZES.iter().map(move |&c| (r, c)))
        .chain([(1000, 513)])
        .collect();
    for isa in Isa::available() {
        for &(rows, cols) in &shapes {
            let x = rng.vec(rows * cols, -1.0, 2.0);
            let name = |op: &str| format!("{op} {} {rows}x{cols}", isa.name());
            // f32 partial sums of at most ~cols/16 terms: 1e-6 relative to sum |x| suffices.
            let abs_sum: f32 = x.iter().map(|v| v.abs()).sum();
            let s = sum_with(isa, &x);
            let s_ref = sum_reference(&x);
            assert!(
                (s - s_ref).abs() <= 1e-6 * abs_sum,
                "{}: {s} vs {s_ref}",
                name("sum")
            );

            let (mut got, mut want) = (poisoned(rows), poisoned(rows));
            rows_with(isa, false, &x, &mut got, cols);
            sum_rows_reference(&x, &mut want, cols);
            assert_close(&name("sum_rows"), &got, &want, 2e-6 * cols as f32, 0.0);
            rows_with(isa, true, &x, &mut got, cols);
            max_rows_reference(&x, &mut want, cols);
            assert_bitwise(&name("max_rows"), &got, &want);

            let (mut got, mut want) = (poisoned(cols), poisoned(cols));
            sum_cols_with(isa, &x, &mut got, cols);
            sum_cols_reference(&x, &mut want, cols);
            assert_close(&name("sum_cols"), &got, &want, 2e-6 * rows as f32, 0.0);
        }
    }
}

#[test]
fn reductions_are_deterministic_across_thread_counts() {
    let mut rng = Rng::new(4);
    let (rows, cols) = (1000, 513);
    let x = rng.vec(rows * cols, -1.0, 2.0);
    let run = || {
        let (mut r, mut m, mut c) = (poisoned(rows), poisoned(rows), poisoned(cols));
        sum_rows(&x, &mut r, cols);
        max_rows(&x, &mut m, cols);
        sum_cols(&x, &mut c, cols);
        (sum(&x), r, m, c)
    };
    let one = with_threads(1, run);
    let two = with_threads(2, run);
    assert_eq!(one.0.to_bits(), two.0.to_bits(), "sum");
    assert_bitwise("sum_rows", &one.1, &two.1);
    assert_bitwise("max_rows", &one.2, &two.2);
    assert_bitwise("sum_cols", &one.3, &two.3);
}

#[test]
fn empty_inputs_are_no_ops() {
    let (mut out, mut none) = ([f32::NAN; 2], [0.0f32; 0]);
    assert_eq!(sum(&[]), 0.0);
    sum_rows(&[], &mut none, 0);
    max_rows(&[], &mut none, 3);
    sum_cols(&[], &mut out, 2);
    assert_eq!(out, [0.0, 0.0], "sum over zero rows");
    crate::cpu::softmax::softmax_forward(&[], &mut none, 0);
    crate::cpu::softmax::log_softmax_backward(&[], &[], &mut none, 0);
    binary(BinaryOp::Add, &[], &[], &mut none);
    exp(&[], &mut none);
}
