//! Filtering a folder (docs/curation.md, "Filter"): near-duplicate groups, outliers by k-NN
//! density, k-means clusters and, optionally, the items that look like a folder of exemplars
//! (rules in docs/evaluation.md, "Clustering and curation"). Writes a report (CSV + JSON),
//! contact sheets and optionally the list of kept files. Reads the input folder only: every
//! output path is checked to lie outside it.

use super::embed::{csv_field, embed_paths, load_views};
use super::{err, list_images, refuse_inside, CurateError, Result};
use crate::cluster::{
    exemplar_search, kmeans, near_duplicate_groups, outliers, ExemplarRule, KMeansConfig,
};
use crate::{l2_normalized, map_similarity_chunks};
use dinonat_model::Nat;
use dinonat_train::augment::EvalTransform;
use dinonat_train::data::RgbImage;
use dinonat_train::grid::{image_grid, write_png};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct FilterConfig {
    pub images: PathBuf,
    pub out: PathBuf,
    pub size: usize,
    pub batch: usize,
    /// Cosine similarity at or above which two images are near-duplicates.
    pub dup_threshold: f32,
    /// Percent of the images flagged as outliers (lowest k-NN density).
    pub outlier_percentile: f64,
    /// Neighbours of the density (clamped to images - 1).
    pub outlier_k: usize,
    /// k-means clusters (0 = none; clamped to the number of images).
    pub clusters: usize,
    pub seed: u64,
    /// Exemplar folder: keep only the images whose nearest neighbour is an exemplar (margin rule).
    pub keep_like: Option<PathBuf>,
    /// Counter-exemplars: with them, an image is kept when its nearest exemplar is a `keep_like` one (its best
    /// similarity to `keep_like` beats its best similarity to `reject_like` by more than the margin) — nearest-
    /// exemplar labelling from a few examples of each side.
    pub reject_like: Option<PathBuf>,
    pub exemplar_margin: f32,
    pub keep_list: Option<PathBuf>,
    /// Images per contact sheet at most.
    pub sheet_limit: usize,
    pub thumbnail: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct ItemReport {
    pub path: String,
    pub cluster: Option<usize>,
    pub duplicate_group: Option<usize>,
    /// First (lowest path) member of its duplicate group: the copy that is kept.
    pub duplicate_first: bool,
    pub density: f32,
    pub outlier: bool,
    pub exemplar_similarity: Option<f32>,
    pub kept: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct FilterReport {
    pub arch: String,
    pub images: usize,
    pub size: usize,
    pub dup_threshold: f32,
    pub outlier_percentile: f64,
    pub outlier_k: usize,
    pub clusters: usize,
    pub duplicate_groups: Vec<Vec<String>>,
    pub outliers: Vec<String>,
    pub exemplars: Option<String>,
    pub kept: usize,
    pub items: Vec<ItemReport>,
    pub sheets: Vec<String>,
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text)
        .map_err(|e| CurateError(format!("{}: cannot write: {e}", path.display())))
}

/// Runs the filter and writes its outputs under `config.out`.
pub fn run_filter(
    nat: &Nat,
    config: &FilterConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<FilterReport> {
    let paths = list_images(&config.images, "images")?;
    check_config(config)?;
    let exemplar_paths = match &config.keep_like {
        Some(d) => list_images(d, "keep_like")?,
        None => Vec::new(),
    };
    let reject_paths = match (&config.reject_like, &config.keep_like) {
        (Some(d), Some(_)) => list_images(d, "reject_like")?,
        (Some(_), None) => return err("reject_like needs keep_like".to_string()),
        (None, _) => Vec::new(),
    };
    let n = paths.len();
    if n < 2 {
        return err(format!(
            "images {}: needs at least 2 images, found {n}",
            config.images.display()
        ));
    }
    let mut all = paths.clone();
    all.extend(exemplar_paths.iter().cloned());
    all.extend(reject_paths.iter().cloned());
    let features = embed_paths(nat, &all, config.size, config.batch, progress)?;
    let dim = features.len() / all.len();
    let own = &features[..n * dim];

    let groups = near_duplicate_groups(own, dim, config.dup_threshold)?;
    let k = config.outlier_k.clamp(1, n - 1);
    let (density, flagged) = outliers(own, dim, k, config.outlier_percentile)?;
    let clusters = config.clusters.min(n);
    let assignment = if clusters > 0 {
        Some(kmeans(own, dim, &KMeansConfig::new(clusters, config.seed))?.assignments)
    } else {
        None
    };
    let keep_count = exemplar_paths.len();
    let similarity = exemplar_similarity(&features, n, dim, keep_count, config.exemplar_margin)?;
    let name = |i: usize| paths[i].display().to_string();
    let flags = Flags {
        groups: &groups,
        outliers: &flagged,
        density: &density,
        assignment: assignment.as_deref(),
        similarity: &similarity,
        exemplars: !exemplar_paths.is_empty(),
    };
    let items = item_reports(&paths, &flags);
    let sheets = write_sheets(config, &paths, &groups, &flagged, assignment.as_deref())?;

    let report = FilterReport {
        arch: nat.config.name.clone(),
        images: n,
        size: config.size,
        dup_threshold: config.dup_threshold,
        outlier_percentile: config.outlier_percentile,
        outlier_k: k,
        clusters,
        duplicate_groups: groups
            .iter()
            .map(|g| g.iter().map(|&i| name(i)).collect())
            .collect(),
        outliers: flagged.iter().map(|&i| name(i)).collect(),
        exemplars: config.keep_like.as_ref().map(|p| p.display().to_string()),
        kept: items.iter().filter(|i| i.kept).count(),
        items,
        sheets,
    };
    write_outputs(config, &report)?;
    Ok(report)
}

/// The parameters, CSV checks and `keep_list` / `out` placement of `config`.
fn check_config(config: &FilterConfig) -> Result<()> {
    refuse_inside(&config.out, &config.images, "out", "images")?;
    if let Some(k) = &config.keep_list {
        refuse_inside(k, &config.images, "keep_list", "images")?;
    }
    if !(-1.0..=1.0).contains(&config.dup_threshold) {
        return err(format!(
            "dup_threshold {}: a cosine similarity in [-1, 1]",
            config.dup_threshold
        ));
    }
    if !(0.0..=100.0).contains(&config.outlier_percentile) {
        return err(format!(
            "outlier_percentile {}: must be in [0, 100]",
            config.outlier_percentile
        ));
    }
    Ok(())
}

/// Each image's similarity to the exemplars, None where it is not wanted. `features` holds the
/// `n` images, then `keep_count` keep exemplars, then any reject exemplars.
fn exemplar_similarity(
    features: &[f32],
    n: usize,
    dim: usize,
    keep_count: usize,
    margin: f32,
) -> Result<Vec<Option<f32>>> {
    let rows = features.len() / dim;
    if rows > n + keep_count {
        return Ok(keep_or_reject(features, n, dim, keep_count, margin));
    }
    let mut similarity = vec![None; n];
    if keep_count > 0 {
        let exemplars: Vec<usize> = (n..rows).collect();
        let rule = ExemplarRule::Margin(margin);
        for m in exemplar_search(features, dim, &exemplars, rule)? {
            similarity[m.index] = Some(m.exemplar_similarity);
        }
    }
    Ok(similarity)
}

/// With keep and reject exemplars (rows `n..n + keep` and the rest of `features`): an image's
/// similarity is its best cosine to the keep set, kept only when that beats the best to the reject
/// set by `margin` (GEMM chunks, as `exemplar_search`).
fn keep_or_reject(
    features: &[f32],
    n: usize,
    dim: usize,
    keep_count: usize,
    margin: f32,
) -> Vec<Option<f32>> {
    let x = l2_normalized(features, dim);
    let (own, exemplars) = x.split_at(n * dim);
    let bank_rows = exemplars.len() / dim;
    let best = map_similarity_chunks(own, exemplars, dim, |_, sims| {
        sims.chunks(bank_rows)
            .map(|row| {
                let max = |r: &[f32]| r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                (max(&row[..keep_count]), max(&row[keep_count..]))
            })
            .collect::<Vec<_>>()
    })
    .concat();
    best.into_iter()
        .map(|(s_keep, s_reject)| (s_keep > s_reject + margin).then_some(s_keep))
        .collect()
}

/// What the filter found, per image index.
struct Flags<'a> {
    groups: &'a [Vec<usize>],
    outliers: &'a [usize],
    density: &'a [f32],
    assignment: Option<&'a [usize]>,
    similarity: &'a [Option<f32>],
    /// Whether exemplars were given (then only images with a similarity are wanted).
    exemplars: bool,
}

/// One row per image: its flags and whether it is kept (wanted, not an outlier, and the first of
/// its duplicate group if in one).
fn item_reports(paths: &[PathBuf], f: &Flags) -> Vec<ItemReport> {
    let n = paths.len();
    let mut group_of = vec![None; n];
    for (g, members) in f.groups.iter().enumerate() {
        for &i in members {
            group_of[i] = Some(g);
        }
    }
    let mut is_outlier = vec![false; n];
    f.outliers.iter().for_each(|&i| is_outlier[i] = true);
    (0..n)
        .map(|i| {
            let first = group_of[i].is_some_and(|g| f.groups[g][0] == i);
            let wanted = !f.exemplars || f.similarity[i].is_some();
            ItemReport {
                path: paths[i].display().to_string(),
                cluster: f.assignment.map(|a| a[i]),
                duplicate_group: group_of[i],
                duplicate_first: first,
                density: f.density[i],
                outlier: is_outlier[i],
                exemplar_similarity: f.similarity[i],
                kept: wanted && !is_outlier[i] && (group_of[i].is_none() || first),
            }
        })
        .collect()
}

/// `report.csv`, `report.json` under `config.out`, and the `--keep-list` if asked for.
fn write_outputs(config: &FilterConfig, report: &FilterReport) -> Result<()> {
    let mut csv = String::from(
        "path,cluster,duplicate_group,duplicate_first,density,outlier,exemplar_similarity,kept\n",
    );
    let opt = |v: Option<String>| v.unwrap_or_default();
    for it in &report.items {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            csv_field(&it.path),
            opt(it.cluster.map(|c| c.to_string())),
            opt(it.duplicate_group.map(|g| g.to_string())),
            it.duplicate_first,
            it.density,
            it.outlier,
            opt(it.exemplar_similarity.map(|s| s.to_string())),
            it.kept
        ));
    }
    write_text(&config.out.join("report.csv"), &csv)?;
    let json = serde_json::to_string_pretty(report).map_err(|e| CurateError(e.to_string()))?;
    write_text(&config.out.join("report.json"), &json)?;
    if let Some(list) = &config.keep_list {
        let text: String = report
            .items
            .iter()
            .filter(|i| i.kept)
            .map(|i| format!("{}\n", i.path))
            .collect();
        write_text(list, &text)?;
    }
    Ok(())
}

