//! Rough timings of engine ops in f32 (not a benchmark suite: one warm-up, then the median of a
//! few runs). `cargo run -p dinonat-bench --release --example engine_timing`

use dinonat_bench::timing::{median, wall_ms};
use dinonat_engine::{DType, Result, Rng, Tensor};

/// One warm-up call, then the median of `runs` calls, in ms.
fn median_ms(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let times = (0..runs)
        .map(|_| match wall_ms(&mut f) {
            (ms, Ok(())) => Ok(ms),
            (_, Err(e)) => Err(e),
        })
        .collect::<Result<Vec<f64>>>()?;
    Ok(median(times))
}

fn main() -> Result<()> {
    let mut rng = Rng::new(0);
    println!("threads: {}", rayon::current_num_threads());

    let x = rng.normal(&[64, 196, 384], 0.0, 1.0, DType::F32);
    let bias = rng.normal(&[384], 0.0, 1.0, DType::F32);
    let bytes = (x.numel() * 4 * 2) as f64;
    let ms = median_ms(9, || x.add(&bias).map(drop))?;
    println!(
        "add bias [64,196,384] + [384]: {ms:.2} ms ({:.1} GB/s)",
        bytes / ms / 1e6
    );
    let ms = median_ms(9, || x.mul(&x).map(drop))?;
    println!(
        "mul [64,196,384] * same:       {ms:.2} ms ({:.1} GB/s)",
        bytes * 1.5 / ms / 1e6
    );
    let ms = median_ms(9, || x.sum(2, false).map(drop))?;
    println!("sum over last axis:            {ms:.2} ms");

    let scores = rng.normal(&[64 * 6, 49, 49], 0.0, 1.0, DType::F32);
    let ms = median_ms(9, || scores.softmax().map(drop))?;
    println!("softmax [384,49,49]:           {ms:.2} ms");

    // A transformer MLP block on [8, 49, 192] tokens, forward and backward.
    let (c, hidden) = (192, 768);
    let tokens = rng.normal(&[8, 49, c], 0.0, 1.0, DType::F32);
    let g = Tensor::parameter("norm.weight", &Tensor::ones(&[c], DType::F32));
    let b = Tensor::parameter("norm.bias", &Tensor::zeros(&[c], DType::F32));
    let w1 = Tensor::parameter(
        "fc1.weight",
        &rng.trunc_normal(&[hidden, c], 0.0, 0.02, -2.0, 2.0, DType::F32)?,
    );
    let b1 = Tensor::parameter("fc1.bias", &Tensor::zeros(&[hidden], DType::F32));
    let w2 = Tensor::parameter(
        "fc2.weight",
        &rng.trunc_normal(&[c, hidden], 0.0, 0.02, -2.0, 2.0, DType::F32)?,
    );
    let b2 = Tensor::parameter("fc2.bias", &Tensor::zeros(&[c], DType::F32));
    let block = || -> Result<Tensor> {
        let h = tokens
            .layer_norm(&g, &b, 1e-6)?
            .linear(&w1, Some(&b1))?
            .gelu()?;
        tokens.add(&h.linear(&w2, Some(&b2))?)
    };
    let ms_f = median_ms(5, || block().map(drop))?;
    let ms_fb = median_ms(5, || block()?.mean_all()?.backward().map(drop))?;
    let flops = 2.0 * 8.0 * 49.0 * (c * hidden) as f64 * 2.0;
    println!(
        "MLP block [8,49,192] fwd:       {ms_f:.2} ms ({:.1} GFLOP/s in the GEMMs)",
        flops / ms_f / 1e6
    );
    println!("MLP block fwd + bwd:           {ms_fb:.2} ms");
    let (hits, misses) = dinonat_engine::pool::stats();
    println!("buffer pool: {hits} reused, {misses} fresh allocations");
    Ok(())
}
