//! The image type augmentation works on: float RGB, planar (CHW).

use crate::data::RgbImage;

/// A float RGB image, planar (CHW): three planes of width * height values, in [0, 1] before normalisation.
#[derive(Clone, Debug, PartialEq)]
pub struct Planar {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl Planar {
    pub fn zeros(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: vec![0.0; 3 * width * height],
        }
    }

    /// u8 RGB -> [0, 1] planar (torchvision's ToTensor).
    pub fn from_rgb(img: &RgbImage) -> Self {
        let n = img.width * img.height;
        let mut data = vec![0f32; 3 * n];
        for (i, px) in img.pixels.chunks_exact(3).enumerate() {
            for c in 0..3 {
                data[c * n + i] = px[c] as f32 * (1.0 / 255.0);
            }
        }
        Self {
            width: img.width,
            height: img.height,
            data,
        }
    }

    /// Undo `normalise(mean, std)` and quantise to u8 RGB (for pictures of views).
    pub fn to_rgb(&self, mean: [f32; 3], std: [f32; 3]) -> RgbImage {
        let n = self.width * self.height;
        let mut pixels = vec![0u8; 3 * n];
        for i in 0..n {
            for c in 0..3 {
                let v = self.data[c * n + i] * std[c] + mean[c];
                pixels[3 * i + c] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
        RgbImage::new(self.width, self.height, pixels)
    }

    pub fn plane(&self, c: usize) -> &[f32] {
        let n = self.width * self.height;
        &self.data[c * n..(c + 1) * n]
    }

    pub fn plane_mut(&mut self, c: usize) -> &mut [f32] {
        let n = self.width * self.height;
        &mut self.data[c * n..(c + 1) * n]
    }
}
