//! RGB <-> IR cross-modal evaluation (docs/curation.md, "Cross-modal"): pairs two folders by
//! identical file name, embeds both images of each pair through the same eval transform (so a
//! pixel-aligned pair stays aligned), and reports
//! - retrieval top-1 / top-5 IR -> RGB and RGB -> IR among all pairs ([`crate::retrieval`]:
//!   cosine in f64, ties counted against the true partner), and the median rank of the true partner;
//! - the same retrieval by layout: the token map of `--level`, each channel standardised over the
//!   positions ([`crate::retrieval::layout_descriptor`]), compared position by position;
//! - the IoU of the 60%-mass masks of the two images' pooled-query maps (head mean), per pair,
//!   averaged; the same per head; and, as a control, with every IR mask compared to the next
//!   pair's RGB mask (what alignment by chance or a centre bias alone gives);
//! - beside them, the controls that learn nothing: retrieval by the non-learned descriptors of
//!   [`super::descriptors`] (luminance, gradient magnitude, signed gradients on the same token grid,
//!   the same rule), and the mask IoU of the priors of [`crate::maps::priors`] (centre Gaussian,
//!   central squares of the network's mask areas, the images' luminance, random masks of those
//!   areas), each IoU with a 95 % bootstrap interval over the pairs.

use super::descriptors::{descriptor, Descriptor};
use super::embed::{batch_tensor, load_views};
use super::{err, list_images, refuse_inside, Result};
use crate::maps::pooled::{head_mean, pooled_query_attention};
use crate::maps::priors::{
    cell_means, central_square, centre_gaussian, luminance, random_mask_iou,
};
use crate::maps::render::{display_factor, enlarge, heatmap, mass_mask, overlay_mask};
use crate::maps::{default_level, forward_with_capture};
use crate::metrics::{mean_with_interval, Interval, BOOTSTRAP_SEED};
use crate::retrieval::{cross_modal_retrieval, layout_descriptor, mask_iou, RetrievalReport};
use dinonat_engine::no_grad;
use dinonat_model::Nat;
use dinonat_train::augment::{EvalTransform, Planar, IMAGENET_MEAN, IMAGENET_STD};
use dinonat_train::data::RgbImage;
use dinonat_train::grid::{image_grid, write_png};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct CrossModalConfig {
    pub rgb: PathBuf,
    pub ir: PathBuf,
    pub size: usize,
    pub batch: usize,
    /// None = the default level ([`default_level`]).
    pub level: Option<usize>,
    pub mass: f64,
    /// Drop names present in only one folder (listed in the report) instead of failing.
    pub skip_unmatched: bool,
    pub figure: Option<PathBuf>,
    pub figure_pairs: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct CrossModalReport {
    pub arch: String,
    pub pairs: usize,
    pub size: usize,
    pub level: usize,
    pub grid: [usize; 2],
    pub mass: f64,
    /// Percent.
    pub retrieval_top1_ir_to_rgb: f64,
    pub retrieval_top5_ir_to_rgb: f64,
    pub retrieval_top1_rgb_to_ir: f64,
    pub retrieval_top5_rgb_to_ir: f64,
    /// 100 / pairs and 100 * min(5, pairs) / pairs: a random ranking.
    pub chance_top1: f64,
    pub chance_top5: f64,
    /// Median 1-based rank of the true partner among all pairs ("MedR"; lower is better).
    pub retrieval_median_rank_ir_to_rgb: f64,
    pub retrieval_median_rank_rgb_to_ir: f64,
    /// (pairs + 1) / 2: the median rank of a random ranking.
    pub chance_median_rank: f64,
    /// Retrieval by the layout descriptors of the token maps at `level` (percent; median ranks 1-based).
    pub layout_retrieval_top1_ir_to_rgb: f64,
    pub layout_retrieval_top5_ir_to_rgb: f64,
    pub layout_retrieval_top1_rgb_to_ir: f64,
    pub layout_retrieval_top5_rgb_to_ir: f64,
    pub layout_retrieval_median_rank_ir_to_rgb: f64,
    pub layout_retrieval_median_rank_rgb_to_ir: f64,
    /// Mean over pairs of the IoU of the two images' masks (head-mean maps), in [0, 1].
    pub attention_iou: f64,
    /// Mean over pairs and heads of the per-head mask IoU.
    pub attention_iou_per_head: f64,
    /// attention_iou with IR i against RGB i + 1 (mod pairs): the control.
    pub attention_iou_shifted: f64,
    /// Retrieval by the network (`network_pooled`, `network_layout`) and by the non-learned descriptors
    /// (`luminance`, `gradient`, `signed_gradient`), all with the same keys.
    pub retrieval: Vec<RetrievalScore>,
    /// Mask IoU of the network and of the priors (`centre_gaussian`, `central_square`, `intensity`,
    /// `uniform`, `shifted_pairs`), all with the same keys.
    pub iou: Vec<IouScore>,
    pub skipped_rgb_only: Vec<String>,
    pub skipped_ir_only: Vec<String>,
}

/// Retrieval of the true partner among all pairs by one kind of features, both directions.
#[derive(Clone, Debug, Serialize)]
pub struct RetrievalScore {
    pub features: String,
    /// Percent.
    pub top1_ir_to_rgb: f64,
    pub top5_ir_to_rgb: f64,
    pub top1_rgb_to_ir: f64,
    pub top5_rgb_to_ir: f64,
    /// 1-based.
    pub median_rank_ir_to_rgb: f64,
    pub median_rank_rgb_to_ir: f64,
}

impl RetrievalScore {
    fn new(features: &str, r: &RetrievalReport) -> Self {
        Self {
            features: features.into(),
            top1_ir_to_rgb: r.a_to_b_top1,
            top5_ir_to_rgb: r.a_to_b_top5,
            top1_rgb_to_ir: r.b_to_a_top1,
            top5_rgb_to_ir: r.b_to_a_top5,
            median_rank_ir_to_rgb: r.a_to_b_median_rank,
            median_rank_rgb_to_ir: r.b_to_a_median_rank,
        }
    }
}

/// Mean mask IoU over the pairs of one map, with its bootstrap interval over the pairs.
#[derive(Clone, Debug, Serialize)]
pub struct IouScore {
    pub map: String,
    pub iou: f64,
    pub interval: Interval,
}

/// The IoU rows: per pair, the network's masks (head means) `rgb[i]`, `ir[i]`, the luminance maps
/// `lum_rgb[i]`, `lum_ir[i]` on the same grid, and the controls of the module doc.
fn iou_scores(
    rgb: &[Vec<bool>],
    ir: &[Vec<bool>],
    lum: (&[Vec<f32>], &[Vec<f32>]),
    grid: (usize, usize),
    mass: f64,
) -> Result<Vec<IouScore>> {
    let n = rgb.len();
    let cells = grid.0 * grid.1;
    let size = |m: &[bool]| m.iter().filter(|&&k| k).count();
    let as_mask = |map: &[f32], mass: f64| mass_mask(map, mass);
    let gaussian = as_mask(&centre_gaussian(grid), mass);
    let mut rows: Vec<[f64; 6]> = Vec::with_capacity(n);
    for i in 0..n {
        let (a, b) = (size(&rgb[i]), size(&ir[i]));
        rows.push([
            mask_iou(&rgb[i], &ir[i])?,
            mask_iou(&gaussian, &gaussian)?,
            mask_iou(
                &as_mask(&central_square(grid, a), 1.0),
                &as_mask(&central_square(grid, b), 1.0),
            )?,
            mask_iou(&as_mask(&lum.0[i], mass), &as_mask(&lum.1[i], mass))?,
            random_mask_iou(a, b, cells),
            mask_iou(&rgb[(i + 1) % n], &ir[i])?,
        ]);
    }
    let names = [
        "network",
        "centre_gaussian",
        "central_square",
        "intensity",
        "uniform",
        "shifted_pairs",
    ];
    Ok(names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let values: Vec<f64> = rows.iter().map(|r| r[k]).collect();
            let (iou, interval) = mean_with_interval(&values, BOOTSTRAP_SEED);
            IouScore {
                map: name.to_string(),
                iou,
                interval,
            }
        })
        .collect())
}

