//! LayerNorm over the last axis: y = (x - mean) * rstd * gamma + beta, rstd = 1/sqrt(var + eps)
//! (biased variance). Forward saves mean and rstd per row for the backward. Math: docs/layernorm.md.

use crate::Float;

/// Forward per row of length `cols`; writes y, mean[row], rstd[row].
#[allow(clippy::too_many_arguments)]
pub fn layernorm_forward_reference<T: Float>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    eps: T,
    y: &mut [T],
    mean: &mut [T],
    rstd: &mut [T],
    cols: usize,
) {
    let n = T::from_f64(cols as f64);
    for (r, (xr, yr)) in x.chunks(cols).zip(y.chunks_mut(cols)).enumerate() {
        let mut mu = T::ZERO;
        for &v in xr {
            mu += v;
        }
        mu /= n;
        let mut var = T::ZERO;
        for &v in xr {
            var += (v - mu) * (v - mu);
        }
        var /= n;
        let rs = T::ONE / (var + eps).sqrt();
        for (j, (yi, &xi)) in yr.iter_mut().zip(xr).enumerate() {
            *yi = (xi - mu) * rs * gamma[j] + beta[j];
        }
        mean[r] = mu;
        rstd[r] = rs;
    }
}

/// Backward: writes dx (per row) and dgamma, dbeta (summed over rows, in row order).
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward_reference<T: Float>(
    x: &[T],
    gamma: &[T],
    mean: &[T],
    rstd: &[T],
    dy: &[T],
    dx: &mut [T],
    dgamma: &mut [T],
    dbeta: &mut [T],
    cols: usize,
) {
    let n = T::from_f64(cols as f64);
    dgamma.iter_mut().for_each(|v| *v = T::ZERO);
    dbeta.iter_mut().for_each(|v| *v = T::ZERO);
    for (r, ((xr, dyr), dxr)) in x
        .chunks(cols)
        .zip(dy.chunks(cols))
        .zip(dx.chunks_mut(cols))
        .enumerate()
    {
        let (mu, rs) = (mean[r], rstd[r]);
        // xhat = (x - mu) * rs;  g = dy * gamma
        // dx = rs * (g - mean(g) - xhat * mean(g * xhat))
        let mut mean_g = T::ZERO;
        let mut mean_gx = T::ZERO;
        for j in 0..cols {
            let xhat = (xr[j] - mu) * rs;
            let g = dyr[j] * gamma[j];
            mean_g += g;
            mean_gx += g * xhat;
            dgamma[j] += dyr[j] * xhat;
            dbeta[j] += dyr[j];
        }
        mean_g /= n;
        mean_gx /= n;
        for j in 0..cols {
            let xhat = (xr[j] - mu) * rs;
            dxr[j] = rs * (dyr[j] * gamma[j] - mean_g - xhat * mean_gx);
        }
    }
}

/// Fast f32 forward (placeholder: the reference).
#[allow(clippy::too_many_arguments)]
pub fn layernorm_forward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    cols: usize,
) {
    layernorm_forward_reference(x, gamma, beta, eps, y, mean, rstd, cols)
}

/// Fast f32 backward (placeholder: the reference).
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward(
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    rstd: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    cols: usize,
) {
    layernorm_backward_reference(x, gamma, mean, rstd, dy, dx, dgamma, dbeta, cols)
}
