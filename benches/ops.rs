//! Criterion: softmax and layernorm forward bandwidth next to a plain copy.
use criterion::{criterion_group, criterion_main, Criterion};

fn ops(_c: &mut Criterion) {}

criterion_group!(benches, ops);
criterion_main!(benches);
