//! The DINO pieces of a training step on the GPU against the CPU: the loss and DINO's centre
//! update (`DinoLoss::update_center` keeps the centre on the device when the teacher runs there)
//! and the teacher's EMA (`ema_update` through the fused kernel). Relative-norm tolerances: 1e-5
//! for the loss, 1e-6 for the centre and the EMA (f32 on the GPU, f64 / f32 on the host). Without
//! a GPU each test checks the "no CUDA device" error and prints why it skips.

use dinonat_engine::nn::{Init, ParamStore};
use dinonat_engine::{DType, Device, Rng, Tensor};
use dinonat_train::dino::{ema_update, DinoLoss};

mod common;
use common::gpu_or_skip;

fn rel_err(got: &[f64], exact: &[f64]) -> f64 {
    let num: f64 = got.iter().zip(exact).map(|(a, b)| (a - b) * (a - b)).sum();
    let den: f64 = exact.iter().map(|b| b * b).sum();
    if got.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    (num / den.max(1e-300)).sqrt()
}

fn random(rng: &mut Rng, shape: &[usize], scale: f64) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f32> = rng
        .uniform_vec(n)
        .iter()
        .map(|u| ((u * 2.0 - 1.0) * scale) as f32)
        .collect();
    Tensor::from_vec(v, shape).unwrap()
}

#[test]
fn dino_loss_and_center_update_on_cuda_match_the_cpu() {
    if !gpu_or_skip() {
        return;
    }
    let mut rng = Rng::new(11);
    let (b, k, views) = (5, 65, 4);
    let mut host = DinoLoss::new(k, views);
    let mut dev = DinoLoss::new(k, views);
    for step in 0..3 {
        let teacher = random(&mut rng, &[2 * b, k], 3.0);
        let student = random(&mut rng, &[views * b, k], 3.0);
        let lh = host.forward(&student, &teacher, 0.04).unwrap();
        let (sd, td) = (
            student.to(Device::Cuda(0)).unwrap(),
            teacher.to(Device::Cuda(0)).unwrap(),
        );
        let ld = dev.forward(&sd, &td, 0.04).unwrap();
        let (h, d) = (lh.loss.item().unwrap(), ld.loss.item().unwrap());
        println!("step {step}: loss host {h:.7}, cuda {d:.7}");
        assert!(((d - h) / h).abs() < 1e-5, "loss step {step}");
        host.update_center(&teacher).unwrap();
        dev.update_center(&td).unwrap();
        let e = rel_err(
            &dev.center_values().unwrap(),
            &host.center_values().unwrap(),
        );
        println!("step {step}: centre rel err {e:.2e}");
        assert!(e < 1e-6, "centre step {step}: {e:.3e}");
    }
}

#[test]
fn teacher_ema_on_cuda_matches_the_cpu() {
    if !gpu_or_skip() {
        return;
    }
    let mut student = ParamStore::new(DType::F32, 3);
    let mut teacher = ParamStore::new(DType::F32, 4);
    for (name, shape) in [("w", vec![33, 257]), ("b", vec![7])] {
        student
            .add(name, &shape, Init::TruncNormal { std: 1.0 })
            .unwrap();
        teacher
            .add(name, &shape, Init::TruncNormal { std: 1.0 })
            .unwrap();
    }
    let (sd, td) = (
        student.to_device(Device::Cuda(0)).unwrap(),
        teacher.to_device(Device::Cuda(0)).unwrap(),
    );
    for m in [0.996, 0.5] {
        ema_update(&teacher, &student, m).unwrap();
        ema_update(&td, &sd, m).unwrap();
    }
    for name in ["w", "b"] {
        let h = teacher.get(name).unwrap().to_vec_f64();
        let d = td.get(name).unwrap().to(Device::Cpu).unwrap().to_vec_f64();
        let e = rel_err(&d, &h);
        println!("teacher '{name}' after 2 EMA steps: rel err {e:.2e}");
        assert!(e < 1e-6, "'{name}': {e:.3e}");
    }
}
