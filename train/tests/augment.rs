//! Multi-crop augmentation, resampling, photometric transforms, evaluation transform.

use dinonat_engine::SplitMix64;
use dinonat_train::augment::colour::*;
use dinonat_train::augment::*;
use dinonat_train::data::{Dataset, Procedural, RgbImage};
use dinonat_train::grid::write_image_grid;

fn constant(w: usize, h: usize, rgb: [f32; 3]) -> Planar {
    let mut p = Planar::zeros(w, h);
    for (c, v) in rgb.into_iter().enumerate() {
        p.plane_mut(c).fill(v);
    }
    p
}

fn row(values: &[f32]) -> Planar {
    let mut p = Planar::zeros(values.len(), 1);
    for c in 0..3 {
        p.plane_mut(c).copy_from_slice(values);
    }
    p
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "{what}[{i}]: got {g}, want {w} (tol {tol})"
        );
    }
}

#[test]
fn resize_of_constant_image_stays_constant() {
    let img = constant(37, 23, [0.2, 0.55, 0.9]);
    for filter in [Filter::Bilinear, Filter::Bicubic] {
        for (w, h) in [(7, 5), (33, 1), (64, 61), (1, 1), (257, 3)] {
            for antialias in [true, false] {
                let out = resize(&img, w, h, filter, antialias);
                for c in 0..3 {
                    let v = [0.2, 0.55, 0.9][c];
                    assert!(
                        out.plane(c).iter().all(|x| (x - v).abs() < 1e-5),
                        "{filter:?} {w}x{h} aa {antialias}"
                    );
                }
            }
        }
    }
}

#[test]
fn bilinear_resize_matches_hand_computed_cases() {
    // Upscale 2 -> 4 (half-pixel centres): 0, 1/4, 3/4, 1 of the way.
    let up = resize(&row(&[0.0, 1.0]), 4, 1, Filter::Bilinear, true);
    assert_close(up.plane(0), &[0.0, 0.25, 0.75, 1.0], 1e-6, "upscale");
    // Downscale 4 -> 2 with antialias: the triangle is stretched to support 2, taps j = 0..2 and 1..3 with
    // weights (3/4, 3/4, 1/4) / 7/4 and (1/4, 3/4, 3/4) / 7/4.
    let (a, b, c, d) = (0.1f32, 0.4, 0.6, 0.9);
    let down = resize(&row(&[a, b, c, d]), 2, 1, Filter::Bilinear, true);
    let want = [
        (0.75 * a + 0.75 * b + 0.25 * c) / 1.75,
        (0.25 * b + 0.75 * c + 0.75 * d) / 1.75,
    ];
    assert_close(down.plane(1), &want, 1e-6, "antialiased downscale");
    // Without antialias it is plain interpolation at the centres 1.0 and 3.0: means of neighbour pairs.
    let plain = resize(&row(&[a, b, c, d]), 2, 1, Filter::Bilinear, false);
    assert_close(
        plain.plane(2),
        &[(a + b) / 2.0, (c + d) / 2.0],
        1e-6,
        "plain downscale",
    );
}

#[test]
fn resize_region_uses_only_the_region() {
    let mut img = constant(10, 10, [1.0, 1.0, 1.0]);
    for c in 0..3 {
        for y in 2..6 {
            for x in 3..8 {
                img.plane_mut(c)[y * 10 + x] = 0.25;
            }
        }
    }
    let out = resize_region(&img, 3, 2, 5, 4, 9, 7, Filter::Bicubic, true);
    assert!(out.data.iter().all(|v| (v - 0.25).abs() < 1e-5));
}

#[test]
fn random_resized_crop_boxes_in_bounds_and_in_range() {
    let mut rng = SplitMix64::keyed(&[42]);
    let (scale, ratio) = ((0.05, 0.4), (3.0 / 4.0, 4.0 / 3.0));
    for (w, h) in [(200usize, 150usize), (33, 57), (7, 7)] {
        let area = (w * h) as f64;
        let mut fallbacks = 0;
        for _ in 0..2000 {
            let b = random_resized_crop_box(w, h, scale, ratio, &mut rng);
            assert!(
                b.w >= 1 && b.h >= 1 && b.x + b.w <= w && b.y + b.h <= h,
                "{b:?} outside {w}x{h}"
            );
            if b.fallback {
                fallbacks += 1;
                continue;
            }
            // w and h were rounded from exact values, so allow half a pixel each way.
            let (bw, bh) = (b.w as f64, b.h as f64);
            assert!(
                (bw + 0.5) * (bh + 0.5) >= scale.0 * area
                    && (bw - 0.5) * (bh - 0.5) <= scale.1 * area,
                "{b:?} area"
            );
            assert!(
                (bw + 0.5) / (bh - 0.5).max(1e-9) >= ratio.0 && (bw - 0.5) / (bh + 0.5) <= ratio.1,
                "{b:?} aspect"
            );
        }
        assert!(fallbacks < 20, "{w}x{h}: {fallbacks} fallbacks");
    }
    // A tall thin image whose crops never fit: the centre crop with aspect clamped to 3/4.
    let b = random_resized_crop_box(10, 100, (0.9, 1.0), ratio, &mut rng);
    assert_eq!(
        b,
        CropBox {
            x: 0,
            y: 43,
            w: 10,
            h: 13,
            fallback: true
        }
    );
}

