//! Diagnostic: per-tensor gradient norms of one DINO step of the default run, and the relative
//! change of every student tensor after N steps. `cargo run --release -p dinonat-bench --example grad_norms -- [STEPS]`
use dinonat_engine::Tensor;
use dinonat_train::batch::BatchBuilder;
use dinonat_train::trainer::config::TrainConfig;
use dinonat_train::trainer::network::batch_tensors;
use dinonat_train::trainer::Trainer;

fn norm(t: &Tensor) -> f64 {
    t.to_vec_f64().iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn main() {
    let steps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let head_bn = std::env::args().any(|a| a == "--head-bn");
    let config = TrainConfig {
        steps: 600,
        checkpoint_every: 0,
        out_dir: std::env::temp_dir().join("grad_norms"),
        head_bn,
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(config.clone()).unwrap();
    let builder = BatchBuilder::new(config.dataset().unwrap(), config.multi_crop(), config.seed);
    let init: Vec<(String, Vec<f64>)> = t
        .student
        .named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.tensor.to_vec_f64()))
        .collect();
    let idx: Vec<usize> = (0..config.batch_size).collect();
    let batch = builder.build(0, &idx).unwrap();
    let (crops, global) = batch_tensors(&batch, dinonat_engine::Device::Cpu).unwrap();
    let mut rng = dinonat_engine::rng::Rng::new(1);
    let tout = {
        let _g = dinonat_engine::no_grad();
        t.teacher.forward_crops(&[global], false, &mut rng).unwrap()
    };
    let sout = t.student.forward_crops(&crops, true, &mut rng).unwrap();
    let out = t.loss.forward(&sout, &tout, 0.04).unwrap();
    let grads = out.loss.backward().unwrap();
    println!(
        "loss {:.4} H {:.4}",
        out.loss.item().unwrap(),
        out.teacher_entropy
    );
    for (n, p) in t.student.named_parameters() {
        let g = grads.get(&p.tensor).map(norm);
        println!("{n:50} |w| {:10.4e} |g| {:?}", norm(&p.tensor), g);
    }
    let mut done = 0;
    t.run_with(Some(steps), |_, _| {
        done += 1;
        Ok(dinonat_train::trainer::Control::Continue)
    })
    .unwrap();
    println!("after {done} steps: relative change |w - w0| / |w0|");
    for ((n, p), (_, w0)) in t.student.named_parameters().into_iter().zip(init) {
        let w = p.tensor.to_vec_f64();
        let d = w
            .iter()
            .zip(&w0)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt();
        let n0 = w0.iter().map(|x| x * x).sum::<f64>().sqrt();
        println!("{n:50} {:.4e}", d / n0.max(1e-30));
    }
}
