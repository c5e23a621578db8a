//! Tests of the attention maps on tiny random-init networks.

use super::figures::{image_maps, pair_figure, FigureOptions, PADDING};
use super::neighbourhood::neighbourhood_attention;
use super::pca::{pca_rgb, principal_components};
use super::pooled::{head_mean, pooled_query_attention, pooled_query_from_qk};
use super::render::{display_factor, upsample_nearest};
use super::{default_level, forward_with_capture};
use dinonat_engine::{no_grad, DType, Rng, Tensor};
use dinonat_model::{Nat, NatConfig};
use dinonat_train::augment::Planar;

fn images(batch: usize, size: usize, seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    rng.normal(&[batch, 3, size, size], 0.0, 1.0, DType::F32)
}

fn pico() -> Nat {
    Nat::new(&NatConfig::from_name("nat_pico").unwrap(), DType::F32, 7).unwrap()
}

#[test]
fn default_level_is_deepest_with_grid_of_14() {
    let mini = NatConfig::nat_mini();
    assert_eq!(default_level(&mini, 224, 224), 2); // 56, 28, 14, 7
    assert_eq!(default_level(&mini, 448, 448), 3); // .., 14
    assert_eq!(default_level(&mini, 64, 64), 0); // 16, 8, 4, 2
    assert_eq!(default_level(&mini, 32, 32), 0); // 8: none reaches 14
}

#[test]
fn capture_gives_the_same_features_as_the_model() {
    let _g = no_grad();
    let nat = pico();
    let x = images(2, 32, 1);
    let (f, cap) = forward_with_capture(&nat, &x, 1).unwrap();
    let reference = nat.forward_features(&x, false, &mut Rng::new(0)).unwrap();
    assert_eq!(
        f.to_vec::<f32>().unwrap(),
        reference.to_vec::<f32>().unwrap()
    );
    assert_eq!(cap.grid, (8, 8));
    assert_eq!(cap.block_inputs.len(), nat.config.depths[1]);
    assert!(forward_with_capture(&nat, &x, 3).is_err());
}

#[test]
fn pooled_query_attention_is_a_distribution_per_head() {
    let _g = no_grad();
    let nat = pico();
    for level in 0..3 {
        let (_, cap) = forward_with_capture(&nat, &images(2, 32, 2), level).unwrap();
        let maps = pooled_query_attention(&nat, &cap).unwrap();
        let n = cap.grid.0 * cap.grid.1;
        let heads = nat.config.heads[level];
        assert_eq!(maps.len(), 2 * heads * n);
        for row in maps.chunks(n) {
            let s: f64 = row.iter().map(|&v| v as f64).sum();
            assert!((s - 1.0).abs() < 1e-5, "level {level}: sum {s}");
            assert!(row.iter().all(|&v| v >= 0.0));
        }
        let mean = head_mean(&maps[..heads * n], heads);
        let s: f64 = mean.iter().map(|&v| v as f64).sum();
        assert!((s - 1.0).abs() < 1e-5);
    }
}

#[test]
fn pooled_query_by_hand() {
    // One head of dim 1, three tokens: q = (1, 2, 3) -> mean 2; k = (0, 1, 2); scale 1.
    // scores (0, 2, 4) -> softmax.
    let a = pooled_query_from_qk(&[1.0, 2.0, 3.0], &[0.0, 1.0, 2.0], 1, 3, 1);
    let z = 1.0 + 2f64.exp() + 4f64.exp();
    let want = [1.0 / z, 2f64.exp() / z, 4f64.exp() / z];
    for (g, w) in a.iter().zip(want) {
        assert!((*g as f64 - w).abs() < 1e-6, "{a:?}");
    }
}

