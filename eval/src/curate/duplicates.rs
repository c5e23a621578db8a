//! Near-duplicate detection, measured (docs/curation.md, "Near duplicates, measured"): on a folder
//! of video frames whose file names carry their clip (the stem before `separator`, e.g.
//! thermset's `<clip>__<frame>_<n>.png`), two frames are near-duplicates when they come from one
//! clip. Every pair of images is scored by a similarity; a pair is called a duplicate at or above
//! a threshold. The threshold of each method is the one with the best F1 on the `tune` folder
//! (a train split); precision, recall and F1 are reported at it on the `eval` folder, beside the
//! threshold-free average precision there and the base rate (the precision of calling every pair
//! a duplicate). Methods:
//! - `network`: cosine of the backbone's pooled features (what `dinonat filter` groups by);
//! - `pixels`: cosine of the normalised pixels of the same view (the raw-pixel control of k-NN);
//! - `dhash`: 64 minus the Hamming distance of 64-bit difference hashes of the view's luma
//!   (9 x 8 cell means, one bit per horizontally adjacent pair: the classic perceptual hash).

use super::embed::{embed_views, load_views};
use super::{err, list_images, Result};
use crate::maps::priors::{cell_means, luminance};
use crate::ranking::{average_precision, best_f1_threshold, precision_recall};
use dinonat_model::Nat;
use dinonat_train::augment::EvalTransform;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The run's inputs: the two folders, the view size, the batch of the backbone, the separator.
#[derive(Clone, Debug)]
pub struct DuplicatesConfig {
    pub tune: PathBuf,
    pub eval: PathBuf,
    pub size: usize,
    pub batch: usize,
    pub separator: String,
}

/// One method's result.
#[derive(Clone, Debug, Serialize)]
pub struct DuplicateScore {
    pub method: String,
    /// Chosen on the tune folder (best F1 there).
    pub threshold: f64,
    pub tune_f1: f64,
    /// On the eval folder, at the threshold.
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// On the eval folder, over all thresholds.
    pub average_precision: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct DuplicatesReport {
    pub arch: String,
    pub size: usize,
    pub tune_images: usize,
    pub eval_images: usize,
    pub tune_clips: usize,
    pub eval_clips: usize,
    pub eval_pairs: usize,
    pub eval_duplicate_pairs: usize,
    /// Duplicate pairs / all pairs of the eval folder.
    pub base_rate: f64,
    pub scores: Vec<DuplicateScore>,
}

/// The clip of `path`: its file stem up to the last `separator` (an error naming the file when
/// the stem has none).
pub fn clip_of(path: &Path, separator: &str) -> Result<String> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    match stem.rfind(separator) {
        Some(i) if !separator.is_empty() && i > 0 => Ok(stem[..i].to_string()),
        _ => err(format!(
            "{}: no clip in the name (separator {separator:?} not found after its first character)",
            path.display()
        )),
    }
}

/// Whether each pair (i < j, row by row) of `clips` shares a clip.
pub fn pair_labels(clips: &[String]) -> Vec<bool> {
    let n = clips.len();
    let mut out = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            out.push(clips[i] == clips[j]);
        }
    }
    out
}

/// Cosine of every pair (i < j, row by row) of the rows of `x` [n, dim] (a zero row has cosine 0
/// with everything).
pub fn pair_cosines(x: &[f32], dim: usize) -> Result<Vec<f64>> {
    let n = crate::rows_of(x, dim, "pair_cosines")?;
    let unit = crate::l2_normalized(x, dim);
    let chunks = crate::map_similarity_chunks(&unit, &unit, dim, |first, sims| {
        let rows = sims.chunks(n).enumerate();
        rows.flat_map(|(r, row)| row[first + r + 1..].iter().map(|&v| v as f64))
            .collect::<Vec<_>>()
    });
    Ok(chunks.concat())
}

/// The 64-bit difference hash of a `w` x `h` luma image: 8 rows of 9 cell means, bit set where a
/// cell is darker than its right neighbour.
pub fn dhash(luma: &[f32], w: usize, h: usize) -> u64 {
    let cells = cell_means(luma, w, h, (8, 9));
    let mut bits = 0u64;
    for r in 0..8 {
        for c in 0..8 {
            if cells[r * 9 + c] < cells[r * 9 + c + 1] {
                bits |= 1 << (r * 8 + c);
            }
        }
    }
    bits
}

/// 64 minus the Hamming distance of every pair (i < j, row by row) of `hashes`.
pub fn pair_hash_similarities(hashes: &[u64]) -> Vec<f64> {
    let n = hashes.len();
    let mut out = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            out.push(64.0 - (hashes[i] ^ hashes[j]).count_ones() as f64);
        }
    }
    out
}

