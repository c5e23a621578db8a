//! Diagnostic: how far a backbone gets on the built-in classes WITH labels in a given number of
//! steps (the ceiling a self-supervised run of the same length can hope for). Global crops of the
//! default DINO augmentation, cross-entropy on a linear classifier, AdamW, then the same k-NN as
//! `dinonat train`. `cargo run --release -p dinonat-bench --example supervised_ceiling -- [STEPS] [ARCH] [SIZE]`
use dinonat_engine::nn::{Linear, ParamStore};
use dinonat_engine::optim::{AdamW, ParamGroup};
use dinonat_engine::{DType, Rng, Tensor};
use dinonat_eval::features::{extract_features, FeatureSource};
use dinonat_eval::knn::{knn_classify, KnnConfig};
use dinonat_model::Nat;
use dinonat_train::augment::EvalTransform;
use dinonat_train::batch::BatchBuilder;
use dinonat_train::data::{Dataset, Procedural};
use dinonat_train::trainer::config::TrainConfig;
use std::sync::Arc;

fn knn(nat: &Nat, size: usize) -> f64 {
    let t = EvalTransform::square(size);
    let (tr, va) = (Procedural::new(1, 2000, 64), Procedural::new(2, 500, 64));
    let f = |d: &dyn Dataset| {
        let idx: Vec<usize> = (0..d.len()).collect();
        extract_features(
            d,
            &idx,
            &t,
            FeatureSource::Backbone(nat),
            64,
            &mut |_, _| {},
        )
        .unwrap()
    };
    let (b, q) = (f(&tr), f(&va));
    knn_classify(
        &b.values,
        &b.labels,
        &q.values,
        &q.labels,
        b.dim,
        &KnnConfig::new(10),
    )
    .unwrap()
    .top1
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let steps: usize = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(600);
    let arch = a.get(2).cloned().unwrap_or_else(|| "nat_pico".into());
    let size: usize = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(32);
    // "noaug": the evaluation transform instead of the DINO global crops
    let noaug = a.iter().any(|s| s == "noaug");
    let lr0: f64 = a.get(4).and_then(|s| s.parse().ok()).unwrap_or(1e-3);
    let eval_t = EvalTransform::square(size);
    let config = TrainConfig {
        arch,
        global_size: size,
        local_size: size / 2,
        ..TrainConfig::default()
    };
    let nat = Nat::new(&config.backbone().unwrap(), DType::F32, 0).unwrap();
    println!("random init k-NN {:.1}", knn(&nat, size));
    let mut store = ParamStore::new(DType::F32, 1);
    let fc = Linear::new(&mut store, "fc", nat.config.num_features(), 10, true).unwrap();
    let mut groups = ParamGroup::from_store(&nat.params, "backbone");
    groups.extend(ParamGroup::from_store(&store, "fc"));
    let mut opt = AdamW::new(groups);
    let data = Arc::new(Procedural::new(0, config.procedural_len, 64));
    let builder = BatchBuilder::new(data, config.multi_crop(), 0);
    let mut rng = Rng::new(3);
    let bs = config.batch_size;
    for step in 0..steps {
        let epoch = (step * bs / config.procedural_len) as u64;
        // "fixed": the same batch every step (can the model memorise 32 images?)
        let start = if a.iter().any(|s| s == "fixed") {
            0
        } else {
            (step * bs) % config.procedural_len
        };
        let idx: Vec<usize> = (start..start + bs).collect();
        let x = if noaug {
            let mut d = Vec::new();
            for _ in 0..2 {
                for &i in &idx {
                    d.extend(eval_t.apply(&builder.dataset.get(i).unwrap().image).data);
                }
            }
            Tensor::from_slice(&d, &[2 * bs, 3, size, size]).unwrap()
        } else {
            let batch = builder.build(epoch, &idx).unwrap();
            let g = &batch.crops[0];
            Tensor::from_slice(&g.data, &[2 * bs, 3, g.size, g.size]).unwrap()
        };
        let mut onehot = vec![0f32; 2 * bs * 10];
        for v in 0..2 {
            for (k, &i) in idx.iter().enumerate() {
                onehot[(v * bs + k) * 10 + Procedural::label(i)] = 1.0;
            }
        }
        let y = Tensor::from_slice(&onehot, &[2 * bs, 10]).unwrap();
        let logits = fc
            .forward(&nat.forward_features(&x, true, &mut rng).unwrap())
            .unwrap();
        let loss = y
            .mul(&logits.log_softmax().unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            .mul_scalar(-1.0 / (2 * bs) as f64)
            .unwrap();
        let grads = loss.backward().unwrap();
        let lr = lr0 * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / steps as f64).cos());
        opt.step(&grads, lr, 0.05).unwrap();
        if step % 100 == 0 || step + 1 == steps {
            println!("step {step} loss {:.4}", loss.item().unwrap());
        }
    }
    println!("supervised {steps} steps: k-NN {:.1}", knn(&nat, size));
}
