//! The optimiser API on CUDA parameters against the same calls on CPU copies: `AdamW::step`
//! (fused device kernel, f32 moments on the device) with its checkpoint state in both directions,
//! `clip_grad_norms` (norms and scale on the device), and DINO's centre update
//! (`Tensor::cuda_center_update`) against its f64 formula. Relative-norm tolerances: 1e-5 for
//! parameters and moments (f32 on the GPU vs f64 moments on the host), 1e-6 for the norms and the
//! centre. Without a GPU each test checks the "no CUDA device" error and prints why it skips.

use dinonat_engine::optim::{clip_grad_norms, AdamW, ParamGroup};
use dinonat_engine::{DType, Device, Gradients, Tensor};

mod common;
use common::*;

fn cuda(t: &Tensor) -> Tensor {
    t.to(Device::Cuda(0)).unwrap()
}

fn groups(params: &[(&str, Tensor)], decay: bool) -> Vec<ParamGroup> {
    vec![ParamGroup {
        name: "g".into(),
        params: params
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect(),
        lr_scale: 1.0,
        weight_decay_scale: if decay { 1.0 } else { 0.0 },
    }]
}

fn f32s(t: &Tensor) -> Vec<f32> {
    let _guard = dinonat_engine::no_grad();
    t.to(Device::Cpu)
        .unwrap()
        .try_to_dtype(DType::F32)
        .unwrap()
        .to_vec::<f32>()
        .unwrap()
}

#[test]
fn adamw_on_cuda_matches_the_host_and_its_state_moves_between_devices() {
    if !gpu_or_skip() {
        return;
    }
    let mut r = Rng::new("adamw");
    let shapes: [&[usize]; 3] = [&[33, 257], &[7], &[1]];
    let host: Vec<Tensor> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| Tensor::parameter(format!("p{i}"), &r.tensor(s, -1.0, 1.0)))
        .collect();
    let dev: Vec<Tensor> = host
        .iter()
        .enumerate()
        .map(|(i, t)| Tensor::parameter(format!("p{i}"), &cuda(t)))
        .collect();
    let named = |ts: &[Tensor]| -> Vec<(&str, Tensor)> {
        ["p0", "p1", "p2"]
            .into_iter()
            .zip(ts.iter().cloned())
            .collect()
    };
    let mut opt_h = AdamW::new(groups(&named(&host), true));
    let mut opt_d = AdamW::new(groups(&named(&dev), true));
    for step in 0..3 {
        let (mut gh, mut gd) = (Gradients::default(), Gradients::default());
        for (i, s) in shapes.iter().enumerate() {
            if step == 1 && i == 2 {
                continue; // no gradient this step: skipped on both devices
            }
            let g = r.tensor(s, -1.0, 1.0);
            gd.insert(&dev[i], cuda(&g));
            gh.insert(&host[i], g);
        }
        let lr = 1e-2 * (step + 1) as f64;
        opt_h.step(&gh, lr, 0.05).unwrap();
        opt_d.step(&gd, lr, 0.05).unwrap();
        for i in 0..3 {
            let e = rel_err(&f32s(&dev[i]), &f32s(&host[i]));
            println!("AdamW step {step} p{i}: rel err {e:.2e}");
            assert!(e < 1e-5, "p{i} rel err {e:.3e}");
        }
    }
    // the state: the same names, shapes and steps; moments within f32 of the host's f64
    let (sh, sd) = (
        opt_h.state_tensors().unwrap(),
        opt_d.state_tensors().unwrap(),
    );
    assert_eq!(sh.len(), sd.len());
    for ((nh, th), (nd, td)) in sh.iter().zip(&sd) {
        assert_eq!((nh, th.shape(), th.dtype()), (nd, td.shape(), td.dtype()));
        let e = rel_err(&f32s(td), &f32s(th));
        println!("{nh}: rel err {e:.2e}");
        assert!(e < 1e-5, "{nh} rel err {e:.3e}");
    }
    // the host's state loaded onto the GPU continues as the host does
    let mut opt_d2 = AdamW::new(groups(&named(&dev), true));
    opt_d2
        .load_state(|n| sh.iter().find(|(k, _)| k == n).map(|(_, t)| t.clone()))
        .unwrap();
    let (mut gh, mut gd) = (Gradients::default(), Gradients::default());
    for (i, s) in shapes.iter().enumerate() {
        let g = r.tensor(s, -1.0, 1.0);
        gd.insert(&dev[i], cuda(&g));
        gh.insert(&host[i], g);
    }
    opt_h.step(&gh, 1e-2, 0.05).unwrap();
    opt_d2.step(&gd, 1e-2, 0.05).unwrap();
    for i in 0..3 {
        let e = rel_err(&f32s(&dev[i]), &f32s(&host[i]));
        println!("AdamW after loading the host state, p{i}: rel err {e:.2e}");
        assert!(e < 1e-5, "p{i} after load rel err {e:.3e}");
    }
}

