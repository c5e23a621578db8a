//! One procedural scene, drawn once: the random parameters of the background, the distractors, the object and
//! the occluder (sampled in a fixed order from the sample's stream), and their rasterised coverage on the pixel
//! grid. The visible image ([`Scene::render_rgb`]) and its thermal twin (`super::thermal`) only paint these
//! layers, so both are pixel-aligned by construction (docs/data.md).
//!
//! The draw order and every float expression are those of the original single-pass renderer: the RGB images of
//! every (seed, index) are unchanged (pinned by checksums in the tests of `super`).

use super::{inside, SplitMix64};
use crate::data::RgbImage;

/// Side of the value-noise grid of the background.
const G: usize = 5;
/// Supersampling factor per axis of the object's shape.
const SS: usize = 4;

/// The background: a gradient between two colours along a direction, plus smooth value noise.
pub(crate) struct Background {
    c0: [f32; 3],
    c1: [f32; 3],
    /// sin and cos of the gradient's direction.
    gs: f32,
    gc: f32,
    /// Per-channel offsets on a G x G grid, `[(j * G + i) * 3 + c]`.
    grid: Vec<f32>,
}

impl Background {
    /// Position along the gradient of pixel (x, y), in [0, 1].
    pub(crate) fn t(&self, x: usize, y: usize, size: usize) -> f32 {
        let n = size as f32;
        let (fx, fy) = ((x as f32 + 0.5) / n, (y as f32 + 0.5) / n);
        (((fx - 0.5) * self.gc + (fy - 0.5) * self.gs) * std::f32::consts::FRAC_1_SQRT_2 + 0.5)
            .clamp(0.0, 1.0)
    }

    /// The smooth noise of channel c at pixel (x, y).
    pub(crate) fn noise(&self, x: usize, y: usize, size: usize, c: usize) -> f32 {
        let n = size as f32;
        let (fx, fy) = ((x as f32 + 0.5) / n, (y as f32 + 0.5) / n);
        let (gx, gy) = (fx * (G - 1) as f32, fy * (G - 1) as f32);
        let (ix, iy) = ((gx as usize).min(G - 2), (gy as usize).min(G - 2));
        let (ax, ay) = (smooth(gx - ix as f32), smooth(gy - iy as f32));
        let g = |i: usize, j: usize| self.grid[(j * G + i) * 3 + c];
        (1.0 - ay) * ((1.0 - ax) * g(ix, iy) + ax * g(ix + 1, iy))
            + ay * ((1.0 - ax) * g(ix, iy + 1) + ax * g(ix + 1, iy + 1))
    }

    fn rgb(&self, x: usize, y: usize, size: usize) -> [f32; 3] {
        let t = self.t(x, y, size);
        std::array::from_fn(|c| {
            self.c0[c] + t * (self.c1[c] - self.c0[c]) + self.noise(x, y, size, c)
        })
    }
}

/// Antialiased coverage in [0, 1] of one shape on a window of the pixel grid; pixels outside the window and
/// pixels of zero coverage are not painted.
pub(crate) struct Layer {
    pub x0: usize,
    pub y0: usize,
    pub w: usize,
    pub h: usize,
    pub cover: Vec<f32>,
}

impl Layer {
    fn rasterise(
        xs: std::ops::Range<usize>,
        ys: std::ops::Range<usize>,
        f: impl Fn(usize, usize) -> f32,
    ) -> Self {
        let (x0, y0, w, h) = (xs.start, ys.start, xs.len(), ys.len());
        let mut cover = Vec::with_capacity(w * h);
        for y in ys {
            for x in xs.clone() {
                cover.push(f(x, y));
            }
        }
        Self {
            x0,
            y0,
            w,
            h,
            cover,
        }
    }

    /// (x, y, coverage) of the painted pixels, rows top to bottom.
    pub(crate) fn painted(&self) -> impl Iterator<Item = (usize, usize, f32)> + '_ {
        self.cover
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0.0)
            .map(|(k, &c)| (self.x0 + k % self.w.max(1), self.y0 + k / self.w.max(1), c))
    }

    fn at(&self, x: usize, y: usize) -> f32 {
        if (self.x0..self.x0 + self.w).contains(&x) && (self.y0..self.y0 + self.h).contains(&y) {
            self.cover[(y - self.y0) * self.w + (x - self.x0)]
        } else {
            0.0
        }
    }
}

