//! Measures the data path and a raw-pixel baseline on the procedural set:
//!   cargo run -p dinonat-bench --release --example data_throughput [path/to/imagefolder]
//! Prints images/s for procedural generation, multi-crop batches (small and DINO presets) and, when a folder is
//! given, decoding + DINO multi-crop on it; then the k-NN (k = 20, cosine) top-1 of raw pixels on procedural data.

use dinonat_bench::timing::wall_ms;
use dinonat_train::augment::{EvalTransform, MultiCropConfig};
use dinonat_train::batch::{eval_batch, BatchBuilder};
use dinonat_train::data::{BadSamples, Dataset, ErrorPolicy, ImageFolder, Procedural};
use std::sync::Arc;

fn rate(what: &str, n: usize, f: impl FnOnce()) {
    let s = wall_ms(f).0 / 1e3;
    println!(
        "{what:<48} {n:>5} images in {s:>6.2} s = {:>7.1} img/s",
        n as f64 / s
    );
}

fn knn_top1(
    train: &[f32],
    train_y: &[usize],
    val: &[f32],
    val_y: &[usize],
    dim: usize,
    k: usize,
) -> f64 {
    let unit = |x: &[f32]| -> Vec<f32> {
        x.chunks(dim)
            .flat_map(|v| {
                let m = v.iter().sum::<f32>() / dim as f32;
                let n = v
                    .iter()
                    .map(|a| (a - m) * (a - m))
                    .sum::<f32>()
                    .sqrt()
                    .max(1e-12);
                v.iter().map(move |a| (a - m) / n)
            })
            .collect()
    };
    let (tr, va) = (unit(train), unit(val));
    let mut correct = 0;
    for (q, &y) in va.chunks(dim).zip(val_y) {
        let mut sims: Vec<(f32, usize)> = tr
            .chunks(dim)
            .zip(train_y)
            .map(|(t, &c)| (t.iter().zip(q).map(|(a, b)| a * b).sum(), c))
            .collect();
        sims.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut votes = [0f32; 10];
        sims.iter()
            .take(k)
            .for_each(|(s, c)| votes[*c] += (s / 0.07).exp());
        let best = (0..10)
            .max_by(|&a, &b| votes[a].total_cmp(&votes[b]))
            .unwrap();
        correct += (best == y) as usize;
    }
    correct as f64 / val_y.len() as f64
}

fn main() {
    let threads = rayon::current_num_threads();
    println!("rayon threads: {threads}");
    let proc64 = Procedural::new(0, 2048, 64);
    rate("procedural 64 px, generate (1 thread)", 512, || {
        (0..512).for_each(|i| drop(proc64.get(i)))
    });

    let small = BatchBuilder::new(Arc::new(proc64.clone()), MultiCropConfig::small(), 0);
    let idx: Vec<usize> = (0..256).collect();
    rate("procedural 64 px -> 2x64 + 8x32 multi-crop", 256, || {
        drop(small.build(0, &idx).unwrap())
    });
    let proc160 = Procedural::new(0, 64, 160);
    let dino = BatchBuilder::new(Arc::new(proc160), MultiCropConfig::dino(), 0);
    let idx: Vec<usize> = (0..64).collect();
    rate("procedural 160 px -> 2x224 + 8x96 multi-crop", 64, || {
        drop(dino.build(0, &idx).unwrap())
    });

    if let Some(dir) = std::env::args().nth(1) {
        let folder = Arc::new(ImageFolder::open(&dir).expect("open image folder"));
        let n = folder.len().min(128);
        let idx: Vec<usize> = (0..n).collect();
        rate("folder: decode only", n, || {
            idx.iter().for_each(|&i| drop(folder.get(i).unwrap()))
        });
        let b = BatchBuilder::new(folder, MultiCropConfig::dino(), 0);
        rate("folder: decode + 2x224 + 8x96 multi-crop", n, || {
            drop(b.build(0, &idx).unwrap())
        });
    }

    let (train, val) = (Procedural::new(1, 2000, 64), Procedural::new(2, 500, 64));
    let t = EvalTransform::square(32);
    let bad = BadSamples::default();
    let all = |d: &Procedural| {
        eval_batch(
            d,
            &t,
            &(0..d.len()).collect::<Vec<_>>(),
            ErrorPolicy::Stop,
            &bad,
        )
        .unwrap()
    };
    let (xt, yt) = all(&train);
    let (xv, yv) = all(&val);
    let lab = |y: Vec<Option<usize>>| y.into_iter().map(|v| v.unwrap()).collect::<Vec<_>>();
    let acc = knn_top1(&xt, &lab(yt), &xv, &lab(yv), 3 * 32 * 32, 20);
    println!(
        "raw-pixel k-NN (k 20, 32 px, 2000 train / 500 val) top-1: {:.1}% (chance 10%)",
        100.0 * acc
    );
}
