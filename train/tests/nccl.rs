//! The NCCL collective on one GPU (cargo feature `nccl`; run by the packed GPU check,
//! scripts/gpu-check-nccl.sh): a world of one rank, where NCCL's all-reduce must give back its input
//! exactly (sum = input x 1, mean = input), on a buffer the size of nat_mini's gradients cut into
//! buckets of awkward sizes; broadcast; and the trainer's gradient averaging taking CUDA gradients
//! through NCCL and CPU ones through the host collective. Without a GPU or libnccl each test checks
//! that the error is a value naming what is missing and prints why it skips (a failure under
//! DINONAT_REQUIRE_GPU=1).
#![cfg(feature = "nccl")]

use dinonat_engine::autograd::Gradients;
use dinonat_engine::{Device, Rng, Tensor};
use dinonat_train::dist::nccl::{Nccl, NcclWorld, Reduce};
use dinonat_train::dist::{Collective, Single};
use dinonat_train::trainer::parallel::average_gradients;
use std::rc::Rc;

/// About nat_mini's gradients with K 1024 (25.5 M f32, 102 MB; docs/distributed.md), made odd.
const NAT_MINI_GRADIENTS: usize = 25_500_001;

fn world_or_skip() -> Option<NcclWorld> {
    match NcclWorld::new(Rc::new(Single)) {
        Ok(w) => Some(w),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("libnccl") || msg.contains("NCCL") || msg.contains("no CUDA device"),
                "the error must name what is missing: {msg}"
            );
            dinonat_engine::kernels::cuda::skip_gpu_test(&msg);
            None
        }
    }
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    rng.uniform_vec(n)
        .iter()
        .map(|u| (u * 4.0 - 2.0) as f32)
        .collect()
}

fn nccl(world: &NcclWorld) -> &Nccl {
    world.nccl()
}

#[test]
fn world_of_one_all_reduce_of_a_nat_mini_sized_buffer_gives_back_its_input() {
    let Some(world) = world_or_skip() else {
        return;
    };
    let c = nccl(&world);
    let (major, minor, patch) = c.version();
    println!(
        "nccl {major}.{minor}.{patch}, rank {} of {}, on {}",
        c.rank(),
        c.size(),
        c.device().info().name
    );
    assert_eq!((c.rank(), c.size()), (0, 1));
    let dev = c.device();
    let input = random(NAT_MINI_GRADIENTS, 19);
    // three buckets of awkward sizes, reduced as one NCCL group
    let cuts = [0, 1, 1_000_003, NAT_MINI_GRADIENTS];
    for op in [Reduce::Sum, Reduce::Mean] {
        let mut buckets: Vec<_> = cuts
            .windows(2)
            .map(|w| dev.upload(&input[w[0]..w[1]]).unwrap())
            .collect();
        let mut refs: Vec<_> = buckets.iter_mut().collect();
        c.all_reduce(&mut refs, op).unwrap();
        let mut got = Vec::with_capacity(input.len());
        for b in &buckets {
            got.extend(dev.download(b).unwrap());
        }
        let differ = got.iter().zip(&input).filter(|(a, b)| a != b).count();
        println!(
            "all-reduce {op:?} in place, 1 rank, {} values in 3 buckets: {differ} differ from the input",
            got.len()
        );
        assert_eq!(
            differ, 0,
            "{op:?}: a world of one must give back its input exactly"
        );
    }
    // out of place, into a poisoned buffer
    let send = dev.upload(&input).unwrap();
    let mut recv = dev.upload(&vec![f32::NAN; input.len()]).unwrap();
    c.all_reduce_into(&send, &mut recv, Reduce::Sum).unwrap();
    let got = dev.download(&recv).unwrap();
    assert!(got == input, "out-of-place sum into a NaN-poisoned buffer");
    let mut short = dev.upload(&input[..7]).unwrap();
    let e = c
        .all_reduce_into(&send, &mut short, Reduce::Sum)
        .unwrap_err();
    assert!(e.to_string().contains("values to send"), "{e}");
}

#[test]
fn broadcast_from_the_only_rank_keeps_the_buffer_and_a_bad_root_is_an_error() {
    let Some(world) = world_or_skip() else {
        return;
    };
    let c = nccl(&world);
    let input = random(1_234_567, 23);
    let mut buf = c.device().upload(&input).unwrap();
    c.broadcast(&mut buf, 0).unwrap();
    assert!(c.device().download(&buf).unwrap() == input);
    let e = c.broadcast(&mut buf, 1).unwrap_err();
    assert!(e.to_string().contains("root 1"), "{e}");
}

#[test]
fn trainer_averages_cuda_gradients_through_nccl_and_cpu_ones_through_the_host() {
    let Some(world) = world_or_skip() else {
        return;
    };
    assert_eq!(world.name(), "nccl");
    let shapes: [&[usize]; 3] = [&[3, 5], &[7], &[2, 3, 11]];
    let mut params = Vec::new();
    let mut grads = Gradients::default();
    let mut want = Vec::new();
    for (i, shape) in shapes.iter().enumerate() {
        let n = shape.iter().product();
        let p = Tensor::parameter(
            format!("p{i}"),
            &Tensor::from_vec(random(n, i as u64), shape).unwrap(),
        );
        let values = random(n, 100 + i as u64);
        let mut g = Tensor::from_slice(&values, shape).unwrap();
        if i != 1 {
            g = g.to(Device::Cuda(0)).unwrap();
        }
        grads.insert(&p, g);
        params.push((format!("p{i}"), p));
        want.push(values);
    }
    average_gradients(&world, &mut grads, &params).unwrap();
    for (i, (_, p)) in params.iter().enumerate() {
        let g = grads.get(p).unwrap();
        let device = if i != 1 { Device::Cuda(0) } else { Device::Cpu };
        assert_eq!(g.device(), device, "p{i} stays where it was");
        assert_eq!(g.shape(), shapes[i]);
        assert!(
            g.to_vec::<f32>().unwrap() == want[i],
            "p{i}: the mean over one rank is itself"
        );
    }
}
