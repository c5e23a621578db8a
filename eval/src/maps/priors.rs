//! Non-learned maps that score a metric without looking at a network (docs/attention-maps.md, "Priors"): the
//! controls beside every scored attention map.
//! - [`centre_gaussian`]: an isotropic Gaussian centred on the grid, sigma = a quarter of the shorter side;
//! - [`central_square`]: the k tokens nearest the centre (a square, or nearly one), k chosen by the caller (the
//!   network's thresholded area);
//! - [`cell_means`] of [`luminance`]: the image's own brightness per token (ITU-R BT.601 luma of the image as
//!   given: for a false-colour thermal palette only roughly monotone in temperature);
//! - uniform: a constant map; its score is computed in closed form by the caller (the boxes' area fraction, the
//!   expected IoU of random masks).

use dinonat_train::augment::{Planar, IMAGENET_MEAN, IMAGENET_STD};

/// The non-learned maps scored beside the network, in the order of every per-prior array: a centred
/// Gaussian thresholded to the network's mass, a central square of as many tokens as the network's mask, and
/// the image's luminance per token thresholded to the same mass.
pub const PRIORS: [&str; 3] = ["centre_gaussian", "central_square", "intensity"];

/// The maps of [`PRIORS`] for one view on `grid`, with the mass each is thresholded at: the centre Gaussian
/// and the luminance at `mass`, the central square of the network's `kept` tokens whole (mass 1).
pub fn prior_maps(
    view: &Planar,
    grid: (usize, usize),
    kept: usize,
    mass: f64,
) -> [(Vec<f32>, f64); 3] {
    [
        (centre_gaussian(grid), mass),
        (central_square(grid, kept), 1.0),
        (
            cell_means(&luminance(view), view.width, view.height, grid),
            mass,
        ),
    ]
}

/// Luma Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601) of an eval-transformed view, back in [0, 1] units
/// (undoing the ImageNet normalisation): `[height * width]`.
pub fn luminance(view: &Planar) -> Vec<f32> {
    let n = view.width * view.height;
    let unnorm = |c: usize, i: usize| view.data[c * n + i] * IMAGENET_STD[c] + IMAGENET_MEAN[c];
    (0..n)
        .map(|i| 0.299 * unnorm(0, i) + 0.587 * unnorm(1, i) + 0.114 * unnorm(2, i))
        .collect()
}

/// Means of a `w` x `h` image over the cells of a `grid` (rows, cols): pixel (x, y) falls in cell
/// (y * rows / h, x * cols / w), the cell the nearest-neighbour upsampling of a map draws over it.
pub fn cell_means(x: &[f32], w: usize, h: usize, grid: (usize, usize)) -> Vec<f32> {
    let (rows, cols) = grid;
    let (mut sum, mut count) = (vec![0.0f64; rows * cols], vec![0usize; rows * cols]);
    for y in 0..h {
        let r = (y * rows / h).min(rows - 1);
        for xi in 0..w {
            let cell = r * cols + (xi * cols / w).min(cols - 1);
            sum[cell] += x[y * w + xi] as f64;
            count[cell] += 1;
        }
    }
    sum.iter()
        .zip(&count)
        .map(|(&s, &n)| (s / n.max(1) as f64) as f32)
        .collect()
}

/// A centred isotropic Gaussian on the grid, exp(-d² / 2σ²) with d the distance of a token centre from the
/// grid centre (in tokens) and σ = min(rows, cols) / 4.
pub fn centre_gaussian(grid: (usize, usize)) -> Vec<f32> {
    let (rows, cols) = grid;
    let sigma = rows.min(cols) as f64 / 4.0;
    let (cy, cx) = ((rows as f64 - 1.0) / 2.0, (cols as f64 - 1.0) / 2.0);
    (0..rows * cols)
        .map(|j| {
            let (dy, dx) = ((j / cols) as f64 - cy, (j % cols) as f64 - cx);
            (-(dy * dy + dx * dx) / (2.0 * sigma * sigma)).exp() as f32
        })
        .collect()
}

/// A map of 1 on the `k` tokens nearest the grid centre (Chebyshev distance, then Euclidean, then the lower
/// index) and 0 elsewhere: a central square when k is a square of the right parity, otherwise a square with a
/// partial ring.
pub fn central_square(grid: (usize, usize), k: usize) -> Vec<f32> {
    let (rows, cols) = grid;
    let (cy, cx) = ((rows as f64 - 1.0) / 2.0, (cols as f64 - 1.0) / 2.0);
    let distance = |j: usize| {
        let (dy, dx) = (
            ((j / cols) as f64 - cy).abs(),
            ((j % cols) as f64 - cx).abs(),
        );
        (dy.max(dx), dy * dy + dx * dx)
    };
    let mut order: Vec<usize> = (0..rows * cols).collect();
    order.sort_by(|&a, &b| {
        let (da, db) = (distance(a), distance(b));
        da.0.total_cmp(&db.0)
            .then(da.1.total_cmp(&db.1))
            .then(a.cmp(&b))
    });
    let mut map = vec![0.0f32; rows * cols];
    for &j in order.iter().take(k) {
        map[j] = 1.0;
    }
    map
}

