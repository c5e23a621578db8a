//! The pictures of `dinonat attention` (docs/attention-maps.md, "Figures"): per image, the
//! pooled-query map per head with its 60%-mass mask, the PCA map, optionally the neighbourhood
//! map of one pixel in every block; per pair of images, the two side by side.

use super::neighbourhood::{neighbourhood_attention, token_of_pixel};
use super::pca::pca_rgb;
use super::pooled::{head_mean, pooled_query_attention};
use super::render::{display_factor, enlarge, heatmap, mark, mass_mask, overlay_mask, rgb_map};
use super::{forward_with_capture, Result};
use dinonat_engine::{no_grad, Tensor};
use dinonat_model::Nat;
use dinonat_train::augment::{Planar, IMAGENET_MEAN, IMAGENET_STD};
use dinonat_train::data::RgbImage;
use dinonat_train::grid::image_grid;

/// Space between panels, in pixels.
pub const PADDING: usize = 4;

/// Every map of one image, at display size.
#[derive(Clone, Debug)]
pub struct ImageMaps {
    /// The input crop (display size).
    pub image: RgbImage,
    pub grid: (usize, usize),
    /// `[heads, n]` pooled-query attention.
    pub pooled: Vec<f32>,
    pub heads: usize,
    /// image | one heat map per head | mask of the head mean over the image.
    pub pooled_figure: RgbImage,
    /// image | PCA map.
    pub pca_figure: RgbImage,
    /// One row per block: image with the pixel marked | one panel per head.
    pub neighbourhood_figure: Option<RgbImage>,
}

/// Options of the figures.
#[derive(Clone, Copy, Debug)]
pub struct FigureOptions {
    pub level: usize,
    /// Mass of the mask (None: no mask panel).
    pub mass: Option<f64>,
    /// Pixel (x, y) of the input crop for the neighbourhood map.
    pub pixel: Option<(usize, usize)>,
}

/// Panels side by side, [`PADDING`] apart.
pub(super) fn row(panels: &[RgbImage]) -> RgbImage {
    image_grid(panels, panels.len(), PADDING, [255, 255, 255])
}

/// Maps and figures of a batch of transformed views (all of one size).
pub fn image_maps(nat: &Nat, views: &[Planar], options: &FigureOptions) -> Result<Vec<ImageMaps>> {
    let _guard = no_grad();
    let Some(first) = views.first() else {
        return Ok(Vec::new());
    };
    let (w, h) = (first.width, first.height);
    let mut data = Vec::with_capacity(views.len() * 3 * w * h);
    views.iter().for_each(|v| data.extend_from_slice(&v.data));
    let images = Tensor::from_vec(data, &[views.len(), 3, h, w])?;
    let (_, capture) = forward_with_capture(nat, &images, options.level)?;
    let grid = capture.grid;
    let n = grid.0 * grid.1;
    let pooled = pooled_query_attention(nat, &capture)?;
    let heads = pooled.len() / (views.len() * n);
    let tokens = capture.tokens.to_vec::<f32>()?;
    let dim = tokens.len() / (views.len() * n);
    let factor = display_factor(w.max(h));
    let mut out = Vec::new();
    for (b, view) in views.iter().enumerate() {
        let image = enlarge(&view.to_rgb(IMAGENET_MEAN, IMAGENET_STD), factor);
        let (dw, dh) = (image.width, image.height);
        let maps = pooled[b * heads * n..(b + 1) * heads * n].to_vec();
        let mut panels = vec![image.clone()];
        for hh in 0..heads {
            panels.push(heatmap(&maps[hh * n..(hh + 1) * n], grid, dw, dh));
        }
        if let Some(mass) = options.mass {
            panels.push(overlay_mask(
                &image,
                &mass_mask(&head_mean(&maps, heads), mass),
                grid,
            ));
        }
        let pooled_figure = row(&panels);
        let pca = pca_rgb(&tokens[b * n * dim..(b + 1) * n * dim], dim);
        let pca_figure = row(&[image.clone(), rgb_map(&pca, grid, dw, dh)]);
        let neighbourhood_figure = match options.pixel {
            Some((x, y)) => {
                let token = token_of_pixel(x.min(w - 1), y.min(h - 1), w, h, grid);
                let mut marked = image.clone();
                mark(&mut marked, x.min(w - 1) * factor, y.min(h - 1) * factor);
                let mut rows = Vec::new();
                for block in neighbourhood_attention(nat, &capture, b, token)? {
                    let mut panels = vec![marked.clone()];
                    for hh in 0..block.heads {
                        panels.push(heatmap(&block.on_grid(hh, n), grid, dw, dh));
                    }
                    rows.push(row(&panels));
                }
                Some(image_grid(&rows, 1, 0, [255, 255, 255]))
            }
            None => None,
        };
        out.push(ImageMaps {
            image,
            grid,
            pooled: maps,
            heads,
            pooled_figure,
            pca_figure,
            neighbourhood_figure,
        });
    }
    Ok(out)
}

/// Two images' maps side by side, one row each: image | head-mean map | mask (if any).
pub fn pair_figure(a: &ImageMaps, b: &ImageMaps, mass: Option<f64>) -> RgbImage {
    let rows: Vec<RgbImage> = [a, b]
        .iter()
        .map(|m| {
            let mean = head_mean(&m.pooled, m.heads);
            let mut panels = vec![
                m.image.clone(),
                heatmap(&mean, m.grid, m.image.width, m.image.height),
            ];
            if let Some(mass) = mass {
                panels.push(overlay_mask(&m.image, &mass_mask(&mean, mass), m.grid));
            }
            row(&panels)
        })
        .collect();
    image_grid(&rows, 2, PADDING, [255, 255, 255])
}
