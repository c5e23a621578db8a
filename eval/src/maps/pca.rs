//! The PCA map (docs/attention-maps.md, §3): the token features X [n, D] of a level, centred
//! (X - mean), projected on the first three principal directions (eigenvectors of the covariance
//! XᵀX / n of largest eigenvalue), each projection min-max scaled to [0, 1] over the tokens and
//! shown as R, G, B.
//!
//! Eigenvectors by power iteration with deflation, in f64, from a fixed start; an eigenvector's
//! sign is chosen so that its entry of largest magnitude is positive (lowest index on ties), so
//! the map is a deterministic function of the features.

/// First `count` principal directions of `x` `[n, dim]`: (eigenvalues, `[count, dim]` unit
/// vectors), largest first. Directions of zero variance come back as zero vectors.
pub fn principal_components(x: &[f32], dim: usize, count: usize) -> (Vec<f64>, Vec<f64>) {
    let n = x.len() / dim.max(1);
    let mut mean = vec![0f64; dim];
    for row in x.chunks_exact(dim) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    let mut cov = vec![0f64; dim * dim];
    for row in x.chunks_exact(dim) {
        let c: Vec<f64> = row.iter().zip(&mean).map(|(&v, m)| v as f64 - m).collect();
        for a in 0..dim {
            for b in a..dim {
                cov[a * dim + b] += c[a] * c[b];
            }
        }
    }
    for a in 0..dim {
        for b in a..dim {
            let v = cov[a * dim + b] / n.max(1) as f64;
            cov[a * dim + b] = v;
            cov[b * dim + a] = v;
        }
    }
    let mut values = Vec::new();
    let mut vectors = Vec::new();
    for comp in 0..count {
        // Start: all ones plus a ramp, so no direction of the standard basis is missed.
        let mut v: Vec<f64> = (0..dim).map(|i| 1.0 + (i + comp) as f64 * 1e-3).collect();
        let mut lambda = 0.0;
        for _ in 0..1000 {
            let mut next = vec![0f64; dim];
            for a in 0..dim {
                next[a] = (0..dim).map(|b| cov[a * dim + b] * v[b]).sum();
            }
            let norm = next.iter().map(|t| t * t).sum::<f64>().sqrt();
            if norm < 1e-30 {
                v = vec![0.0; dim];
                lambda = 0.0;
                break;
            }
            next.iter_mut().for_each(|t| *t /= norm);
            let change: f64 = next.iter().zip(&v).map(|(a, b)| (a - b).abs()).sum();
            v = next;
            lambda = norm;
            if change < 1e-12 {
                break;
            }
        }
        let mut big = 0;
        for i in 0..dim {
            if v[i].abs() > v[big].abs() {
                big = i;
            }
        }
        if dim > 0 && v[big] < 0.0 {
            v.iter_mut().for_each(|t| *t = -*t);
        }
        // Deflate: cov -= λ v vᵀ.
        for a in 0..dim {
            for b in 0..dim {
                cov[a * dim + b] -= lambda * v[a] * v[b];
            }
        }
        values.push(lambda);
        vectors.extend_from_slice(&v);
    }
    (values, vectors)
}

/// PCA map of `x` `[n, dim]`: `[n, 3]` values in [0, 1] (R, G, B = components 1, 2, 3). A
/// component with no spread over the tokens is 0.5 everywhere.
pub fn pca_rgb(x: &[f32], dim: usize) -> Vec<f32> {
    let n = x.len() / dim.max(1);
    let (_, vectors) = principal_components(x, dim, 3);
    let mut mean = vec![0f64; dim];
    for row in x.chunks_exact(dim) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64 / n as f64;
        }
    }
    let mut out = vec![0f32; n * 3];
    for c in 0..3 {
        let dir = &vectors[c * dim..(c + 1) * dim];
        let proj: Vec<f64> = x
            .chunks_exact(dim)
            .map(|row| {
                row.iter()
                    .zip(&mean)
                    .zip(dir)
                    .map(|((&v, m), d)| (v as f64 - m) * d)
                    .sum()
            })
            .collect();
        let lo = proj.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = proj.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        for (i, p) in proj.iter().enumerate() {
            out[i * 3 + c] = if hi - lo > 1e-12 * (1.0 + hi.abs()) {
                ((p - lo) / (hi - lo)) as f32
            } else {
                0.5
            };
        }
    }
    out
}
