//! Maps to pictures: nearest-neighbour upsampling of a token grid to the image (each token covers
//! its block of pixels, as DINO's `interpolate(scale_factor = patch, mode = "nearest")`), a colour
//! map, and the overlay of the 60%-mass mask on the image.

use crate::retrieval::attention_mass_mask;
use dinonat_train::data::RgbImage;

/// DINO's threshold: the tokens that hold 60% of the attention mass.
pub const DEFAULT_MASS: f64 = 0.6;

/// A grid `[rows * cols]` upsampled to `out_w` x `out_h` by nearest neighbour.
pub fn upsample_nearest(map: &[f32], grid: (usize, usize), out_w: usize, out_h: usize) -> Vec<f32> {
    let (rows, cols) = grid;
    let mut out = Vec::with_capacity(out_w * out_h);
    for y in 0..out_h {
        let r = (y * rows / out_h).min(rows - 1);
        for x in 0..out_w {
            let c = (x * cols / out_w).min(cols - 1);
            out.push(map[r * cols + c]);
        }
    }
    out
}

/// A sequential colour map (dark blue -> purple -> red -> orange -> pale yellow) at t in [0, 1].
pub fn colour(t: f32) -> [u8; 3] {
    const STOPS: [[f32; 3]; 5] = [
        [0.02, 0.02, 0.10],
        [0.35, 0.05, 0.50],
        [0.80, 0.15, 0.30],
        [0.98, 0.55, 0.05],
        [0.99, 0.98, 0.65],
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let s = t * (STOPS.len() - 1) as f32;
    let i = (s.floor() as usize).min(STOPS.len() - 2);
    let f = s - i as f32;
    let mut px = [0u8; 3];
    for c in 0..3 {
        let v = STOPS[i][c] * (1.0 - f) + STOPS[i + 1][c] * f;
        px[c] = (v * 255.0).round() as u8;
    }
    px
}

/// A grid of weights as a heat map of `out_w` x `out_h` pixels, min-max scaled (as matplotlib's
/// `imshow` in DINO's script): an almost uniform map still shows its ordering.
pub fn heatmap(map: &[f32], grid: (usize, usize), out_w: usize, out_h: usize) -> RgbImage {
    let max = map.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let min = map.iter().copied().fold(f32::INFINITY, f32::min);
    let up = upsample_nearest(map, grid, out_w, out_h);
    let mut pixels = Vec::with_capacity(out_w * out_h * 3);
    for v in up {
        let t = if max > min {
            (v - min) / (max - min)
        } else {
            0.0
        };
        pixels.extend_from_slice(&colour(t));
    }
    RgbImage::new(out_w, out_h, pixels)
}

/// PCA colours `[rows * cols, 3]` in [0, 1] as an image of `out_w` x `out_h`.
pub fn rgb_map(values: &[f32], grid: (usize, usize), out_w: usize, out_h: usize) -> RgbImage {
    let mut pixels = Vec::with_capacity(out_w * out_h * 3);
    for c in 0..3 {
        let plane: Vec<f32> = values.chunks_exact(3).map(|p| p[c]).collect();
        let up = upsample_nearest(&plane, grid, out_w, out_h);
        if c == 0 {
            pixels.resize(out_w * out_h * 3, 0);
        }
        for (i, v) in up.iter().enumerate() {
            pixels[i * 3 + c] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    }
    RgbImage::new(out_w, out_h, pixels)
}

/// The 60%-mass mask (or `mass`) of a map, as booleans on the grid.
pub fn mass_mask(map: &[f32], mass: f64) -> Vec<bool> {
    // Weights from a softmax are finite and non-negative; anything else keeps nothing.
    attention_mass_mask(map, mass).unwrap_or_else(|_| vec![false; map.len()])
}

/// `image` with the pixels outside the (grid) mask dimmed to a third and a warm tint inside.
pub fn overlay_mask(image: &RgbImage, mask: &[bool], grid: (usize, usize)) -> RgbImage {
    let m: Vec<f32> = mask.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
    let up = upsample_nearest(&m, grid, image.width, image.height);
    let mut pixels = image.pixels.clone();
    for (i, &inside) in up.iter().enumerate() {
        let px = &mut pixels[i * 3..i * 3 + 3];
        if inside > 0.5 {
            px[0] = ((px[0] as u32 * 3 + 255) / 4) as u8;
            px[1] = ((px[1] as u32 * 3 + 128) / 4) as u8;
        } else {
            px.iter_mut().for_each(|v| *v /= 3);
        }
    }
    RgbImage::new(image.width, image.height, pixels)
}

/// Nearest-neighbour enlargement by an integer `factor` (small inputs shown at a visible size).
pub fn enlarge(image: &RgbImage, factor: usize) -> RgbImage {
    let f = factor.max(1);
    if f == 1 {
        return image.clone();
    }
    let (w, h) = (image.width * f, image.height * f);
    let mut pixels = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            pixels.extend_from_slice(&image.pixel(x / f, y / f));
        }
    }
    RgbImage::new(w, h, pixels)
}

/// The factor that brings a `size` px input to at least 160 px on screen.
pub fn display_factor(size: usize) -> usize {
    160usize.div_ceil(size.max(1)).max(1)
}

/// A small cross at pixel (x, y) (the token a neighbourhood map is drawn for).
pub fn mark(image: &mut RgbImage, x: usize, y: usize) {
    let (w, h) = (image.width as i64, image.height as i64);
    for d in -4i64..=4 {
        for (px, py) in [(x as i64 + d, y as i64), (x as i64, y as i64 + d)] {
            if px >= 0 && py >= 0 && px < w && py < h {
                let o = (py as usize * image.width + px as usize) * 3;
                image.pixels[o..o + 3].copy_from_slice(&[0, 255, 0]);
            }
        }
    }
}
