//! `dinonat boxes` as a library call (docs/attention-maps.md, "Attention inside boxes"): for a folder of images
//! with YOLO labels, the share of each image's pooled-query map (mean over heads) that falls inside its boxes,
//! thresholded to the tokens holding `mass` of the attention and not, against the chance level (the boxes'
//! area fraction: what a uniform map scores), overall and per class; beside the network, the same masked share
//! for the non-learned priors of [`super::priors`] (centre Gaussian, central square of the network's thresholded
//! area, the image's luminance, uniform), each with a 95 % bootstrap interval over the images.

use super::boxes::{box_in_crop, box_share, read_yolo, token_coverage, YoloBox};
use super::boxes_figure::FigureInput;
use super::pooled::{head_mean, pooled_query_attention};
use super::priors::prior_maps;
use super::render::mass_mask;
use super::{choose_level, forward_with_capture};
use crate::curate::embed::batch_tensor;
use crate::curate::{err, list_images, CurateError, Result};
use crate::metrics::{mean_with_interval, Interval, BOOTSTRAP_SEED};
use dinonat_engine::no_grad;
use dinonat_model::Nat;
use dinonat_train::augment::{EvalTransform, Planar};
use dinonat_train::data::{decode_image, DataError};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct BoxesConfig {
    pub images: PathBuf,
    pub labels: PathBuf,
    pub size: usize,
    pub batch: usize,
    /// None = the default level ([`super::default_level`]).
    pub level: Option<usize>,
    pub mass: f64,
    /// Names of class ids 0, 1, ...; ids beyond the list are shown as numbers.
    pub class_names: Vec<String>,
    /// Images kept for [`super::boxes_figure`], spread evenly over the labelled images (0: none).
    pub figure_images: usize,
}

/// One image's numbers.
#[derive(Clone, Debug, Serialize)]
pub struct ImageShare {
    pub path: PathBuf,
    pub boxes: usize,
    /// Share of the crop covered by the union of its boxes (the chance level of this image).
    pub box_fraction: f64,
    pub share_masked: f64,
    pub share_map: f64,
    pub kept_tokens: usize,
    /// Masked shares of the priors, in the order of [`PRIORS`] (the uniform prior's is `box_fraction`).
    pub priors: [f64; 3],
    /// Per class id present: (its boxes in the crop, [`Measured`]) with the union of that class's boxes only.
    pub per_class: BTreeMap<usize, (usize, Measured)>,
}

pub use super::priors::PRIORS;

/// One image's numbers for one set of boxes: box fraction, network share masked, network share of the map,
/// then the priors' masked shares ([`PRIORS`]).
pub type Measured = [f64; 6];

/// The mean masked share of one map over the images, with its bootstrap interval.
#[derive(Clone, Debug, Serialize)]
pub struct MapScore {
    /// "network", a name of [`PRIORS`], or "uniform" (the boxes' area fraction).
    pub map: String,
    pub share_masked: f64,
    pub interval: Interval,
}

