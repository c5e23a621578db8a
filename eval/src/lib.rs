//! DinoNAT's evaluation side, on frozen backbones: feature extraction ([`features`]: a data set, the evaluation
//! transform and a backbone or raw pixels -> a feature matrix), the evaluations of those features below, attention
//! maps ([`maps`]) and dataset curation ([`curate`]: embeddings, filtering, RGB <-> IR retrieval). It reads images
//! through `dinonat-train`'s data path and never touches the trainer.
//!
//! Evaluation of learned features (docs/evaluation.md): k-NN classification ([`knn`]; a training run's held-out
//! k-NN protocol in [`knn_splits`]; the `knn` / `linear` commands' runs in [`frozen`]), clustering, near-duplicate,
//! outlier and exemplar search ([`cluster`]), cross-modal retrieval and attention-mask utilities ([`retrieval`]),
//! a linear probe ([`linear`]), the metrics every classifier reports beside its controls ([`metrics`]), and
//! the metrics of a ranking against binary labels ([`ranking`]).
//!
//! Everything in those works on plain row-major feature matrices: `features` is `[N, dim]` as a flat `&[f32]`,
//! row `i` holding the feature vector of item `i`. No tensor engine is involved, so the evaluations can run on
//! features cached to disk by any backbone. Every result is deterministic: no step depends on the number of rayon
//! threads (queries are processed in fixed chunks whose results are written to fixed places), and every ranking
//! breaks ties by the lower index.

pub mod backbone;
pub mod cluster;
pub mod curate;
pub mod features;
pub mod frozen;
pub mod knn;
pub mod knn_splits;
pub mod linear;
pub mod maps;
pub mod metrics;
pub mod ranking;
pub mod retrieval;

use dinonat_kernels::cpu::gemm::{sgemm, Layout};
use rayon::prelude::*;
use std::cmp::Ordering;
use std::fmt;

/// An evaluation input that does not fit (wrong shape, label out of range, bad parameter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalError {
    pub message: String,
}

impl EvalError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "evaluation: {}", self.message)
    }
}

impl std::error::Error for EvalError {}

pub type Result<T> = std::result::Result<T, EvalError>;

/// Number of similarity entries computed at once (one chunk of queries against the whole bank): 4 Mi f32 = 16 MiB
/// per chunk in flight, whatever the bank size.
pub const SIMILARITY_CHUNK_ENTRIES: usize = 1 << 22;

/// Checks that `features` is a `[rows, dim]` matrix and returns `rows`; `what` names it in the error.
pub fn rows_of(features: &[f32], dim: usize, what: &str) -> Result<usize> {
    if dim == 0 {
        return Err(EvalError::new(format!("{what}: feature dimension is 0")));
    }
    if !features.len().is_multiple_of(dim) {
        return Err(EvalError::new(format!(
            "{what}: {} values is not a whole number of rows of dimension {dim}",
            features.len()
        )));
    }
    if let Some(bad) = features.iter().position(|v| !v.is_finite()) {
        return Err(EvalError::new(format!(
            "{what}: value {} at row {}, column {} is not finite",
            features[bad],
            bad / dim,
            bad % dim
        )));
    }
    Ok(features.len() / dim)
}

/// Row-wise l2 normalisation x / max(||x||, 1e-12), as `torch.nn.functional.normalize` (the norm in f64).
pub fn l2_normalized(features: &[f32], dim: usize) -> Vec<f32> {
    let mut out = features.to_vec();
    out.par_chunks_mut(dim.max(1)).for_each(|row| {
        let norm = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        let scale = 1.0 / norm.max(1e-12);
        for v in row.iter_mut() {
            *v = (*v as f64 * scale) as f32;
        }
    });
    out
}

/// How many query rows fit one chunk of [`SIMILARITY_CHUNK_ENTRIES`] against a bank of `bank_rows`.
pub fn query_chunk_rows(bank_rows: usize) -> usize {
    (SIMILARITY_CHUNK_ENTRIES / bank_rows.max(1)).clamp(1, 4096)
}

/// Calls `visit(first_query, sims)` for consecutive chunks of queries, in parallel; `sims` is the
/// `[chunk_rows, bank_rows]` block of dot products queries · bankᵀ (cosine similarities when both are
/// l2-normalised), computed with [`sgemm`]. The chunking depends only on the sizes, so the similarity values (and
/// anything `visit` derives from them per query) are the same for any number of threads. Results are collected in
/// chunk order.
pub fn map_similarity_chunks<R: Send>(
    queries: &[f32],
    bank: &[f32],
    dim: usize,
    visit: impl Fn(usize, &[f32]) -> R + Sync,
) -> Vec<R> {
    if dim == 0 {
        return Vec::new();
    }
    let bank_rows = bank.len() / dim;
    let query_rows = queries.len() / dim;
    let chunk = query_chunk_rows(bank_rows);
    let starts: Vec<usize> = (0..query_rows).step_by(chunk).collect();
    starts
        .into_par_iter()
        .map(|start| {
            let rows = chunk.min(query_rows - start);
            let mut sims = vec![0.0f32; rows * bank_rows];
            if bank_rows > 0 {
                sgemm(
                    rows,
                    dim,
                    bank_rows,
                    1.0,
                    &queries[start * dim..(start + rows) * dim],
                    Layout::row_major(dim),
                    bank,
                    Layout::col_major(dim),
                    0.0,
                    &mut sims,
                    Layout::row_major(bank_rows),
                );
            }
            visit(start, &sims)
        })
        .collect()
}

/// Orders (similarity, index) pairs best first: higher similarity first, then the lower index.
pub fn by_similarity_then_index(a: &(f32, usize), b: &(f32, usize)) -> Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// The `k` best (similarity, index) pairs of one row of similarities, best first ([`by_similarity_then_index`]),
/// skipping index `skip` (an item's own row when the queries are the bank).
pub fn top_k(sims: &[f32], k: usize, skip: Option<usize>) -> Vec<(f32, usize)> {
    let mut pairs: Vec<(f32, usize)> = sims
        .iter()
        .enumerate()
        .filter(|&(j, _)| Some(j) != skip)
        .map(|(j, &s)| (s, j))
        .collect();
    let k = k.min(pairs.len());
    if k == 0 {
        return Vec::new();
    }
    if k < pairs.len() {
        pairs.select_nth_unstable_by(k - 1, by_similarity_then_index);
        pairs.truncate(k);
    }
    pairs.sort_unstable_by(by_similarity_then_index);
    pairs
}

/// The `count` largest entries of `scores` (indices, best first, ties to the lower index).
pub fn argsort_descending(scores: &[f64], count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(count);
    order
}
