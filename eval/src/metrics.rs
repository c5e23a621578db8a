//! Classification metrics with the controls that could explain them (docs/evaluation.md, "Metrics and
//! controls"): top-1 / top-5, balanced accuracy (mean per-class recall), the majority-class rate of the query
//! split, the uniform chance 1 / classes, and 95 % percentile-bootstrap intervals over the queries (Efron and
//! Tibshirani 1993, "An Introduction to the Bootstrap", chapter 13).
//!
//! One place computes these for every classifier ([`super::knn`], [`super::linear`], the `train` command's k-NN
//! table); [`bootstrap_interval`] is also the interval of every per-image mean elsewhere (box shares, mask IoU).

use super::{argsort_descending, EvalError, Result};
use dinonat_train::rng::SplitMix64;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{json, Value};

/// Resamples of the bootstrap (1000: the percentile ends move by well under a point between seeds).
pub const BOOTSTRAP_RESAMPLES: usize = 1000;
/// Seed of the bootstrap resampling: the intervals are the same on every run.
pub const BOOTSTRAP_SEED: u64 = 0;
/// Confidence of the intervals.
pub const CONFIDENCE: f64 = 0.95;

/// A two-sided confidence interval [low, high] of a statistic.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

impl Interval {
    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }

    pub fn width(&self) -> f64 {
        self.high - self.low
    }

    pub fn to_json(&self) -> Value {
        json!([self.low, self.high])
    }
}

/// The 95 % percentile-bootstrap interval of `statistic` over `n` items: [`BOOTSTRAP_RESAMPLES`] resamples of
/// `n` indices drawn with replacement (resample r from its own stream keyed by (seed, r), so the result does not
/// depend on the number of threads), `statistic(indices)` on each, and the 2.5 % / 97.5 % order statistics.
/// An empty set gives [NaN, NaN].
pub fn bootstrap_interval(
    n: usize,
    seed: u64,
    statistic: impl Fn(&[usize]) -> f64 + Sync,
) -> Interval {
    if n == 0 {
        return Interval {
            low: f64::NAN,
            high: f64::NAN,
        };
    }
    let mut values: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .into_par_iter()
        .map(|r| {
            let mut rng = SplitMix64::keyed(&[seed, r as u64, 0x626f_6f74]); // "boot"
            let indices: Vec<usize> = (0..n).map(|_| rng.range(0, n as i64) as usize).collect();
            statistic(&indices)
        })
        .collect();
    values.sort_by(f64::total_cmp);
    let tail = (1.0 - CONFIDENCE) / 2.0;
    let last = values.len() - 1;
    let at = |q: f64| values[((q * last as f64).round() as usize).min(last)];
    Interval {
        low: at(tail),
        high: at(1.0 - tail),
    }
}

/// The mean of `values` and its bootstrap interval over the items.
pub fn mean_with_interval(values: &[f64], seed: u64) -> (f64, Interval) {
    let mean = |idx: &mut dyn Iterator<Item = f64>, n: usize| idx.sum::<f64>() / n.max(1) as f64;
    let point = mean(&mut values.iter().copied(), values.len());
    let interval = bootstrap_interval(values.len(), seed, |ix| {
        mean(&mut ix.iter().map(|&i| values[i]), ix.len())
    });
    (point, interval)
}

/// What a classifier scored on a query split, beside the controls that need no classifier. Percentages.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassificationReport {
    pub queries: usize,
    pub num_classes: usize,
    /// Share of queries whose top-scored class is the label.
    pub top1: f64,
    /// Share whose label is among the top min(5, classes).
    pub top5: f64,
    /// Mean recall over the classes that have queries (balanced accuracy; a constant predictor scores
    /// 100 / (classes with queries)).
    pub balanced: f64,
    /// Share of the query split's most frequent class: the top-1 of always answering it.
    pub majority: f64,
    pub majority_class: usize,
    /// 100 / num_classes: the top-1 of a uniform random guess.
    pub uniform: f64,
    /// Recall of each class (None for a class without queries).
    pub per_class_recall: Vec<Option<f64>>,
    pub per_class_queries: Vec<usize>,
    pub top1_interval: Interval,
    pub top5_interval: Interval,
    pub balanced_interval: Interval,
}

/// Top-1 share, top-5 share and balanced accuracy (percent) of the queries `ix` (indices, repeats allowed).
fn rates(ix: &[usize], labels: &[usize], hit1: &[bool], hit5: &[bool], classes: usize) -> [f64; 3] {
    let (mut h1, mut h5) = (0usize, 0usize);
    let (mut per_class_hits, mut per_class_n) = (vec![0usize; classes], vec![0usize; classes]);
    for &i in ix {
        h1 += hit1[i] as usize;
        h5 += hit5[i] as usize;
        per_class_n[labels[i]] += 1;
        per_class_hits[labels[i]] += hit1[i] as usize;
    }
    let present = per_class_n.iter().filter(|&&n| n > 0).count().max(1);
    let recall_sum: f64 = per_class_hits
        .iter()
        .zip(&per_class_n)
        .filter(|(_, &n)| n > 0)
        .map(|(&h, &n)| h as f64 / n as f64)
        .sum();
    let n = ix.len().max(1) as f64;
    [
        100.0 * h1 as f64 / n,
        100.0 * h5 as f64 / n,
        100.0 * recall_sum / present as f64,
    ]
}

