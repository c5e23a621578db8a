//! Separable resampling with an antialiasing kernel (docs/augmentation.md, "Resize").
//!
//! The convolution-based scheme of Pillow's `ImagingResample` (which torchvision follows with `antialias=True`):
//! for output pixel x with centre c = (x + 0.5) * scale in input coordinates (scale = in / out), the taps are the
//! input pixels j whose centres lie within `support * max(scale, 1)` of c, weighted by
//! `filter((j + 0.5 - c) / max(scale, 1))` and normalised to sum 1. Stretching the kernel by the scale when
//! downscaling is the antialias: every input pixel contributes, nothing aliases. Upscaling is plain interpolation.

use super::planar::Planar;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Triangle kernel, support 1.
    Bilinear,
    /// Keys cubic convolution with a = -0.5 (Pillow's choice), support 2.
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => (1.0 - x).max(0.0),
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// The taps of one output pixel: first input index and normalised weights.
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

/// Taps for resampling `in_size` input pixels to `out_size` output pixels.
fn taps(in_size: usize, out_size: usize, filter: Filter, antialias: bool) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = if antialias { scale.max(1.0) } else { 1.0 };
    let support = filter.support() * filter_scale;
    (0..out_size)
        .map(|x| {
            let centre = (x as f64 + 0.5) * scale;
            let lo = ((centre - support + 0.5).floor().max(0.0) as usize).min(in_size - 1);
            let hi = ((centre + support + 0.5).floor() as usize).clamp(lo + 1, in_size);
            let mut w: Vec<f64> = (lo..hi)
                .map(|j| filter.weight((j as f64 - centre + 0.5) / filter_scale))
                .collect();
            let sum: f64 = w.iter().sum();
            if sum != 0.0 {
                w.iter_mut().for_each(|v| *v /= sum);
            } else {
                // Can only happen for degenerate kernels; fall back to the nearest pixel.
                w.iter_mut().for_each(|v| *v = 0.0);
                w[((centre.floor() as usize).clamp(lo, hi - 1)) - lo] = 1.0;
            }
            Taps {
                start: lo,
                weights: w.into_iter().map(|v| v as f32).collect(),
            }
        })
        .collect()
}

/// Resample the region (x0, y0, w, h) of `src` to out_w x out_h. Taps stay inside the region (the region is
/// cropped first, as torchvision's `resized_crop` does). Bicubic overshoot is clamped to [0, 1].
pub fn resize_region(
    src: &Planar,
    x0: usize,
    y0: usize,
    w: usize,
    h: usize,
    out_w: usize,
    out_h: usize,
    filter: Filter,
    antialias: bool,
) -> Planar {
    assert!(
        w > 0 && h > 0 && x0 + w <= src.width && y0 + h <= src.height && out_w > 0 && out_h > 0,
        "resize region ({x0}, {y0}, {w}x{h}) -> {out_w}x{out_h} invalid for a {}x{} image",
        src.width,
        src.height
    );
    let tx = taps(w, out_w, filter, antialias);
    let ty = taps(h, out_h, filter, antialias);
    let mut out = Planar::zeros(out_w, out_h);
    let mut rows = vec![0f32; h * out_w]; // horizontal pass of one channel
    for c in 0..3 {
        let plane = src.plane(c);
        for y in 0..h {
            let row = &plane[(y0 + y) * src.width + x0..(y0 + y) * src.width + x0 + w];
            for (x, t) in tx.iter().enumerate() {
                rows[y * out_w + x] = t
                    .weights
                    .iter()
                    .zip(&row[t.start..])
                    .map(|(a, b)| a * b)
                    .sum();
            }
        }
        let dst = out.plane_mut(c);
        for (y, t) in ty.iter().enumerate() {
            let line = &mut dst[y * out_w..(y + 1) * out_w];
            line.fill(0.0);
            for (k, &wk) in t.weights.iter().enumerate() {
                let r = &rows[(t.start + k) * out_w..(t.start + k + 1) * out_w];
                line.iter_mut().zip(r).for_each(|(o, v)| *o += wk * v);
            }
            if filter == Filter::Bicubic {
                line.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
            }
        }
    }
    out
}

/// Resample the whole image.
pub fn resize(src: &Planar, out_w: usize, out_h: usize, filter: Filter, antialias: bool) -> Planar {
    resize_region(
        src, 0, 0, src.width, src.height, out_w, out_h, filter, antialias,
    )
}
