//! The fast GELU against the f64 reference, on every ISA path this CPU has.

use super::*;
use crate::cpu::elementwise::testutil::*;

const EPS: f64 = f32::EPSILON as f64;

/// Max error over `x` in units of f32 epsilon: forward relative to |gelu(x)|, backward relative
/// to |Phi(x)| + |x phi(x)| (the size of the two terms whose sum can cancel near x = -0.75).
fn errors(isa: Isa, x: &[f32]) -> (f64, f64) {
    let n = x.len();
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let (mut y64, mut d64) = (vec![0.0; n], vec![0.0; n]);
    gelu_forward_reference(&x64, &mut y64);
    gelu_backward_reference(&x64, &vec![1.0; n], &mut d64);
    let (mut y, mut d) = (poisoned(n), poisoned(n));
    gelu_forward_with(isa, x, &mut y);
    gelu_backward_with(isa, x, &vec![1.0; n], &mut d);
    let (mut ef, mut eb) = (0.0f64, 0.0f64);
    for i in 0..n {
        let v = x64[i];
        let cdf = 0.5 * libm::erfc(-v * std::f64::consts::FRAC_1_SQRT_2);
        let pdf = (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let scale_b = cdf.abs() + (v * pdf).abs();
        // The f64 reference uses 1 + erf, itself inexact below -5: compare with erfc there.
        let yref = if v < -5.0 { v * cdf } else { y64[i] };
        let dref = if v < -5.0 { cdf + v * pdf } else { d64[i] };
        ef = ef.max((y[i] as f64 - yref).abs() / yref.abs().max(f64::MIN_POSITIVE) / EPS);
        eb = eb.max((d[i] as f64 - dref).abs() / scale_b.max(f64::MIN_POSITIVE) / EPS);
    }
    (ef, eb)
}

#[test]
fn gelu_dense_sweep() {
    // x = -10 + k 2^-12: 81921 points over [-10, 10], plus tiny magnitudes.
    let mut x: Vec<f32> = (0..=81920).map(|k| -10.0 + k as f32 / 4096.0).collect();
    x.extend([1e-30f32, -1e-30, 1e-6, -1e-6, 1e-40, -1e-40]);
    for isa in Isa::available() {
        let (ef, eb) = errors(isa, &x);
        println!("{}: forward {ef:.2} eps, backward {eb:.2} eps", isa.name());
        assert!(
            ef <= 4.0 && eb <= 4.0,
            "{}: forward {ef} eps, backward {eb} eps",
            isa.name()
        );
    }
}

#[test]
fn gelu_matches_reference_on_awkward_sizes() {
    let mut rng = Rng::new(11);
    for isa in Isa::available() {
        for n in SIZES.into_iter().chain([1000 * 513]) {
            let x = rng.vec(n, -6.0, 6.0);
            let (ef, eb) = errors(isa, &x);
            assert!(
                ef <= 4.0 && eb <= 4.0,
                "{} n={n}: {ef} {eb} eps",
                isa.name()
            );
            // dy is applied as one final product: check against the f32 reference on it.
            let dy = rng.vec(n, -2.0, 2.0);
            let (mut got, mut want) = (poisoned(n), poisoned(n));
            gelu_backward_with(isa, &x, &dy, &mut got);
            gelu_backward_reference(&x, &dy, &mut want);
            assert_close(
                &format!("gelu_backward {} n={n}", isa.name()),
                &got,
                &want,
                1e-6,
                1e-5,
            );
        }
    }
}

#[test]
fn gelu_special_values() {
    let x = [
        f32::NEG_INFINITY,
        f32::INFINITY,
        f32::NAN,
        -30.0,
        30.0,
        0.0,
        f32::MAX,
        -f32::MAX,
    ];
    for isa in Isa::available() {
        let (mut y, mut d) = (poisoned(x.len()), poisoned(x.len()));
        gelu_forward_with(isa, &x, &mut y);
        gelu_backward_with(isa, &x, &[1.0; 8], &mut d);
        let name = isa.name();
        assert_eq!(y[0], 0.0, "{name} gelu(-inf)");
        assert_eq!(y[1], f32::INFINITY, "{name} gelu(inf)");
        assert!(y[2].is_nan() && d[2].is_nan(), "{name} NaN");
        assert_eq!(
            (y[3], y[4], y[5]),
            (0.0, 30.0, 0.0),
            "{name} gelu(-30, 30, 0)"
        );
        assert_eq!((y[6], y[7]), (f32::MAX, 0.0), "{name} gelu(+-MAX)");
        assert_eq!(
            [d[0], d[1], d[3], d[4], d[5]],
            [0.0, 1.0, 0.0, 1.0, 0.5],
            "{name} gelu'"
        );
    }
}
