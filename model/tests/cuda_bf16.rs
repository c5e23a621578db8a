//! A NAT forward in BF16 on CUDA against the same network in BF16 on the CPU (docs/gpu-ops.md,
//! "BF16 on CUDA"). Both devices widen every BF16 operand to f32, compute in f32 and round each
//! op's result once, so they differ only where their f32 results (summed in different orders)
//! round to neighbouring BF16 values; after a dozen blocks those differences are of the size of
//! BF16 rounding itself. The bound is calibrated on the run: the GPU's BF16 features must be
//! within twice the distance between the CPU's BF16 features and its f32 features of the same
//! network. The CPU half runs everywhere; without a GPU the CUDA half prints why it skips (a
//! failure under `DINONAT_REQUIRE_GPU=1`).

use dinonat_engine::{no_grad, DType, Device, Rng, Tensor};
use dinonat_model::{Nat, NatConfig};

fn rel_err(got: &[f64], want: &[f64]) -> f64 {
    let num: f64 = got.iter().zip(want).map(|(a, b)| (a - b).powi(2)).sum();
    let den: f64 = want.iter().map(|b| b * b).sum();
    (num / den).sqrt()
}

#[test]
fn nat_forward_in_bf16_on_cuda_matches_the_cpu() {
    let _g = no_grad();
    let config = NatConfig::nat_pico();
    let images = Rng::new(3).normal(&[2, 3, 32, 32], 0.0, 1.0, DType::F32);
    let images = images.to_dtype(DType::BF16);
    let nat = Nat::new(&config, DType::BF16, 5).unwrap();
    let cpu = nat
        .forward_features(&images, false, &mut Rng::new(0))
        .unwrap();
    assert_eq!(cpu.dtype(), DType::BF16);
    let cpu = cpu.to_vec_f64();
    assert!(cpu.iter().all(|v| v.is_finite()));
    // the same weights (the BF16 values) and images in f32: what BF16 rounding costs
    let wide = Nat::new(&config, DType::F32, 5).unwrap();
    for (name, p) in nat.params.iter() {
        wide.params
            .assign(name, &p.tensor.to_dtype(DType::F32))
            .unwrap();
    }
    let f32_features = wide
        .forward_features(&images.to_dtype(DType::F32), false, &mut Rng::new(0))
        .unwrap()
        .to_vec_f64();
    let rounding = rel_err(&cpu, &f32_features);
    println!("nat_pico features: CPU BF16 vs f32 rel err {rounding:.2e}");
    assert!(rounding < 0.05, "BF16 on the CPU: rel err {rounding:.3e}");

    let gpu = match nat.to_device(Device::Cuda(0)) {
        Ok(g) => g,
        Err(e) => {
            assert!(e.to_string().contains("no CUDA device"), "{e}");
            dinonat_engine::kernels::cuda::skip_gpu_test(&e.to_string());
            return;
        }
    };
    let on_gpu: Tensor = gpu
        .forward_features(
            &images.to(Device::Cuda(0)).unwrap(),
            false,
            &mut Rng::new(0),
        )
        .unwrap();
    assert!(on_gpu.is_cuda() && on_gpu.dtype() == DType::BF16);
    let e = rel_err(&on_gpu.try_to_vec_f64().unwrap(), &cpu);
    println!(
        "nat_pico features: CUDA BF16 vs CPU BF16 rel err {e:.2e} (bound {:.2e})",
        2.0 * rounding
    );
    assert!(
        e < 2.0 * rounding,
        "rel err {e:.3e}, BF16 rounding {rounding:.3e}"
    );
}