#[test]
fn clip_grad_norms_on_cuda_match_the_host() {
    if !gpu_or_skip() {
        return;
    }
    let mut r = Rng::new("clip");
    let (a, b, c) = (
        Tensor::parameter("a", &r.tensor(&[33, 257], -1.0, 1.0)),
        Tensor::parameter("b", &r.tensor(&[7], -0.01, 0.01)),
        Tensor::parameter("c", &r.tensor(&[3], -1.0, 1.0)),
    );
    let (ad, bd, cd) = (
        Tensor::parameter("a", &cuda(&a)),
        Tensor::parameter("b", &cuda(&b)),
        Tensor::parameter("c", &cuda(&c)),
    );
    let (ga, gb) = (r.tensor(&[33, 257], -1.0, 1.0), r.tensor(&[7], -0.01, 0.01));
    let (mut gh, mut gd) = (Gradients::default(), Gradients::default());
    gh.insert(&a, ga.clone());
    gh.insert(&b, gb.clone());
    gd.insert(&ad, cuda(&ga));
    gd.insert(&bd, cuda(&gb));
    let ph = vec![
        ("a".into(), a.clone()),
        ("b".into(), b.clone()),
        ("c".into(), c),
    ];
    let pd = vec![
        ("a".into(), ad.clone()),
        ("b".into(), bd.clone()),
        ("c".into(), cd),
    ];
    // a's norm is about 53: clipped; b's about 0.02: left alone; c has no gradient
    let nh = clip_grad_norms(&mut gh, &ph, 1.0).unwrap();
    let nd = clip_grad_norms(&mut gd, &pd, 1.0).unwrap();
    assert!(nd[2].is_none() && nh[2].is_none());
    for i in 0..2 {
        let (h, d) = (nh[i].as_ref().unwrap(), nd[i].as_ref().unwrap());
        assert!(d.is_cuda(), "norm {i} not on the GPU");
        let (h, d) = (h.item().unwrap(), d.item().unwrap());
        println!("norm {i}: host {h:.7}, cuda {d:.7}");
        assert!(((d - h) / h).abs() < 1e-6, "norm {i}");
    }
    for (p, q, what) in [(&a, &ad, "a (clipped)"), (&b, &bd, "b (not clipped)")] {
        let (h, d) = (gh.get(p).unwrap(), gd.get(q).unwrap());
        assert!(d.is_cuda(), "{what}: gradient left the GPU");
        let e = rel_err(&f32s(d), &f32s(h));
        println!("clipped gradient {what}: rel err {e:.2e}");
        assert!(e < 1e-6, "{what} rel err {e:.3e}");
    }
    assert_eq!(f32s(gd.get(&bd).unwrap()), gb.to_vec::<f32>().unwrap());
}

#[test]
fn center_update_on_cuda_matches_the_formula() {
    if !gpu_or_skip() {
        return;
    }
    let mut r = Rng::new("center");
    for (rows, k) in [(1, 1), (6, 65), (64, 257), (2050, 33)] {
        let c0 = r.tensor(&[k], -1.0, 1.0);
        let t = r.tensor(&[rows, k], -4.0, 4.0);
        let m = 0.9;
        let (cv, tv) = (c0.to_vec_f64(), t.to_vec_f64());
        let exact: Vec<f32> = (0..k)
            .map(|j| {
                let mean = (0..rows).map(|i| tv[i * k + j]).sum::<f64>() / rows as f64;
                (m * cv[j] + (1.0 - m) * mean) as f32
            })
            .collect();
        let c = cuda(&c0);
        c.cuda_center_update(&cuda(&t), m).unwrap();
        let e = rel_err(&f32s(&c), &exact);
        println!("center [{rows}, {k}]: rel err {e:.2e}");
        assert!(e < 1e-6, "center [{rows}, {k}] rel err {e:.3e}");
    }
    let c = cuda(&Tensor::zeros(&[4], DType::F32));
    let e = c
        .cuda_center_update(&cuda(&Tensor::zeros(&[2, 5], DType::F32)), 0.9)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[rows, 4]"), "{e}");
}
