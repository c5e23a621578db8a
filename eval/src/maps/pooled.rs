//! The pooled-query map (docs/attention-maps.md, §1): in the last block of a level, the mean of
//! the block's queries q̄_h = (1/n) Σ_i q_{i,h} acts as one query per head h, and its attention
//! over every token j of the level is
//!
//! ```text
//! a_h(j) = softmax_j( q̄_h · k_{j,h} / sqrt(head_dim) ),
//! ```
//!
//! with q, k after LN1 and the QKV projection of the block, and no positional bias (a pooled
//! query has no position). Each a_h sums to 1 over the n = h * w tokens.

use super::{block_queries_keys, softmax_f64, LevelCapture, Result};
use dinonat_model::Nat;

/// Pooled-query attention of the last block of the captured level: `[B, heads, n]` row-major
/// (n = grid rows * columns), each `[n]` row a distribution.
pub fn pooled_query_attention(nat: &Nat, capture: &LevelCapture) -> Result<Vec<f32>> {
    let blocks = &nat.levels[capture.level].blocks;
    let last = blocks.len() - 1;
    let heads = blocks[last].attn.heads;
    let (q, k) = block_queries_keys(nat, capture, last)?;
    let n = capture.grid.0 * capture.grid.1;
    let batch = capture.tokens.shape()[0];
    Ok(pooled_query_from_qk(&q, &k, batch, n, heads))
}

/// The same from plain q, k `[batch, n, heads * head_dim]`: `[batch, heads, n]`.
pub fn pooled_query_from_qk(
    q: &[f32],
    k: &[f32],
    batch: usize,
    n: usize,
    heads: usize,
) -> Vec<f32> {
    let dim = q.len() / (batch * n).max(1);
    let hd = dim / heads.max(1);
    let scale = (hd as f64).powf(-0.5);
    let mut out = Vec::with_capacity(batch * heads * n);
    for b in 0..batch {
        let qb = &q[b * n * dim..(b + 1) * n * dim];
        let kb = &k[b * n * dim..(b + 1) * n * dim];
        for h in 0..heads {
            let mut mean = vec![0f64; hd];
            for row in qb.chunks_exact(dim) {
                for (m, &v) in mean.iter_mut().zip(&row[h * hd..(h + 1) * hd]) {
                    *m += v as f64;
                }
            }
            mean.iter_mut().for_each(|m| *m /= n as f64);
            let scores: Vec<f64> = kb
                .chunks_exact(dim)
                .map(|row| {
                    let kh = &row[h * hd..(h + 1) * hd];
                    scale * mean.iter().zip(kh).map(|(m, &v)| m * v as f64).sum::<f64>()
                })
                .collect();
            out.extend(softmax_f64(&scores));
        }
    }
    out
}

/// Mean over heads of `[heads, n]` maps: still a distribution over the n tokens.
pub fn head_mean(maps: &[f32], heads: usize) -> Vec<f32> {
    let n = maps.len() / heads.max(1);
    (0..n)
        .map(|j| (0..heads).map(|h| maps[h * n + j] as f64).sum::<f64>() as f32 / heads as f32)
        .collect()
}
