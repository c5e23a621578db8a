//! Cross-modal retrieval and attention-mask utilities (docs/evaluation.md, "Retrieval" and "Attention masks").
//!
//! Retrieval: two `[N, dim]` matrices A and B (e.g. infrared and RGB features of the same N scenes), row i of A
//! paired with row i of B. Each row of A queries all rows of B by cosine similarity (f64), and the other way round;
//! a query is a top-k hit when its true partner ranks among the first k. Ties are pessimistic: every other item
//! with a similarity equal to the partner's ranks ahead of it, so a degenerate feature (all rows equal) scores
//! chance-or-worse instead of 100%. Besides top-k, the median rank of the true partner (1-based, "MedR" of the
//! cross-modal retrieval literature; a random ranking gives (n + 1) / 2) shows where the partners stand when top-k
//! is at chance: a feature that ranks partners above the middle is better than chance, one below it worse.

use super::{rows_of, EvalError, Result};
use rayon::prelude::*;

/// Retrieval accuracies in percent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetrievalReport {
    pub a_to_b_top1: f64,
    pub a_to_b_top5: f64,
    pub b_to_a_top1: f64,
    pub b_to_a_top5: f64,
    /// Median 1-based rank of the true partner (mean of the two middle ranks for an even count).
    pub a_to_b_median_rank: f64,
    pub b_to_a_median_rank: f64,
}

