//! What the training crate's integration tests share: a scratch directory, the tiny run, the GPU
//! skip. (Each test binary uses part of it.)
#![allow(dead_code)]

use dinonat_engine::{DType, Device, Tensor};
use dinonat_train::trainer::config::TrainConfig;
use std::path::{Path, PathBuf};

/// A fresh, empty directory under the system's temporary directory, unique to this process.
pub fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dinonat-train-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// nat_pico on 16 / 8 px crops, K = 32, a 16-image procedural set, 4 steps of batch 4.
pub fn tiny(out_dir: &Path) -> TrainConfig {
    TrainConfig {
        arch: "nat_pico".into(),
        out_dim: 32,
        head_hidden_dim: 32,
        head_bottleneck_dim: 16,
        procedural_len: 16,
        procedural_size: 24,
        global_size: 16,
        local_size: 8,
        n_local: 2,
        batch_size: 4,
        steps: 4,
        base_lr: 0.05,
        teacher_temp: 0.07,
        checkpoint_every: 0,
        out_dir: out_dir.to_path_buf(),
        ..TrainConfig::default()
    }
}

/// Whether a GPU test can run; without a GPU, checks the engine's "no CUDA device" error and
/// prints why the test skips (a failure under `DINONAT_REQUIRE_GPU=1`).
pub fn gpu_or_skip() -> bool {
    match Tensor::zeros(&[1], DType::F32).to(Device::Cuda(0)) {
        Ok(_) => true,
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("no CUDA device: use --device cpu"), "{msg}");
            dinonat_engine::kernels::cuda::skip_gpu_test(&msg);
            false
        }
    }
}