/// Relative path of `p` under `root`, with '/' separators (the pairing key).
fn key(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Pairs of (rgb, ir) files with the same name, sorted by name, and the names found in one
/// folder only: (pairs, rgb only, ir only).
pub fn pair_by_name(
    rgb_root: &Path,
    rgb: &[PathBuf],
    ir_root: &Path,
    ir: &[PathBuf],
) -> (Vec<(PathBuf, PathBuf)>, Vec<String>, Vec<String>) {
    let mut ir_map: BTreeMap<String, PathBuf> =
        ir.iter().map(|p| (key(ir_root, p), p.clone())).collect();
    let mut pairs = Vec::new();
    let mut rgb_only = Vec::new();
    let rgb_map: BTreeMap<String, PathBuf> =
        rgb.iter().map(|p| (key(rgb_root, p), p.clone())).collect();
    for (name, p) in rgb_map {
        match ir_map.remove(&name) {
            Some(q) => pairs.push((p, q)),
            None => rgb_only.push(name),
        }
    }
    (pairs, rgb_only, ir_map.into_keys().collect())
}

/// The pairs of `config`'s two folders; unmatched names are an error unless `skip_unmatched`.
fn matched_pairs(config: &CrossModalConfig) -> Result<Pairing> {
    let rgb = list_images(&config.rgb, "rgb")?;
    let ir = list_images(&config.ir, "ir")?;
    let (pairs, rgb_only, ir_only) = pair_by_name(&config.rgb, &rgb, &config.ir, &ir);
    if (!rgb_only.is_empty() || !ir_only.is_empty()) && !config.skip_unmatched {
        let list = |v: &[String]| {
            let shown: Vec<&str> = v.iter().take(10).map(String::as_str).collect();
            format!(
                "{}{}",
                shown.join(", "),
                if v.len() > 10 { ", ..." } else { "" }
            )
        };
        return err(format!(
            "unmatched file names ({} only in rgb: {}; {} only in ir: {}); pass skip_unmatched to leave them out",
            rgb_only.len(),
            list(&rgb_only),
            ir_only.len(),
            list(&ir_only)
        ));
    }
    if pairs.is_empty() {
        return err(format!(
            "rgb {} and ir {} share no file name",
            config.rgb.display(),
            config.ir.display()
        ));
    }
    Ok((pairs, rgb_only, ir_only))
}

/// (pairs, names only in the RGB folder, names only in the IR folder), as [`pair_by_name`].
type Pairing = (Vec<(PathBuf, PathBuf)>, Vec<String>, Vec<String>);

fn check_config(config: &CrossModalConfig) -> Result<()> {
    if let Some(f) = &config.figure {
        refuse_inside(f, &config.rgb, "figure", "rgb")?;
        refuse_inside(f, &config.ir, "figure", "ir")?;
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
    Ok(())
}

/// What the network and the controls give for the images of one modality, in pair order.
struct Modality {
    /// Pooled features, `[n, dim]`.
    features: Vec<f32>,
    /// Pooled-query maps, `[n, heads, cells]`.
    maps: Vec<f32>,
    /// Layout descriptors of the level's tokens, `[n, ...]`.
    layout: Vec<f32>,
    /// The non-learned descriptors, one flat `[n, ...]` per [`Descriptor`] kind.
    descriptors: Vec<Vec<f32>>,
    /// Each image's luminance per token.
    token_luminance: Vec<Vec<f32>>,
}

impl Modality {
    fn new() -> Modality {
        Modality {
            features: Vec::new(),
            maps: Vec::new(),
            layout: Vec::new(),
            descriptors: vec![Vec::new(); 3],
            token_luminance: Vec::new(),
        }
    }

    /// Embeds one batch of this modality's images and appends what it gives; returns the batch's
    /// views and maps (for the figure).
    fn push_batch(
        &mut self,
        nat: &Nat,
        paths: &[PathBuf],
        transform: &EvalTransform,
        level: usize,
    ) -> Result<BatchMaps> {
        let views = load_views(paths, transform)?;
        let (features, capture) = forward_with_capture(nat, &batch_tensor(&views)?, level)?;
        let maps = pooled_query_attention(nat, &capture)?;
        let grid = capture.grid;
        for view in &views {
            for (k, kind) in Descriptor::ALL.into_iter().enumerate() {
                self.descriptors[k].extend(descriptor(view, kind, grid)?);
            }
            let y = luminance(view);
            self.token_luminance
                .push(cell_means(&y, view.width, view.height, grid));
        }
        let heads = maps.len() / (paths.len() * grid.0 * grid.1);
        let tokens = capture.tokens.to_vec::<f32>()?;
        let per_image = tokens.len() / paths.len();
        let positions = grid.0 * grid.1;
        for t in tokens.chunks(per_image) {
            self.layout
                .extend(layout_descriptor(t, positions, per_image / positions)?);
        }
        self.features.extend(features.to_vec::<f32>()?);
        self.maps.extend_from_slice(&maps);
        Ok(BatchMaps {
            views,
            maps,
            grid,
            heads,
        })
    }
}

/// One batch of one modality: its views and pooled-query maps on the token grid.
struct BatchMaps {
    views: Vec<Planar>,
    /// `[batch, heads, cells]`.
    maps: Vec<f32>,
    grid: (usize, usize),
    heads: usize,
}

/// One row of the figure: for each modality the image, its head-mean map as a heatmap, and the
/// image under the mass mask.
fn figure_row(batch: &[BatchMaps], b: usize, config: &CrossModalConfig) -> RgbImage {
    let mut row = Vec::new();
    for BatchMaps {
        views,
        maps,
        grid,
        heads,
    } in batch
    {
        let (grid, heads) = (*grid, *heads);
        let cells = grid.0 * grid.1;
        let map = head_mean(&maps[b * heads * cells..(b + 1) * heads * cells], heads);
        let f = display_factor(config.size);
        let img = enlarge(&views[b].to_rgb(IMAGENET_MEAN, IMAGENET_STD), f);
        let heat = heatmap(&map, grid, img.width, img.height);
        let masked = overlay_mask(&img, &mass_mask(&map, config.mass), grid);
        row.extend([img, heat, masked]);
    }
    image_grid(&row, row.len(), 4, [255, 255, 255])
}

/// Runs the evaluation; `progress(done, total)` after each batch of pairs.
pub fn run_crossmodal(
    nat: &Nat,
    config: &CrossModalConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<CrossModalReport> {
    let (pairs, rgb_only, ir_only) = matched_pairs(config)?;
    check_config(config)?;
    let level = config
        .level
        .unwrap_or_else(|| default_level(&nat.config, config.size, config.size));
    let transform = EvalTransform::square(config.size);
    let _guard = no_grad();
    let n = pairs.len();
    let mut modalities = [Modality::new(), Modality::new()];
    let mut figure_rows: Vec<RgbImage> = Vec::new();
    let mut grid = (0, 0);
    let mut heads = 1;
    for (ci, chunk) in pairs.chunks(config.batch).enumerate() {
        let (rp, ip): (Vec<PathBuf>, Vec<PathBuf>) = chunk.iter().cloned().unzip();
        let mut batch = Vec::new();
        for (m, paths) in [&rp, &ip].into_iter().enumerate() {
            let maps = modalities[m].push_batch(nat, paths, &transform, level)?;
            (grid, heads) = (maps.grid, maps.heads);
            batch.push(maps);
        }
        for b in 0..chunk.len() {
            if ci * config.batch + b >= config.figure_pairs || config.figure.is_none() {
                break;
            }
            figure_rows.push(figure_row(&batch, b, config));
        }
        progress((ci * config.batch + chunk.len()).min(n), n);
    }
    let [rgb, ir] = &modalities;
    let mut report = score(nat, config, (rgb, ir), grid, heads)?;
    (
        report.level,
        report.skipped_rgb_only,
        report.skipped_ir_only,
    ) = (level, rgb_only, ir_only);
    if let Some(path) = &config.figure {
        let sheet = image_grid(&figure_rows, 1, 6, [255, 255, 255]);
        write_png(path, &sheet)?;
    }
    Ok(report)
}

/// Retrieval and mask IoU of the network and the controls over all pairs.
fn score(
    nat: &Nat,
    config: &CrossModalConfig,
    (rgb, ir): (&Modality, &Modality),
    grid: (usize, usize),
    heads: usize,
) -> Result<CrossModalReport> {
    let n = rgb.token_luminance.len();
    let dim = rgb.features.len() / n;
    let r = cross_modal_retrieval(&ir.features, &rgb.features, dim)?;
    let layout = cross_modal_retrieval(&ir.layout, &rgb.layout, rgb.layout.len() / n)?;
    let cells = grid.0 * grid.1;
    let mask_of = |maps: &[f32], i: usize| {
        mass_mask(
            &head_mean(&maps[i * heads * cells..(i + 1) * heads * cells], heads),
            config.mass,
        )
    };
    let masks_rgb: Vec<Vec<bool>> = (0..n).map(|i| mask_of(&rgb.maps, i)).collect();
    let masks_ir: Vec<Vec<bool>> = (0..n).map(|i| mask_of(&ir.maps, i)).collect();
    let iou = iou_scores(
        &masks_rgb,
        &masks_ir,
        (&rgb.token_luminance, &ir.token_luminance),
        grid,
        config.mass,
    )?;
    let mut retrieval = vec![
        RetrievalScore::new("network_pooled", &r),
        RetrievalScore::new("network_layout", &layout),
    ];
    for (k, kind) in Descriptor::ALL.into_iter().enumerate() {
        let (d_rgb, d_ir) = (&rgb.descriptors[k], &ir.descriptors[k]);
        let scored = cross_modal_retrieval(d_ir, d_rgb, d_rgb.len() / n)?;
        retrieval.push(RetrievalScore::new(kind.name(), &scored));
    }
    let mut iou_heads = 0.0;
    for i in 0..n {
        for h in 0..heads {
            let at = |maps: &[f32]| {
                let o = (i * heads + h) * cells;
                mass_mask(&maps[o..o + cells], config.mass)
            };
            iou_heads += mask_iou(&at(&rgb.maps), &at(&ir.maps))?;
        }
    }
    Ok(CrossModalReport {
        arch: nat.config.name.clone(),
        pairs: n,
        size: config.size,
        level: 0,
        grid: [grid.0, grid.1],
        mass: config.mass,
        retrieval_top1_ir_to_rgb: r.a_to_b_top1,
        retrieval_top5_ir_to_rgb: r.a_to_b_top5,
        retrieval_top1_rgb_to_ir: r.b_to_a_top1,
        retrieval_top5_rgb_to_ir: r.b_to_a_top5,
        chance_top1: 100.0 / n as f64,
        chance_top5: 100.0 * n.min(5) as f64 / n as f64,
        retrieval_median_rank_ir_to_rgb: r.a_to_b_median_rank,
        retrieval_median_rank_rgb_to_ir: r.b_to_a_median_rank,
        chance_median_rank: (n + 1) as f64 / 2.0,
        layout_retrieval_top1_ir_to_rgb: layout.a_to_b_top1,
        layout_retrieval_top5_ir_to_rgb: layout.a_to_b_top5,
        layout_retrieval_top1_rgb_to_ir: layout.b_to_a_top1,
        layout_retrieval_top5_rgb_to_ir: layout.b_to_a_top5,
        layout_retrieval_median_rank_ir_to_rgb: layout.a_to_b_median_rank,
        layout_retrieval_median_rank_rgb_to_ir: layout.b_to_a_median_rank,
        attention_iou: iou[0].iou,
        attention_iou_per_head: iou_heads / (n * heads) as f64,
        attention_iou_shifted: iou[5].iou,
        retrieval,
        iou,
        skipped_rgb_only: Vec::new(),
        skipped_ir_only: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::pair_by_name;
    use std::path::PathBuf;

    #[test]
    fn pairs_follow_relative_names() {
        let p = |s: &str| PathBuf::from(s);
        let rgb = [p("/r/a.jpg"), p("/r/sub/b.jpg"), p("/r/c.jpg")];
        let ir = [p("/i/sub/b.jpg"), p("/i/a.jpg"), p("/i/d.jpg")];
        let (pairs, rgb_only, ir_only) = pair_by_name(&p("/r"), &rgb, &p("/i"), &ir);
        assert_eq!(
            pairs,
            vec![
                (p("/r/a.jpg"), p("/i/a.jpg")),
                (p("/r/sub/b.jpg"), p("/i/sub/b.jpg"))
            ]
        );
        assert_eq!(rgb_only, ["c.jpg"]);
        assert_eq!(ir_only, ["d.jpg"]);
    }
}
