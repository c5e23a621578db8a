//! Forward shapes, the attention oracles, and full attention = NA with a window covering the map.

use dinonat_engine::{no_grad, DType, Rng, Tensor};
use dinonat_model::attention::{
    full_attention_qkv, full_attention_qkv_reference, neighborhood_attention_qkv,
    neighborhood_attention_qkv_reference, window_1d,
};
use dinonat_model::{AttentionKind, DilationSchedule, ForwardPoint, Nat, NatConfig};

fn images(b: usize, side: usize, dtype: DType, seed: u64) -> Tensor {
    Rng::new(seed).normal(&[b, 3, side, side], 0.0, 1.0, dtype)
}

#[test]
fn shapes_at_224_and_small_resolutions() {
    let _g = no_grad();
    let mut rng = Rng::new(1);
    let mini = Nat::new(&NatConfig::nat_mini(), DType::F32, 0).unwrap();
    let t = mini
        .forward_tokens(&images(1, 224, DType::F32, 2), false, &mut rng)
        .unwrap();
    assert_eq!(t.shape(), [1, 7, 7, 512]);
    assert_eq!(
        NatConfig::nat_mini().level_sizes(224, 224),
        [(56, 56), (28, 28), (14, 14), (7, 7)]
    );
    for (name, side, feat, levels) in [
        ("nat_nano", 64, 256, vec![(16, 16), (8, 8), (4, 4), (2, 2)]),
        ("nat_nano", 32, 256, vec![(8, 8), (4, 4), (2, 2), (1, 1)]),
        (
            "dinat_nano",
            64,
            256,
            vec![(16, 16), (8, 8), (4, 4), (2, 2)],
        ),
        ("nat_pico", 32, 128, vec![(16, 16), (8, 8), (4, 4)]),
        ("nat_pico_full", 32, 128, vec![(16, 16), (8, 8), (4, 4)]),
    ] {
        let c = NatConfig::from_name(name).unwrap();
        assert_eq!(c.level_sizes(side, side), levels, "{name}");
        let nat = Nat::new(&c, DType::F32, 0).unwrap();
        let y = nat
            .forward_features(&images(2, side, DType::F32, 3), true, &mut rng)
            .unwrap();
        assert_eq!(y.shape(), [2, feat], "{name} at {side}");
        assert!(
            y.to_vec::<f32>().unwrap().iter().all(|v| v.is_finite()),
            "{name}"
        );
    }
    let c = NatConfig::nat_pico().with_classes(10);
    let nat = Nat::new(&c, DType::F32, 0).unwrap();
    assert_eq!(
        nat.forward(&images(3, 40, DType::F32, 4), false, &mut rng)
            .unwrap()
            .shape(),
        [3, 10]
    );
    assert!(nat
        .forward(&Tensor::zeros(&[1, 1, 32, 32], DType::F32), false, &mut rng)
        .is_err());
}

