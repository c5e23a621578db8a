//! One procedural scene, drawn once: the random parameters of the background and the object (sampled in a fixed
//! order from the sample's stream), and the object's rasterised coverage on the pixel grid. The visible image
//! ([`Scene::render_rgb`]) and its thermal twin (`super::thermal`) only paint these, so both are pixel-aligned by
//! construction (docs/data.md). The RGB images of every (seed, index) are pinned by checksums in the tests of
//! `super`.

use super::shapes::inside;
use crate::data::RgbImage;
use dinonat_engine::SplitMix64;

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
    pub object: ObjectMask,
    /// The object's (dark) colour.
    colour: [f32; 3],
    /// Standard deviation of the RGB pixel noise.
    sigma: f32,
}

impl Scene {
    /// Draws the scene of `class` at `size` px from `rng` (left just before the RGB pixel noise).
    pub(crate) fn sample(class: usize, size: usize, rng: &mut SplitMix64) -> Self {
        let n = size as f32;
        let (c0, c1) = (light_colour(rng), light_colour(rng));
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
        // The object: half-extent r, centre kept inside the image, upright (a tilt of 5-20 degrees cost the
        // network 3-7 k-NN points at the main job's scale, docs/training.md).
        let r = rng.uniform(0.14, 0.26) as f32 * n;
        let cx = rng.uniform(r as f64, (n - r) as f64) as f32;
        let cy = rng.uniform(r as f64, (n - r) as f64) as f32;
        let object = object_mask(class, cx, cy, r, 0.0, 1.0, size);
        // A dark colour of random hue (HSV value 0.2-0.3) on a background whose channels lie in 0.3-1
        // before its +-0.15 noise: the object is darker than what surrounds it almost everywhere.
        let colour = hsv_to_rgb(
            rng.next_f64() as f32,
            rng.uniform(0.5, 1.0) as f32,
            rng.uniform(0.2, 0.3) as f32,
        );
        let sigma = rng.uniform(0.01, 0.05) as f32;
        Scene {
            size,
            class,
            background,
            object,
            colour,
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
            // A shape too small to touch a sub-sample (not reachable at r >= 0.14 side): an empty box at the centre.
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

    /// The visible image: background, the object, then pixel noise from `rng` and 8-bit rounding.
    pub(crate) fn render_rgb(&self, rng: &mut SplitMix64) -> RgbImage {
        let size = self.size;
        let mut rgb = vec![0f32; size * size * 3];
        for y in 0..size {
            for x in 0..size {
                let o = (y * size + x) * 3;
                rgb[o..o + 3].copy_from_slice(&self.background.rgb(x, y, size));
            }
        }
        for (x, y, hits, ..) in self.object.touched() {
            let o = (y * size + x) * 3;
            blend(
                (&mut rgb[o..o + 3]).try_into().unwrap(),
                self.colour,
                hits as f32 / ObjectMask::SAMPLES as f32,
            );
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

/// `px += cover * (colour - px)`.
fn blend(px: &mut [f32; 3], colour: [f32; 3], cover: f32) {
    for (v, &target) in px.iter_mut().zip(&colour) {
        *v += cover * (target - *v);
    }
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

/// A background colour: each channel uniform in [0.3, 1].
fn light_colour(rng: &mut SplitMix64) -> [f32; 3] {
    std::array::from_fn(|_| 0.3 + 0.7 * rng.next_f64() as f32)
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
