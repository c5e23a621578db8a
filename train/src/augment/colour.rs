//! Photometric transforms on planar RGB in [0, 1] (docs/augmentation.md, "Colour"): torchvision's ColorJitter
//! (brightness, contrast, saturation, hue in random order), grayscale, solarize, normalisation.

use super::planar::Planar;
use crate::data::procedural::hsv_to_rgb;
use dinonat_engine::SplitMix64;

/// ITU-R 601-2 luma, as PIL's "L" mode and torchvision's rgb_to_grayscale.
pub const LUMA: [f32; 3] = [0.299, 0.587, 0.114];
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// PIL's solarize inverts pixels >= 128 of 255.
pub const SOLARIZE_THRESHOLD: f32 = 128.0 / 255.0;

/// Jitter strengths: factors are drawn from [1 - s, 1 + s] (hue: a shift in [-s, s] turns of the colour wheel).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColourJitter {
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
}

impl ColourJitter {
    /// DINO's values.
    pub const DINO: ColourJitter = ColourJitter {
        brightness: 0.4,
        contrast: 0.4,
        saturation: 0.2,
        hue: 0.1,
    };

    /// Apply the four adjustments in a random order, each with its own random factor (torchvision semantics).
    pub fn apply(&self, img: &mut Planar, rng: &mut SplitMix64) {
        let order = rng.permutation(4);
        let factor = |rng: &mut SplitMix64, s: f32| {
            rng.uniform((1.0 - s).max(0.0) as f64, (1.0 + s) as f64) as f32
        };
        let b = factor(rng, self.brightness);
        let c = factor(rng, self.contrast);
        let s = factor(rng, self.saturation);
        let h = rng.uniform(-self.hue as f64, self.hue as f64) as f32;
        for k in order {
            match k {
                0 => adjust_brightness(img, b),
                1 => adjust_contrast(img, c),
                2 => adjust_saturation(img, s),
                _ => adjust_hue(img, h),
            }
        }
    }
}

fn blend_with(img: &mut Planar, factor: f32, other: impl Fn(usize) -> f32) {
    let n = img.width * img.height;
    for c in 0..3 {
        let p = img.plane_mut(c);
        for (i, v) in p.iter_mut().enumerate().take(n) {
            *v = (factor * *v + (1.0 - factor) * other(i)).clamp(0.0, 1.0);
        }
    }
}

/// x' = clamp(b x): blend with black.
pub fn adjust_brightness(img: &mut Planar, b: f32) {
    blend_with(img, b, |_| 0.0);
}

/// x' = clamp(c x + (1 - c) m), m = mean luma of the image: blend with a gray image of the same mean.
pub fn adjust_contrast(img: &mut Planar, c: f32) {
    let gray = luma(img);
    let mean = (gray.iter().map(|&v| v as f64).sum::<f64>() / gray.len() as f64) as f32;
    blend_with(img, c, |_| mean);
}

/// x' = clamp(s x + (1 - s) luma(x)): blend with the grayscale version of the pixel.
pub fn adjust_saturation(img: &mut Planar, s: f32) {
    let gray = luma(img);
    blend_with(img, s, |i| gray[i]);
}

/// Rotate the hue by `shift` turns in HSV space.
pub fn adjust_hue(img: &mut Planar, shift: f32) {
    let n = img.width * img.height;
    for i in 0..n {
        let rgb = [img.data[i], img.data[n + i], img.data[2 * n + i]];
        let [h, s, v] = rgb_to_hsv(rgb);
        let out = hsv_to_rgb((h + shift).rem_euclid(1.0), s, v);
        for (c, v) in out.into_iter().enumerate() {
            img.data[c * n + i] = v;
        }
    }
}

/// RGB in [0, 1] -> (h in [0, 1), s, v).
pub fn rgb_to_hsv([r, g, b]: [f32; 3]) -> [f32; 3] {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let d = max - min;
    let s = if max > 0.0 { d / max } else { 0.0 };
    let h = if d == 0.0 {
        0.0
    } else if max == r {
        ((g - b) / d).rem_euclid(6.0) / 6.0
    } else if max == g {
        ((b - r) / d + 2.0) / 6.0
    } else {
        ((r - g) / d + 4.0) / 6.0
    };
    [h, s, max]
}

fn luma(img: &Planar) -> Vec<f32> {
    let n = img.width * img.height;
    (0..n)
        .map(|i| LUMA[0] * img.data[i] + LUMA[1] * img.data[n + i] + LUMA[2] * img.data[2 * n + i])
        .collect()
}

/// Replace each pixel by its luma in all three channels.
pub fn grayscale(img: &mut Planar) {
    let gray = luma(img);
    let n = gray.len();
    for c in 0..3 {
        img.data[c * n..(c + 1) * n].copy_from_slice(&gray);
    }
}

/// x' = 1 - x where x >= 128/255.
pub fn solarize(img: &mut Planar) {
    img.data
        .iter_mut()
        .filter(|v| **v >= SOLARIZE_THRESHOLD)
        .for_each(|v| *v = 1.0 - *v);
}

/// x' = 1 - x everywhere: the photographic negative (solarize at threshold 0).
pub fn invert(img: &mut Planar) {
    img.data.iter_mut().for_each(|v| *v = 1.0 - *v);
}

/// x' = (x - mean_c) / std_c per channel.
pub fn normalise(img: &mut Planar, mean: [f32; 3], std: [f32; 3]) {
    for c in 0..3 {
        let (m, inv) = (mean[c], 1.0 / std[c]);
        img.plane_mut(c)
            .iter_mut()
            .for_each(|v| *v = (*v - m) * inv);
    }
}

/// Mirror left-right.
pub fn horizontal_flip(img: &mut Planar) {
    let w = img.width;
    img.data.chunks_mut(w).for_each(|row| row.reverse());
}
