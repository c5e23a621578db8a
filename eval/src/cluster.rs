//! Unsupervised structure in a feature set (docs/evaluation.md, "Clustering and curation"): k-means with
//! k-means++ seeding, near-duplicate groups, low-density outliers, exemplar search, and label propagation from a
//! few labelled items.
//!
//! All of it works on l2-normalised features, where squared euclidean distance and cosine similarity are tied by
//! |x - y|^2 = 2 - 2 cos(x, y). Similarities come from [`super::map_similarity_chunks`] (an SGEMM per chunk of
//! rows), so no step depends on the number of threads.

use super::{
    by_similarity_then_index, l2_normalized, map_similarity_chunks, rows_of, top_k, EvalError,
    Result,
};
use dinonat_engine::SplitMix64;
use rayon::prelude::*;

/// What "near" means for k-means on l2-normalised features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Spherical k-means: assign to the centroid of highest cosine, centroids re-normalised after each update.
    Cosine,
    /// Plain k-means: assign to the nearest centroid in squared euclidean distance, centroids are means.
    Euclidean,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KMeansConfig {
    pub k: usize,
    /// Lloyd iterations at most (an iteration = centroid update + re-assignment).
    pub max_iterations: usize,
    pub seed: u64,
    pub metric: Metric,
}

impl KMeansConfig {
    pub fn new(k: usize, seed: u64) -> Self {
        Self {
            k,
            max_iterations: 100,
            seed,
            metric: Metric::Cosine,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct KMeans {
    /// `[k, dim]`.
    pub centroids: Vec<f32>,
    /// The cluster of each item.
    pub assignments: Vec<usize>,
    /// Lloyd iterations run.
    pub iterations: usize,
    /// Whether the assignments stopped changing before `max_iterations`.
    pub converged: bool,
    /// Sum over items of 1 - cos (Cosine) or the squared distance (Euclidean) to the assigned centroid.
    pub inertia: f64,
}

/// k-means++ seeding (Arthur & Vassilvitskii 2007): the first centre uniformly at random, each next one drawn with
/// probability proportional to D(x)^2, the squared distance to the nearest centre chosen so far. Returns row
/// indices of `x` (l2-normalised, `[n, dim]`).
pub fn kmeans_plus_plus(x: &[f32], dim: usize, k: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let n = x.len() / dim.max(1);
    if n == 0 || k == 0 {
        return Vec::new();
    }
    let mut chosen = vec![rng.range(0, n as i64) as usize];
    let mut d2 = vec![f64::INFINITY; n];
    while chosen.len() < k {
        let c = &x[chosen[chosen.len() - 1] * dim..][..dim];
        for (d, row) in d2.iter_mut().zip(x.chunks(dim)) {
            let dot: f64 = row.iter().zip(c).map(|(&a, &b)| a as f64 * b as f64).sum();
            *d = d.min((2.0 - 2.0 * dot).max(0.0));
        }
        let total: f64 = d2.iter().sum();
        let next = if total > 0.0 {
            let target = rng.next_f64() * total;
            let mut cumulative = 0.0;
            // Rounding can leave the target past the last sum: fall back to the last candidate.
            let mut pick = d2.iter().rposition(|&d| d > 0.0).unwrap_or(n - 1);
            for (i, &d) in d2.iter().enumerate() {
                cumulative += d;
                if cumulative > target && d > 0.0 {
                    pick = i;
                    break;
                }
            }
            pick
        } else {
            // Every item coincides with a centre: take the lowest index not chosen yet.
            (0..n).find(|i| !chosen.contains(i)).unwrap_or(0)
        };
        chosen.push(next);
    }
    chosen
}

/// Assigns each row of `x` to a centroid; returns (assignments, inertia). Ties go to the lower centroid index.
fn assign(x: &[f32], centroids: &[f32], dim: usize, metric: Metric) -> (Vec<usize>, f64) {
    let k = centroids.len() / dim;
    let half_sq_norm: Vec<f32> = centroids
        .chunks(dim)
        .map(|c| 0.5 * c.iter().map(|v| v * v).sum::<f32>())
        .collect();
    let chunks = map_similarity_chunks(x, centroids, dim, |_, dots| {
        dots.chunks(k)
            .map(|row| {
                // Cosine: maximise x.c; Euclidean on unit x: |x - c|^2 = 1 - 2 (x.c - |c|^2 / 2).
                let score = |j: usize| match metric {
                    Metric::Cosine => row[j],
                    Metric::Euclidean => row[j] - half_sq_norm[j],
                };
                let best = (1..k).fold(0, |b, j| if score(j) > score(b) { j } else { b });
                let cost = match metric {
                    Metric::Cosine => 1.0 - row[best] as f64,
                    Metric::Euclidean => (1.0 - 2.0 * score(best) as f64).max(0.0),
                };
                (best, cost)
            })
            .collect::<Vec<_>>()
    });
    let pairs: Vec<(usize, f64)> = chunks.concat();
    let inertia = pairs.iter().map(|p| p.1).sum();
    (pairs.into_iter().map(|p| p.0).collect(), inertia)
}

/// k-means on the l2-normalised rows of `features` (`[n, dim]`): k-means++ seeding from `config.seed`, then
/// Lloyd iterations until the assignments stop changing or `max_iterations`. A cluster left empty keeps its
/// previous centroid. Centroid sums run in f64 in item order.
pub fn kmeans(features: &[f32], dim: usize, config: &KMeansConfig) -> Result<KMeans> {
    let n = rows_of(features, dim, "k-means features")?;
    if config.k == 0 || config.k > n {
        return Err(EvalError::new(format!(
            "k-means: k = {} must be between 1 and the number of items ({n})",
            config.k
        )));
    }
    let x = l2_normalized(features, dim);
    let mut rng = SplitMix64::keyed(&[config.seed, 0x6b6d_6561_6e73]); // "kmeans"
    let seeds = kmeans_plus_plus(&x, dim, config.k, &mut rng);
    let mut centroids: Vec<f32> = seeds
        .iter()
        .flat_map(|&i| x[i * dim..(i + 1) * dim].iter().copied())
        .collect();
    let (mut assignments, mut inertia) = assign(&x, &centroids, dim, config.metric);
    let mut iterations = 0;
    let mut converged = false;
    while iterations < config.max_iterations {
        let mut sums = vec![0.0f64; config.k * dim];
        let mut counts = vec![0usize; config.k];
        for (row, &c) in x.chunks(dim).zip(&assignments) {
            counts[c] += 1;
            for (s, &v) in sums[c * dim..(c + 1) * dim].iter_mut().zip(row) {
                *s += v as f64;
            }
        }
        for c in 0..config.k {
            if counts[c] == 0 {
                continue;
            }
            let mean: Vec<f64> = sums[c * dim..(c + 1) * dim]
                .iter()
                .map(|s| s / counts[c] as f64)
                .collect();
            let scale = match config.metric {
                Metric::Euclidean => 1.0,
                Metric::Cosine => {
                    let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt();
                    if norm == 0.0 {
                        continue;
                    }
                    1.0 / norm
                }
            };
            for (dst, m) in centroids[c * dim..(c + 1) * dim].iter_mut().zip(&mean) {
                *dst = (m * scale) as f32;
            }
        }
        iterations += 1;
        let (next, next_inertia) = assign(&x, &centroids, dim, config.metric);
        inertia = next_inertia;
        if next == assignments {
            converged = true;
            break;
        }
        assignments = next;
    }
    Ok(KMeans {
        centroids,
        assignments,
        iterations,
        converged,
        inertia,
    })
}

/// A disjoint-set forest whose root is always the smallest index of its set, so the result is independent of
/// the order the unions arrive in.
struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        Self {
            parent: (0..n).collect(),
        }
    }
    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]]; // path halving
            i = self.parent[i];
        }
        i
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        let (lo, hi) = (ra.min(rb), ra.max(rb));
        self.parent[hi] = lo;
    }
}

