//! RandomResizedCrop's box sampling (Szegedy et al. 2015's "Inception" crop, as in torchvision
//! `RandomResizedCrop.get_params`; docs/augmentation.md).

use dinonat_engine::SplitMix64;

/// A crop box in pixels: left x, top y, width, height. `fallback` is true when the ten random tries failed and the
/// centre crop was used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
    pub fallback: bool,
}

/// Sample a box covering a fraction of the area in `scale` with aspect ratio (w / h) in `ratio`, log-uniformly.
/// After 10 failed tries (box larger than the image), the centre crop with the aspect clamped to `ratio`.
pub fn random_resized_crop_box(
    width: usize,
    height: usize,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut SplitMix64,
) -> CropBox {
    let area = (width * height) as f64;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * rng.uniform(scale.0, scale.1);
        let aspect = rng.uniform(log_lo, log_hi).exp();
        let w = (target_area * aspect).sqrt().round() as usize;
        let h = (target_area / aspect).sqrt().round() as usize;
        if 0 < w && w <= width && 0 < h && h <= height {
            let y = rng.range(0, (height - h + 1) as i64) as usize;
            let x = rng.range(0, (width - w + 1) as i64) as usize;
            return CropBox {
                x,
                y,
                w,
                h,
                fallback: false,
            };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio.0 {
        (
            width,
            ((width as f64 / ratio.0).round() as usize).clamp(1, height),
        )
    } else if in_ratio > ratio.1 {
        (
            ((height as f64 * ratio.1).round() as usize).clamp(1, width),
            height,
        )
    } else {
        (width, height)
    };
    CropBox {
        x: (width - w) / 2,
        y: (height - h) / 2,
        w,
        h,
        fallback: true,
    }
}