fn normalised_f64(x: &[f32], dim: usize) -> Vec<f64> {
    let mut out: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    for row in out.chunks_mut(dim) {
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
    out
}

/// The 0-based rank of each query's true partner: for query i (a row of `queries`), the number of `keys` rows
/// j != i with cos(q_i, k_j) >= cos(q_i, k_i). Both inputs l2-normalised f64 `[n, dim]`.
pub fn partner_ranks(queries: &[f64], keys: &[f64], dim: usize) -> Vec<usize> {
    if dim == 0 {
        return Vec::new();
    }
    let n = queries.len().min(keys.len()) / dim;
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    (0..n)
        .into_par_iter()
        .map(|i| {
            let q = &queries[i * dim..(i + 1) * dim];
            let own = dot(q, &keys[i * dim..(i + 1) * dim]);
            keys.chunks(dim)
                .enumerate()
                .filter(|&(j, k)| j != i && dot(q, k) >= own)
                .count()
        })
        .collect()
}

fn hit_rate(ranks: &[usize], k: usize) -> f64 {
    100.0 * ranks.iter().filter(|&&r| r < k).count() as f64 / ranks.len().max(1) as f64
}

/// Median of the 1-based ranks (`ranks` are 0-based); the mean of the two middle ones for an even count.
pub fn median_rank(ranks: &[usize]) -> f64 {
    let mut r: Vec<usize> = ranks.iter().map(|&x| x + 1).collect();
    r.sort_unstable();
    match r.len() {
        0 => 0.0,
        n if n % 2 == 1 => r[n / 2] as f64,
        n => (r[n / 2 - 1] + r[n / 2]) as f64 / 2.0,
    }
}

/// Top-1 / top-5 retrieval accuracy and median partner rank, A -> B and B -> A, for paired rows (cosine
/// similarity in f64, pessimistic ties).
pub fn cross_modal_retrieval(a: &[f32], b: &[f32], dim: usize) -> Result<RetrievalReport> {
    let n = rows_of(a, dim, "retrieval matrix A")?;
    let m = rows_of(b, dim, "retrieval matrix B")?;
    if n != m || n == 0 {
        return Err(EvalError::new(format!(
            "retrieval: A has {n} rows and B has {m}; they must be paired row by row and non-empty"
        )));
    }
    let (a, b) = (normalised_f64(a, dim), normalised_f64(b, dim));
    let a_to_b = partner_ranks(&a, &b, dim);
    let b_to_a = partner_ranks(&b, &a, dim);
    Ok(RetrievalReport {
        a_to_b_top1: hit_rate(&a_to_b, 1),
        a_to_b_top5: hit_rate(&a_to_b, 5),
        b_to_a_top1: hit_rate(&b_to_a, 1),
        b_to_a_top5: hit_rate(&b_to_a, 5),
        a_to_b_median_rank: median_rank(&a_to_b),
        b_to_a_median_rank: median_rank(&b_to_a),
    })
}

/// The layout descriptor of one image's token map `[positions, channels]` (row-major, a position's channels
/// together): every channel standardised over the positions, x'_pc = (x_pc - mean_c) / std_c (population std;
/// a channel with std below 1e-6 becomes 0), flattened in the same order. Instance normalisation without its
/// affine: it removes what each channel does over the whole image (its level and its spread, the "style" of
/// instance normalisation) and keeps where it is strong, so a map and any a_c x + b_c of it (a_c > 0) give the
/// same descriptor. Compared by cosine between pixel-aligned images, it asks whether the same features are
/// strong at the same places (docs/evaluation.md, "Layout retrieval").
pub fn layout_descriptor(tokens: &[f32], positions: usize, channels: usize) -> Result<Vec<f32>> {
    if positions == 0 || channels == 0 || tokens.len() != positions * channels {
        return Err(EvalError::new(format!(
            "layout descriptor: {} values are not {positions} positions x {channels} channels",
            tokens.len()
        )));
    }
    let mut out = vec![0.0f32; tokens.len()];
    for c in 0..channels {
        let column = || tokens.iter().skip(c).step_by(channels).map(|&v| v as f64);
        let mean = column().sum::<f64>() / positions as f64;
        let var = column().map(|v| (v - mean) * (v - mean)).sum::<f64>() / positions as f64;
        let std = var.sqrt();
        for (p, v) in column().enumerate() {
            out[p * channels + c] = if std < 1e-6 {
                0.0
            } else {
                ((v - mean) / std) as f32
            };
        }
    }
    Ok(out)
}

/// DINO's attention threshold: the smallest set of positions that holds `mass` (e.g. 0.6) of the total attention.
/// Positions are taken by decreasing weight (equal weights: lower index first) until their cumulative share
/// reaches `mass`; the result marks them. `mass` <= 0 keeps nothing, `mass` >= 1 every position of non-zero weight.
pub fn attention_mass_mask(attention: &[f32], mass: f64) -> Result<Vec<bool>> {
    if let Some(i) = attention.iter().position(|&v| !(v >= 0.0 && v.is_finite())) {
        return Err(EvalError::new(format!(
            "attention mask: weight {} at position {i} is not a finite non-negative number",
            attention[i]
        )));
    }
    if mass.is_nan() {
        return Err(EvalError::new("attention mask: mass is NaN"));
    }
    let total: f64 = attention.iter().map(|&v| v as f64).sum();
    let mut keep = vec![false; attention.len()];
    if total == 0.0 || mass <= 0.0 {
        return Ok(keep);
    }
    let mut order: Vec<usize> = (0..attention.len()).collect();
    order.sort_by(|&i, &j| attention[j].total_cmp(&attention[i]).then(i.cmp(&j)));
    let mut cumulative = 0.0f64;
    for i in order {
        if attention[i] == 0.0 {
            break;
        }
        keep[i] = true;
        cumulative += attention[i] as f64 / total;
        if cumulative >= mass {
            break;
        }
    }
    Ok(keep)
}

/// Intersection over union |A and B| / |A or B| of two masks of equal length; two empty masks give 1.
pub fn mask_iou(a: &[bool], b: &[bool]) -> Result<f64> {
    if a.len() != b.len() {
        return Err(EvalError::new(format!(
            "mask IoU: masks of {} and {} positions",
            a.len(),
            b.len()
        )));
    }
    let inter = a.iter().zip(b).filter(|(&x, &y)| x && y).count();
    let union = a.iter().zip(b).filter(|(&x, &y)| x || y).count();
    Ok(if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    })
}
