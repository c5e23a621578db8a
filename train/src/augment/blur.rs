//! Separable Gaussian blur with reflect padding (docs/augmentation.md, "Blur").
//!
//! The kernel is g_k = exp(-k^2 / (2 sigma^2)) / Z for |k| <= ceil(3 sigma), Z = sum of the taps, applied along
//! rows then columns. DINO blurs with PIL's `GaussianBlur(radius=sigma)`, which approximates the same Gaussian with
//! repeated box filters; the exact kernel is used here.

use super::planar::Planar;

pub fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let radius = ((3.0 * sigma).ceil() as usize).max(1);
    let mut k: Vec<f32> = (0..=2 * radius)
        .map(|i| (-((i as f32 - radius as f32).powi(2)) / (2.0 * sigma * sigma)).exp())
        .collect();
    let z: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= z);
    k
}

/// Reflect an index into 0..n without repeating the edge pixel (…, 2, 1 | 0, 1, 2, … ), any distance away.
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    (if m < n as isize { m } else { period - m }) as usize
}

pub fn gaussian_blur(img: &mut Planar, sigma: f32) {
    let k = gaussian_kernel(sigma);
    let r = (k.len() / 2) as isize;
    let (w, h) = (img.width, img.height);
    let mut tmp = vec![0f32; w * h];
    let mut padded = vec![0f32; w + 2 * r as usize];
    for c in 0..3 {
        let p = img.plane_mut(c);
        for y in 0..h {
            let row = &p[y * w..(y + 1) * w];
            for (i, v) in padded.iter_mut().enumerate() {
                *v = row[reflect(i as isize - r, w)];
            }
            for (x, out) in tmp[y * w..(y + 1) * w].iter_mut().enumerate() {
                *out = k.iter().zip(&padded[x..]).map(|(a, b)| a * b).sum();
            }
        }
        for y in 0..h {
            let out = &mut p[y * w..(y + 1) * w];
            out.fill(0.0);
            for (t, &kt) in k.iter().enumerate() {
                let src = reflect(y as isize + t as isize - r, h);
                out.iter_mut()
                    .zip(&tmp[src * w..(src + 1) * w])
                    .for_each(|(o, v)| *o += kt * v);
            }
        }
    }
}
