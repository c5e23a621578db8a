//! LayerNorm over the last axis: y = (x - mean) * rstd * gamma + beta, rstd = 1/sqrt(var + eps)
//! (biased variance). Forward saves mean and rstd per row for the backward. Math: docs/layernorm.md.
//!
//! Shapes: x, y, dy, dx are [rows, cols]; gamma, beta, dgamma, dbeta are [cols]; mean, rstd [rows].
//!
//! The fast kernels (version 2; version 1 was the scalar reference):
//! - forward: per row, the mean and then the variance of (x - mean) (two passes, so no
//!   cancellation of E[x^2] - E[x]^2), then y = xhat * gamma + beta; the row stays in L1, so x is
//!   read once from memory. Rows in parallel.
//! - backward: dx per row from mean(g) and mean(g * xhat), g = dy * gamma; dgamma and dbeta are
//!   summed over fixed chunks of `REDUCE_ROWS` rows (chunks in parallel, each also writing its
//!   rows of dx) and the chunk partials are added in chunk order: bitwise the same result for any
//!   thread count.

use crate::cpu::elementwise::reduce::REDUCE_ROWS;
use crate::cpu::elementwise::simd::{isa_dispatch, lanes_loop, SimdF32};
use crate::cpu::elementwise::{rows_per_task, PAR_MIN_ELEMS};
use crate::cpu::isa::{self, Isa};
use crate::Float;
use rayon::prelude::*;

#[cfg(test)]
mod tests;

/// Forward per row of length `cols`; writes y, mean[row], rstd[row].
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

/// Fast f32 forward; writes y, mean[row], rstd[row].
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
    forward_with(isa::active(), x, gamma, beta, eps, y, mean, rstd, cols)
}

/// Fast f32 backward; writes dx, and dgamma, dbeta summed over rows (deterministic).
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
    backward_with(
        isa::active(),
        x,
        gamma,
        mean,
        rstd,
        dy,
        dx,
        dgamma,
        dbeta,
        cols,
    )
}

fn check(
    what: &str,
    rows_cols: &[usize],
    per_row: &[usize],
    per_col: &[usize],
    cols: usize,
) -> usize {
    let n = rows_cols[0];
    assert!(cols > 0, "{what}: cols = 0");
    assert!(
        n.is_multiple_of(cols),
        "{what}: {n} elements is not a whole number of rows of {cols}"
    );
    let rows = n / cols;
    assert!(
        rows_cols.iter().all(|&l| l == n),
        "{what}: [rows, cols] buffers of lengths {rows_cols:?}"
    );
    assert!(
        per_row.iter().all(|&l| l == rows),
        "{what}: per-row buffers {per_row:?} for {rows} rows"
    );
    assert!(
        per_col.iter().all(|&l| l == cols),
        "{what}: per-column buffers {per_col:?} for {cols} cols"
    );
    rows
}

pub(crate) fn forward_with(
    isa: Isa,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    cols: usize,
) {
    let lens = [x.len(), y.len()];
    check(
        "layernorm_forward",
        &lens,
        &[mean.len(), rstd.len()],
        &[gamma.len(), beta.len()],
        cols,
    );
    if x.len() < PAR_MIN_ELEMS {
        forward_rows(isa, x, gamma, beta, eps, y, mean, rstd);
    } else {
        let rpt = rows_per_task(cols);
        x.par_chunks(rpt * cols)
            .zip(y.par_chunks_mut(rpt * cols))
            .zip(mean.par_chunks_mut(rpt).zip(rstd.par_chunks_mut(rpt)))
            .for_each(|((xc, yc), (mc, rc))| forward_rows(isa, xc, gamma, beta, eps, yc, mc, rc));
    }
}

pub(crate) fn backward_with(
    isa: Isa,
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
    let lens = [x.len(), dy.len(), dx.len()];
    let per_col = [gamma.len(), dgamma.len(), dbeta.len()];
    let rows = check(
        "layernorm_backward",
        &lens,
        &[mean.len(), rstd.len()],
        &per_col,
        cols,
    );
    // Per chunk of REDUCE_ROWS rows: its dx rows and a partial [dgamma | dbeta] of 2 * cols.
    let chunks = rows.div_ceil(REDUCE_ROWS);
    let mut partials = vec![0.0f32; chunks * 2 * cols];
    let task = |(c, (acc, dxc)): (usize, (&mut [f32], &mut [f32]))| {
        let r = c * REDUCE_ROWS..(c * REDUCE_ROWS + dxc.len() / cols);
        let e = (r.start * cols, r.end * cols);
        let (xc, dyc) = (&x[e.0..e.1], &dy[e.0..e.1]);
        backward_rows(isa, xc, gamma, &mean[r.clone()], &rstd[r], dyc, dxc, acc);
    };
    let chunk_elems = REDUCE_ROWS * cols;
    if x.len() < PAR_MIN_ELEMS {
        partials
            .chunks_mut(2 * cols)
            .zip(dx.chunks_mut(chunk_elems))
            .enumerate()
            .for_each(task);
    } else {
        partials
            .par_chunks_mut(2 * cols)
            .zip(dx.par_chunks_mut(chunk_elems))
            .enumerate()
            .for_each(task);
    }
    dgamma.iter_mut().for_each(|v| *v = 0.0);
    dbeta.iter_mut().for_each(|v| *v = 0.0);
    for acc in partials.chunks(2 * cols) {
        dgamma
            .iter_mut()
            .zip(&acc[..cols])
            .for_each(|(o, &v)| *o += v);
        dbeta
            .iter_mut()
            .zip(&acc[cols..])
            .for_each(|(o, &v)| *o += v);
    }
}

