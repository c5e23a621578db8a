//! The built-in procedural data set: ten classes of shapes on cluttered backgrounds, generated on the fly from
//! (seed, index) alone, so the project trains and tests without any files (docs/data.md has the design).
//!
//! Each image: a two-colour linear gradient at a random angle, plus smooth value noise, plus random blobs and
//! lines (distractors), then ONE object of the sample's class with random colour, size, position, rotation and a
//! shading ramp, sometimes crossed by a line, then pixel noise. Colour, position and background vary independently
//! of the class, so raw pixels classify poorly while a shape-aware feature classifies well. Edges are antialiased
//! by 4x4 supersampling (shapes) or analytic coverage (blobs, lines).

use super::{Dataset, Result, RgbImage, Sample};
use crate::rng::SplitMix64;

pub const PROCEDURAL_CLASSES: [&str; 10] = [
    "circle", "square", "triangle", "cross", "ring", "star", "stripes", "ellipse", "l-shape",
    "arrow",
];

/// Stream tag so procedural content never shares a stream with augmentation of the same (seed, index).
const STREAM: u64 = 0x5052_4F43; // "PROC"

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
}

impl Dataset for Procedural {
    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, i: usize) -> Result<Sample> {
        let label = Self::label(i);
        let mut rng = SplitMix64::keyed(&[self.seed, STREAM, i as u64]);
        Ok(Sample {
            image: render(label, self.size.max(1), &mut rng),
            label: Some(label),
        })
    }

    fn class_names(&self) -> Option<Vec<String>> {
        Some(PROCEDURAL_CLASSES.iter().map(|s| s.to_string()).collect())
    }

    fn describe(&self, i: usize) -> String {
        format!("procedural(seed {})[{i}]", self.seed)
    }
}

/// Is (u, v) inside the shape of `class`, in the object's own frame where the shape spans about [-1, 1]^2?
pub fn inside(class: usize, u: f32, v: f32) -> bool {
    let r2 = u * u + v * v;
    match class {
        0 => r2 <= 0.85 * 0.85,
        1 => u.abs().max(v.abs()) <= 0.75,
        3 => (u.abs() <= 0.28 && v.abs() <= 0.95) || (v.abs() <= 0.28 && u.abs() <= 0.95),
        4 => (0.5 * 0.5..=0.9 * 0.9).contains(&r2),
        6 => u.abs() <= 0.85 && v.abs() <= 0.85 && ((u + 0.85) / 0.34) as i32 % 2 == 0,
        7 => u * u + (v / 0.45) * (v / 0.45) <= 1.0,
        2 | 5 | 8 | 9 => in_polygon(&polygons()[class], u, v),
        _ => false,
    }
}

/// The polygonal classes' outlines (triangle, star, L, arrow), built once.
fn polygons() -> &'static [Vec<(f32, f32)>; 10] {
    static POLYGONS: std::sync::OnceLock<[Vec<(f32, f32)>; 10]> = std::sync::OnceLock::new();
    POLYGONS.get_or_init(|| {
        let mut p: [Vec<(f32, f32)>; 10] = Default::default();
        p[2] = regular_polygon::<3>(1.0, 1.0).to_vec();
        p[5] = regular_polygon::<10>(1.0, 0.42).to_vec();
        p[8] = vec![
            (-0.8, -0.8),
            (-0.3, -0.8),
            (-0.3, 0.3),
            (0.8, 0.3),
            (0.8, 0.8),
            (-0.8, 0.8),
        ];
        p[9] = vec![
            (-0.9, -0.18),
            (0.2, -0.18),
            (0.2, -0.6),
            (0.95, 0.0),
            (0.2, 0.6),
            (0.2, 0.18),
            (-0.9, 0.18),
        ];
        p
    })
}

/// N vertices on a circle, alternating radii `r_even` / `r_odd` (a star when they differ), first vertex up.
fn regular_polygon<const N: usize>(r_even: f32, r_odd: f32) -> [(f32, f32); N] {
    std::array::from_fn(|k| {
        let a = -std::f32::consts::FRAC_PI_2 + k as f32 * std::f32::consts::TAU / N as f32;
        let r = if k % 2 == 0 { r_even } else { r_odd };
        (r * a.cos(), r * a.sin())
    })
}

