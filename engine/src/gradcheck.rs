//! Gradient checking: compares the gradients from `backward` with central differences, in f64.
//!
//! For a function f of some tensors, the check reduces the output to a scalar with fixed random
//! weights, L = sum(f(x) * r) (so a gradient that is wrong in any direction shows; plain
//! sum(softmax(x)) would have gradient 0 whatever), then for every input element x_i
//!     numeric_i = (L(x_i + eps) - L(x_i - eps)) / (2 eps)
//! and requires |analytic_i - numeric_i| <= atol + rtol * max(|analytic_i|, |numeric_i|).
//! With eps = 1e-6 in f64 the difference quotient is accurate to about 1e-9 on the O(1) values
//! the tests use, far inside the default tolerance (atol 1e-6, rtol 1e-5).

use crate::{no_grad, DType, Result, Rng, Tensor};

#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub eps: f64,
    pub atol: f64,
    pub rtol: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            eps: 1e-6,
            atol: 1e-6,
            rtol: 1e-5,
        }
    }
}

/// Checks `f` at `inputs` (f64 tensors) with the default tolerance; Ok(largest relative error).
pub fn gradcheck(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
) -> std::result::Result<f64, String> {
    gradcheck_with(f, inputs, Tolerance::default())
}

/// As [`gradcheck`] with an explicit tolerance. The error names the input, element and values.
pub fn gradcheck_with(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    tol: Tolerance,
) -> std::result::Result<f64, String> {
    if let Some(t) = inputs.iter().find(|t| t.dtype() != DType::F64) {
        return Err(format!("gradcheck needs f64 inputs, got {:?}", t.dtype()));
    }
    let values: Vec<Vec<f64>> = inputs.iter().map(|t| t.to_vec_f64()).collect();
    let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
    let leaves: Vec<Tensor> = values
        .iter()
        .zip(&shapes)
        .map(|(v, s)| Tensor::from_slice(v, s).map(|t| t.with_grad()))
        .collect::<Result<_>>()
        .map_err(|e| e.to_string())?;

    let out = f(&leaves).map_err(|e| e.to_string())?;
    let weights = Rng::new(0x5eed).normal(out.shape(), 0.0, 1.0, DType::F64);
    let loss_of = |xs: &[Tensor]| -> Result<f64> { f(xs)?.mul(&weights)?.sum_all()?.item() };
    let loss = out
        .mul(&weights)
        .and_then(|t| t.sum_all())
        .map_err(|e| e.to_string())?;
    let grads = loss.backward().map_err(|e| e.to_string())?;

    let _guard = no_grad();
    let mut worst = 0.0f64;
    for (i, leaf) in leaves.iter().enumerate() {
        let analytic = match grads.get(leaf) {
            Some(g) => g.to_vec_f64(),
            None => vec![0.0; values[i].len()],
        };
        for j in 0..values[i].len() {
            let eval = |delta: f64| -> std::result::Result<f64, String> {
                let mut v = values[i].clone();
                v[j] += delta;
                let mut xs = leaves.clone();
                xs[i] = Tensor::from_vec(v, &shapes[i]).map_err(|e| e.to_string())?;
                loss_of(&xs).map_err(|e| e.to_string())
            };
            let numeric = (eval(tol.eps)? - eval(-tol.eps)?) / (2.0 * tol.eps);
            let a = analytic[j];
            let scale = a.abs().max(numeric.abs());
            let diff = (a - numeric).abs();
            let within = diff <= tol.atol + tol.rtol * scale; // false for NaN too
            if !within {
                return Err(format!(
                    "input {i} {:?} element {j}: analytic {a:.9e} vs numeric {numeric:.9e} \
                     (|diff| {diff:.3e} > atol {} + rtol {} * {scale:.3e})",
                    shapes[i], tol.atol, tol.rtol
                ));
            }
            worst = worst.max(diff / scale.max(1.0));
        }
    }
    Ok(worst)
}
