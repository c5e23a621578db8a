//! DINO's multi-crop augmentation and the evaluation transform (docs/augmentation.md; recipe in
//! ../shared/docs/dino.md, "Augmentation").
//!
//! Every view of sample `index` in `epoch` draws from its own stream `SplitMix64::for_sample(seed, epoch,
//! index).fork(view)`, so a crop is a pure function of (seed, epoch, index, view) and of the image.

pub mod blur;
pub mod colour;
pub mod crop;
mod planar;
pub mod resize;

pub use colour::{ColourJitter, IMAGENET_MEAN, IMAGENET_STD};
pub use crop::{random_resized_crop_box, CropBox};
pub use planar::Planar;
pub use resize::{resize, resize_region, Filter};

use crate::data::RgbImage;
use dinonat_engine::SplitMix64;

/// One view's recipe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ViewSpec {
    pub size: usize,
    /// Fraction of the image area covered by the crop.
    pub scale: (f64, f64),
    pub p_blur: f64,
    pub p_solarize: f64,
}

/// The whole multi-crop recipe. [`MultiCropConfig::dino`] is the paper's; `small` and `tiny` scale the crop sizes
/// (and the blur's upper sigma) down for low-resolution runs, keeping the scale ranges.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiCropConfig {
    pub global_size: usize,
    pub local_size: usize,
    pub n_local: usize,
    pub global_scale: (f64, f64),
    pub local_scale: (f64, f64),
    /// Aspect ratio (w / h) range of the crop box.
    pub ratio: (f64, f64),
    pub filter: Filter,
    pub p_flip: f64,
    pub jitter: ColourJitter,
    pub p_jitter: f64,
    pub p_grayscale: f64,
    /// Gaussian blur sigma range, in pixels of the output view.
    pub blur_sigma: (f32, f32),
    /// Blur probabilities of global view 1, global view 2 and the local views.
    pub p_blur: [f64; 3],
    /// Solarize probability of global view 2 (the others never solarize).
    pub p_solarize_global2: f64,
    /// Probability that a view (any view) is inverted, x -> 1 - x, after the solarize step. Not in
    /// DINO (0 there): it asks for features blind to brightness levels and to the sign of a contrast,
    /// which differ between visible and thermal images of one scene (docs/augmentation.md, "Inversion").
    pub p_invert: f64,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl MultiCropConfig {
    /// 2 x 224 + 8 x 96, DINO's defaults.
    pub fn dino() -> Self {
        Self {
            global_size: 224,
            local_size: 96,
            n_local: 8,
            global_scale: (0.4, 1.0),
            local_scale: (0.05, 0.4),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            filter: Filter::Bicubic,
            p_flip: 0.5,
            jitter: ColourJitter::DINO,
            p_jitter: 0.8,
            p_grayscale: 0.2,
            blur_sigma: (0.1, 2.0),
            p_blur: [1.0, 0.1, 0.5],
            p_solarize_global2: 0.2,
            p_invert: 0.0,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }

    /// DINO's recipe at global / local sizes of your choosing; the blur's upper sigma scales with global / 224
    /// (not below 0.1) so the blur removes the same fraction of the image's detail.
    pub fn scaled(global_size: usize, local_size: usize, n_local: usize) -> Self {
        let hi = (2.0 * global_size as f32 / 224.0).max(0.1);
        Self {
            global_size,
            local_size,
            n_local,
            blur_sigma: (0.1f32.min(hi), hi),
            ..Self::dino()
        }
    }

    /// 2 x 64 + 8 x 32.
    pub fn small() -> Self {
        Self::scaled(64, 32, 8)
    }

    /// 2 x 32 + 8 x 16.
    pub fn tiny() -> Self {
        Self::scaled(32, 16, 8)
    }

    /// The views in order: global 1, global 2, then the locals.
    pub fn views(&self) -> Vec<ViewSpec> {
        let g = |p_blur, p_solarize| ViewSpec {
            size: self.global_size,
            scale: self.global_scale,
            p_blur,
            p_solarize,
        };
        let mut v = vec![
            g(self.p_blur[0], 0.0),
            g(self.p_blur[1], self.p_solarize_global2),
        ];
        v.extend((0..self.n_local).map(|_| ViewSpec {
            size: self.local_size,
            scale: self.local_scale,
            p_blur: self.p_blur[2],
            p_solarize: 0.0,
        }));
        v
    }

    /// One view of `image`: crop, flip, jitter, grayscale, blur, solarize, normalise (the order of DINO's
    /// `DataAugmentationDINO`), with the optional inversion after the solarize step. Every random draw is made
    /// whether or not its transform applies, so the stream position of later draws does not depend on earlier
    /// coin flips.
    pub fn view(&self, image: &Planar, spec: &ViewSpec, rng: &mut SplitMix64) -> Planar {
        let b = random_resized_crop_box(image.width, image.height, spec.scale, self.ratio, rng);
        let mut v = resize_region(
            image,
            b.x,
            b.y,
            b.w,
            b.h,
            spec.size,
            spec.size,
            self.filter,
            true,
        );
        if rng.bernoulli(self.p_flip) {
            colour::horizontal_flip(&mut v);
        }
        let mut jitter_rng = rng.fork(1);
        if rng.bernoulli(self.p_jitter) {
            self.jitter.apply(&mut v, &mut jitter_rng);
        }
        if rng.bernoulli(self.p_grayscale) {
            colour::grayscale(&mut v);
        }
        let sigma = rng.uniform(self.blur_sigma.0 as f64, self.blur_sigma.1 as f64) as f32;
        if rng.bernoulli(spec.p_blur) {
            blur::gaussian_blur(&mut v, sigma);
        }
        if rng.bernoulli(spec.p_solarize) {
            colour::solarize(&mut v);
        }
        // The last draw of a view: with p_invert = 0 every view is what it was before the option.
        if rng.bernoulli(self.p_invert) {
            colour::invert(&mut v);
        }
        colour::normalise(&mut v, self.mean, self.std);
        v
    }

    /// All views of one sample, normalised CHW.
    pub fn multi_crop(&self, image: &RgbImage, seed: u64, epoch: u64, index: u64) -> Vec<Planar> {
        let planar = Planar::from_rgb(image);
        let base = SplitMix64::for_sample(seed, epoch, index);
        self.views()
            .iter()
            .enumerate()
            .map(|(k, spec)| self.view(&planar, spec, &mut base.fork(k as u64)))
            .collect()
    }
}

/// Evaluation transform: resize the shorter side to `max(resize, crop)` (bilinear, antialiased), centre-crop
/// `crop` x `crop`, normalise. No randomness.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalTransform {
    pub resize: usize,
    pub crop: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl EvalTransform {
    /// Resize the shorter side to `size` and take the central square.
    pub fn square(size: usize) -> Self {
        Self {
            resize: size,
            crop: size,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }

    /// Where the transform puts an image of `w` x `h`: the resized size (rw, rh) and the crop's top-left
    /// corner (x0, y0) in it (the crop is `crop` square).
    pub fn geometry(&self, w: usize, h: usize) -> (usize, usize, usize, usize) {
        // torchvision Resize(int): shorter side = size, longer side = int(size * long / short).
        // A crop larger than the resize would need padding; resize to at least the crop instead.
        let short = self.resize.max(self.crop);
        let (rw, rh) = if w <= h {
            (short, (short * h / w.max(1)).max(short))
        } else {
            ((short * w / h.max(1)).max(short), short)
        };
        // torchvision CenterCrop rounds the offset: int(round((size_in - size_out) / 2)).
        let x0 = ((rw - self.crop) as f64 / 2.0).round() as usize;
        let y0 = ((rh - self.crop) as f64 / 2.0).round() as usize;
        (rw, rh, x0, y0)
    }

    pub fn apply(&self, image: &RgbImage) -> Planar {
        let (rw, rh, x0, y0) = self.geometry(image.width, image.height);
        let resized = resize(&Planar::from_rgb(image), rw, rh, Filter::Bilinear, true);
        let crop = self.crop;
        let mut out = Planar::zeros(crop, crop);
        for c in 0..3 {
            let src = resized.plane(c);
            let dst = out.plane_mut(c);
            for y in 0..crop {
                dst[y * crop..(y + 1) * crop]
                    .copy_from_slice(&src[(y0 + y) * rw + x0..(y0 + y) * rw + x0 + crop]);
            }
        }
        colour::normalise(&mut out, self.mean, self.std);
        out
    }
}