#[test]
fn neighbourhood_weights_cover_the_window_and_sum_to_1() {
    let _g = no_grad();
    let nat = pico(); // kernel 5
    let (_, cap) = forward_with_capture(&nat, &images(1, 32, 3), 0).unwrap(); // 16x16
    let token = 16 + 1; // (1, 1): window clamped to rows/cols 0..5
    let blocks = neighbourhood_attention(&nat, &cap, 0, token).unwrap();
    assert_eq!(blocks.len(), nat.config.depths[0]);
    for b in &blocks {
        assert_eq!(b.keys.len(), 25);
        assert!(b.keys.iter().all(|&k| k / 16 < 5 && k % 16 < 5));
        for row in b.weights.chunks(25) {
            let s: f64 = row.iter().map(|&v| v as f64).sum();
            assert!((s - 1.0).abs() < 1e-5);
        }
        let grid = b.on_grid(0, 256);
        assert_eq!(grid.iter().filter(|&&v| v > 0.0).count(), 25);
    }
    assert!(neighbourhood_attention(&nat, &cap, 0, 256).is_err());
}

#[test]
fn pca_by_hand() {
    // Six tokens in 4-D spread along e0 (±3), e1 (±2), e2 (±1): the components are e0, e1, e2
    // with variances 9/3, 4/3, 1/3.
    #[rustfmt::skip]
    let x = [
        3.0, 0.0, 0.0, 0.0,   -3.0, 0.0, 0.0, 0.0,
        0.0, 2.0, 0.0, 0.0,    0.0, -2.0, 0.0, 0.0,
        0.0, 0.0, 1.0, 0.0,    0.0, 0.0, -1.0, 0.0,
    ];
    let (values, vectors) = principal_components(&x, 4, 3);
    for (v, want) in values.iter().zip([3.0, 4.0 / 3.0, 1.0 / 3.0]) {
        assert!((v - want).abs() < 1e-9, "{values:?}");
    }
    for c in 0..3 {
        assert!((vectors[c * 4 + c] - 1.0).abs() < 1e-9, "{vectors:?}");
    }
    let rgb = pca_rgb(&x, 4);
    // R: token 0 at +3 -> 1, token 1 at -3 -> 0, the rest at 0 -> 0.5; likewise G and B.
    #[rustfmt::skip]
    let want = [
        1.0, 0.5, 0.5,   0.0, 0.5, 0.5,
        0.5, 1.0, 0.5,   0.5, 0.0, 0.5,
        0.5, 0.5, 1.0,   0.5, 0.5, 0.0,
    ];
    for (g, w) in rgb.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{rgb:?}");
    }
}

#[test]
fn upsampling_repeats_each_token_over_its_block() {
    let up = upsample_nearest(&[1.0, 2.0, 3.0, 4.0], (2, 2), 4, 2);
    assert_eq!(up, vec![1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]);
}

#[test]
fn figures_have_the_documented_sizes() {
    let nat = pico();
    let size = 32;
    let mut rng = Rng::new(4);
    let views: Vec<Planar> = (0..2)
        .map(|_| Planar {
            width: size,
            height: size,
            data: rng
                .normal_vec(3 * size * size)
                .iter()
                .map(|&v| v as f32)
                .collect(),
        })
        .collect();
    let options = FigureOptions {
        level: 0,
        mass: Some(0.6),
        pixel: Some((10, 20)),
    };
    let maps = image_maps(&nat, &views, &options).unwrap();
    let d = size * display_factor(size);
    let heads = nat.config.heads[0];
    let m = &maps[0];
    assert_eq!((m.image.width, m.image.height), (d, d));
    let panels = heads + 2; // image, heads, mask
    assert_eq!(m.pooled_figure.width, panels * (d + PADDING) + PADDING);
    assert_eq!(m.pooled_figure.height, d + 2 * PADDING);
    assert_eq!(m.pca_figure.width, 2 * (d + PADDING) + PADDING);
    let nb = m.neighbourhood_figure.as_ref().unwrap();
    assert_eq!(nb.height, nat.config.depths[0] * (d + 2 * PADDING));
    let pair = pair_figure(&maps[0], &maps[1], Some(0.6));
    assert_eq!(pair.width, 2 * (3 * (d + PADDING) + PADDING) + 3 * PADDING);
}
