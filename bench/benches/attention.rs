//! Criterion: neighborhood attention and full (flash) attention kernels, forward and
//! forward+backward, on a fused QKV buffer `[batch, H, W, 3 * heads * dim]` (the NAT block's
//! layout), f32. NA at the target shape (B4 h2 56x56 d32, k7, rpb) and at B4 h4 28x28 d32; full
//! attention at B4 h4 28x28 d32 and at the target shape. `dinonat bench attention` sweeps sizes.
use criterion::{criterion_group, criterion_main, Criterion};
use dinonat_bench::timing::random;
use dinonat_kernels::cpu::attention::{attention_backward, attention_forward, Attention};
use dinonat_kernels::cpu::neighborhood_attention::{
    neighborhood_attention_2d_backward, neighborhood_attention_2d_forward, HeadsGradsMut, HeadsRef,
    HeadsView, Na2d,
};
use std::hint::black_box;
use std::time::Duration;

/// (batch, side, heads, dim)
const NA_SHAPES: [(usize, usize, usize, usize); 2] = [(4, 56, 2, 32), (4, 28, 4, 32)];
const FULL_SHAPES: [(usize, usize, usize, usize); 2] = [(4, 28, 4, 32), (4, 56, 2, 32)];

fn neighborhood(c: &mut Criterion) {
    let mut g = c.benchmark_group("neighborhood_attention");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for (b, side, heads, dim) in NA_SHAPES {
        let p = Na2d::new(b, side, side, heads, dim, [7, 7]);
        let n = p.out_len();
        let qkv = random(3 * n, 1);
        let d_out = random(n, 2);
        let rpb = random(p.rpb_len(), 3);
        let (mut out, mut attn) = (vec![0.0; n], vec![0.0; p.attn_len()]);
        let (mut d_qkv, mut d_rpb) = (vec![0.0; 3 * n], vec![0.0; p.rpb_len()]);
        let v = [0, 1, 2].map(|w| HeadsView::fused_qkv(side, side, heads, dim, w));
        let r = |view| HeadsRef { data: &qkv, view };
        let label = format!("B{b} h{heads} {side}x{side} d{dim} k7 rpb");
        g.bench_function(format!("fwd {label}"), |bench| {
            bench.iter(|| {
                neighborhood_attention_2d_forward(
                    &p,
                    r(v[0]),
                    r(v[1]),
                    r(v[2]),
                    Some(&rpb),
                    &mut out,
                    &mut attn,
                );
                black_box(&out);
            })
        });
        g.bench_function(format!("fwd+bwd {label}"), |bench| {
            bench.iter(|| {
                neighborhood_attention_2d_forward(
                    &p,
                    r(v[0]),
                    r(v[1]),
                    r(v[2]),
                    Some(&rpb),
                    &mut out,
                    &mut attn,
                );
                let grads = HeadsGradsMut {
                    data: &mut d_qkv,
                    dq: v[0],
                    dk: v[1],
                    dv: v[2],
                };
                neighborhood_attention_2d_backward(
                    &p,
                    r(v[0]),
                    r(v[1]),
                    r(v[2]),
                    &attn,
                    &d_out,
                    grads,
                    Some(&mut d_rpb),
                );
                black_box(&d_qkv);
            })
        });
    }
    g.finish();
}

fn full(c: &mut Criterion) {
    let mut g = c.benchmark_group("attention");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for (b, side, heads, dim) in FULL_SHAPES {
        let p = Attention::new(b, side * side, heads, dim);
        let n = p.out_len();
        let qkv = random(3 * n, 1);
        let d_out = random(n, 2);
        let (mut out, mut lse) = (vec![0.0; n], vec![0.0; p.lse_len()]);
        let mut d_qkv = vec![0.0; 3 * n];
        let v = [0, 1, 2].map(|w| HeadsView::fused_qkv(1, p.tokens, heads, dim, w));
        let r = |view| HeadsRef { data: &qkv, view };
        let label = format!("B{b} h{heads} {side}x{side} d{dim}");
        g.bench_function(format!("fwd {label}"), |bench| {
            bench.iter(|| {
                attention_forward(&p, r(v[0]), r(v[1]), r(v[2]), &mut out, &mut lse);
                black_box(&out);
            })
        });
        g.bench_function(format!("fwd+bwd {label}"), |bench| {
            bench.iter(|| {
                attention_forward(&p, r(v[0]), r(v[1]), r(v[2]), &mut out, &mut lse);
                let grads = HeadsGradsMut {
                    data: &mut d_qkv,
                    dq: v[0],
                    dk: v[1],
                    dv: v[2],
                };
                attention_backward(&p, r(v[0]), r(v[1]), r(v[2]), &out, &lse, &d_out, grads);
                black_box(&d_qkv);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, neighborhood, full);
criterion_main!(benches);