#[test]
fn window_rule_matches_the_documented_example() {
    let starts: Vec<usize> = window_1d(20, 7, 1).iter().map(|w| w[0].0).collect();
    let mut want = vec![0, 0, 0, 0];
    want.extend(1..=13);
    want.extend([13, 13, 13]);
    assert_eq!(starts, want);
    // centre query: offsets k-1-3 ..= k-1+3 of the 13-wide table
    let mid: Vec<usize> = window_1d(20, 7, 1)[10].iter().map(|w| w.1).collect();
    assert_eq!(mid, (3..10).collect::<Vec<_>>());
    // k > L: the whole axis
    assert_eq!(
        window_1d(3, 7, 1)[0]
            .iter()
            .map(|w| w.0)
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    // dilation 2 on 7 positions: groups {0,2,4,6} and {1,3,5}, window 3 each
    assert_eq!(
        window_1d(7, 3, 2)[0]
            .iter()
            .map(|w| w.0)
            .collect::<Vec<_>>(),
        [0, 2, 4]
    );
    assert_eq!(
        window_1d(7, 3, 2)[5]
            .iter()
            .map(|w| w.0)
            .collect::<Vec<_>>(),
        [1, 3, 5]
    );
    assert_eq!(
        window_1d(7, 3, 2)[6]
            .iter()
            .map(|w| w.0)
            .collect::<Vec<_>>(),
        [2, 4, 6]
    );
}

/// NA computed query by query from the definition, with the window written in its closed form
/// start = clamp(i_g - k'/2, 0, L_g - k').
fn naive_na(
    qkv: &[f64],
    b: usize,
    h: usize,
    w: usize,
    heads: usize,
    rpb: &[f64],
    k: usize,
    dil: usize,
) -> Vec<f64> {
    let d = qkv.len() / (b * h * w * 3);
    let hd = d / heads;
    let win = |i: usize, len: usize| -> Vec<usize> {
        let (g, ig) = (i % dil, i / dil);
        let lg = (len - g).div_ceil(dil);
        let kk = k.min(lg);
        let start = (ig as isize - (kk / 2) as isize).clamp(0, (lg - kk) as isize) as usize;
        (start..start + kk).map(|t| t * dil + g).collect()
    };
    let t = 2 * k - 1;
    let mut out = vec![0.0; b * h * w * d];
    for bi in 0..b {
        for hh in 0..heads {
            for i in 0..h {
                for j in 0..w {
                    let at = |y: usize, x: usize, part: usize, c: usize| {
                        qkv[((bi * h + y) * w + x) * 3 * d + part * d + hh * hd + c]
                    };
                    let mut s = Vec::new();
                    for &a in &win(i, h) {
                        for &c in &win(j, w) {
                            let dot: f64 = (0..hd).map(|e| at(i, j, 0, e) * at(a, c, 1, e)).sum();
                            let ri = (a as isize - i as isize) / dil as isize + k as isize - 1;
                            let ci = (c as isize - j as isize) / dil as isize + k as isize - 1;
                            s.push((
                                a,
                                c,
                                dot / (hd as f64).sqrt()
                                    + rpb[(hh * t + ri as usize) * t + ci as usize],
                            ));
                        }
                    }
                    let m = s.iter().map(|x| x.2).fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = s.iter().map(|x| (x.2 - m).exp()).sum();
                    for &(a, c, v) in &s {
                        let p = (v - m).exp() / z;
                        for e in 0..hd {
                            out[((bi * h + i) * w + j) * d + hh * hd + e] += p * at(a, c, 2, e);
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn neighborhood_attention_matches_the_definition() {
    let _g = no_grad();
    let mut rng = Rng::new(7);
    for (b, h, w, heads, hd, k, dil) in [
        (1, 5, 7, 1, 3, 3, 1),
        (2, 7, 6, 2, 4, 3, 2),
        (1, 9, 4, 2, 2, 4, 2),
        (1, 3, 2, 1, 5, 7, 1),
    ] {
        let qkv = rng.normal(&[b, h, w, 3 * heads * hd], 0.0, 1.0, DType::F64);
        let rpb = rng.normal(&[heads, 2 * k - 1, 2 * k - 1], 0.0, 1.0, DType::F64);
        let scale = (hd as f64).powf(-0.5);
        let want = naive_na(&qkv.to_vec_f64(), b, h, w, heads, &rpb.to_vec_f64(), k, dil);
        for got in [
            neighborhood_attention_qkv_reference(&qkv, heads, Some(&rpb), k, [dil, dil], scale)
                .unwrap(),
            neighborhood_attention_qkv(&qkv, heads, Some(&rpb), k, [dil, dil], scale).unwrap(),
        ] {
            assert_eq!(got.shape(), [b, h, w, heads * hd]);
            for (x, y) in got.to_vec_f64().iter().zip(&want) {
                assert!(
                    (x - y).abs() < 1e-12,
                    "{x} vs {y} for {:?}",
                    (b, h, w, heads, hd, k, dil)
                );
            }
        }
    }
}

#[test]
fn full_attention_equals_na_with_a_window_covering_the_map() {
    let _g = no_grad();
    let mut rng = Rng::new(8);
    let qkv = rng.normal(&[2, 4, 5, 3 * 2 * 3], 0.0, 1.0, DType::F64);
    let na = neighborhood_attention_qkv_reference(&qkv, 2, None, 5, [1, 1], 0.4).unwrap();
    let full = full_attention_qkv_reference(&qkv, 2, 0.4).unwrap();
    let fused = full_attention_qkv(&qkv, 2, 0.4).unwrap();
    assert_eq!(fused.shape(), [2, 4, 5, 6]);
    for ((x, y), z) in na
        .to_vec_f64()
        .iter()
        .zip(full.to_vec_f64())
        .zip(fused.to_vec_f64())
    {
        assert!((x - y).abs() < 1e-12 && (x - z).abs() < 1e-12);
    }
    // the whole network: pico with k = 16 covers every level at 32 px; rpb zeroed
    for dtype in [DType::F64, DType::F32] {
        let mut na_cfg = NatConfig::nat_pico();
        na_cfg.attention = AttentionKind::Neighborhood {
            kernel: 16,
            dilation: DilationSchedule::Constant(1),
        };
        let mut full_cfg = NatConfig::nat_pico();
        full_cfg.attention = AttentionKind::Full;
        let na = Nat::new(&na_cfg, dtype, 1).unwrap();
        let full = Nat::new(&full_cfg, dtype, 2).unwrap();
        for (name, p) in na.params.iter() {
            if name.ends_with("rpb") {
                na.params
                    .assign(name, &Tensor::zeros(p.tensor.shape(), dtype))
                    .unwrap();
            } else {
                full.params.assign(name, &p.tensor).unwrap();
            }
        }
        let x = images(2, 32, dtype, 5);
        let a = na
            .forward_features(&x, false, &mut rng)
            .unwrap()
            .to_vec_f64();
        let b = full
            .forward_features(&x, false, &mut rng)
            .unwrap()
            .to_vec_f64();
        let tol = if dtype == DType::F64 { 1e-10 } else { 1e-4 };
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < tol, "{dtype:?}: {x} vs {y}");
        }
    }
}

/// The hook of `forward_tokens_with` sees each block's input and each level's output, in order, and equals a pass
/// run block by block with the network's public parts (the reference); the pass itself is unchanged.
#[test]
fn forward_hook_sees_every_block_input_and_level_output() {
    let nat = Nat::new(&NatConfig::nat_pico(), DType::F32, 3).unwrap();
    let x = images(2, 32, DType::F32, 9);
    let mut seen = Vec::new();
    let hooked = nat
        .forward_tokens_with(&x, false, &mut Rng::new(0), &mut |p| {
            seen.push(match p {
                ForwardPoint::BlockInput { level, block, x } => (level, Some(block), x.clone()),
                ForwardPoint::LevelOutput { level, x } => (level, None, x.clone()),
            })
        })
        .unwrap();
    let plain = nat.forward_tokens(&x, false, &mut Rng::new(0)).unwrap();
    assert_eq!(
        hooked.to_vec::<f32>().unwrap(),
        plain.to_vec::<f32>().unwrap()
    );
    let mut want = Vec::new();
    let mut t = nat.patch_embed.forward(&x).unwrap();
    for (l, level) in nat.levels.iter().enumerate() {
        for (b, block) in level.blocks.iter().enumerate() {
            want.push((l, Some(b), t.clone()));
            t = block.forward(&t, false, &mut Rng::new(0)).unwrap();
        }
        want.push((l, None, t.clone()));
        if let Some(down) = &level.downsample {
            t = down.forward(&t).unwrap();
        }
    }
    assert_eq!(seen.len(), want.len());
    for ((l, b, got), (wl, wb, w)) in seen.iter().zip(&want) {
        assert_eq!((l, b), (wl, wb));
        assert_eq!(got.shape(), w.shape());
        assert_eq!(
            got.to_vec::<f32>().unwrap(),
            w.to_vec::<f32>().unwrap(),
            "{l} {b:?}"
        );
    }
    let pooled = nat.forward_features(&x, false, &mut Rng::new(0)).unwrap();
    let pooled_hooked = nat
        .forward_features_with(&x, false, &mut Rng::new(0), &mut |_| {})
        .unwrap();
    assert_eq!(
        pooled.to_vec::<f32>().unwrap(),
        pooled_hooked.to_vec::<f32>().unwrap()
    );
}