#[test]
fn gaussian_blur_keeps_constant_image_and_kernel_sums_to_one() {
    for sigma in [0.1f32, 0.7, 2.0, 9.0] {
        let k = blur::gaussian_kernel(sigma);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        let mut img = constant(13, 5, [0.3, 0.6, 0.1]);
        blur::gaussian_blur(&mut img, sigma);
        for (c, v) in [0.3f32, 0.6, 0.1].into_iter().enumerate() {
            assert!(
                img.plane(c).iter().all(|x| (x - v).abs() < 1e-5),
                "sigma {sigma}"
            );
        }
    }
    // A blur spreads an impulse symmetrically and keeps it away from the edges' reflection.
    let mut img = Planar::zeros(21, 21);
    img.plane_mut(0)[10 * 21 + 10] = 1.0;
    blur::gaussian_blur(&mut img, 1.5);
    let p = img.plane(0);
    assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    assert!(
        (p[10 * 21 + 8] - p[10 * 21 + 12]).abs() < 1e-7
            && (p[8 * 21 + 10] - p[12 * 21 + 10]).abs() < 1e-7
    );
}

#[test]
fn normalisation_values_and_inverse() {
    let img = RgbImage::new(2, 1, vec![255, 0, 128, 0, 255, 64]);
    let mut p = Planar::from_rgb(&img);
    normalise(&mut p, IMAGENET_MEAN, IMAGENET_STD);
    let want_r = [(1.0 - 0.485) / 0.229, (0.0 - 0.485) / 0.229];
    let want_b = [
        (128.0 / 255.0 - 0.406) / 0.225,
        (64.0 / 255.0 - 0.406) / 0.225,
    ];
    assert_close(p.plane(0), &want_r, 1e-5, "red");
    assert_close(p.plane(2), &want_b, 1e-5, "blue");
    assert_eq!(p.to_rgb(IMAGENET_MEAN, IMAGENET_STD), img);
}

#[test]
fn photometric_transforms() {
    let img = Procedural::new(9, 1, 24).get(0).unwrap().image;
    let orig = Planar::from_rgb(&img);
    // Hue shift by 0 and a full turn are the identity (through HSV and back).
    for shift in [0.0, 1.0] {
        let mut p = orig.clone();
        adjust_hue(&mut p, shift);
        assert_close(&p.data, &orig.data, 1e-5, "hue identity");
    }
    // A third of a turn takes red to green and green to blue.
    let mut rg = Planar::zeros(2, 1);
    rg.data.copy_from_slice(&[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]); // planar: R = (1, 0), G = (0, 1), B = (0, 0)
    adjust_hue(&mut rg, 1.0 / 3.0);
    assert_close(
        &rg.data,
        &[0.0, 0.0, 1.0, 0.0, 0.0, 1.0],
        1e-5,
        "hue rotation",
    );
    assert_close(
        &rgb_to_hsv([0.0, 0.0, 0.5]),
        &[2.0 / 3.0, 1.0, 0.5],
        1e-6,
        "rgb_to_hsv",
    );
    // Factor 1 leaves brightness, contrast and saturation unchanged.
    let mut p = orig.clone();
    adjust_brightness(&mut p, 1.0);
    adjust_contrast(&mut p, 1.0);
    adjust_saturation(&mut p, 1.0);
    assert_close(&p.data, &orig.data, 1e-6, "unit factors");
    // Contrast 0 gives the mean luma everywhere; saturation 0 equals grayscale.
    let mut flat = orig.clone();
    adjust_contrast(&mut flat, 0.0);
    assert!(flat.data.windows(2).all(|w| (w[0] - w[1]).abs() < 1e-6));
    let (mut s0, mut g) = (orig.clone(), orig.clone());
    adjust_saturation(&mut s0, 0.0);
    grayscale(&mut g);
    assert_close(&s0.data, &g.data, 1e-6, "saturation 0 = grayscale");
    assert_eq!(g.plane(0), g.plane(1));
    // Solarize inverts exactly the values at or above 128/255.
    let mut s = row(&[0.2, 127.0 / 255.0, 128.0 / 255.0, 0.9]);
    solarize(&mut s);
    assert_close(
        s.plane(0),
        &[0.2, 127.0 / 255.0, 127.0 / 255.0, 1.0 - 0.9],
        1e-6,
        "solarize",
    );
    // Jitter keeps values in [0, 1].
    let mut p = orig.clone();
    ColourJitter::DINO.apply(&mut p, &mut SplitMix64::keyed(&[3]));
    assert!(p.data.iter().all(|v| (0.0..=1.0).contains(v)));
    assert_ne!(p.data, orig.data);
}

