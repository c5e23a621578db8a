//! The attention ops on CUDA (neighborhood_attention_2d(_qkv), attention(_qkv); kernels in
//! kernels::cuda) against the same ops on the CPU: forward values and every input gradient
//! (through autodiff, loss = sum(y * w) with random w) within a relative-norm tolerance.
//! Without a GPU each test checks the "no CUDA device" error of `Tensor::to` and prints why it
//! skips the rest.

use dinonat_engine::{DType, Device, Tensor};

mod common;
use common::*;

fn rpb_shape(heads: usize, kernel: [usize; 2]) -> [usize; 3] {
    [heads, 2 * kernel[0] - 1, 2 * kernel[1] - 1]
}

#[test]
fn neighborhood_attention_2d_matches_cpu() {
    if !gpu_or_skip() {
        return;
    }
    let mut r = Rng::new("na2d");
    // (shape [B, H, W, heads, d], kernel, dilation): odd sizes, a 1 x 1 grid, dilation > 1.
    let cases: [([usize; 5], [usize; 2], [usize; 2]); 4] = [
        ([2, 7, 9, 2, 5], [3, 5], [1, 2]),
        ([1, 5, 5, 1, 33], [5, 5], [1, 1]),
        ([1, 1, 1, 3, 7], [1, 1], [1, 1]),
        ([2, 13, 6, 2, 64], [7, 3], [2, 1]),
    ];
    for (s, kernel, dilation) in cases {
        let scale = 1.0 / (s[4] as f64).sqrt();
        let q = r.tensor(&s, -1.0, 1.0);
        let k = r.tensor(&s, -1.0, 1.0);
        let v = r.tensor(&s, -1.0, 1.0);
        let rpb = r.tensor(&rpb_shape(s[3], kernel), -1.0, 1.0);
        let label = format!("na2d {s:?} kernel {kernel:?} dilation {dilation:?}");
        parity(
            &mut r,
            &format!("{label} rpb"),
            &[q.clone(), k.clone(), v.clone(), rpb],
            &move |x| {
                x[0].neighborhood_attention_2d(&x[1], &x[2], Some(&x[3]), kernel, dilation, scale)
            },
        );
        parity(&mut r, &label, &[q, k, v], &move |x| {
            x[0].neighborhood_attention_2d(&x[1], &x[2], None, kernel, dilation, scale)
        });
    }
}

#[test]
fn neighborhood_attention_2d_qkv_matches_cpu() {
    if !gpu_or_skip() {
        return;
    }
    let mut r = Rng::new("na2d_qkv");
    let (heads, d) = (2, 8);
    let kernel = [3, 3];
    let qkv = r.tensor(&[2, 6, 7, 3 * heads * d], -1.0, 1.0);
    let rpb = r.tensor(&rpb_shape(heads, kernel), -1.0, 1.0);
    parity(&mut r, "na2d_qkv rpb", &[qkv.clone(), rpb], &move |x| {
        x[0].neighborhood_attention_2d_qkv(heads, Some(&x[1]), kernel, [2, 1], 0.35)
    });
    // A strided input: the fused channels of a permuted tensor (copied to row-major first).
    let t = r.tensor(&[2, 7, 6, 3 * heads * d], -1.0, 1.0);
    parity(&mut r, "na2d_qkv transposed grid", &[t], &move |x| {
        x[0].transpose(1, 2)?
            .neighborhood_attention_2d_qkv(heads, None, kernel, [1, 1], 0.35)
    });
}

#[test]
fn attention_matches_cpu() {
    if !gpu_or_skip() {
        return;
    }
    let mut r = Rng::new("attention");
    for s in [[2, 33, 2, 5], [1, 1, 1, 3], [2, 70, 3, 64], [1, 257, 1, 7]] {
        let scale = 1.0 / (s[3] as f64).sqrt();
        let q = r.tensor(&s, -1.0, 1.0);
        let k = r.tensor(&s, -1.0, 1.0);
        let v = r.tensor(&s, -1.0, 1.0);
        parity(&mut r, &format!("attention {s:?}"), &[q, k, v], &move |x| {
            x[0].attention(&x[1], &x[2], scale)
        });
    }
    let (heads, d) = (3, 8);
    let qkv = r.tensor(&[2, 17, 3 * heads * d], -1.0, 1.0);
    parity(&mut r, "attention_qkv", &[qkv], &move |x| {
        x[0].attention_qkv(heads, 0.3)
    });
}

#[test]
fn attention_on_mixed_devices_is_an_error() {
    if !gpu_or_skip() {
        return;
    }
    let q = Tensor::ones(&[1, 4, 1, 2], DType::F32);
    let g = q.to(Device::Cuda(0)).unwrap();
    let e = g.attention(&q, &g, 1.0).unwrap_err().to_string();
    assert!(e.contains("different devices"), "{e}");
    let s = [1, 3, 3, 1, 2];
    let q = Tensor::ones(&s, DType::F32);
    let g = q.to(Device::Cuda(0)).unwrap();
    let rpb = Tensor::ones(&rpb_shape(1, [3, 3]), DType::F32);
    let e = g
        .neighborhood_attention_2d(&g, &g, Some(&rpb), [3, 3], [1, 1], 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("different devices"), "{e}");
}
