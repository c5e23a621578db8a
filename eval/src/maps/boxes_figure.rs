//! `dinonat boxes --figure`: the network's map beside the strongest prior's, on images of the measured set
//! (docs/attention-maps.md, "Attention inside boxes"). One row per image: the crop with its boxes | the
//! network's head-mean map | its mass mask | the prior's map | the prior's mask, every panel with the boxes
//! outlined. The prior is the one with the highest mean masked share over all images of the run, so the
//! figure shows the control that comes closest to (or beats) the network.

use super::figures::{row, PADDING};
use super::priors::{prior_maps, PRIORS};
use super::render::{display_factor, enlarge, heatmap, mass_mask, overlay_mask};
use dinonat_train::augment::{Planar, IMAGENET_MEAN, IMAGENET_STD};
use dinonat_train::data::RgbImage;
use dinonat_train::grid::image_grid;
use std::path::PathBuf;

/// One image kept for the figure: its view, the network's head-mean map, its boxes in crop pixels and the
/// masked shares it scored (network, then [`PRIORS`]).
#[derive(Clone, Debug)]
pub struct FigureInput {
    pub path: PathBuf,
    pub view: Planar,
    pub map: Vec<f32>,
    pub rects: Vec<[f64; 4]>,
    pub kept_tokens: usize,
    pub network: f64,
    pub priors: [f64; 3],
}

/// Index into [`PRIORS`] of the highest of `shares` (the first on a tie).
pub fn strongest(shares: &[f64; 3]) -> usize {
    (0..3).fold(0, |best, i| if shares[i] > shares[best] { i } else { best })
}

/// `image` with the outlines of `rects` (crop pixels, drawn at `scale` display pixels per crop pixel): a white
/// line on the box's edge and a black one just inside it, visible on any palette.
fn outline(image: &mut RgbImage, rects: &[[f64; 4]], scale: f64) {
    let (w, h) = (image.width, image.height);
    for r in rects {
        let px = |v: f64| ((v * scale).round() as usize).min(w.max(h));
        let (x0, y0) = (px(r[0]), px(r[1]));
        let (x1, y1) = (px(r[2]).saturating_sub(1), px(r[3]).saturating_sub(1));
        for (inset, colour) in [(1, [0u8, 0, 0]), (0, [255u8, 255, 255])] {
            let (a0, b0, a1, b1) = (
                x0 + inset,
                y0 + inset,
                x1.saturating_sub(inset),
                y1.saturating_sub(inset),
            );
            if a0 > a1 || b0 > b1 {
                continue;
            }
            let edge = (a0..=a1)
                .flat_map(|x| [(x, b0), (x, b1)])
                .chain((b0..=b1).flat_map(|y| [(a0, y), (a1, y)]));
            for (x, y) in edge.filter(|&(x, y)| x < w && y < h).collect::<Vec<_>>() {
                let o = (y * w + x) * 3;
                image.pixels[o..o + 3].copy_from_slice(&colour);
            }
        }
    }
}

/// The figure: one row per input (see the module doc) for the prior `prior` (an index into [`PRIORS`]).
pub fn boxes_figure(
    rows: &[FigureInput],
    grid: (usize, usize),
    mass: f64,
    prior: usize,
) -> RgbImage {
    let figure_rows: Vec<RgbImage> = rows
        .iter()
        .map(|r| {
            let factor = display_factor(r.view.width.max(r.view.height));
            let image = enlarge(&r.view.to_rgb(IMAGENET_MEAN, IMAGENET_STD), factor);
            let (dw, dh) = (image.width, image.height);
            let (prior_map, prior_mass) = &prior_maps(&r.view, grid, r.kept_tokens, mass)[prior];
            let mut panels = vec![
                image.clone(),
                heatmap(&r.map, grid, dw, dh),
                overlay_mask(&image, &mass_mask(&r.map, mass), grid),
                heatmap(prior_map, grid, dw, dh),
                overlay_mask(&image, &mass_mask(prior_map, *prior_mass), grid),
            ];
            for p in &mut panels {
                outline(p, &r.rects, factor as f64);
            }
            row(&panels)
        })
        .collect();
    image_grid(&figure_rows, 1, PADDING, [255, 255, 255])
}

/// A line per row for the figure's caption: the file and its masked shares.
pub fn caption(rows: &[FigureInput], prior: usize) -> Vec<String> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                "row {}: {} (network {:.3}, {} {:.3})",
                i + 1,
                r.path.display(),
                r.network,
                PRIORS[prior],
                r.priors[prior]
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outline_draws_the_box_edges_only() {
        let mut img = RgbImage::new(10, 10, vec![7; 10 * 10 * 3]);
        // a box over crop pixels [1, 4) x [2, 5) drawn at 2 display pixels per crop pixel: [2, 8) x [4, 10)
        outline(&mut img, &[[1.0, 2.0, 4.0, 5.0]], 2.0);
        let ring = |x: usize, y: usize, (x0, y0, x1, y1): (usize, usize, usize, usize)| {
            (x0..=x1).contains(&x)
                && (y0..=y1).contains(&y)
                && (x == x0 || x == x1 || y == y0 || y == y1)
        };
        for y in 0..10 {
            for x in 0..10 {
                let want = if ring(x, y, (2, 4, 7, 9)) {
                    [255, 255, 255]
                } else if ring(x, y, (3, 5, 6, 8)) {
                    [0, 0, 0]
                } else {
                    [7, 7, 7]
                };
                assert_eq!(img.pixel(x, y), want, "pixel ({x}, {y})");
            }
        }
    }

    #[test]
    fn strongest_is_the_highest_share_and_the_figure_has_five_panels_a_row() {
        assert_eq!(strongest(&[0.2, 0.5, 0.5]), 1);
        assert_eq!(strongest(&[0.9, 0.5, 0.1]), 0);
        let mut view = Planar::zeros(16, 16);
        for (i, v) in view.data.iter_mut().enumerate() {
            *v = ((i * 37) % 11) as f32 / 5.0 - 1.0;
        }
        let grid = (4, 4);
        let map: Vec<f32> = (0..16).map(|i| ((i * 7) % 5) as f32 + 0.5).collect();
        let input = FigureInput {
            path: "a.png".into(),
            view,
            map,
            rects: vec![[0.0, 0.0, 8.0, 8.0]],
            kept_tokens: 4,
            network: 0.5,
            priors: [0.1, 0.2, 0.3],
        };
        let fig = boxes_figure(&[input.clone(), input.clone()], grid, 0.6, 2);
        let side = 16 * display_factor(16);
        // padding between and around the panels of a row, and around each row in the figure
        assert_eq!(fig.width, 5 * side + 6 * PADDING + 2 * PADDING);
        assert_eq!(fig.height, 2 * (side + 2 * PADDING) + 3 * PADDING);
        assert_eq!(
            caption(&[input], 2),
            ["row 1: a.png (network 0.500, intensity 0.300)"]
        );
    }
}
