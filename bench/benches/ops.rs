//! Criterion: softmax, LayerNorm and GELU forward over [8192, 512] f32, next to a plain copy of
//! the same size, as bytes moved per second (one read of the input + one write of the output:
//! 2 * 8192 * 512 * 4 bytes = 32 MiB per call), so the kernels' GB/s sit beside the copy's.
//!
//! Run: `cargo bench -p dinonat-bench --bench ops` (set `DINONAT_ISA=avx2|portable` to time a lower path).
//! Each kernel runs on 1 thread and on the whole rayon pool; the scalar references on 1 thread.
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use dinonat_bench::timing::random;
use dinonat_kernels::cpu::{gelu, isa, layernorm, softmax};
use rayon::prelude::*;
use std::hint::black_box;
use std::time::Duration;

const ROWS: usize = 8192;
const COLS: usize = 512;

/// A fixed pseudo-random pattern in [-4, 4).
fn input(n: usize) -> Vec<f32> {
    random(n, 1).into_iter().map(|v| 4.0 * v).collect()
}

fn ops(c: &mut Criterion) {
    let n = ROWS * COLS;
    let x = input(n);
    let gamma = vec![1.1f32; COLS];
    let beta = vec![0.1f32; COLS];
    let mut y = vec![0.0f32; n];
    let (mut mean, mut rstd) = (vec![0.0f32; ROWS], vec![0.0f32; ROWS]);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let threads = rayon::current_num_threads();
    eprintln!(
        "ops bench: isa {}, rayon pool {threads} threads",
        isa::active().name()
    );

    let mut g = c.benchmark_group(format!("ops_{ROWS}x{COLS}"));
    g.throughput(Throughput::Bytes((2 * n * 4) as u64));
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));

    g.bench_function("copy/1 thread", |b| {
        b.iter(|| y.copy_from_slice(black_box(&x)))
    });
    g.bench_function(format!("copy/{threads} threads"), |b| {
        b.iter(|| {
            y.par_chunks_mut(1 << 14)
                .zip(black_box(&x).par_chunks(1 << 14))
                .for_each(|(d, s)| d.copy_from_slice(s))
        })
    });

    let mut both = |name: &str, f: &mut (dyn FnMut() + Send)| {
        g.bench_function(format!("{name}/1 thread"), |b| {
            one.install(|| b.iter(&mut *f))
        });
        g.bench_function(format!("{name}/{threads} threads"), |b| b.iter(&mut *f));
    };
    both("softmax_forward", &mut || {
        softmax::softmax_forward(black_box(&x), &mut y, COLS)
    });
    both("layernorm_forward", &mut || {
        layernorm::layernorm_forward(
            black_box(&x),
            &gamma,
            &beta,
            1e-5,
            &mut y,
            &mut mean,
            &mut rstd,
            COLS,
        )
    });
    both("gelu_forward", &mut || {
        gelu::gelu_forward(black_box(&x), &mut y)
    });

    references(&mut g, &x, &mut y, &gamma, &beta, (&mut mean, &mut rstd));
    g.finish();
}

/// The scalar references of the three kernels, on one thread (the caller's).
fn references(
    g: &mut BenchmarkGroup<'_, WallTime>,
    x: &[f32],
    y: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    (mean, rstd): (&mut [f32], &mut [f32]),
) {
    g.bench_function("softmax_forward_reference/1 thread", |b| {
        b.iter(|| softmax::softmax_forward_reference(black_box(x), y, COLS))
    });
    g.bench_function("layernorm_forward_reference/1 thread", |b| {
        b.iter(|| {
            layernorm::layernorm_forward_reference(
                black_box(x),
                gamma,
                beta,
                1e-5,
                y,
                mean,
                rstd,
                COLS,
            )
        })
    });
    g.bench_function("gelu_forward_reference/1 thread", |b| {
        b.iter(|| gelu::gelu_forward_reference(black_box(x), y))
    });
}

criterion_group!(benches, ops);
criterion_main!(benches);