/// A distractor or the occluder: its coverage, colour and opacity.
pub(crate) struct Stroke {
    pub layer: Layer,
    pub colour: [f32; 3],
    pub alpha: f32,
}

/// The object's shape on its window: per pixel the number of the SS x SS sub-samples inside the shape and the
/// sums of their object-frame coordinates u and v (for shading).
pub(crate) struct ObjectMask {
    pub x0: usize,
    pub y0: usize,
    pub w: usize,
    pub hits: Vec<u8>,
    pub u_sum: Vec<f32>,
    pub v_sum: Vec<f32>,
}

impl ObjectMask {
    /// Sub-samples per pixel.
    pub(crate) const SAMPLES: usize = SS * SS;

    /// (x, y, hits, u_sum, v_sum) of the pixels the shape touches.
    pub(crate) fn touched(&self) -> impl Iterator<Item = (usize, usize, u8, f32, f32)> + '_ {
        (0..self.hits.len()).filter(|&k| self.hits[k] > 0).map(|k| {
            (
                self.x0 + k % self.w,
                self.y0 + k / self.w,
                self.hits[k],
                self.u_sum[k],
                self.v_sum[k],
            )
        })
    }
}

/// The object's pixel box: the pixels its shape touches are x0..x1, y0..y1 (ends exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectBox {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

impl ObjectBox {
    /// YOLO's normalised (cx, cy, w, h) in an image of `size` x `size`.
    pub fn yolo(&self, size: usize) -> [f64; 4] {
        let s = size.max(1) as f64;
        let (x0, y0, x1, y1) = (
            self.x0 as f64,
            self.y0 as f64,
            self.x1 as f64,
            self.y1 as f64,
        );
        [
            (x0 + x1) / (2.0 * s),
            (y0 + y1) / (2.0 * s),
            (x1 - x0) / s,
            (y1 - y0) / s,
        ]
    }
}

/// Everything of one sample but the pixel noise.
pub(crate) struct Scene {
    pub size: usize,
    pub class: usize,
    pub background: Background,
    pub distractors: Vec<Stroke>,
    pub object: ObjectMask,
    /// The object's colour and brightness ramp along u.
    colour: [f32; 3],
    shade: f32,
    pub occluder: Option<Stroke>,
    /// Standard deviation of the RGB pixel noise.
    sigma: f32,
}