/// Groups of near-duplicates: every pair with cosine similarity >= `threshold` is joined, and the connected
/// components (single linkage) of size >= 2 are returned, each sorted ascending, the groups ordered by their
/// first member.
pub fn near_duplicate_groups(
    features: &[f32],
    dim: usize,
    threshold: f32,
) -> Result<Vec<Vec<usize>>> {
    let n = rows_of(features, dim, "near-duplicate features")?;
    let x = l2_normalized(features, dim);
    let pairs = map_similarity_chunks(&x, &x, dim, |start, sims| {
        let mut pairs = Vec::new();
        for (r, row) in sims.chunks(n.max(1)).enumerate() {
            let i = start + r;
            for (j, &s) in row.iter().enumerate().skip(i + 1) {
                if s >= threshold {
                    pairs.push((i, j));
                }
            }
        }
        pairs
    });
    let mut sets = UnionFind::new(n);
    for (i, j) in pairs.into_iter().flatten() {
        sets.union(i, j);
    }
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        let root = sets.find(i);
        members[root].push(i);
    }
    Ok(members.into_iter().filter(|g| g.len() >= 2).collect())
}

/// k-NN density of each item: the mean cosine similarity to its `k` nearest other items (its own row excluded
/// by index, so an exact copy still counts as a neighbour).
pub fn knn_density(features: &[f32], dim: usize, k: usize) -> Result<Vec<f32>> {
    let n = rows_of(features, dim, "density features")?;
    if k == 0 || k >= n {
        return Err(EvalError::new(format!(
            "k-NN density: k = {k} must be between 1 and items - 1 = {}",
            n as i64 - 1
        )));
    }
    let x = l2_normalized(features, dim);
    let chunks = map_similarity_chunks(&x, &x, dim, |start, sims| {
        sims.chunks(n)
            .enumerate()
            .map(|(r, row)| {
                let near = top_k(row, k, Some(start + r));
                (near.iter().map(|p| p.0 as f64).sum::<f64>() / k as f64) as f32
            })
            .collect::<Vec<_>>()
    });
    Ok(chunks.concat())
}

