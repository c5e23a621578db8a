//! Weighted k-NN classification of features, as in DINO (Caron et al. 2021, "Emerging Properties in
//! Self-Supervised Vision Transformers", section 4.1, after Wu et al. 2018, "Unsupervised Feature Learning via
//! Non-Parametric Instance Discrimination"). docs/evaluation.md, "k-NN".
//!
//! Features are l2-normalised; the train split is the memory bank, the val split the queries. Each query's k most
//! cosine-similar bank items vote for their class with weight exp(sim / T); the class scores rank the
//! predictions. Neighbours with equal similarity are taken lower bank index first, classes with equal score lower
//! class index first.

use super::metrics::{rank_scores, ClassificationReport};
use super::{
    l2_normalized, map_similarity_chunks, query_chunk_rows, rows_of, top_k, EvalError, Result,
};

/// Parameters of the k-NN classifier (DINO's defaults: k = 20, T = 0.07).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KnnConfig {
    /// Number of neighbours that vote (clamped to the bank size).
    pub k: usize,
    /// Temperature T of the vote weight exp(sim / T).
    pub temperature: f32,
    /// Number of classes; labels must be below it.
    pub num_classes: usize,
}

impl KnnConfig {
    pub fn new(num_classes: usize) -> Self {
        Self {
            k: 20,
            temperature: 0.07,
            num_classes,
        }
    }
}

/// The outcome of [`knn_classify`].
#[derive(Clone, Debug, PartialEq)]
pub struct KnnReport {
    /// Top-1 accuracy in percent.
    pub top1: f64,
    /// Top-5 accuracy in percent (top-min(5, classes)).
    pub top5: f64,
    /// The predicted class of each query.
    pub predictions: Vec<usize>,
    /// Top-1 / top-5 with balanced accuracy, the majority and uniform controls and bootstrap intervals
    /// (`top1` and `top5` above are copies of its fields).
    pub classification: ClassificationReport,
}

fn check_labels(labels: &[usize], rows: usize, num_classes: usize, what: &str) -> Result<()> {
    if labels.len() != rows {
        return Err(EvalError::new(format!(
            "{what}: {} labels for {rows} feature rows",
            labels.len()
        )));
    }
    if let Some(i) = labels.iter().position(|&l| l >= num_classes) {
        return Err(EvalError::new(format!(
            "{what}: label {} of row {i} is not below num_classes = {num_classes}",
            labels[i]
        )));
    }
    Ok(())
}

fn check_config(config: &KnnConfig) -> Result<()> {
    if config.k == 0 || config.num_classes == 0 {
        return Err(EvalError::new(format!(
            "k-NN: k = {} and num_classes = {} must both be positive",
            config.k, config.num_classes
        )));
    }
    if !(config.temperature > 0.0 && config.temperature.is_finite()) {
        return Err(EvalError::new(format!(
            "k-NN: temperature {} must be positive",
            config.temperature
        )));
    }
    Ok(())
}