impl Scene {
    /// Draws the scene of `class` at `size` px from `rng` (left just before the RGB pixel noise).
    pub(crate) fn sample(class: usize, size: usize, rng: &mut SplitMix64) -> Self {
        let n = size as f32;
        let (c0, c1) = (random_colour(rng), random_colour(rng));
        let (gs, gc) = (rng.uniform(0.0, std::f64::consts::TAU) as f32).sin_cos();
        let grid: Vec<f32> = (0..G * G * 3)
            .map(|_| rng.uniform(-0.15, 0.15) as f32)
            .collect();
        let background = Background {
            c0,
            c1,
            gs,
            gc,
            grid,
        };

        // Distractors: small soft blobs and thin lines.
        let mut distractors = Vec::new();
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
                let layer = ellipse(cx, cy, rx.max(0.7), ry.max(0.7), a, size);
                distractors.push(Stroke {
                    layer,
                    colour,
                    alpha,
                });
            } else {
                let p0 = (
                    rng.uniform(0.0, 1.0) as f32 * n,
                    rng.uniform(0.0, 1.0) as f32 * n,
                );
                let p1 = (
                    rng.uniform(0.0, 1.0) as f32 * n,
                    rng.uniform(0.0, 1.0) as f32 * n,
                );
                let half_width = rng.uniform(0.3, 0.012 * n as f64 + 0.3) as f32;
                let layer = line(p0, p1, half_width, size);
                distractors.push(Stroke {
                    layer,
                    colour,
                    alpha,
                });
            }
        }

        // The object: half-extent r, centre kept inside the image, rotation a.
        let r = rng.uniform(0.2, 0.38) as f32 * n;
        let cx = rng.uniform(r as f64, (n - r) as f64) as f32;
        let cy = rng.uniform(r as f64, (n - r) as f64) as f32;
        let (sa, ca) = (rng.uniform(0.0, std::f64::consts::TAU) as f32).sin_cos();
        let object = object_mask(class, cx, cy, r, sa, ca, size);
        let under = {
            // What the RGB canvas holds under the centre before the object is drawn.
            let (xi, yi) = ((cx as usize).min(size - 1), (cy as usize).min(size - 1));
            let mut px = background.rgb(xi, yi, size);
            for d in &distractors {
                blend(&mut px, d.colour, d.alpha, d.layer.at(xi, yi));
            }
            px
        };
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

        // Sometimes a line crosses the object (partial occlusion).
        let occluder = rng.bernoulli(0.3).then(|| {
            let p0 = (rng.uniform(0.0, 1.0) as f32 * n, 0.0);
            let p1 = (rng.uniform(0.0, 1.0) as f32 * n, n);
            Stroke {
                layer: line(p0, p1, 0.5, size),
                colour: random_colour(rng),
                alpha: 0.8,
            }
        });
        let sigma = rng.uniform(0.01, 0.05) as f32;
        Scene {
            size,
            class,
            background,
            distractors,
            object,
            colour,
            shade,
            occluder,
            sigma,
        }
    }

    /// The pixels the object's shape touches, as a box.
    pub(crate) fn object_box(&self) -> ObjectBox {
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        for (x, y, ..) in self.object.touched() {
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
        }
        if x1 == 0 {
            // A shape too small to touch a sub-sample (not reachable at r >= 0.2 side): an empty box at the centre.
            let c = self.size / 2;
            return ObjectBox {
                x0: c,
                y0: c,
                x1: c,
                y1: c,
            };
        }
        ObjectBox { x0, y0, x1, y1 }
    }

    /// The visible image: background, distractors, the shaded object, the occluder, then pixel noise from `rng`
    /// and 8-bit rounding.
    pub(crate) fn render_rgb(&self, rng: &mut SplitMix64) -> RgbImage {
        let size = self.size;
        let mut rgb = vec![0f32; size * size * 3];
        for y in 0..size {
            for x in 0..size {
                let o = (y * size + x) * 3;
                rgb[o..o + 3].copy_from_slice(&self.background.rgb(x, y, size));
            }
        }
        let paint = |rgb: &mut Vec<f32>, s: &Stroke| {
            for (x, y, c) in s.layer.painted() {
                let o = (y * size + x) * 3;
                blend(
                    (&mut rgb[o..o + 3]).try_into().unwrap(),
                    s.colour,
                    s.alpha,
                    c,
                );
            }
        };
        for d in &self.distractors {
            paint(&mut rgb, d);
        }
        for (x, y, hits, u_sum, _) in self.object.touched() {
            let k = 1.0 + self.shade * u_sum / hits as f32;
            let c = [self.colour[0] * k, self.colour[1] * k, self.colour[2] * k];
            let o = (y * size + x) * 3;
            blend(
                (&mut rgb[o..o + 3]).try_into().unwrap(),
                c,
                1.0,
                hits as f32 / ObjectMask::SAMPLES as f32,
            );
        }
        if let Some(s) = &self.occluder {
            paint(&mut rgb, s);
        }
        // Pixel noise, then 8-bit quantisation (+0.5 then truncation = rounding, the value being non-negative).
        let sigma = self.sigma;
        let pixels = rgb
            .iter()
            .map(|&v| ((v + sigma * approx_normal(rng)).clamp(0.0, 1.0) * 255.0 + 0.5) as u8)
            .collect();
        RgbImage::new(size, size, pixels)
    }
}

/// `px += alpha * cover * (colour - px)`, the blend of the original canvas (alpha * cover formed first).
fn blend(px: &mut [f32; 3], colour: [f32; 3], alpha: f32, cover: f32) {
    if cover > 0.0 {
        let a = alpha * cover;
        for (v, &target) in px.iter_mut().zip(&colour) {
            *v += a * (target - *v);
        }
    }
}

