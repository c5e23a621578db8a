//! Criterion: our SGEMM on cubes and the NAT shapes (see `--features compare` for third-party GEMMs).
//!
//! `cargo bench -p dinonat-bench --bench gemm` times `dinonat_kernels::cpu::gemm::sgemm` (row-major C = A B, all
//! rayon threads); `cargo bench -p dinonat-bench --bench gemm --features compare` adds, on the same shapes and
//! buffers, `matrixmultiply::sgemm` (single-threaded unless its `threading` feature is on) and
//! `gemm::gemm` (rayon, all threads). Throughput is reported as elements = flops (2 m k n).
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
// Cubes, then the NAT shapes: the same as `dinonat bench gemm`.
use dinonat_bench::gemm::SHAPES;
use dinonat_bench::timing::random;
use dinonat_kernels::cpu::gemm::{sgemm, Layout};
use std::hint::black_box;
use std::time::Duration;

fn gemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("sgemm");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for &(m, k, n) in &SHAPES {
        let name = format!("{m}x{k}x{n}");
        let a = random(m * k, 1);
        let b = random(k * n, 2);
        let mut out = vec![0.0f32; m * n];
        group.throughput(Throughput::Elements(2 * (m * k * n) as u64));
        group.bench_function(BenchmarkId::new("dinonat", &name), |bch| {
            bch.iter(|| {
                sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    black_box(&a),
                    Layout::row_major(k),
                    black_box(&b),
                    Layout::row_major(n),
                    0.0,
                    &mut out,
                    Layout::row_major(n),
                )
            })
        });
        #[cfg(feature = "compare")]
        third_party(&mut group, &name, (m, k, n), &a, &b, &mut out);
    }
    group.finish();
}

/// `matrixmultiply::sgemm` and `gemm::gemm` on the same shape and buffers (`--features compare`).
#[cfg(feature = "compare")]
fn third_party(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
) {
    group.bench_function(BenchmarkId::new("matrixmultiply", name), |bch| {
        // SAFETY: a, b, out hold m x k, k x n and m x n row-major matrices.
        bch.iter(|| unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                black_box(a.as_ptr()),
                k as isize,
                1,
                black_box(b.as_ptr()),
                n as isize,
                1,
                0.0,
                out.as_mut_ptr(),
                n as isize,
                1,
            )
        })
    });
    group.bench_function(BenchmarkId::new("gemm", name), |bch| {
        // SAFETY: as above; gemm's dst := alpha dst + beta lhs rhs, read_dst = false.
        bch.iter(|| unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                false,
                black_box(a.as_ptr()),
                1,
                k as isize,
                black_box(b.as_ptr()),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(rayon::current_num_threads()),
            )
        })
    });
}

criterion_group!(benches, gemm);
criterion_main!(benches);