#[test]
fn multi_crop_is_deterministic_per_seed_epoch_index() {
    let cfg = MultiCropConfig::small();
    let img = Procedural::new(1, 4, 80).get(3).unwrap().image;
    let a = cfg.multi_crop(&img, 7, 2, 3);
    assert_eq!(a.len(), 10);
    assert!(a[..2]
        .iter()
        .all(|v| v.width == 64 && v.height == 64 && v.data.len() == 3 * 64 * 64));
    assert!(a[2..].iter().all(|v| v.width == 32 && v.height == 32));
    assert!(a.iter().all(|v| v.data.iter().all(|x| x.is_finite())));
    assert_eq!(a, cfg.multi_crop(&img, 7, 2, 3));
    assert_ne!(a, cfg.multi_crop(&img, 7, 3, 3), "epoch changes the crops");
    assert_ne!(a, cfg.multi_crop(&img, 8, 2, 3), "seed changes the crops");
    assert_ne!(a, cfg.multi_crop(&img, 7, 2, 4), "index changes the crops");
    assert_ne!(a[0], a[1]);
    let dino = MultiCropConfig::dino().views();
    assert_eq!(
        dino.iter().map(|v| v.size).collect::<Vec<_>>(),
        [224, 224, 96, 96, 96, 96, 96, 96, 96, 96]
    );
    assert_eq!(
        (dino[0].p_blur, dino[1].p_blur, dino[2].p_blur),
        (1.0, 0.1, 0.5)
    );
    assert_eq!(
        (dino[0].p_solarize, dino[1].p_solarize, dino[5].p_solarize),
        (0.0, 0.2, 0.0)
    );
}

#[test]
fn inversion_is_the_last_step_and_off_by_default() {
    // invert: x -> 1 - x everywhere.
    let mut s = row(&[0.0, 0.25, 0.5, 1.0]);
    invert(&mut s);
    assert_close(s.plane(2), &[1.0, 0.75, 0.5, 0.0], 1e-6, "invert");
    // With mean 0 / std 1 (no normalisation), p_invert 1 gives exactly 1 - (the view of p_invert 0) for every
    // view: the inversion's draw comes last, so it leaves every earlier draw, and so the crop, flip, jitter,
    // grayscale, blur and solarize, as they were.
    let img = Procedural::new(2, 4, 80).get(1).unwrap().image;
    let plain = MultiCropConfig {
        mean: [0.0; 3],
        std: [1.0; 3],
        ..MultiCropConfig::small()
    };
    assert_eq!(plain.p_invert, 0.0);
    let inverted = MultiCropConfig {
        p_invert: 1.0,
        ..plain.clone()
    };
    let (a, b) = (
        plain.multi_crop(&img, 5, 1, 2),
        inverted.multi_crop(&img, 5, 1, 2),
    );
    for (k, (a, b)) in a.iter().zip(&b).enumerate() {
        let want: Vec<f32> = a.data.iter().map(|v| 1.0 - v).collect();
        assert_close(&b.data, &want, 1e-6, &format!("view {k}"));
    }
    // p_invert 0.5: some views of a batch are inverted and some are not.
    let half = MultiCropConfig {
        p_invert: 0.5,
        ..plain.clone()
    };
    let mut flips = [0usize; 2];
    for index in 0..8 {
        let (a, h) = (
            plain.multi_crop(&img, 5, 1, index),
            half.multi_crop(&img, 5, 1, index),
        );
        for (a, h) in a.iter().zip(&h) {
            flips[(a != h) as usize] += 1;
        }
    }
    assert!(flips[0] > 10 && flips[1] > 10, "kept / inverted: {flips:?}");
}

#[test]
fn eval_transform_shape_and_centre() {
    // 40 wide x 30 high: shorter side 30 -> 16, width int(16 * 40 / 30) = 21, then the centre 16 x 16.
    let mut img = RgbImage::new(40, 30, vec![200; 40 * 30 * 3]);
    let t = EvalTransform::square(16);
    let out = t.apply(&img);
    assert_eq!(
        (out.width, out.height, out.data.len()),
        (16, 16, 3 * 16 * 16)
    );
    let want = (200.0 / 255.0 - IMAGENET_MEAN[1]) / IMAGENET_STD[1];
    assert!(out.plane(1).iter().all(|v| (v - want).abs() < 1e-5));
    // A resize smaller than the crop is raised to the crop; tall images work too.
    img = RgbImage::new(9, 50, vec![10; 9 * 50 * 3]);
    let out = EvalTransform {
        resize: 8,
        crop: 12,
        ..t
    }
    .apply(&img);
    assert_eq!((out.width, out.height), (12, 12));
}

#[test]
fn contact_sheet_of_views() {
    let cfg = MultiCropConfig::small();
    let data = Procedural::new(0, 4, 96);
    let mut tiles = Vec::new();
    for i in 0..4 {
        let img = data.get(i).unwrap().image;
        tiles.push(img.clone());
        tiles.extend(
            cfg.multi_crop(&img, 0, 0, i as u64)
                .iter()
                .map(|v| v.to_rgb(cfg.mean, cfg.std)),
        );
    }
    let path = std::env::temp_dir().join(format!("dinonat-train-views-{}.png", std::process::id()));
    write_image_grid(&path, &tiles, 11, 2).unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > 1000);
    std::fs::remove_file(&path).unwrap();
}