/// Outliers: the ceil(n * percentile / 100) items of lowest [`knn_density`], lowest first (ties: lower index).
/// Returns (density of every item, flagged items).
pub fn outliers(
    features: &[f32],
    dim: usize,
    k: usize,
    percentile: f64,
) -> Result<(Vec<f32>, Vec<usize>)> {
    if !(0.0..=100.0).contains(&percentile) {
        return Err(EvalError::new(format!(
            "outliers: percentile {percentile} is not in [0, 100]"
        )));
    }
    let density = knn_density(features, dim, k)?;
    let count = ((density.len() as f64 * percentile / 100.0).ceil() as usize).min(density.len());
    let mut order: Vec<(f32, usize)> = density.iter().enumerate().map(|(i, &d)| (d, i)).collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    Ok((
        density,
        order.into_iter().take(count).map(|p| p.1).collect(),
    ))
}

/// Which non-exemplar items an exemplar search keeps. s_E(i) is item i's highest cosine similarity to an
/// exemplar, s_R(i) its highest similarity to another non-exemplar item.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExemplarRule {
    /// Keep i when s_E(i) > s_R(i) + margin: with margin 0, the items whose nearest neighbour is an exemplar.
    Margin(f32),
    /// Keep i when s_E(i) >= threshold, whatever the rest looks like.
    Threshold(f32),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExemplarMatch {
    pub index: usize,
    /// s_E: highest similarity to an exemplar.
    pub exemplar_similarity: f32,
    /// The exemplar that gave it.
    pub exemplar: usize,
    /// s_R: highest similarity to another non-exemplar item (-inf if there is none).
    pub rest_similarity: f32,
}

/// Exemplar search: `exemplars` are row indices of `features` given as examples of what is wanted; returns the
/// non-exemplar items the rule keeps, most similar first (ties: lower index).
pub fn exemplar_search(
    features: &[f32],
    dim: usize,
    exemplars: &[usize],
    rule: ExemplarRule,
) -> Result<Vec<ExemplarMatch>> {
    let n = rows_of(features, dim, "exemplar search features")?;
    if exemplars.is_empty() {
        return Err(EvalError::new("exemplar search: no exemplars given"));
    }
    if let Some(&bad) = exemplars.iter().find(|&&e| e >= n) {
        return Err(EvalError::new(format!(
            "exemplar search: exemplar row {bad} is not below the {n} items"
        )));
    }
    let mut is_exemplar = vec![false; n];
    for &e in exemplars {
        is_exemplar[e] = true;
    }
    let x = l2_normalized(features, dim);
    let chunks = map_similarity_chunks(&x, &x, dim, |start, sims| {
        let mut found = Vec::new();
        for (r, row) in sims.chunks(n).enumerate() {
            let i = start + r;
            if is_exemplar[i] {
                continue;
            }
            let (mut best_e, mut s_e, mut s_r) = (0, f32::NEG_INFINITY, f32::NEG_INFINITY);
            for (j, &s) in row.iter().enumerate() {
                if is_exemplar[j] {
                    if s > s_e {
                        (best_e, s_e) = (j, s);
                    }
                } else if j != i {
                    s_r = s_r.max(s);
                }
            }
            let keep = match rule {
                ExemplarRule::Margin(margin) => s_e > s_r + margin,
                ExemplarRule::Threshold(t) => s_e >= t,
            };
            if keep {
                found.push(ExemplarMatch {
                    index: i,
                    exemplar_similarity: s_e,
                    exemplar: best_e,
                    rest_similarity: s_r,
                });
            }
        }
        found
    });
    let mut found: Vec<ExemplarMatch> = chunks.concat();
    found.sort_by(|a, b| {
        by_similarity_then_index(
            &(a.exemplar_similarity, a.index),
            &(b.exemplar_similarity, b.index),
        )
    });
    Ok(found)
}

