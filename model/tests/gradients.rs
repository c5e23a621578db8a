//! Gradient checks (f64, central differences; engine::gradcheck) of a tiny NAT end to end and
//! of the DINO head through its weight norm.

use dinonat_engine::gradcheck::{gradcheck_with, Tolerance};
use dinonat_engine::{DType, Rng, Tensor};
use dinonat_model::{AttentionKind, DilationSchedule, DinoHead, DinoHeadConfig, Nat, NatConfig};

/// Two levels (two blocks, one), head dim 4, kernel 3, layer scale and drop path on: 13 x 13
/// images -> 7 x 7 (stride-2 tokenizer) -> 4 x 4; DiNAT's second block of level 0 has dilation 2.
fn tiny(attention: AttentionKind) -> NatConfig {
    NatConfig {
        name: "tiny-test".into(),
        in_channels: 1,
        embed_dim: 8,
        depths: vec![2, 1],
        heads: vec![2, 2],
        mlp_ratio: 1.5,
        attention,
        drop_path: 0.3,
        layer_scale: Some(0.7),
        patch_stride: 2,
        num_classes: 0,
        layer_norm_eps: 1e-5,
    }
}

const TOL: Tolerance = Tolerance {
    eps: 1e-6,
    atol: 1e-7,
    rtol: 1e-5,
};

fn check_nat(attention: AttentionKind) {
    let cfg = tiny(attention);
    let nat = Nat::new(&cfg, DType::F64, 11).unwrap();
    let x = Rng::new(12).normal(&[2, 1, 13, 13], 0.0, 1.0, DType::F64);
    let p = |n: &str| nat.params.get(n).unwrap().clone();
    let mut inputs = vec![
        x,
        p("patch_embed.proj.0.weight"),
        p("levels.0.blocks.1.attn.qkv.weight"),
        p("levels.0.blocks.0.gamma1"),
        p("levels.0.downsample.reduction.weight"),
        p("levels.1.blocks.0.mlp.fc1.bias"),
    ];
    let has_rpb = matches!(attention, AttentionKind::Neighborhood { .. });
    if has_rpb {
        // rpb at the scale of the scores, so its gradient is not swamped
        inputs.push(Rng::new(13).normal(&[2, 5, 5], 0.0, 0.5, DType::F64));
    }
    let f = |xs: &[Tensor]| {
        let mut m = nat.clone();
        m.patch_embed.proj0.weight = xs[1].clone();
        m.levels[0].blocks[1].attn.qkv.weight = xs[2].clone();
        m.levels[0].blocks[0].gamma1 = Some(xs[3].clone());
        m.levels[0].downsample.as_mut().unwrap().reduction.weight = xs[4].clone();
        m.levels[1].blocks[0].mlp.fc1.bias = Some(xs[5].clone());
        if has_rpb {
            m.levels[0].blocks[0].attn.rpb = Some(xs[6].clone());
        }
        // a fresh generator per call: every evaluation drops the same samples
        Ok(m.forward_features(&xs[0], true, &mut Rng::new(5)).unwrap())
    };
    let worst = gradcheck_with(f, &inputs, TOL).unwrap();
    assert!(worst < 1e-5, "{worst}");
}

#[test]
fn tiny_nat_gradients_match_finite_differences() {
    check_nat(AttentionKind::Neighborhood {
        kernel: 3,
        dilation: DilationSchedule::Constant(1),
    });
}

#[test]
fn tiny_dinat_and_full_attention_gradients_match_finite_differences() {
    check_nat(AttentionKind::Neighborhood {
        kernel: 3,
        dilation: DilationSchedule::DiNat,
    });
    check_nat(AttentionKind::Full);
}

fn head_config(norm_last_layer: bool) -> DinoHeadConfig {
    DinoHeadConfig {
        in_dim: 6,
        hidden_dim: 7,
        bottleneck_dim: 5,
        out_dim: 4,
        nlayers: 3,
        norm_last_layer,
        use_bn: false,
    }
}