/// Expected IoU of two independent uniformly random masks of `a` and `b` of `n` positions: the intersection
/// is hypergeometric with mean a b / n, and |A ∪ B| = a + b - |A ∩ B|; E[IoU] is computed exactly from the
/// hypergeometric distribution.
pub fn random_mask_iou(a: usize, b: usize, n: usize) -> f64 {
    if a == 0 && b == 0 {
        return 1.0;
    }
    let (a, b) = (a.min(n), b.min(n));
    // P(|A ∩ B| = i) = C(a, i) C(n - a, b - i) / C(n, b), in logs.
    let ln_choose = |n: usize, k: usize| ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k);
    let lo = (a + b).saturating_sub(n);
    (lo..=a.min(b))
        .map(|i| {
            let p = (ln_choose(a, i) + ln_choose(n - a, b - i) - ln_choose(n, b)).exp();
            p * i as f64 / (a + b - i) as f64
        })
        .sum()
}

fn ln_factorial(n: usize) -> f64 {
    (2..=n).map(|k| (k as f64).ln()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn central_square_is_the_centre_block() {
        // 16 tokens of an 8 x 8 grid: rows and columns 2..6.
        let m = central_square((8, 8), 16);
        for (j, &v) in m.iter().enumerate() {
            let (r, c) = (j / 8, j % 8);
            let inside = (2..6).contains(&r) && (2..6).contains(&c);
            assert_eq!(v == 1.0, inside, "token ({r}, {c})");
        }
        assert_eq!(central_square((5, 7), 9).iter().sum::<f32>(), 9.0);
        // Odd grid, 9 tokens: the 3 x 3 block around the centre token.
        let m = central_square((5, 5), 9);
        assert!((0..25)
            .all(|j| (m[j] == 1.0) == ((1..4).contains(&(j / 5)) && (1..4).contains(&(j % 5)))));
    }

    #[test]
    fn gaussian_peaks_in_the_centre_and_is_symmetric() {
        let g = centre_gaussian((6, 6));
        let max = g.iter().cloned().fold(0.0f32, f32::max);
        for j in [14, 15, 20, 21] {
            assert_eq!(g[j], max);
        }
        for j in 0..36 {
            assert!(
                (g[j] - g[35 - j]).abs() < 1e-7 && (g[j] - g[(j % 6) * 6 + j / 6]).abs() < 1e-7
            );
        }
    }

    /// A 32 x 32 view, black except a white block over pixels [x0, x1) x [y0, y1), ImageNet-normalised.
    fn view_with_bright_block(x0: usize, x1: usize, y0: usize, y1: usize) -> Planar {
        let mut v = Planar::zeros(32, 32);
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    let lit = (x0..x1).contains(&x) && (y0..y1).contains(&y);
                    v.data[c * 1024 + y * 32 + x] =
                        (f32::from(u8::from(lit)) - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
                }
            }
        }
        v
    }

    #[test]
    fn each_prior_scores_one_on_the_box_it_favours() {
        use crate::maps::boxes::{box_share, token_coverage};
        let grid = (8, 8);
        // A box over the central 24 x 24 pixels of a 32 px crop: token cells 1..7 (4 px each).
        let centre = token_coverage(&[[4.0, 4.0, 28.0, 28.0]], 32, grid);
        // The Gaussian's 60 % mass lies within 1.5 sigma of the centre (sigma = 2 tokens): inside the box.
        assert_eq!(box_share(&centre_gaussian(grid), &centre, 0.6).masked, 1.0);
        // A central square of 16 tokens lies inside it, one of 64 does not.
        assert_eq!(
            box_share(&central_square(grid, 16), &centre, 1.0).masked,
            1.0
        );
        assert!(
            (box_share(&central_square(grid, 64), &centre, 1.0).masked - 36.0 / 64.0).abs() < 1e-12
        );
        // An off-centre box holding the image's only bright pixels: the intensity prior scores 1, the centre
        // priors do not.
        let corner = token_coverage(&[[0.0, 24.0, 8.0, 32.0]], 32, grid);
        let view = view_with_bright_block(0, 8, 24, 32);
        let bright = cell_means(&luminance(&view), 32, 32, grid);
        assert!(
            (bright[7 * 8] - 1.0).abs() < 1e-5,
            "luma of white {}",
            bright[56]
        );
        assert_eq!(box_share(&bright, &corner, 0.6).masked, 1.0);
        assert!(box_share(&centre_gaussian(grid), &corner, 0.6).masked < 0.2);
        assert_eq!(
            box_share(&central_square(grid, 16), &corner, 1.0).masked,
            0.0
        );
    }

    #[test]
    fn cell_means_of_a_ramp_and_random_mask_iou_by_hand() {
        // 4 x 2 image, columns 0..4 valued by x; 2 columns of cells: means 0.5 and 2.5.
        let x: Vec<f32> = (0..8).map(|i| (i % 4) as f32).collect();
        assert_eq!(cell_means(&x, 4, 2, (1, 2)), vec![0.5, 2.5]);
        // Two random singletons among 4: IoU 1 with probability 1/4, else 0.
        assert!((random_mask_iou(1, 1, 4) - 0.25).abs() < 1e-12);
        // Full masks always coincide.
        assert!((random_mask_iou(4, 4, 4) - 1.0).abs() < 1e-12);
        // a = 2, b = 1 of 4: intersection 1 with probability 1/2, IoU 1/2 then: 1/4.
        assert!((random_mask_iou(2, 1, 4) - 0.25).abs() < 1e-12);
    }
}