/// Parameters of [`propagate_labels`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PropagationConfig {
    pub num_classes: usize,
    /// Neighbours per item in the k-NN graph.
    pub k: usize,
    /// How much of each step comes from the neighbours (1 - alpha from the given labels).
    pub alpha: f64,
    pub iterations: usize,
}

impl PropagationConfig {
    pub fn new(num_classes: usize) -> Self {
        Self {
            num_classes,
            k: 10,
            alpha: 0.99,
            iterations: 20,
        }
    }
}

/// The symmetric k-NN graph of the `n` rows of `features`: W_ij = max(cos, 0)^3 for the `k` nearest
/// neighbours of each row, W + W^T as adjacency lists sorted by neighbour index (so every sum over
/// them runs in a fixed order).
fn knn_graph(features: &[f32], dim: usize, n: usize, k: usize) -> Vec<Vec<(usize, f64)>> {
    let x = l2_normalized(features, dim);
    let neighbours: Vec<Vec<(f32, usize)>> = map_similarity_chunks(&x, &x, dim, |start, sims| {
        sims.chunks(n)
            .enumerate()
            .map(|(r, row)| top_k(row, k, Some(start + r)))
            .collect::<Vec<_>>()
    })
    .concat();
    let mut graph: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
    for (i, near) in neighbours.iter().enumerate() {
        for &(s, j) in near {
            let w = (s.max(0.0) as f64).powi(3);
            graph[i].push((j, w));
            graph[j].push((i, w));
        }
    }
    for edges in graph.iter_mut() {
        edges.sort_by_key(|e| e.0);
    }
    graph
}

/// Label propagation on a k-NN graph (Zhou et al. 2004, "Learning with Local and Global Consistency"; graph as
/// in Iscen et al. 2019, "Label Propagation for Deep Semi-supervised Learning"): W_ij = max(cos, 0)^3 for the k
/// nearest neighbours, symmetrised W + W^T, normalised S = D^-1/2 W D^-1/2; then F <- alpha S F + (1 - alpha) Y
/// from F = Y (Y one-hot on the labelled items). Returns for each item the class of its highest score and that
/// score's share of the row (None where nothing reached it). Labelled items keep their label.
pub fn propagate_labels(
    features: &[f32],
    dim: usize,
    labels: &[Option<usize>],
    config: &PropagationConfig,
) -> Result<Vec<Option<(usize, f32)>>> {
    let n = rows_of(features, dim, "label propagation features")?;
    let c = config.num_classes;
    if labels.len() != n {
        return Err(EvalError::new(format!(
            "label propagation: {} labels for {n} items",
            labels.len()
        )));
    }
    if let Some(bad) = labels.iter().flatten().find(|&&l| l >= c) {
        return Err(EvalError::new(format!(
            "label propagation: label {bad} is not below num_classes = {c}"
        )));
    }
    if config.k == 0 || config.k >= n || !(0.0..1.0).contains(&config.alpha) {
        return Err(EvalError::new(format!(
            "label propagation: need 1 <= k ({}) < items ({n}) and 0 <= alpha ({}) < 1",
            config.k, config.alpha
        )));
    }
    let graph = knn_graph(features, dim, n, config.k);
    let degree: Vec<f64> = graph.iter().map(|e| e.iter().map(|p| p.1).sum()).collect();
    let mut y = vec![0.0f64; n * c];
    for (i, l) in labels.iter().enumerate() {
        if let Some(l) = l {
            y[i * c + l] = 1.0;
        }
    }
    let mut f = y.clone();
    for _ in 0..config.iterations {
        let mut next = vec![0.0f64; n * c];
        next.par_chunks_mut(c).enumerate().for_each(|(i, out)| {
            for &(j, w) in &graph[i] {
                if w == 0.0 {
                    continue; // also keeps 0 / 0 out when a degree is 0
                }
                let s = w / (degree[i] * degree[j]).sqrt();
                for (o, v) in out.iter_mut().zip(&f[j * c..(j + 1) * c]) {
                    *o += config.alpha * s * v;
                }
            }
            for (o, v) in out.iter_mut().zip(&y[i * c..(i + 1) * c]) {
                *o += (1.0 - config.alpha) * v;
            }
        });
        f = next;
    }
    Ok(f.chunks(c)
        .zip(labels)
        .map(|(row, given)| {
            let total: f64 = row.iter().sum();
            if let Some(l) = given {
                return Some((
                    *l,
                    if total > 0.0 {
                        (row[*l] / total) as f32
                    } else {
                        1.0
                    },
                ));
            }
            let best = (1..c).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            (row[best] > 0.0).then(|| (best, (row[best] / total) as f32))
        })
        .collect())
}