#[test]
fn dino_head_with_batch_norm_gradients_and_names() {
    let config = DinoHeadConfig {
        use_bn: true,
        ..head_config(true)
    };
    let head = DinoHead::new(&config, DType::F64, 3).unwrap();
    let names: Vec<String> = config
        .parameter_shapes()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for n in [
        "mlp.0.weight",
        "mlp.1.weight",
        "mlp.1.bias",
        "mlp.3.bias",
        "mlp.4.weight",
        "mlp.6.weight",
    ] {
        assert!(names.iter().any(|m| m == n), "{n} missing from {names:?}");
        assert!(head.params.get(n).is_some(), "{n} not in the store");
    }
    assert_eq!(head.bn.len(), 2);
    let mut rng = Rng::new(19);
    for (name, p) in head.params.iter() {
        if name.starts_with("mlp") {
            head.params
                .assign(name, &rng.normal(p.tensor.shape(), 0.3, 0.6, DType::F64))
                .unwrap();
        }
    }
    let x = Rng::new(4).normal(&[5, 6], 0.0, 1.0, DType::F64);
    let inputs = vec![
        x,
        head.bn[0].0.clone(),
        head.bn[1].1.clone(),
        head.mlp[1].weight.clone(),
    ];
    let f = |xs: &[Tensor]| {
        let mut h = head.clone();
        h.bn[0].0 = xs[1].clone();
        h.bn[1].1 = xs[2].clone();
        h.mlp[1].weight = xs[3].clone();
        Ok(h.forward(&xs[0]).unwrap())
    };
    gradcheck_with(f, &inputs, TOL).unwrap();
    // batch statistics: every hidden unit after BN has mean beta and variance gamma^2 over the batch
    let y = dinonat_model::dino_head::batch_norm(
        &head.mlp[0].forward(&inputs[0]).unwrap(),
        &head.bn[0].0,
        &head.bn[0].1,
    )
    .unwrap();
    let (b, c) = (y.shape()[0], y.shape()[1]);
    let (yv, g, be) = (
        y.to_vec_f64(),
        head.bn[0].0.to_vec_f64(),
        head.bn[0].1.to_vec_f64(),
    );
    for j in 0..c {
        let mean = (0..b).map(|i| yv[i * c + j]).sum::<f64>() / b as f64;
        let var = (0..b).map(|i| (yv[i * c + j] - mean).powi(2)).sum::<f64>() / b as f64;
        assert!(
            (mean - be[j]).abs() < 1e-12,
            "unit {j}: mean {mean} vs beta {}",
            be[j]
        );
        let want = g[j] * g[j] * var_ratio(&head.mlp[0].forward(&inputs[0]).unwrap(), j);
        assert!(
            (var - want).abs() < 1e-9 * (1.0 + want),
            "unit {j}: var {var} vs {want}"
        );
    }
}

/// var / (var + eps) of column j of x: the variance BatchNorm leaves (times gamma^2).
fn var_ratio(x: &Tensor, j: usize) -> f64 {
    let (b, c) = (x.shape()[0], x.shape()[1]);
    let v = x.to_vec_f64();
    let mean = (0..b).map(|i| v[i * c + j]).sum::<f64>() / b as f64;
    let var = (0..b).map(|i| (v[i * c + j] - mean).powi(2)).sum::<f64>() / b as f64;
    var / (var + 1e-5)
}