/// Means over the images holding boxes (of the class, for a class line).
#[derive(Clone, Debug, Serialize)]
pub struct ShareSummary {
    pub name: String,
    pub images: usize,
    pub boxes: usize,
    /// Mean box area fraction: the share a uniform map gets.
    pub chance: f64,
    pub share_masked: f64,
    pub share_map: f64,
    /// The network, each prior and uniform, with the same keys.
    pub scores: Vec<MapScore>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BoxesReport {
    pub arch: String,
    pub size: usize,
    pub level: usize,
    pub grid: [usize; 2],
    pub mass: f64,
    pub images_found: usize,
    pub images_used: usize,
    pub skipped_no_label_file: usize,
    pub skipped_no_boxes: usize,
    /// Images whose boxes all lie outside the centre crop (or have zero area).
    pub skipped_outside_crop: usize,
    pub all: ShareSummary,
    pub classes: Vec<ShareSummary>,
    #[serde(skip)]
    pub per_image: Vec<ImageShare>,
    /// The images kept for the figure (`figure_images` of the config, fewer when some had no box in the crop).
    #[serde(skip)]
    pub figure: Vec<FigureInput>,
}

/// The label file of `image` (found under `images`): `labels/<relative path>.txt`, else `labels/<stem>.txt`.
pub fn label_path(images: &Path, labels: &Path, image: &Path) -> Option<PathBuf> {
    let rel = image
        .strip_prefix(images)
        .unwrap_or(image)
        .with_extension("txt");
    let by_stem = image
        .file_stem()
        .map(|s| labels.join(s).with_extension("txt"));
    [Some(labels.join(rel)), by_stem]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
}

fn summary(name: String, rows: &[(usize, Measured)]) -> ShareSummary {
    let n = rows.len().max(1) as f64;
    let mean = |k: usize| rows.iter().map(|r| r.1[k]).sum::<f64>() / n;
    let score = |map: &str, k: usize| {
        let values: Vec<f64> = rows.iter().map(|r| r.1[k]).collect();
        let (share_masked, interval) = mean_with_interval(&values, BOOTSTRAP_SEED);
        MapScore {
            map: map.into(),
            share_masked,
            interval,
        }
    };
    let mut scores = vec![score("network", 1)];
    scores.extend(PRIORS.iter().enumerate().map(|(i, p)| score(p, 3 + i)));
    scores.push(score("uniform", 0));
    ShareSummary {
        name,
        images: rows.len(),
        boxes: rows.iter().map(|r| r.0).sum(),
        chance: mean(0),
        share_masked: mean(1),
        share_map: mean(2),
        scores,
    }
}

/// The checked parameters of `config` (errors name them: `labels`, `size`, `batch`, `mass`,
/// `level`), and the level to read (the default when none is given).
fn check_config(nat: &Nat, config: &BoxesConfig) -> Result<usize> {
    if !config.labels.is_dir() {
        return err(format!(
            "labels {}: no such folder",
            config.labels.display()
        ));
    }
    if config.size < 8 {
        return err(format!("size {}: must be at least 8 pixels", config.size));
    }
    if config.batch == 0 {
        return err("batch 0: must be at least 1");
    }
    if !(config.mass > 0.0 && config.mass <= 1.0) {
        return err(format!("mass {}: must be in (0, 1]", config.mass));
    }
    choose_level(&nat.config, config.level, config.size).map_err(CurateError)
}

/// An image and its boxes.
type Labelled = (PathBuf, Vec<YoloBox>);

/// The images of `paths` with at least one box, with their boxes; and how many had no label file
/// and how many an empty one.
fn labelled_images(
    config: &BoxesConfig,
    paths: &[PathBuf],
) -> Result<(Vec<Labelled>, usize, usize)> {
    let (mut no_file, mut no_boxes) = (0, 0);
    let mut work: Vec<Labelled> = Vec::new();
    for p in paths {
        match label_path(&config.images, &config.labels, p) {
            None => no_file += 1,
            Some(l) => {
                let boxes = read_yolo(&l).map_err(CurateError)?;
                if boxes.is_empty() {
                    no_boxes += 1;
                } else {
                    work.push((p.clone(), boxes));
                }
            }
        }
    }
    Ok((work, no_file, no_boxes))
}

/// Decodes a batch: each image's (width, height) and its view through `transform`.
fn load_batch(chunk: &[Labelled], transform: &EvalTransform) -> Result<DecodedBatch> {
    Ok(chunk
        .par_iter()
        .map(|(p, _)| {
            let name = p.display().to_string();
            let bytes =
                std::fs::read(p).map_err(|e| DataError::new(&name, format!("cannot read: {e}")))?;
            let img = decode_image(&bytes, &name)?;
            Ok(((img.width, img.height), transform.apply(&img)))
        })
        .collect::<std::result::Result<Vec<_>, DataError>>()?
        .into_iter()
        .unzip())
}

/// Each image's (width, height) and its view.
type DecodedBatch = (Vec<(usize, usize)>, Vec<Planar>);

/// The shares of one image (its head-mean `map` on `grid`), overall and per class, beside the
/// priors; None when no box reaches into the crop.
fn measure_image(
    (path, boxes): &Labelled,
    (w, h): (usize, usize),
    view: &Planar,
    map: &[f32],
    grid: (usize, usize),
    transform: &EvalTransform,
    mass: f64,
) -> Option<ImageShare> {
    let cells = grid.0 * grid.1;
    let in_crop: Vec<(usize, [f64; 4])> = boxes
        .iter()
        .filter_map(|yb| box_in_crop(yb, transform, w, h).map(|r| (yb.class, r)))
        .collect();
    if in_crop.is_empty() {
        return None;
    }
    let kept = mass_mask(map, mass).iter().filter(|&&k| k).count();
    let priors = prior_maps(view, grid, kept, mass);
    let measure = |rects: &[[f64; 4]]| -> (Measured, usize) {
        let cov = token_coverage(rects, transform.crop, grid);
        let s = box_share(map, &cov, mass);
        let masked = |(m, mass): &(Vec<f32>, f64)| box_share(m, &cov, *mass).masked;
        let fraction = cov.iter().sum::<f64>() / cells as f64;
        let v = [
            fraction,
            s.masked,
            s.map,
            masked(&priors[0]),
            masked(&priors[1]),
            masked(&priors[2]),
        ];
        (v, s.kept)
    };
    let all: Vec<[f64; 4]> = in_crop.iter().map(|r| r.1).collect();
    let (v, kept_tokens) = measure(&all);
    let mut per_class = BTreeMap::new();
    for class in in_crop
        .iter()
        .map(|r| r.0)
        .collect::<std::collections::BTreeSet<_>>()
    {
        let rects: Vec<[f64; 4]> = in_crop
            .iter()
            .filter(|r| r.0 == class)
            .map(|r| r.1)
            .collect();
        per_class.insert(class, (rects.len(), measure(&rects).0));
    }
    Some(ImageShare {
        path: path.clone(),
        boxes: in_crop.len(),
        box_fraction: v[0],
        share_masked: v[1],
        share_map: v[2],
        kept_tokens,
        priors: [v[3], v[4], v[5]],
        per_class,
    })
}

/// The summary over all images, then one per class (named from `class_names` where known).
fn summaries(
    per_image: &[ImageShare],
    class_names: &[String],
) -> (ShareSummary, Vec<ShareSummary>) {
    let rows: Vec<(usize, Measured)> = per_image
        .iter()
        .map(|r| {
            let [g, sq, i] = r.priors;
            (
                r.boxes,
                [r.box_fraction, r.share_masked, r.share_map, g, sq, i],
            )
        })
        .collect();
    let mut by_class: BTreeMap<usize, Vec<(usize, Measured)>> = BTreeMap::new();
    for r in per_image {
        for (&class, &v) in &r.per_class {
            by_class.entry(class).or_default().push(v);
        }
    }
    let classes = by_class
        .into_iter()
        .map(|(class, rows)| {
            let name = class_names
                .get(class)
                .cloned()
                .unwrap_or_else(|| class.to_string());
            summary(name, &rows)
        })
        .collect();
    (summary("all".into(), &rows), classes)
}

/// Runs the measurement; `progress(done, total)` after each batch.
pub fn run_boxes(
    nat: &Nat,
    config: &BoxesConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<BoxesReport> {
    let level = check_config(nat, config)?;
    let paths = list_images(&config.images, "images")?;
    let (work, no_file, no_boxes) = labelled_images(config, &paths)?;
    let transform = EvalTransform::square(config.size);
    let _guard = no_grad();
    let mut per_image = Vec::new();
    let (mut outside, mut grid) = (0, (0, 0));
    let chosen = spread(work.len(), config.figure_images);
    let mut figure = Vec::new();
    for (ci, chunk) in work.chunks(config.batch).enumerate() {
        let (dims, views) = load_batch(chunk, &transform)?;
        let (_, capture) = forward_with_capture(nat, &batch_tensor(&views)?, level)?;
        let maps = pooled_query_attention(nat, &capture)?;
        grid = capture.grid;
        let cells = grid.0 * grid.1;
        let heads = maps.len() / (chunk.len() * cells);
        for (b, (item, &dim)) in chunk.iter().zip(&dims).enumerate() {
            let map = head_mean(&maps[b * heads * cells..(b + 1) * heads * cells], heads);
            let Some(share) =
                measure_image(item, dim, &views[b], &map, grid, &transform, config.mass)
            else {
                outside += 1;
                continue;
            };
            if chosen.contains(&(ci * config.batch + b)) {
                figure.push(figure_input(item, dim, &views[b], map, &share, &transform));
            }
            per_image.push(share);
        }
        progress(
            (ci * config.batch + chunk.len()).min(work.len()),
            work.len(),
        );
    }
    if per_image.is_empty() {
        return err(format!(
            "images {}: no image with boxes inside the crop ({} images, {no_file} without a label file in {}, {no_boxes} with no boxes, {outside} with boxes outside the crop)",
            config.images.display(),
            paths.len(),
            config.labels.display()
        ));
    }
    let (all, classes) = summaries(&per_image, &config.class_names);
    Ok(BoxesReport {
        arch: nat.config.name.clone(),
        size: config.size,
        level,
        grid: [grid.0, grid.1],
        mass: config.mass,
        images_found: paths.len(),
        images_used: per_image.len(),
        skipped_no_label_file: no_file,
        skipped_no_boxes: no_boxes,
        skipped_outside_crop: outside,
        all,
        classes,
        per_image,
        figure,
    })
}

/// `n` of `len` indices spread evenly (i * len / n), as a sorted set.
fn spread(len: usize, n: usize) -> std::collections::BTreeSet<usize> {
    let n = n.min(len);
    (0..n).map(|i| i * len / n).collect()
}

/// An image kept for the figure: its view and map, its boxes in crop pixels, its scores.
fn figure_input(
    (path, boxes): &Labelled,
    (w, h): (usize, usize),
    view: &Planar,
    map: Vec<f32>,
    share: &ImageShare,
    transform: &EvalTransform,
) -> FigureInput {
    FigureInput {
        path: path.clone(),
        view: view.clone(),
        map,
        rects: boxes
            .iter()
            .filter_map(|b| box_in_crop(b, transform, w, h))
            .collect(),
        kept_tokens: share.kept_tokens,
        network: share.share_masked,
        priors: share.priors,
    }
}