/// A filled ellipse (radii rx, ry, rotation a) with analytic edge coverage of about one pixel.
fn ellipse(cx: f32, cy: f32, rx: f32, ry: f32, a: f32, size: usize) -> Layer {
    let (s, c) = a.sin_cos();
    let ext = rx.max(ry) + 1.0;
    Layer::rasterise(
        pixel_span(cx, ext, size),
        pixel_span(cy, ext, size),
        |x, y| {
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            let (u, v) = ((dx * c + dy * s) / rx, (-dx * s + dy * c) / ry);
            // Distance to the edge in pixels, approximated by the normalised radius times the mean radius.
            let d = ((u * u + v * v).sqrt() - 1.0) * 0.5 * (rx + ry);
            (0.5 - d).clamp(0.0, 1.0)
        },
    )
}

/// A line segment of the given half-width with analytic coverage.
fn line(p0: (f32, f32), p1: (f32, f32), half_width: f32, size: usize) -> Layer {
    let (ex, ey) = (p1.0 - p0.0, p1.1 - p0.1);
    let len2 = (ex * ex + ey * ey).max(1e-6);
    let ext = half_width + 1.0;
    let (mid_x, half_x) = ((p0.0 + p1.0) / 2.0, (p0.0 - p1.0).abs() / 2.0 + ext);
    let (mid_y, half_y) = ((p0.1 + p1.1) / 2.0, (p0.1 - p1.1).abs() / 2.0 + ext);
    Layer::rasterise(
        pixel_span(mid_x, half_x, size),
        pixel_span(mid_y, half_y, size),
        |x, y| {
            let (px, py) = (x as f32 + 0.5 - p0.0, y as f32 + 0.5 - p0.1);
            let t = ((px * ex + py * ey) / len2).clamp(0.0, 1.0);
            let (dx, dy) = (px - t * ex, py - t * ey);
            (half_width + 0.5 - (dx * dx + dy * dy).sqrt()).clamp(0.0, 1.0)
        },
    )
}

/// The object's shape by SS x SS supersampling around centre (cx, cy), half-extent r, rotation (sin, cos).
fn object_mask(
    class: usize,
    cx: f32,
    cy: f32,
    r: f32,
    sa: f32,
    ca: f32,
    size: usize,
) -> ObjectMask {
    let ext = r * std::f32::consts::SQRT_2 + 1.0;
    let (xs, ys) = (pixel_span(cx, ext, size), pixel_span(cy, ext, size));
    let (x0, y0, w, h) = (xs.start, ys.start, xs.len(), ys.len());
    let (mut hits, mut u_sum, mut v_sum) = (vec![0u8; w * h], vec![0f32; w * h], vec![0f32; w * h]);
    for y in ys {
        for x in xs.clone() {
            let k = (y - y0) * w + (x - x0);
            for sy in 0..SS {
                for sx in 0..SS {
                    let dx = x as f32 + (sx as f32 + 0.5) / SS as f32 - cx;
                    let dy = y as f32 + (sy as f32 + 0.5) / SS as f32 - cy;
                    let (u, v) = ((dx * ca + dy * sa) / r, (-dx * sa + dy * ca) / r);
                    if inside(class, u, v) {
                        hits[k] += 1;
                        u_sum[k] += u;
                        v_sum[k] += v;
                    }
                }
            }
        }
    }
    ObjectMask {
        x0,
        y0,
        w,
        hits,
        u_sum,
        v_sum,
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

/// A cheap standard-normal-like draw for pixel noise: the Irwin-Hall sum of four 16-bit uniforms from one
/// 64-bit draw, centred and scaled to unit variance (Box-Muller's log and cosine per pixel cost more than the
/// rest of the image).
pub(crate) fn approx_normal(rng: &mut SplitMix64) -> f32 {
    let r = rng.next_u64();
    let sum: u64 = (0..4).map(|k| (r >> (16 * k)) & 0xFFFF).sum();
    (sum as f32 / 65536.0 - 2.0) * 3f32.sqrt()
}

fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}
