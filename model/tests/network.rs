//! Backbone + head over multi-crop batches, DINO names, save/load and teacher <- student copy.

use dinonat_engine::{no_grad, DType, Rng, Tensor};
use dinonat_model::{DinoHeadConfig, DinoNetwork, NatConfig};
use std::collections::HashMap;

fn network(seed: u64) -> DinoNetwork {
    let nat = NatConfig::nat_pico();
    let head = DinoHeadConfig {
        hidden_dim: 64,
        bottleneck_dim: 16,
        ..DinoHeadConfig::new(nat.num_features(), 32)
    };
    DinoNetwork::new(&nat, &head, DType::F32, seed).unwrap()
}

#[test]
fn multi_crop_forward_groups_resolutions_and_matches_single_crops() {
    let _g = no_grad();
    let net = network(1);
    let mut rng = Rng::new(2);
    let crops: Vec<Tensor> = [32, 32, 16, 16, 16]
        .iter()
        .map(|&s| rng.normal(&[2, 3, s, s], 0.0, 1.0, DType::F32))
        .collect();
    let all = net.forward_crops(&crops, false, &mut rng).unwrap();
    assert_eq!(all.shape(), [10, 32]);
    let all = all.to_vec::<f32>().unwrap();
    for (i, c) in crops.iter().enumerate() {
        let one = net
            .forward_crops(std::slice::from_ref(c), false, &mut rng)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        for (a, b) in one.iter().zip(&all[i * 64..(i + 1) * 64]) {
            assert!((a - b).abs() < 1e-5, "crop {i}: {a} vs {b}");
        }
    }
    assert!(net.forward_crops(&[], false, &mut rng).is_err());
}

#[test]
fn gradients_reach_backbone_and_head_through_the_crop_groups() {
    let net = network(7);
    let mut rng = Rng::new(8);
    let crops: Vec<Tensor> = [32, 16, 16]
        .iter()
        .map(|&s| rng.normal(&[2, 3, s, s], 0.0, 1.0, DType::F32))
        .collect();
    let loss = net
        .forward_crops(&crops, true, &mut rng)
        .unwrap()
        .log_softmax()
        .unwrap()
        .mean_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    for (name, p) in net.named_parameters() {
        assert_eq!(grads.get(&p.tensor).is_some(), p.requires_grad, "{name}");
    }
}

#[test]
fn names_save_load_and_copy() {
    let student = network(3);
    let teacher = network(4);
    let names: Vec<String> = student
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(names.contains(&"backbone.levels.0.blocks.0.attn.rpb".to_string()));
    assert!(names.contains(&"head.last_layer.weight_v".to_string()));
    teacher.copy_from(&student).unwrap();
    let bits = |n: &DinoNetwork| -> Vec<u32> {
        n.named_parameters()
            .iter()
            .flat_map(|(_, p)| p.tensor.to_vec::<f32>().unwrap())
            .map(f32::to_bits)
            .collect()
    };
    assert_eq!(bits(&student), bits(&teacher));

    let dir = std::env::temp_dir().join(format!("dinonat-network-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("student.safetensors");
    let meta = HashMap::from([("epoch".to_string(), "3".to_string())]);
    student.save(&path, &meta).unwrap();
    let other = network(5);
    assert_ne!(bits(&student), bits(&other));
    assert_eq!(
        other.load(&path).unwrap().get("epoch").map(String::as_str),
        Some("3")
    );
    assert_eq!(bits(&student), bits(&other));
    // the backbone loader reads the same file, ignoring the head with a note
    let (_, notes) = dinonat_model::load_backbone(&path, &NatConfig::nat_pico()).unwrap();
    assert!(
        notes.len() == 1 && notes[0].contains("head.last_layer.weight_g"),
        "{notes:?}"
    );
    // a different head does not load
    let nat = NatConfig::nat_pico();
    let wide = DinoNetwork::new(
        &nat,
        &DinoHeadConfig {
            hidden_dim: 64,
            bottleneck_dim: 16,
            ..DinoHeadConfig::new(128, 48)
        },
        DType::F32,
        6,
    )
    .unwrap();
    let e = wide.load(&path).unwrap_err().to_string();
    assert!(
        e.contains("head.last_layer.weight_v") && e.contains("[48, 16]"),
        "{e}"
    );
    assert!(DinoNetwork::new(&nat, &DinoHeadConfig::new(100, 8), DType::F32, 0).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `to_device` moves backbone and head together: on a GPU the moved network's logits match the
/// CPU's (relative L2 < 1e-4, f32 on both); without one, the engine's "no CUDA device" error.
#[test]
fn network_to_cuda_matches_the_cpu_or_is_an_error() {
    use dinonat_engine::Device;
    let _g = no_grad();
    let net = network(5);
    assert_eq!(net.to_device(Device::Cpu).unwrap().device(), Device::Cpu);
    let gpu = match net.to_device(Device::Cuda(0)) {
        Ok(g) => g,
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("no CUDA device: use --device cpu"), "{msg}");
            dinonat_engine::kernels::cuda::skip_gpu_test(&msg);
            return;
        }
    };
    assert_eq!(
        (gpu.device(), gpu.head.params.device()),
        (Device::Cuda(0), Device::Cuda(0))
    );
    let mut rng = Rng::new(6);
    let crops: Vec<Tensor> = [32, 16]
        .iter()
        .map(|&s| rng.normal(&[2, 3, s, s], 0.0, 1.0, DType::F32))
        .collect();
    let want = net
        .forward_crops(&crops, false, &mut rng)
        .unwrap()
        .to_vec_f64();
    let on_gpu: Vec<Tensor> = crops
        .iter()
        .map(|c| c.to(Device::Cuda(0)).unwrap())
        .collect();
    let got = gpu
        .forward_crops(&on_gpu, false, &mut rng)
        .unwrap()
        .to_vec_f64();
    let num: f64 = got.iter().zip(&want).map(|(a, b)| (a - b) * (a - b)).sum();
    let den: f64 = want.iter().map(|b| b * b).sum();
    let rel = (num / den).sqrt();
    println!("DINO network logits on CUDA vs CPU: rel L2 {rel:.2e}");
    assert!(rel < 1e-4, "rel L2 {rel:.3e}");
}
