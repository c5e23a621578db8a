//! Criterion: our SGEMM on cubes and the NAT shapes (see `--features compare` for third-party GEMMs).
use criterion::{criterion_group, criterion_main, Criterion};

fn gemm(_c: &mut Criterion) {}

criterion_group!(benches, gemm);
criterion_main!(benches);
