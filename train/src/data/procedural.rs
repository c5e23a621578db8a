//! The built-in procedural data set: ten classes of shapes on cluttered backgrounds, generated on the fly from
//! (seed, index) alone, so the project trains and tests without any files (docs/data.md has the design).
//!
//! Each image: a two-colour linear gradient of light random colours at a random angle, plus smooth value noise,
//! then ONE small upright object of the sample's class anywhere in the image, with a random dark colour and size,
//! then pixel noise. Position, size, hue and background vary independently of the class,
//! so raw pixels classify poorly while a shape-aware feature classifies well. Edges are antialiased by 4x4
//! supersampling.
//!
//! The scene's geometry is drawn once ([`scene`]) and painted twice: as the RGB image and, on request
//! ([`Procedural::pair`]), as a pixel-aligned thermal twin ([`thermal`]).

mod scene;
mod shapes;
mod thermal;

pub(crate) use scene::hsv_to_rgb;
pub use scene::ObjectBox;
pub use shapes::inside;

use super::{Dataset, Result, RgbImage, Sample};
use dinonat_engine::SplitMix64;
use scene::Scene;

pub const PROCEDURAL_CLASSES: [&str; 10] = [
    "circle", "square", "triangle", "cross", "ring", "star", "stripes", "ellipse", "l-shape",
    "arrow",
];

/// Stream tag so procedural content never shares a stream with augmentation of the same (seed, index).
const STREAM: u64 = 0x5052_4F43; // "PROC"
/// Stream tag of the thermal twin's own draws (temperatures, sensor noise).
const THERMAL_STREAM: u64 = 0x4C57_4952; // "LWIR"

/// One procedural sample with its thermal twin: pixel-aligned, same scene.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProceduralPair {
    /// The visible image (identical to `Procedural::get(i).image`).
    pub rgb: RgbImage,
    /// The long-wave infrared rendering, gray replicated to three channels.
    pub thermal: RgbImage,
    pub label: usize,
    /// The pixels the object's shape touches.
    pub object_box: ObjectBox,
}

#[derive(Clone, Debug)]
pub struct Procedural {
    pub seed: u64,
    pub len: usize,
    /// Side of the square images in pixels.
    pub size: usize,
}

impl Procedural {
    pub const DEFAULT_SIZE: usize = 64;

    /// `len` images of `size` x `size` pixels; different seeds give different sets (use one seed for train and
    /// another for validation).
    pub fn new(seed: u64, len: usize, size: usize) -> Self {
        Self { seed, len, size }
    }

    /// `len` images of [`Procedural::DEFAULT_SIZE`] pixels.
    pub fn with_default_size(seed: u64, len: usize) -> Self {
        Self::new(seed, len, Self::DEFAULT_SIZE)
    }

    /// The class of sample i: classes cycle, so any 10 consecutive indices hold each class once.
    pub fn label(i: usize) -> usize {
        i % PROCEDURAL_CLASSES.len()
    }

    /// The scene of sample i and the stream left where the RGB pixel noise starts.
    fn scene(&self, i: usize) -> (Scene, SplitMix64) {
        let mut rng = SplitMix64::keyed(&[self.seed, STREAM, i as u64]);
        let scene = Scene::sample(Self::label(i), self.size.max(1), &mut rng);
        (scene, rng)
    }

    /// Sample i as an RGB image, its thermal twin and the object's box; the geometry is drawn once.
    pub fn pair(&self, i: usize) -> ProceduralPair {
        let (scene, mut rng) = self.scene(i);
        let mut thermal_rng = SplitMix64::keyed(&[self.seed, THERMAL_STREAM, i as u64]);
        ProceduralPair {
            rgb: scene.render_rgb(&mut rng),
            thermal: thermal::render_thermal(&scene, &mut thermal_rng),
            label: scene.class,
            object_box: scene.object_box(),
        }
    }

    /// The thermal twin of sample i alone.
    pub fn thermal(&self, i: usize) -> RgbImage {
        let (scene, _) = self.scene(i);
        let mut thermal_rng = SplitMix64::keyed(&[self.seed, THERMAL_STREAM, i as u64]);
        thermal::render_thermal(&scene, &mut thermal_rng)
    }

    /// The pixel box of sample i's object (for detection labels).
    pub fn object_box(&self, i: usize) -> ObjectBox {
        self.scene(i).0.object_box()
    }
}

impl Dataset for Procedural {
    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, i: usize) -> Result<Sample> {
        let (scene, mut rng) = self.scene(i);
        Ok(Sample {
            image: scene.render_rgb(&mut rng),
            label: Some(scene.class),
        })
    }

    fn class_names(&self) -> Option<Vec<String>> {
        Some(PROCEDURAL_CLASSES.iter().map(|s| s.to_string()).collect())
    }

    fn describe(&self, i: usize) -> String {
        format!("procedural(seed {})[{i}]", self.seed)
    }
}

#[cfg(test)]
mod tests;