/// The three methods' pair similarities of the images `paths`.
fn similarities(nat: &Nat, paths: &[PathBuf], c: &DuplicatesConfig) -> Result<[Vec<f64>; 3]> {
    dinonat_train::guard::image_side("size", c.size, 8).map_err(super::CurateError)?;
    let views = load_views(paths, &EvalTransform::square(c.size))?;
    let features = embed_views(nat, &views, c.batch)?;
    let network = pair_cosines(&features, features.len() / paths.len().max(1))?;
    let pixels: Vec<f32> = views.iter().flat_map(|v| v.data.iter().copied()).collect();
    let pixels = pair_cosines(&pixels, 3 * c.size * c.size)?;
    let hashes: Vec<u64> = views
        .iter()
        .map(|v| dhash(&luminance(v), v.width, v.height))
        .collect();
    Ok([network, pixels, pair_hash_similarities(&hashes)])
}

/// The images of `dir` and their clips (at least two images).
fn clips_of(dir: &Path, flag: &str, separator: &str) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let paths = list_images(dir, flag)?;
    if paths.len() < 2 {
        return err(format!("{flag} {}: fewer than 2 images", dir.display()));
    }
    let clips = paths
        .iter()
        .map(|p| clip_of(p, separator))
        .collect::<Result<_>>()?;
    Ok((paths, clips))
}

/// Number of distinct clips.
fn distinct(clips: &[String]) -> usize {
    clips
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// Scores every method: thresholds on `tune`, precision / recall / F1 and AP on `eval`;
/// `progress(done, total)` after each folder.
pub fn run_duplicates(
    nat: &Nat,
    c: &DuplicatesConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<DuplicatesReport> {
    let (tune_paths, tune_clips) = clips_of(&c.tune, "tune", &c.separator)?;
    let (eval_paths, eval_clips) = clips_of(&c.eval, "eval", &c.separator)?;
    let tune_labels = pair_labels(&tune_clips);
    if !tune_labels.iter().any(|&l| l) {
        return err("tune: no two images share a clip, so no threshold can be chosen");
    }
    let tune = similarities(nat, &tune_paths, c)?;
    progress(1, 2);
    let eval_labels = pair_labels(&eval_clips);
    let eval = similarities(nat, &eval_paths, c)?;
    progress(2, 2);
    let positives = eval_labels.iter().filter(|&&l| l).count();
    let scores = ["network", "pixels", "dhash"]
        .iter()
        .zip(tune.iter().zip(&eval))
        .map(|(method, (t, e))| {
            let (threshold, tune_f1) = best_f1_threshold(t, &tune_labels);
            let (precision, recall, f1) = precision_recall(e, &eval_labels, threshold);
            DuplicateScore {
                method: method.to_string(),
                threshold,
                tune_f1,
                precision,
                recall,
                f1,
                average_precision: average_precision(e, &eval_labels),
            }
        })
        .collect();
    Ok(DuplicatesReport {
        arch: nat.config.name.clone(),
        size: c.size,
        tune_images: tune_paths.len(),
        eval_images: eval_paths.len(),
        tune_clips: distinct(&tune_clips),
        eval_clips: distinct(&eval_clips),
        eval_pairs: eval_labels.len(),
        eval_duplicate_pairs: positives,
        base_rate: positives as f64 / eval_labels.len() as f64,
        scores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_are_the_stem_before_the_last_separator() {
        let p = Path::new("/d/standing/Users_a_2016-06-20_13-43-08.000000_2__10_1.png");
        assert_eq!(
            clip_of(p, "__").unwrap(),
            "Users_a_2016-06-20_13-43-08.000000_2"
        );
        let e = clip_of(Path::new("/d/x/frame_0001.png"), "__").unwrap_err();
        assert!(
            e.0.contains("frame_0001.png") && e.0.contains("no clip"),
            "{e}"
        );
        assert!(
            clip_of(Path::new("__3.png"), "__").is_err(),
            "an empty clip"
        );
    }

    #[test]
    fn pairs_are_row_by_row_above_the_diagonal() {
        let clips: Vec<String> = ["a", "b", "a"].iter().map(|s| s.to_string()).collect();
        assert_eq!(pair_labels(&clips), [false, true, false]);
        // Rows (1, 0), (0, 2), (2, 0): cosines (0,1) = 0, (0,2) = 1, (1,2) = 0.
        let c = pair_cosines(&[1.0, 0.0, 0.0, 2.0, 3.0, 0.0], 2).unwrap();
        assert_eq!(c.len(), 3);
        assert!(c[0].abs() < 1e-6 && (c[1] - 1.0).abs() < 1e-6 && c[2].abs() < 1e-6);
        assert_eq!(pair_hash_similarities(&[0, 0b111, 0]), [61.0, 64.0, 61.0]);
    }

    /// A horizontal ramp (brighter to the right) sets every bit; its mirror none.
    #[test]
    fn dhash_of_ramps() {
        let (w, h) = (18, 16);
        let ramp: Vec<f32> = (0..w * h).map(|i| (i % w) as f32 + 0.5).collect();
        assert_eq!(dhash(&ramp, w, h), u64::MAX);
        let mirror: Vec<f32> = (0..w * h).map(|i| (w - i % w) as f32).collect();
        assert_eq!(dhash(&mirror, w, h), 0);
    }
}