/// Contact sheets under `out/sheets/`: one per cluster, one per duplicate group, one of the
/// outliers (each at most `sheet_limit` thumbnails, in index order). Returns their paths.
fn write_sheets(
    config: &FilterConfig,
    paths: &[PathBuf],
    groups: &[Vec<usize>],
    flagged: &[usize],
    assignment: Option<&[usize]>,
) -> Result<Vec<String>> {
    std::fs::create_dir_all(config.out.join("sheets"))
        .map_err(|e| CurateError(format!("out {}: cannot create: {e}", config.out.display())))?;
    // Thumbnails: the eval crop without normalisation.
    let thumb = EvalTransform {
        mean: [0.0; 3],
        std: [1.0; 3],
        ..EvalTransform::square(config.thumbnail)
    };
    let mut sheets: Vec<(String, Vec<usize>)> = Vec::new();
    if let Some(a) = assignment {
        let k = a.iter().max().map_or(0, |m| m + 1);
        for c in 0..k {
            let members: Vec<usize> = (0..a.len()).filter(|&i| a[i] == c).collect();
            if !members.is_empty() {
                sheets.push((format!("cluster_{c:03}.png"), members));
            }
        }
    }
    for (g, members) in groups.iter().enumerate() {
        sheets.push((format!("duplicates_{g:03}.png"), members.clone()));
    }
    if !flagged.is_empty() {
        let mut f = flagged.to_vec();
        f.sort_unstable();
        sheets.push(("outliers.png".to_string(), f));
    }
    let mut written = Vec::new();
    for (file, members) in sheets {
        let chosen: Vec<PathBuf> = members
            .iter()
            .take(config.sheet_limit.max(1))
            .map(|&i| paths[i].clone())
            .collect();
        let images: Vec<RgbImage> = load_views(&chosen, &thumb)?
            .iter()
            .map(|v| v.to_rgb([0.0; 3], [1.0; 3]))
            .collect();
        let columns = (images.len() as f64).sqrt().ceil() as usize;
        let path = config.out.join("sheets").join(&file);
        write_png(
            &path,
            &image_grid(&images, columns.max(1), 4, [255, 255, 255]),
        )?;
        written.push(path.display().to_string());
    }
    Ok(written)
}
