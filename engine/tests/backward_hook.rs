//! `Tensor::backward_with` (docs/autodiff.md, "Final gradients"): the hook sees every leaf the
//! loss uses exactly once, with the gradient `backward()` returns bit for bit, and a layer's
//! parameters as soon as their gradient is final (the last layer's before the first layer's).

use dinonat_engine::recompute::checkpointed;
use dinonat_engine::{DType, Gradients, Rng, Tensor};
use std::collections::HashMap;

/// Runs `backward_with` on `loss` and returns the hook's calls (leaf id and gradient, in order)
/// beside the returned gradients; panics if a leaf is handed over twice.
fn hooked(loss: &Tensor) -> (Vec<(usize, Vec<f32>)>, Gradients) {
    let mut calls: Vec<(usize, Vec<f32>)> = Vec::new();
    let grads = loss
        .backward_with(&mut |leaf, grad| {
            assert!(
                calls.iter().all(|(id, _)| *id != leaf.id()),
                "leaf {} handed over twice",
                leaf.id()
            );
            calls.push((leaf.id(), grad.to_vec::<f32>()?));
            Ok(())
        })
        .unwrap();
    (calls, grads)
}

/// Every leaf in `leaves` was handed over once, with the gradient of `grads` and of `plain`.
fn check_final(
    calls: &[(usize, Vec<f32>)],
    grads: &Gradients,
    plain: &Gradients,
    leaves: &[Tensor],
) {
    assert_eq!(calls.len(), leaves.len(), "one call per leaf");
    assert_eq!(grads.len(), leaves.len());
    let by_id: HashMap<usize, &Vec<f32>> = calls.iter().map(|(id, g)| (*id, g)).collect();
    for (i, t) in leaves.iter().enumerate() {
        let handed = by_id
            .get(&t.id())
            .unwrap_or_else(|| panic!("leaf {i} never handed over"));
        let returned = grads.get(t).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(**handed, returned, "leaf {i}: hook vs returned");
        assert_eq!(
            returned,
            plain.get(t).unwrap().to_vec::<f32>().unwrap(),
            "leaf {i}: backward()"
        );
    }
}

#[test]
fn shared_parameters_are_handed_over_once_with_their_final_gradient() {
    // awkward sizes; w1 is used by three ops (two matmuls and the penalty), b twice by one op
    let mut rng = Rng::new(21);
    let x = rng.normal(&[5, 7], 0.0, 1.0, DType::F32).with_grad();
    let w1 = Tensor::parameter("w1", &rng.normal(&[7, 7], 0.0, 0.4, DType::F32));
    let b = Tensor::parameter("b", &rng.normal(&[7], 0.3, 0.5, DType::F32));
    let w2 = Tensor::parameter("w2", &rng.normal(&[7, 3], 0.0, 0.4, DType::F32));
    let f = |x: &Tensor| -> dinonat_engine::Result<Tensor> {
        let h = x.matmul(&w1)?.add(&b.mul(&b)?)?.gelu()?;
        let h = h.matmul(&w1)?.gelu()?;
        let penalty = w1.mul(&w1)?.sum_all()?.mul_scalar(0.01)?;
        h.matmul(&w2)?
            .mul(&h.matmul(&w2)?)?
            .sum_all()?
            .add(&penalty)
    };
    let plain = f(&x).unwrap().backward().unwrap();
    let (calls, grads) = hooked(&f(&x).unwrap());
    check_final(&calls, &grads, &plain, &[x, w1, b, w2]);
}

#[test]
fn the_last_layer_is_handed_over_first() {
    // a chain of 4 linear layers: each weight's gradient is final once its layer's backward ran,
    // so the hook sees them last layer first, before the walk reaches the input
    let mut rng = Rng::new(22);
    let x = rng.normal(&[6, 9], 0.0, 1.0, DType::F32).with_grad();
    let ws: Vec<Tensor> = (0..4)
        .map(|i| Tensor::parameter(format!("w{i}"), &rng.normal(&[9, 9], 0.0, 0.3, DType::F32)))
        .collect();
    let f = || {
        let mut h = x.clone();
        for w in &ws {
            h = h.matmul(w).unwrap().gelu().unwrap();
        }
        h.sum_all().unwrap()
    };
    let plain = f().backward().unwrap();
    let (calls, grads) = hooked(&f());
    let mut leaves = ws.clone();
    leaves.push(x.clone());
    check_final(&calls, &grads, &plain, &leaves);
    let order: Vec<usize> = calls.iter().map(|(id, _)| *id).collect();
    // the first matmul's inputs go together, in the op's order (x, w0)
    let want: Vec<usize> = [&ws[3], &ws[2], &ws[1], &x, &ws[0]]
        .map(Tensor::id)
        .to_vec();
    assert_eq!(order, want, "last layer first, the first layer last");
}

#[test]
fn a_leaf_loss_is_handed_over_and_a_hook_error_ends_the_backward() {
    let loss = Tensor::from_slice(&[2.5f32], &[1]).unwrap().with_grad();
    let (calls, grads) = hooked(&loss);
    assert_eq!(calls, vec![(loss.id(), vec![1.0])]);
    assert_eq!(grads.len(), 1);
    let err = loss
        .backward_with(&mut |_, _| {
            Err(dinonat_engine::EngineError::InvalidArgument {
                op: "hook",
                shape: vec![1],
                message: "refused".into(),
            })
        })
        .unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
}

#[test]
fn checkpointed_pieces_hand_their_parameters_over_once_after_their_last_use() {
    // two checkpointed pieces sharing w and b (their inner backward has no hook; the outer one
    // sees the sum of both pieces' contributions), then a plain use of w
    let mut rng = Rng::new(23);
    let x = rng.normal(&[4, 6], 0.0, 1.0, DType::F32).with_grad();
    let w = Tensor::parameter("w", &rng.normal(&[6, 6], 0.0, 0.4, DType::F32));
    let b = Tensor::parameter("b", &rng.normal(&[6], 0.0, 0.5, DType::F32));
    let f = |checkpoint: bool| {
        let mut h = x.clone();
        for _ in 0..2 {
            let (w2, b2) = (w.clone(), b.clone());
            let piece = move |x: &Tensor| x.matmul(&w2)?.add(&b2)?.gelu();
            h = if checkpoint {
                checkpointed(&h, &[w.clone(), b.clone()], piece).unwrap()
            } else {
                piece(&h).unwrap()
            };
        }
        h.matmul(&w).unwrap().sum_all().unwrap()
    };
    let plain = f(false).backward().unwrap();
    let (calls, grads) = hooked(&f(true));
    check_final(&calls, &grads, &plain, &[x, w, b]);
}