/// Even-odd rule point-in-polygon.
fn in_polygon(p: &[(f32, f32)], x: f32, y: f32) -> bool {
    let mut inside = false;
    let mut j = p.len() - 1;
    for i in 0..p.len() {
        let ((xi, yi), (xj, yj)) = (p[i], p[j]);
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Linear-light-free HSV -> RGB, h in [0, 1).
pub(crate) fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h6 = (h.rem_euclid(1.0)) * 6.0;
    let i = h6.floor();
    let f = h6 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i as i32 % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

struct Canvas {
    size: usize,
    rgb: Vec<f32>, // interleaved, [0, 1]
}

impl Canvas {
    fn blend(&mut self, x: usize, y: usize, colour: [f32; 3], alpha: f32) {
        let o = (y * self.size + x) * 3;
        for (c, &target) in colour.iter().enumerate() {
            self.rgb[o + c] += alpha * (target - self.rgb[o + c]);
        }
    }

    fn at(&self, x: f32, y: f32) -> [f32; 3] {
        let xi = (x as usize).min(self.size - 1);
        let yi = (y as usize).min(self.size - 1);
        let o = (yi * self.size + xi) * 3;
        [self.rgb[o], self.rgb[o + 1], self.rgb[o + 2]]
    }

    /// A filled ellipse (radii rx, ry, rotation a) with analytic edge coverage of about one pixel.
    #[allow(clippy::too_many_arguments)]
    fn ellipse(
        &mut self,
        cx: f32,
        cy: f32,
        rx: f32,
        ry: f32,
        a: f32,
        colour: [f32; 3],
        alpha: f32,
    ) {
        let (s, c) = a.sin_cos();
        let ext = rx.max(ry) + 1.0;
        for y in pixel_span(cy, ext, self.size) {
            for x in pixel_span(cx, ext, self.size) {
                let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                let (u, v) = ((dx * c + dy * s) / rx, (-dx * s + dy * c) / ry);
                // Distance to the edge in pixels, approximated by the normalised radius times the mean radius.
                let d = ((u * u + v * v).sqrt() - 1.0) * 0.5 * (rx + ry);
                let cover = (0.5 - d).clamp(0.0, 1.0);
                if cover > 0.0 {
                    self.blend(x, y, colour, alpha * cover);
                }
            }
        }
    }

    /// A line segment of the given half-width with analytic coverage.
    fn line(
        &mut self,
        p0: (f32, f32),
        p1: (f32, f32),
        half_width: f32,
        colour: [f32; 3],
        alpha: f32,
    ) {
        let (ex, ey) = (p1.0 - p0.0, p1.1 - p0.1);
        let len2 = (ex * ex + ey * ey).max(1e-6);
        let ext = half_width + 1.0;
        let (mid_x, half_x) = ((p0.0 + p1.0) / 2.0, (p0.0 - p1.0).abs() / 2.0 + ext);
        let (mid_y, half_y) = ((p0.1 + p1.1) / 2.0, (p0.1 - p1.1).abs() / 2.0 + ext);
        for y in pixel_span(mid_y, half_y, self.size) {
            for x in pixel_span(mid_x, half_x, self.size) {
                let (px, py) = (x as f32 + 0.5 - p0.0, y as f32 + 0.5 - p0.1);
                let t = ((px * ex + py * ey) / len2).clamp(0.0, 1.0);
                let (dx, dy) = (px - t * ex, py - t * ey);
                let cover = (half_width + 0.5 - (dx * dx + dy * dy).sqrt()).clamp(0.0, 1.0);
                if cover > 0.0 {
                    self.blend(x, y, colour, alpha * cover);
                }
            }
        }
    }
}

fn pixel_span(centre: f32, ext: f32, size: usize) -> std::ops::Range<usize> {
    let lo = (centre - ext).floor().max(0.0) as usize;
    let hi = ((centre + ext).ceil().max(0.0) as usize).min(size);
    lo.min(hi)..hi
}

fn random_colour(rng: &mut SplitMix64) -> [f32; 3] {
    [
        rng.next_f64() as f32,
        rng.next_f64() as f32,
        rng.next_f64() as f32,
    ]
}

fn render(class: usize, size: usize, rng: &mut SplitMix64) -> RgbImage {
    let n = size as f32;
    let mut canvas = Canvas {
        size,
        rgb: vec![0.0; size * size * 3],
    };

    // Background: gradient between two colours along a random direction, plus smooth value noise on a 5x5 grid.
    let (c0, c1) = (random_colour(rng), random_colour(rng));
    let (gs, gc) = (rng.uniform(0.0, std::f64::consts::TAU) as f32).sin_cos();
    const G: usize = 5;
    let grid: Vec<f32> = (0..G * G * 3)
        .map(|_| rng.uniform(-0.15, 0.15) as f32)
        .collect();
    for y in 0..size {
        for x in 0..size {
            let (fx, fy) = ((x as f32 + 0.5) / n, (y as f32 + 0.5) / n);
            let t = (((fx - 0.5) * gc + (fy - 0.5) * gs) * std::f32::consts::FRAC_1_SQRT_2 + 0.5)
                .clamp(0.0, 1.0);
            let (gx, gy) = (fx * (G - 1) as f32, fy * (G - 1) as f32);
            let (ix, iy) = ((gx as usize).min(G - 2), (gy as usize).min(G - 2));
            let (ax, ay) = (smooth(gx - ix as f32), smooth(gy - iy as f32));
            let o = (y * size + x) * 3;
            for c in 0..3 {
                let g = |i: usize, j: usize| grid[(j * G + i) * 3 + c];
                let noise = (1.0 - ay) * ((1.0 - ax) * g(ix, iy) + ax * g(ix + 1, iy))
                    + ay * ((1.0 - ax) * g(ix, iy + 1) + ax * g(ix + 1, iy + 1));
                canvas.rgb[o + c] = c0[c] + t * (c1[c] - c0[c]) + noise;
            }
        }
    }

    // Distractors: small soft blobs and thin lines.
    for _ in 0..rng.range(3, 9) {
        let colour = random_colour(rng);
        let alpha = rng.uniform(0.4, 0.9) as f32;
        if rng.bernoulli(0.5) {
            let (cx, cy) = (
                rng.uniform(0.0, 1.0) as f32 * n,
                rng.uniform(0.0, 1.0) as f32 * n,
            );
            let (rx, ry) = (
                rng.uniform(0.02, 0.08) as f32 * n,
                rng.uniform(0.02, 0.08) as f32 * n,
            );
            let a = rng.uniform(0.0, std::f64::consts::PI) as f32;
            canvas.ellipse(cx, cy, rx.max(0.7), ry.max(0.7), a, colour, alpha);
        } else {
            let p0 = (
                rng.uniform(0.0, 1.0) as f32 * n,
                rng.uniform(0.0, 1.0) as f32 * n,
            );
            let p1 = (
                rng.uniform(0.0, 1.0) as f32 * n,
                rng.uniform(0.0, 1.0) as f32 * n,
            );
            canvas.line(
                p0,
                p1,
                rng.uniform(0.3, 0.012 * n as f64 + 0.3) as f32,
                colour,
                alpha,
            );
        }
    }

    // The object: half-extent r, centre kept inside the image, rotation a.
    let r = rng.uniform(0.2, 0.38) as f32 * n;
    let cx = rng.uniform(r as f64, (n - r) as f64) as f32;
    let cy = rng.uniform(r as f64, (n - r) as f64) as f32;
    let (sa, ca) = (rng.uniform(0.0, std::f64::consts::TAU) as f32).sin_cos();
    let under = canvas.at(cx, cy);
    let mut colour = hsv_to_rgb(
        rng.next_f64() as f32,
        rng.uniform(0.5, 1.0) as f32,
        rng.uniform(0.55, 1.0) as f32,
    );
    for _ in 0..8 {
        // Keep the object visible against what lies under its centre.
        let dist: f32 = (0..3)
            .map(|c| (colour[c] - under[c]).powi(2))
            .sum::<f32>()
            .sqrt();
        if dist > 0.4 {
            break;
        }
        colour = hsv_to_rgb(
            rng.next_f64() as f32,
            rng.uniform(0.5, 1.0) as f32,
            rng.uniform(0.3, 1.0) as f32,
        );
    }
    let shade = rng.uniform(-0.25, 0.25) as f32; // brightness ramp along the object's own u axis
    const SS: usize = 4;
    let ext = r * std::f32::consts::SQRT_2 + 1.0;
    for y in pixel_span(cy, ext, size) {
        for x in pixel_span(cx, ext, size) {
            let (mut hits, mut u_sum) = (0, 0.0);
            for sy in 0..SS {
                for sx in 0..SS {
                    let dx = x as f32 + (sx as f32 + 0.5) / SS as f32 - cx;
                    let dy = y as f32 + (sy as f32 + 0.5) / SS as f32 - cy;
                    let (u, v) = ((dx * ca + dy * sa) / r, (-dx * sa + dy * ca) / r);
                    if inside(class, u, v) {
                        hits += 1;
                        u_sum += u;
                    }
                }
            }
            if hits > 0 {
                let k = 1.0 + shade * u_sum / hits as f32;
                let c = [colour[0] * k, colour[1] * k, colour[2] * k];
                canvas.blend(x, y, c, hits as f32 / (SS * SS) as f32);
            }
        }
    }

    // Sometimes a line crosses the object (partial occlusion).
    if rng.bernoulli(0.3) {
        let p0 = (rng.uniform(0.0, 1.0) as f32 * n, 0.0);
        let p1 = (rng.uniform(0.0, 1.0) as f32 * n, n);
        canvas.line(p0, p1, 0.5, random_colour(rng), 0.8);
    }

    // Pixel noise, then 8-bit quantisation (+0.5 then truncation = rounding, the value being non-negative).
    let sigma = rng.uniform(0.01, 0.05) as f32;
    let pixels = canvas
        .rgb
        .iter()
        .map(|&v| ((v + sigma * approx_normal(rng)).clamp(0.0, 1.0) * 255.0 + 0.5) as u8)
        .collect();
    RgbImage::new(size, size, pixels)
}

/// A cheap standard-normal-like draw for pixel noise: the Irwin-Hall sum of four 16-bit uniforms from one
/// 64-bit draw, centred and scaled to unit variance (Box-Muller's log and cosine per pixel cost more than the
/// rest of the image).
fn approx_normal(rng: &mut SplitMix64) -> f32 {
    let r = rng.next_u64();
    let sum: u64 = (0..4).map(|k| (r >> (16 * k)) & 0xFFFF).sum();
    (sum as f32 / 65536.0 - 2.0) * 3f32.sqrt()
}

fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}
