//! Retrieval with exemplars, measured (docs/curation.md, "Retrieval with exemplars, measured"): the
//! two-sided rule of `dinonat filter --keep-like K --reject-like R` scores an image by its margin
//! m = (max cosine to K) - (max cosine to R) and keeps it when m > 0. Here the images of the
//! `images` folder whose class folder is `positive` are what should be kept (thermset-mini: the
//! `background` frames of val, with K the background frames of train and R its frames with people),
//! and the ranking by m is scored: its average precision, precision and recall of the filter's own
//! rule (m > 0), and precision and recall at the threshold that reaches `min_recall` most precisely
//! on the exemplars themselves, each scored with the exemplars of its own clip left out (frames of
//! one clip are near-duplicates: leaving one frame out would leave its twins in). No image of
//! `images` chooses anything. The same for the normalised pixels of the view, the control.

use super::duplicates::clip_of;
use super::embed::{embed_views, load_views};
use super::{err, list_images, Result};
use crate::ranking::{average_precision, best_precision_at_recall, precision_recall};
use dinonat_model::Nat;
use dinonat_train::augment::EvalTransform;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct ExemplarsConfig {
    pub keep_like: PathBuf,
    pub reject_like: PathBuf,
    pub images: PathBuf,
    /// The class folder of `images` holding what should be kept.
    pub positive: String,
    pub size: usize,
    pub batch: usize,
    /// A file's clip is its stem up to the last occurrence of this ([`clip_of`]).
    pub separator: String,
    pub min_recall: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExemplarsScore {
    pub features: String,
    pub average_precision: f64,
    /// The filter's rule, margin > 0.
    pub rule_precision: f64,
    pub rule_recall: f64,
    /// Chosen on the exemplars (leave one clip out); NaN when none reaches the recall there.
    pub threshold: f64,
    pub precision: f64,
    pub recall: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExemplarsReport {
    pub arch: String,
    pub size: usize,
    pub keep_exemplars: usize,
    pub reject_exemplars: usize,
    pub images: usize,
    pub positives: usize,
    /// Positives / images: the precision of keeping everything, and the AP of a random ranking.
    pub base_rate: f64,
    pub min_recall: f64,
    pub scores: Vec<ExemplarsScore>,
}

/// The margin (max cosine to the keep rows) - (max cosine to the reject rows) of each query row,
/// all l2-normalised [_, dim]; `skip(q, e)` leaves exemplar e (keep rows first, then reject rows)
/// out for query q.
fn margins(
    queries: &[f32],
    keep: &[f32],
    reject: &[f32],
    dim: usize,
    skip: impl Fn(usize, usize) -> bool + Sync,
) -> Vec<f64> {
    let bank = [keep, reject].concat();
    let (nk, nb) = (keep.len() / dim, bank.len() / dim);
    let chunks = crate::map_similarity_chunks(queries, &bank, dim, |first, sims| {
        let rows = sims.chunks(nb).enumerate();
        rows.map(|(r, row)| {
            let best = |range: std::ops::Range<usize>| {
                let kept = range.filter(|&e| !skip(first + r, e));
                kept.map(|e| row[e] as f64)
                    .fold(f64::NEG_INFINITY, f64::max)
            };
            best(0..nk) - best(nk..nb)
        })
        .collect::<Vec<_>>()
    });
    chunks.concat()
}

/// Everything needed to score one kind of features: their rows for the queries, keep and reject
/// exemplars (l2-normalised) and the dimension.
struct Rows {
    queries: Vec<f32>,
    keep: Vec<f32>,
    reject: Vec<f32>,
    dim: usize,
}

/// The ranking's scores for one kind of features.
fn score(
    name: &str,
    rows: &Rows,
    (labels, exemplar_clips): (&[bool], &[String]),
    min_recall: f64,
) -> ExemplarsScore {
    let m = margins(&rows.queries, &rows.keep, &rows.reject, rows.dim, |_, _| {
        false
    });
    let (rule_precision, rule_recall, _) = precision_recall(&m, labels, f64::MIN_POSITIVE);
    // The exemplars as queries, each without the exemplars of its own clip.
    let all = [rows.keep.as_slice(), &rows.reject].concat();
    let same_clip = |q: usize, e: usize| exemplar_clips[q] == exemplar_clips[e];
    let tune = margins(&all, &rows.keep, &rows.reject, rows.dim, same_clip);
    let tune_labels: Vec<bool> = (0..exemplar_clips.len())
        .map(|i| i < rows.keep.len() / rows.dim)
        .collect();
    let threshold = best_precision_at_recall(&tune, &tune_labels, min_recall).map(|t| t.0);
    let (precision, recall, _) = match threshold {
        Some(t) => precision_recall(&m, labels, t),
        None => (f64::NAN, f64::NAN, f64::NAN),
    };
    ExemplarsScore {
        features: name.to_string(),
        average_precision: average_precision(&m, labels),
        rule_precision,
        rule_recall,
        threshold: threshold.unwrap_or(f64::NAN),
        precision,
        recall,
    }
}

/// Network and pixel rows of the three lists of images.
fn features(nat: &Nat, lists: [&[PathBuf]; 3], c: &ExemplarsConfig) -> Result<[Rows; 2]> {
    dinonat_train::guard::image_side("size", c.size, 8).map_err(super::CurateError)?;
    let transform = EvalTransform::square(c.size);
    // Each file decoded once: its view gives both the network's features and the pixels.
    let both = |p: &[PathBuf]| -> Result<(Vec<f32>, Vec<f32>)> {
        let views = load_views(p, &transform)?;
        let pixels = views.iter().flat_map(|v| v.data.iter().copied()).collect();
        Ok((embed_views(nat, &views, c.batch)?, pixels))
    };
    let [(nq, pq), (nk, pk), (nr, pr)] = [both(lists[0])?, both(lists[1])?, both(lists[2])?];
    let dim = nq.len() / lists[0].len();
    let (net, px) = ([nq, nk, nr], [pq, pk, pr]);
    let rows = |[q, k, r]: [Vec<f32>; 3], dim: usize| Rows {
        queries: crate::l2_normalized(&q, dim),
        keep: crate::l2_normalized(&k, dim),
        reject: crate::l2_normalized(&r, dim),
        dim,
    };
    Ok([rows(net, dim), rows(px, 3 * c.size * c.size)])
}

/// The images of `dir`, at least one (`flag` names it in errors).
fn images_of(dir: &Path, flag: &str) -> Result<Vec<PathBuf>> {
    let paths = list_images(dir, flag)?;
    if paths.is_empty() {
        return err(format!("{flag} {}: no images", dir.display()));
    }
    Ok(paths)
}

/// Scores the margin ranking of the network and of the pixels (see the module's text).
pub fn run_exemplars(nat: &Nat, c: &ExemplarsConfig) -> Result<ExemplarsReport> {
    if !(c.min_recall > 0.0 && c.min_recall <= 1.0) {
        return err(format!("min_recall {}: must be in (0, 1]", c.min_recall));
    }
    let keep = images_of(&c.keep_like, "keep_like")?;
    let reject = images_of(&c.reject_like, "reject_like")?;
    let images = images_of(&c.images, "images")?;
    let labels: Vec<bool> = images
        .iter()
        .map(|p| p.parent().and_then(|d| d.file_name()) == Some(c.positive.as_ref()))
        .collect();
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 {
        return err(format!(
            "positive {:?}: no image of {} lies in a folder of that name",
            c.positive,
            c.images.display()
        ));
    }
    let clips = keep
        .iter()
        .chain(&reject)
        .map(|p| clip_of(p, &c.separator))
        .collect::<Result<Vec<_>>>()?;
    let [net, px] = features(nat, [&images, &keep, &reject], c)?;
    let both = (labels.as_slice(), clips.as_slice());
    Ok(ExemplarsReport {
        arch: nat.config.name.clone(),
        size: c.size,
        keep_exemplars: keep.len(),
        reject_exemplars: reject.len(),
        images: images.len(),
        positives,
        base_rate: positives as f64 / images.len() as f64,
        min_recall: c.min_recall,
        scores: vec![
            score("network", &net, both, c.min_recall),
            score("pixels", &px, both, c.min_recall),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-worked margins on unit rows: query (1, 0) is nearest keep (1, 0) (cos 1) and reject
    /// (0.6, 0.8) (cos 0.6): margin 0.4; leaving keep row 0 out leaves keep (0, 1): 0 - 0.6.
    #[test]
    fn margins_by_hand() {
        let (keep, reject) = ([1.0, 0.0, 0.0, 1.0], [0.6, 0.8]);
        let m = margins(&[1.0, 0.0], &keep, &reject, 2, |_, _| false);
        assert!((m[0] - 0.4).abs() < 1e-6, "{m:?}");
        let m = margins(&[1.0, 0.0], &keep, &reject, 2, |_, e| e == 0);
        assert!((m[0] + 0.6).abs() < 1e-6, "{m:?}");
    }
}