/// Each query's predicted class and whether its label is among the top min(5, classes), from class scores
/// `[queries, num_classes]` (ties go to the lower class).
pub fn rank_scores(
    scores: &[f64],
    labels: &[usize],
    num_classes: usize,
) -> (Vec<usize>, Vec<bool>) {
    scores
        .chunks(num_classes)
        .zip(labels)
        .map(|(row, label)| {
            let best = argsort_descending(row, 5.min(num_classes));
            (best[0], best.contains(label))
        })
        .unzip()
}

impl ClassificationReport {
    /// From class scores `[queries, num_classes]` (higher is better; ties go to the lower class).
    pub fn from_scores(scores: &[f64], labels: &[usize], num_classes: usize) -> Result<Self> {
        if num_classes == 0 || scores.len() != labels.len() * num_classes {
            return Err(EvalError::new(format!(
                "metrics: {} scores for {} queries of {num_classes} classes",
                scores.len(),
                labels.len()
            )));
        }
        let (predictions, in_top5) = rank_scores(scores, labels, num_classes);
        Self::from_predictions(labels, &predictions, &in_top5, num_classes)
    }

    /// From each query's label, predicted class and whether the label is among its top-5 classes.
    pub fn from_predictions(
        labels: &[usize],
        predictions: &[usize],
        in_top5: &[bool],
        num_classes: usize,
    ) -> Result<Self> {
        let n = labels.len();
        if predictions.len() != n || in_top5.len() != n || n == 0 || num_classes == 0 {
            return Err(EvalError::new(format!(
                "metrics: {n} labels, {} predictions, {} top-5 flags, {num_classes} classes (need equal, positive counts)",
                predictions.len(),
                in_top5.len()
            )));
        }
        if let Some(i) = (0..n).find(|&i| labels[i] >= num_classes || predictions[i] >= num_classes)
        {
            return Err(EvalError::new(format!(
                "metrics: query {i} has label {} / prediction {}, not below num_classes = {num_classes}",
                labels[i], predictions[i]
            )));
        }
        let hit1: Vec<bool> = labels
            .iter()
            .zip(predictions)
            .map(|(l, p)| l == p)
            .collect();
        // A top-1 hit is a top-5 hit whatever the caller's flags say.
        let hit5: Vec<bool> = hit1.iter().zip(in_top5).map(|(&a, &b)| a || b).collect();
        let all: Vec<usize> = (0..n).collect();
        let [top1, top5, balanced] = rates(&all, labels, &hit1, &hit5, num_classes);
        let mut per_class_queries = vec![0usize; num_classes];
        let mut per_class_hits = vec![0usize; num_classes];
        for (&l, &h) in labels.iter().zip(&hit1) {
            per_class_queries[l] += 1;
            per_class_hits[l] += h as usize;
        }
        let majority_class = argsort_descending(
            &per_class_queries
                .iter()
                .map(|&q| q as f64)
                .collect::<Vec<_>>(),
            1,
        )[0];
        let interval = |k: usize| {
            bootstrap_interval(n, BOOTSTRAP_SEED, |ix| {
                rates(ix, labels, &hit1, &hit5, num_classes)[k]
            })
        };
        Ok(Self {
            queries: n,
            num_classes,
            top1,
            top5,
            balanced,
            majority: 100.0 * per_class_queries[majority_class] as f64 / n as f64,
            majority_class,
            uniform: 100.0 / num_classes as f64,
            per_class_recall: per_class_hits
                .iter()
                .zip(&per_class_queries)
                .map(|(&h, &q)| (q > 0).then(|| 100.0 * h as f64 / q as f64))
                .collect(),
            per_class_queries,
            top1_interval: interval(0),
            top5_interval: interval(1),
            balanced_interval: interval(2),
        })
    }

    /// The report as JSON: `top1`, `top5`, `balanced_accuracy`, `majority`, `majority_class`, `uniform`,
    /// `queries`, `per_class_recall` (null for a class without queries), `per_class_queries`, and
    /// `intervals` {top1, top5, balanced_accuracy: [low, high]} with the bootstrap's settings.
    pub fn to_json(&self) -> Value {
        json!({
            "top1": self.top1,
            "top5": self.top5,
            "balanced_accuracy": self.balanced,
            "majority": self.majority,
            "majority_class": self.majority_class,
            "uniform": self.uniform,
            "queries": self.queries,
            "per_class_recall": self.per_class_recall,
            "per_class_queries": self.per_class_queries,
            "intervals": {
                "top1": self.top1_interval.to_json(),
                "top5": self.top5_interval.to_json(),
                "balanced_accuracy": self.balanced_interval.to_json(),
                "confidence": CONFIDENCE,
                "resamples": BOOTSTRAP_RESAMPLES,
                "seed": BOOTSTRAP_SEED,
            },
        })
    }

    /// Two readable lines: the metrics with their intervals, then the controls (the majority class named from
    /// `class_names` where it has a name).
    pub fn table(&self, class_names: &[String]) -> String {
        let majority = class_names
            .get(self.majority_class)
            .cloned()
            .unwrap_or_else(|| format!("class {}", self.majority_class));
        let iv = |i: &Interval| format!("[{:.1}, {:.1}]", i.low, i.high);
        format!(
            "top-1 {:.2}% {}   top-5 {:.2}% {}   balanced {:.2}% {}\n\
             controls: majority class {:.2}% ({}), uniform chance {:.2}%   ({} queries, 95% bootstrap intervals)",
            self.top1,
            iv(&self.top1_interval),
            self.top5,
            iv(&self.top5_interval),
            self.balanced,
            iv(&self.balanced_interval),
            self.majority,
            majority,
            self.uniform,
            self.queries
        )
    }
}

/// Mean and sample standard deviation (n - 1; 0 for one value) of `values`.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1) as f64;
    (mean, var.sqrt())
}