#[inline(always)]
unsafe fn forward_rows_generic<V: SimdF32>(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
) {
    let cols = gamma.len();
    let (pg, pb) = (gamma.as_ptr(), beta.as_ptr());
    for (r, (xr, yr)) in x.chunks(cols).zip(y.chunks_mut(cols)).enumerate() {
        let (px, py) = (xr.as_ptr(), yr.as_mut_ptr());
        let mut s = V::splat(0.0);
        lanes_loop!(V, cols, |at| {
            s = s.add(at.load(px, 0.0));
        });
        let mu = s.reduce_add() / cols as f32;
        let (vmu, mut ss) = (V::splat(mu), V::splat(0.0));
        lanes_loop!(V, cols, |at| {
            // The tail is padded with mu, so padded lanes add 0.
            let d = at.load(px, mu).sub(vmu);
            ss = d.mul_add(d, ss);
        });
        let var = ss.reduce_add() / cols as f32;
        let rs = 1.0 / (var + eps).sqrt();
        let vrs = V::splat(rs);
        lanes_loop!(V, cols, |at| {
            let xhat = at.load(px, 0.0).sub(vmu).mul(vrs);
            at.store(xhat.mul_add(at.load(pg, 0.0), at.load(pb, 0.0)), py);
        });
        mean[r] = mu;
        rstd[r] = rs;
    }
}

/// dx for the rows of one chunk, and acc = [sum dy * xhat | sum dy] over those rows.
#[inline(always)]
unsafe fn backward_rows_generic<V: SimdF32>(
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    rstd: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    acc: &mut [f32],
) {
    let cols = gamma.len();
    acc.iter_mut().for_each(|v| *v = 0.0);
    let (pgam, pdg, pdb) = (gamma.as_ptr(), acc.as_mut_ptr(), acc.as_mut_ptr().add(cols));
    let rows = x.chunks(cols).zip(dy.chunks(cols)).zip(dx.chunks_mut(cols));
    for (r, ((xr, dyr), dxr)) in rows.enumerate() {
        let (px, pdy, pdx) = (xr.as_ptr(), dyr.as_ptr(), dxr.as_mut_ptr());
        let (mu, rs) = (V::splat(mean[r]), V::splat(rstd[r]));
        let (mut sg, mut sgx) = (V::splat(0.0), V::splat(0.0));
        lanes_loop!(V, cols, |at| {
            let xhat = at.load(px, 0.0).sub(mu).mul(rs);
            let d = at.load(pdy, 0.0);
            let g = d.mul(at.load(pgam, 0.0));
            sg = sg.add(g);
            sgx = g.mul_add(xhat, sgx);
            at.store(d.mul_add(xhat, at.load(pdg, 0.0)), pdg);
            at.store(at.load(pdb, 0.0).add(d), pdb);
        });
        let inv_n = 1.0 / cols as f32;
        let mean_g = V::splat(sg.reduce_add() * inv_n);
        let mean_gx = V::splat(sgx.reduce_add() * inv_n);
        // dx = rstd * (g - mean(g) - xhat * mean(g xhat))
        lanes_loop!(V, cols, |at| {
            let xhat = at.load(px, 0.0).sub(mu).mul(rs);
            let g = at.load(pdy, 0.0).mul(at.load(pgam, 0.0));
            at.store(rs.mul(g.sub(mean_g).sub(xhat.mul(mean_gx))), pdx);
        });
    }
}

isa_dispatch! {
    fn forward_rows(
        x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, y: &mut [f32], mean: &mut [f32],
        rstd: &mut [f32],
    ) = forward_rows_generic;
}
isa_dispatch! {
    fn backward_rows(
        x: &[f32], gamma: &[f32], mean: &[f32], rstd: &[f32], dy: &[f32], dx: &mut [f32],
        acc: &mut [f32],
    ) = backward_rows_generic;
}
