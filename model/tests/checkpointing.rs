//! Activation checkpointing per level (`Nat::checkpoint_levels`): in training, with drop path on,
//! the features, every parameter's gradient and the generator's state afterwards equal, bit for
//! bit, those of the network that keeps its graph; evaluation ignores the switch.

use dinonat_engine::{DType, Rng, Tensor};
use dinonat_model::{Nat, NatConfig};

fn images(seed: u64) -> Tensor {
    // 2 images of 40 x 40: not a multiple of the kernel, borders clamp
    Rng::new(seed).normal(&[2, 3, 40, 40], 0.0, 1.0, DType::F32)
}

#[test]
fn checkpointed_levels_give_the_same_features_gradients_and_draws() {
    let mut config = NatConfig::nat_pico();
    config.drop_path = 0.3;
    let nat = Nat::new(&config, DType::F32, 11).unwrap();
    let mut saving = nat.clone();
    saving.checkpoint_levels = true;
    let x = images(12);
    let w = Rng::new(13).normal(&[2, nat.config.num_features()], 0.0, 1.0, DType::F32);
    let run = |net: &Nat| {
        let mut rng = Rng::new(14);
        let f = net.forward_features(&x, true, &mut rng).unwrap();
        let after = rng.below(u64::MAX);
        let grads = f.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
        let g: Vec<Vec<f32>> = net
            .params
            .trainable()
            .map(|(n, t)| {
                grads
                    .get(t)
                    .unwrap_or_else(|| panic!("no gradient for {n}"))
                    .to_vec::<f32>()
                    .unwrap()
            })
            .collect();
        (f.to_vec::<f32>().unwrap(), after, g)
    };
    let (kept, recomputed) = (run(&nat), run(&saving));
    assert_eq!(kept.0, recomputed.0, "features");
    assert_eq!(kept.1, recomputed.1, "generator state after the pass");
    assert_eq!(kept.2.len(), recomputed.2.len());
    assert_eq!(kept.2, recomputed.2, "parameter gradients");
    // evaluation: no graph, nothing recomputed, same values
    let mut rng = Rng::new(15);
    let a = nat.forward_features(&x, false, &mut rng).unwrap();
    let b = saving.forward_features(&x, false, &mut rng).unwrap();
    assert_eq!(a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    // the switch survives a move
    assert!(
        saving
            .to_device(dinonat_engine::Device::Cpu)
            .unwrap()
            .checkpoint_levels
    );
}

#[test]
fn the_gradient_hook_sees_each_parameter_once_with_checkpointed_levels() {
    // docs/autodiff.md, "Final gradients": the levels' inner backwards have no hook; the outer
    // walk hands every parameter over once, with the gradient backward() gives
    let mut config = NatConfig::nat_pico();
    config.drop_path = 0.3;
    let mut nat = Nat::new(&config, DType::F32, 16).unwrap();
    nat.checkpoint_levels = true;
    let x = images(17);
    let loss = || {
        let f = nat.forward_features(&x, true, &mut Rng::new(18)).unwrap();
        f.mul(&f).unwrap().sum_all().unwrap()
    };
    let plain = loss().backward().unwrap();
    let mut seen = std::collections::HashMap::new();
    let hooked = loss()
        .backward_with(&mut |leaf, grad| {
            let previous = seen.insert(leaf.id(), grad.to_vec::<f32>()?);
            assert!(previous.is_none(), "a parameter handed over twice");
            Ok(())
        })
        .unwrap();
    let params: Vec<_> = nat.params.trainable().collect();
    assert_eq!(seen.len(), params.len(), "one call per parameter");
    assert_eq!(hooked.len(), params.len());
    for (name, t) in params {
        let want = plain.get(t).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(seen[&t.id()], want, "{name}: the hook's gradient");
        assert_eq!(
            hooked.get(t).unwrap().to_vec::<f32>().unwrap(),
            want,
            "{name}: returned"
        );
    }
}
