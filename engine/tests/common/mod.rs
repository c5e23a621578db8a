//! Helpers shared by the CUDA parity tests of the engine (tests/cuda.rs, tests/cuda_attention.rs):
//! tolerances, the GPU-or-skip guard, a seeded input generator and the forward/gradient parity check.

#![allow(dead_code)] // each test binary uses its own subset

use dinonat_engine::{DType, Device, Result, Tensor};

/// Forward: relative-norm error vs the CPU's f32 result (FP32 SIMT GEMM on the GPU; different summation orders).
pub const TOL_FORWARD: f64 = 2e-5;
/// Gradients: f32 on both sides, summed in different orders.
pub const TOL_BACKWARD: f64 = 1e-4;

pub fn gpu_or_skip() -> bool {
    match Tensor::zeros(&[2], DType::F32).to(Device::Cuda(0)) {
        Ok(t) => {
            assert!(t.is_cuda());
            true
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("no CUDA device: use --device cpu"),
                "unexpected error without a GPU: {msg}"
            );
            dinonat_engine::kernels::cuda::skip_gpu_test(&msg);
            false
        }
    }
}

pub struct Rng(u64);
impl Rng {
    /// A fresh seed from the clock, printed; `DINONAT_TEST_SEED=N` replays a printed seed.
    pub fn new(label: &str) -> Rng {
        let t = match std::env::var("DINONAT_TEST_SEED") {
            Ok(s) => s
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("DINONAT_TEST_SEED={s:?}: expected an integer")),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
        };
        println!("{label}: seed {}", t | 1);
        Rng(t | 1)
    }
    pub fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        (bits as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn tensor(&mut self, shape: &[usize], lo: f32, hi: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| lo + (hi - lo) * (self.uniform() * 0.5 + 0.5))
            .collect();
        Tensor::from_vec(v, shape).unwrap()
    }
}

pub fn rel_err(got: &[f32], exact: &[f32]) -> f64 {
    assert_eq!(got.len(), exact.len());
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&g, &e) in got.iter().zip(exact) {
        if !g.is_finite() {
            return f64::INFINITY;
        }
        num += (g as f64 - e as f64).powi(2);
        den += (e as f64).powi(2);
    }
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

pub type OpFn = dyn Fn(&[Tensor]) -> Result<Tensor>;

/// Runs `f` on the CPU and on the GPU; compares y and d(sum(y * w))/d input for every input.
pub fn parity(rng: &mut Rng, name: &str, inputs: &[Tensor], f: &OpFn) {
    parity_within(rng, name, inputs, f, (TOL_FORWARD, TOL_BACKWARD));
}

/// [`parity`] with the (forward, gradient) tolerances given.
pub fn parity_within(rng: &mut Rng, name: &str, inputs: &[Tensor], f: &OpFn, tol: (f64, f64)) {
    let cpu_in: Vec<Tensor> = inputs.iter().map(|t| t.with_grad()).collect();
    let y = f(&cpu_in).unwrap_or_else(|e| panic!("{name} on CPU: {e}"));
    let w = rng.tensor(y.shape(), -1.0, 1.0);
    let grads = y.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();

    let gpu_in: Vec<Tensor> = inputs
        .iter()
        .map(|t| t.to(Device::Cuda(0)).unwrap().with_grad())
        .collect();
    let yg = f(&gpu_in).unwrap_or_else(|e| panic!("{name} on CUDA: {e}"));
    assert!(yg.is_cuda(), "{name}: result not on the GPU");
    let wg = w.to(Device::Cuda(0)).unwrap();
    let grads_g = yg
        .mul(&wg)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap_or_else(|e| panic!("{name} backward on CUDA: {e}"));
    let e = rel_err(&yg.to_vec::<f32>().unwrap(), &y.to_vec::<f32>().unwrap());
    println!("{name}: forward rel err {e:.2e}");
    assert!(
        e < tol.0,
        "{name}: forward rel err {e:.3e} (tol {:.0e})",
        tol.0
    );
    for (i, (c, g)) in cpu_in.iter().zip(&gpu_in).enumerate() {
        let gc = grads
            .get(c)
            .unwrap_or_else(|| panic!("{name}: no CPU grad {i}"));
        let gg = grads_g
            .get(g)
            .unwrap_or_else(|| panic!("{name}: no CUDA grad {i}"));
        assert!(gg.is_cuda(), "{name}: grad {i} not on the GPU");
        let e = rel_err(&gg.to_vec::<f32>().unwrap(), &gc.to_vec::<f32>().unwrap());
        println!("{name}: grad {i} rel err {e:.2e}");
        assert!(
            e < tol.1,
            "{name}: grad {i} rel err {e:.3e} (tol {:.0e})",
            tol.1
        );
    }
}