/// Class scores of each query: row q, column c = sum over the k nearest bank items of class c of exp(sim / T),
/// accumulated in f64 in neighbour order. Shape [queries, num_classes]. Inputs are raw (un-normalised) features.
/// `progress(done, total)` after each block of queries.
pub fn knn_class_scores(
    bank: &[f32],
    bank_labels: &[usize],
    queries: &[f32],
    dim: usize,
    config: &KnnConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>> {
    check_config(config)?;
    let bank_rows = rows_of(bank, dim, "k-NN memory bank")?;
    rows_of(queries, dim, "k-NN queries")?;
    check_labels(
        bank_labels,
        bank_rows,
        config.num_classes,
        "k-NN memory bank",
    )?;
    if bank_rows == 0 {
        return Err(EvalError::new("k-NN: the memory bank is empty"));
    }
    let bank = l2_normalized(bank, dim);
    let queries = l2_normalized(queries, dim);
    let classes = config.num_classes;
    let inv_t = 1.0 / config.temperature as f64;
    // Blocks of whole similarity chunks (two per thread), so each chunk holds the same rows as in
    // one call over all queries: the scores do not depend on the blocking.
    let query_rows = queries.len() / dim;
    let block = query_chunk_rows(bank_rows) * 2 * rayon::current_num_threads().max(1);
    let mut scores = Vec::with_capacity(query_rows * classes);
    for start in (0..query_rows).step_by(block) {
        let end = (start + block).min(query_rows);
        let block_queries = &queries[start * dim..end * dim];
        let chunks = map_similarity_chunks(block_queries, &bank, dim, |_, sims| {
            let mut scores = vec![0.0f64; sims.len() / bank_rows * classes];
            for (row, out) in sims.chunks(bank_rows).zip(scores.chunks_mut(classes)) {
                for (sim, j) in top_k(row, config.k, None) {
                    out[bank_labels[j]] += (sim as f64 * inv_t).exp();
                }
            }
            scores
        });
        chunks.iter().for_each(|c| scores.extend_from_slice(c));
        progress(end, query_rows);
    }
    Ok(scores)
}

/// The report of class scores [queries, classes] (ties: lower class).
fn report_from_scores(scores: &[f64], labels: &[usize], num_classes: usize) -> Result<KnnReport> {
    let (predictions, in_top5) = rank_scores(scores, labels, num_classes);
    let classification =
        ClassificationReport::from_predictions(labels, &predictions, &in_top5, num_classes)?;
    Ok(KnnReport {
        top1: classification.top1,
        top5: classification.top5,
        predictions,
        classification,
    })
}

/// Weighted k-NN classification of `queries` against the memory bank `bank` (both `[rows, dim]`, raw features).
pub fn knn_classify(
    bank: &[f32],
    bank_labels: &[usize],
    queries: &[f32],
    query_labels: &[usize],
    dim: usize,
    config: &KnnConfig,
) -> Result<KnnReport> {
    knn_classify_with_progress(
        bank,
        bank_labels,
        queries,
        query_labels,
        dim,
        config,
        &mut |_, _| {},
    )
}

/// [`knn_classify`], calling `progress(done, total)` as blocks of queries are searched.
pub fn knn_classify_with_progress(
    bank: &[f32],
    bank_labels: &[usize],
    queries: &[f32],
    query_labels: &[usize],
    dim: usize,
    config: &KnnConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<KnnReport> {
    let scores = knn_class_scores(bank, bank_labels, queries, dim, config, progress)?;
    let query_rows = queries.len() / dim;
    check_labels(query_labels, query_rows, config.num_classes, "k-NN queries")?;
    report_from_scores(&scores, query_labels, config.num_classes)
}

/// The plain version [`knn_classify`] is tested against: f64 throughout, no GEMM, a full sort per query.
pub fn knn_classify_reference(
    bank: &[f32],
    bank_labels: &[usize],
    queries: &[f32],
    query_labels: &[usize],
    dim: usize,
    config: &KnnConfig,
) -> Result<KnnReport> {
    check_config(config)?;
    let bank_rows = rows_of(bank, dim, "k-NN memory bank")?;
    let query_rows = rows_of(queries, dim, "k-NN queries")?;
    check_labels(
        bank_labels,
        bank_rows,
        config.num_classes,
        "k-NN memory bank",
    )?;
    check_labels(query_labels, query_rows, config.num_classes, "k-NN queries")?;
    let normalise = |row: &[f32]| -> Vec<f64> {
        let norm = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        row.iter().map(|&v| v as f64 / norm.max(1e-12)).collect()
    };
    let bank: Vec<Vec<f64>> = bank.chunks(dim).map(normalise).collect();
    let mut scores = Vec::new();
    for query in queries.chunks(dim) {
        let q = normalise(query);
        let mut sims: Vec<(f64, usize)> = bank
            .iter()
            .enumerate()
            .map(|(j, b)| (q.iter().zip(b).map(|(x, y)| x * y).sum(), j))
            .collect();
        sims.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut row = vec![0.0f64; config.num_classes];
        for &(sim, j) in sims.iter().take(config.k) {
            row[bank_labels[j]] += (sim / config.temperature as f64).exp();
        }
        scores.extend(row);
    }
    report_from_scores(&scores, query_labels, config.num_classes)
}