#[test]
fn dino_head_gradients_through_the_weight_norm() {
    let head = DinoHead::new(&head_config(false), DType::F64, 3).unwrap();
    // weights of O(1) scale: at the 0.02 init the bottleneck output is ~1e-3 long, and the
    // l2-normalisation's curvature on that scale defeats central differences
    let mut rng = Rng::new(9);
    for (name, p) in head.params.iter() {
        if name.starts_with("mlp") {
            head.params
                .assign(name, &rng.normal(p.tensor.shape(), 0.0, 0.6, DType::F64))
                .unwrap();
        }
    }
    let x = Rng::new(4).normal(&[3, 6], 0.0, 1.0, DType::F64);
    // g away from 1 so that its gradient and its effect on v's are both exercised
    let g = Rng::new(5).uniform(&[4, 1], 0.5, 2.0, DType::F64);
    let inputs = vec![
        x,
        head.mlp[0].weight.clone(),
        head.mlp[2].bias.clone().unwrap(),
        head.weight_v.clone(),
        g,
    ];
    let f = |xs: &[Tensor]| {
        let mut h = head.clone();
        h.mlp[0].weight = xs[1].clone();
        h.mlp[2].bias = Some(xs[2].clone());
        h.weight_v = xs[3].clone();
        h.weight_g = xs[4].clone();
        Ok(h.forward(&xs[0]).unwrap())
    };
    gradcheck_with(f, &inputs, TOL).unwrap();

    // the analytic weight-norm gradient of docs/dino-head.md:
    // dL/dv = (g / ||v||) (dL/dW - u (u . dL/dW)),  u = v / ||v||,  dL/dg = u . dL/dW
    let v = Rng::new(6)
        .normal(&[4, 5], 0.0, 1.0, DType::F64)
        .with_grad();
    let g = Rng::new(7)
        .uniform(&[4, 1], 0.5, 2.0, DType::F64)
        .with_grad();
    let dw = Rng::new(8).normal(&[4, 5], 0.0, 1.0, DType::F64);
    let mut h = head.clone();
    h.weight_v = v.clone();
    h.weight_g = g.clone();
    let grads = h
        .last_layer_weight()
        .unwrap()
        .mul(&dw)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let (vv, gv, dwv) = (v.to_vec_f64(), g.to_vec_f64(), dw.to_vec_f64());
    let (gvd, ggd) = (
        grads.get(&v).unwrap().to_vec_f64(),
        grads.get(&g).unwrap().to_vec_f64(),
    );
    for r in 0..4 {
        let row = &vv[r * 5..r * 5 + 5];
        let norm = row.iter().map(|a| a * a).sum::<f64>().sqrt();
        let u: Vec<f64> = row.iter().map(|a| a / norm).collect();
        let dot: f64 = (0..5).map(|c| u[c] * dwv[r * 5 + c]).sum();
        assert!((ggd[r] - dot).abs() < 1e-12);
        for c in 0..5 {
            let want = gv[r] / norm * (dwv[r * 5 + c] - u[c] * dot);
            assert!((gvd[r * 5 + c] - want).abs() < 1e-12);
        }
    }
}

#[test]
fn dino_head_shapes_names_and_fixed_g() {
    let cfg = DinoHeadConfig::new(512, 4096);
    let shapes = cfg.parameter_shapes();
    let names: Vec<&str> = shapes.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "mlp.0.weight",
            "mlp.0.bias",
            "mlp.2.weight",
            "mlp.2.bias",
            "mlp.4.weight",
            "mlp.4.bias",
            "last_layer.weight_g",
            "last_layer.weight_v"
        ]
    );
    assert_eq!(shapes[6].1, [4096, 1]);
    assert_eq!(shapes[7].1, [4096, 256]);
    let head = DinoHead::new(&head_config(true), DType::F32, 1).unwrap();
    let g = head.params.param("last_layer.weight_g").unwrap();
    assert!(!g.requires_grad && g.tensor.to_vec::<f32>().unwrap() == vec![1.0; 4]);
    assert_eq!(
        head.params.num_trainable_elements(),
        head.params.num_elements() - 4
    );
    let y = head
        .forward(&Rng::new(2).normal(&[3, 6], 0.0, 1.0, DType::F32))
        .unwrap();
    assert_eq!(y.shape(), [3, 4]);
    // weight rows have norm g = 1, and the input of the last layer is unit length: |logit| <= 1
    let w = head.last_layer_weight().unwrap().to_vec::<f32>().unwrap();
    for row in w.chunks(5) {
        assert!((row.iter().map(|a| a * a).sum::<f32>().sqrt() - 1.0).abs() < 1e-6);
    }
    assert!(y
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .all(|v| v.abs() <= 1.0 + 1e-6));
    // g is not trained: backward gives it no gradient
    let loss = head
        .forward(&Rng::new(2).normal(&[3, 6], 0.0, 1.0, DType::F32))
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    assert!(grads.get(&head.weight_g).is_none() && grads.get(&head.weight_v).is_some());
    let one = DinoHead::new(
        &DinoHeadConfig {
            nlayers: 1,
            ..head_config(true)
        },
        DType::F32,
        1,
    )
    .unwrap();
    assert!(one.params.contains("mlp.weight"));
    assert!(DinoHead::new(
        &DinoHeadConfig {
            out_dim: 0,
            ..head_config(true)
        },
        DType::F32,
        1
    )
    .is_err());
}
