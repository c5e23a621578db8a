//! The thermal twin of a procedural scene (docs/data.md, "Thermal twin"): the same geometry as the RGB image
//! (the object's exact shape mask and the background's gradient and noise), painted as a long-wave infrared picture where
//! brightness is temperature:
//! - background cool, T in about [0.08, 0.43]: a base level, a gentle gradient along the scene's gradient
//!   direction and a faint trace of its value noise;
//! - the object warm, T0 ~ U(0.75, 0.92) at a hot spot inside it, cooling smoothly as
//!   T0 - 0.05 * |(u, v) - hot spot|^2 in its own frame (at least about 0.55 anywhere on the shape);
//! - sensor optics: a Gaussian blur of sigma = side / 64 px (1 px at 64 px), then noise of sigma ~ U(0.008, 0.025)
//!   and 8-bit rounding. The gray value is replicated to three channels.
//!
//! Its random numbers come from a stream of its own, keyed by (seed, "LWIR", index), so the RGB stream is
//! untouched: RGB images are the same with or without their twins.

use super::scene::{approx_normal, ObjectMask, Scene};
use crate::augment::blur::gaussian_kernel;
use crate::data::RgbImage;
use dinonat_engine::SplitMix64;

/// Draws the thermal picture of `scene` with the thermal stream `rng`.
pub(crate) fn render_thermal(scene: &Scene, rng: &mut SplitMix64) -> RgbImage {
    let size = scene.size;
    let base = rng.uniform(0.12, 0.28) as f32;
    let slope = rng.uniform(0.03, 0.1) as f32;
    let mut t = vec![0f32; size * size];
    for y in 0..size {
        for x in 0..size {
            let noise = 0.3 * scene.background.noise(x, y, size, 0);
            t[y * size + x] = base + slope * scene.background.t(x, y, size) + noise;
        }
    }
    let paint = |t: &mut Vec<f32>, x: usize, y: usize, target: f32, a: f32| {
        let v = &mut t[y * size + x];
        *v += a * (target - *v);
    };
    let t0 = rng.uniform(0.75, 0.92) as f32;
    let (hu, hv) = (rng.uniform(-0.4, 0.4) as f32, rng.uniform(-0.4, 0.4) as f32);
    for (x, y, hits, u_sum, v_sum) in scene.object.touched() {
        let (u, v) = (u_sum / hits as f32, v_sum / hits as f32);
        let temp = t0 - 0.05 * ((u - hu).powi(2) + (v - hv).powi(2));
        paint(&mut t, x, y, temp, hits as f32 / ObjectMask::SAMPLES as f32);
    }
    blur_plane(&mut t, size, size as f32 / 64.0);
    let sigma = rng.uniform(0.008, 0.025) as f32;
    let gray: Vec<u8> = t
        .iter()
        .map(|&v| ((v + sigma * approx_normal(rng)).clamp(0.0, 1.0) * 255.0 + 0.5) as u8)
        .collect();
    RgbImage::from_gray(size, size, &gray)
}

/// Separable Gaussian blur of a square `size` x `size` plane, edges clamped (the optics see past the border
/// what lies at it).
fn blur_plane(p: &mut [f32], size: usize, sigma: f32) {
    if sigma <= 0.0 || size == 0 {
        return;
    }
    let k = gaussian_kernel(sigma);
    let r = (k.len() / 2) as isize;
    let at = |i: isize| i.clamp(0, size as isize - 1) as usize;
    let mut tmp = vec![0f32; size * size];
    for y in 0..size {
        for x in 0..size {
            tmp[y * size + x] = k
                .iter()
                .enumerate()
                .map(|(j, w)| w * p[y * size + at(x as isize + j as isize - r)])
                .sum();
        }
    }
    for y in 0..size {
        for x in 0..size {
            p[y * size + x] = k
                .iter()
                .enumerate()
                .map(|(j, w)| w * tmp[at(y as isize + j as isize - r) * size + x])
                .sum();
        }
    }
}
