//! Non-learned image descriptors for RGB <-> IR retrieval (docs/curation.md, "Why retrieval fails"): the
//! controls `dinonat crossmodal` prints beside the network. Each is computed on the eval-transformed view's
//! luma ([`crate::maps::priors::luminance`]), standardised over the image (mean 0, std 1), then averaged over
//! the cells of the token grid the layout retrieval uses ([`cell_means`]), and the descriptor standardised again
//! ([`layout_descriptor`] with one channel), so that it is compared by the same cosine as the network's:
//! - [`Descriptor::Luminance`]: the luma itself per cell (where the image is bright);
//! - [`Descriptor::Gradient`]: |∇Y| (central differences) per cell, blind to the sign of a contrast;
//! - [`Descriptor::SignedGradient`]: the positive and negative parts of ∂Y/∂x and ∂Y/∂y per cell (4 values
//!   per cell): the same edges, but a dark-to-bright step and a bright-to-dark one land in different values.

use super::Result;
use crate::maps::priors::{cell_means, luminance};
use crate::retrieval::layout_descriptor;
use dinonat_train::augment::Planar;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Descriptor {
    Luminance,
    Gradient,
    SignedGradient,
}

impl Descriptor {
    pub const ALL: [Descriptor; 3] = [
        Descriptor::Luminance,
        Descriptor::Gradient,
        Descriptor::SignedGradient,
    ];

    /// The name in reports and JSON keys.
    pub fn name(self) -> &'static str {
        match self {
            Descriptor::Luminance => "luminance",
            Descriptor::Gradient => "gradient",
            Descriptor::SignedGradient => "signed_gradient",
        }
    }
}

/// Central differences (∂/∂x, ∂/∂y) of a `w` x `h` image at interior pixel (x, y).
fn central_differences(y: &[f32], w: usize, x: usize, row: usize) -> (f32, f32) {
    (
        y[row * w + x + 1] - y[row * w + x - 1],
        y[(row + 1) * w + x] - y[(row - 1) * w + x],
    )
}

/// The gradient maps of the luma `y` (`w` x `h`; 0 on the border): one map |∇Y| for `Gradient`, four maps
/// max(±∂Y/∂x, 0), max(±∂Y/∂y, 0) one after the other for `SignedGradient`.
pub fn gradient_maps(y: &[f32], w: usize, h: usize, signed: bool) -> Vec<f32> {
    let maps = if signed { 4 } else { 1 };
    let mut out = vec![0.0f32; maps * w * h];
    for row in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            let (gx, gy) = central_differences(y, w, x, row);
            let at = row * w + x;
            if signed {
                for (k, v) in [gx.max(0.0), (-gx).max(0.0), gy.max(0.0), (-gy).max(0.0)]
                    .into_iter()
                    .enumerate()
                {
                    out[k * w * h + at] = v;
                }
            } else {
                out[at] = (gx * gx + gy * gy).sqrt();
            }
        }
    }
    out
}

/// The descriptor of one view on a token `grid`, standardised (see the module doc).
pub fn descriptor(view: &Planar, kind: Descriptor, grid: (usize, usize)) -> Result<Vec<f32>> {
    let (w, h) = (view.width, view.height);
    let mut y = luminance(view);
    let n = y.len();
    y = layout_descriptor(&y, n, 1)?;
    let d: Vec<f32> = match kind {
        Descriptor::Luminance => cell_means(&y, w, h, grid),
        Descriptor::Gradient => cell_means(&gradient_maps(&y, w, h, false), w, h, grid),
        Descriptor::SignedGradient => gradient_maps(&y, w, h, true)
            .chunks(w * h)
            .flat_map(|m| cell_means(m, w, h, grid))
            .collect(),
    };
    let len = d.len();
    Ok(layout_descriptor(&d, len, 1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradients_of_a_step_by_hand() {
        // 4 x 3 image with a dark-to-bright step between columns 1 and 2 (values 0, 0, 1, 1).
        let y: Vec<f32> = (0..12)
            .map(|i| if i % 4 >= 2 { 1.0 } else { 0.0 })
            .collect();
        let g = gradient_maps(&y, 4, 3, false);
        // Interior pixels (1, 1) and (2, 1): ∂/∂x = 1 - 0 for both; border 0.
        assert_eq!(g, vec![0., 0., 0., 0., 0., 1., 1., 0., 0., 0., 0., 0.]);
        let s = gradient_maps(&y, 4, 3, true);
        // A rising step lands in max(∂x, 0) only; the bright-to-dark mirror lands in max(-∂x, 0).
        assert_eq!(&s[..12], &g[..]);
        assert!(s[12..].iter().all(|&v| v == 0.0));
        let mirror: Vec<f32> = y.iter().map(|v| 1.0 - v).collect();
        let m = gradient_maps(&mirror, 4, 3, true);
        assert_eq!(&m[12..24], &g[..]);
        assert!(m[..12].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn descriptors_are_standardised_and_ignore_brightness_and_contrast() {
        let mut view = Planar::zeros(16, 16);
        for (i, v) in view.data.iter_mut().enumerate() {
            *v = ((i * 7919) % 31) as f32 / 31.0 - 0.5;
        }
        let mut brighter = view.clone();
        brighter.data.iter_mut().for_each(|v| *v = 2.0 * *v + 0.3);
        for kind in Descriptor::ALL {
            let a = descriptor(&view, kind, (4, 4)).unwrap();
            let b = descriptor(&brighter, kind, (4, 4)).unwrap();
            let n = a.len() as f32;
            let mean = a.iter().sum::<f32>() / n;
            let var = a.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
            assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4, "{kind:?}");
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(worst < 1e-3, "{kind:?}: {worst}");
        }
    }
}
