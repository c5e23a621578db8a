//! Activation checkpointing (engine/src/recompute.rs): the gradients through a checkpointed piece
//! equal, bit for bit, those of the same piece kept in the graph; an f64 gradient check; the piece
//! is recomputed once per backward and not at all without the graph.

use dinonat_engine::gradcheck::gradcheck;
use dinonat_engine::recompute::checkpointed;
use dinonat_engine::{no_grad, DType, Gradients, Rng, Tensor};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A small MLP block with a residual and a layer norm: LN(x + gelu(x W1 + b1) W2) * g + b.
fn block(x: &Tensor, p: &[Tensor]) -> dinonat_engine::Result<Tensor> {
    let h = x.matmul(&p[0])?.add(&p[1])?.gelu()?.matmul(&p[2])?;
    x.add(&h)?.layer_norm(&p[3], &p[4], 1e-5)
}

fn params(seed: u64, d: usize, hidden: usize, dtype: DType) -> Vec<Tensor> {
    let mut rng = Rng::new(seed);
    [
        vec![d, hidden],
        vec![hidden],
        vec![hidden, d],
        vec![d],
        vec![d],
    ]
    .iter()
    .enumerate()
    .map(|(i, s)| {
        let t = rng.normal(s, if i == 3 { 1.0 } else { 0.0 }, 0.5, dtype);
        Tensor::parameter(format!("p{i}"), &t)
    })
    .collect()
}

/// loss = sum(block(block(x))^2 * w) with the two blocks checkpointed or not (same parameters in
/// both blocks, so their gradients are summed over two uses).
fn loss(
    x: &Tensor,
    p: &[Tensor],
    w: &Tensor,
    checkpoint: bool,
    calls: &Arc<AtomicUsize>,
) -> Tensor {
    let mut y = x.clone();
    for _ in 0..2 {
        y = if checkpoint {
            let (p2, calls) = (p.to_vec(), calls.clone());
            checkpointed(&y, p, move |x| {
                calls.fetch_add(1, Ordering::SeqCst);
                block(x, &p2)
            })
            .unwrap()
        } else {
            block(&y, p).unwrap()
        };
    }
    y.mul(&y).unwrap().mul(w).unwrap().sum_all().unwrap()
}

fn values(g: &Gradients, ts: &[Tensor]) -> Vec<Vec<f32>> {
    ts.iter()
        .map(|t| g.get(t).expect("a gradient").to_vec::<f32>().unwrap())
        .collect()
}

#[test]
fn checkpointed_gradients_equal_the_kept_graph_bit_for_bit() {
    // awkward sizes: 7 rows of 13 features, hidden 19
    let mut rng = Rng::new(3);
    let x = rng.normal(&[7, 13], 0.0, 1.0, DType::F32).with_grad();
    let w = rng.normal(&[7, 13], 0.0, 1.0, DType::F32);
    let p = params(4, 13, 19, DType::F32);
    let calls = Arc::new(AtomicUsize::new(0));
    let kept = loss(&x, &p, &w, false, &calls);
    let recomputed = loss(&x, &p, &w, true, &calls);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one call per block in the forward"
    );
    assert_eq!(kept.item().unwrap(), recomputed.item().unwrap());
    let (gk, gr) = (kept.backward().unwrap(), recomputed.backward().unwrap());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "one recomputation per block in the backward"
    );
    let mut all = vec![x.clone()];
    all.extend(p.iter().cloned());
    assert_eq!(values(&gk, &all), values(&gr, &all));
}

#[test]
fn checkpointed_passes_the_f64_gradient_check() {
    let mut rng = Rng::new(5);
    let x = rng.normal(&[3, 5], 0.0, 1.0, DType::F64);
    let w = rng.normal(&[3, 5], 0.0, 1.0, DType::F64);
    let p: Vec<Tensor> = params(6, 5, 7, DType::F64)
        .iter()
        .map(|t| t.detach())
        .collect();
    let mut inputs = vec![x];
    inputs.extend(p);
    let err = gradcheck(
        |v| {
            let (p, calls) = (v[1..].to_vec(), Arc::new(AtomicUsize::new(0)));
            Ok(loss(&v[0], &p, &w, true, &calls))
        },
        &inputs,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(err < 1e-5, "relative error {err}");
}

#[test]
fn without_the_graph_it_is_the_function() {
    let mut rng = Rng::new(7);
    let x = rng.normal(&[4, 6], 0.0, 1.0, DType::F32).with_grad();
    let p = params(8, 6, 5, DType::F32);
    let calls = Arc::new(AtomicUsize::new(0));
    let y = {
        let _g = no_grad();
        let (p2, c) = (p.clone(), calls.clone());
        checkpointed(&x, &p, move |x| {
            c.fetch_add(1, Ordering::SeqCst);
            block(x, &p2)
        })
        .unwrap()
    };
    assert!(!y.requires_grad());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let plain = block(&x, &p).unwrap();
    assert_eq!(y.to_vec::<f32>().unwrap(), plain.to_vec::<f32>().unwrap());
}
