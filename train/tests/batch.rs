//! Batch building (layout, thread-count independence, error policy) and prefetching.

use dinonat_train::augment::{EvalTransform, MultiCropConfig};
use dinonat_train::batch::{eval_batch, BatchBuilder, Prefetcher};
use dinonat_train::data::{
    BadSamples, DataError, Dataset, ErrorPolicy, Procedural, Result, Sample,
};
use std::sync::Arc;

fn builder(len: usize) -> BatchBuilder {
    let cfg = MultiCropConfig {
        n_local: 3,
        ..MultiCropConfig::tiny()
    };
    BatchBuilder::new(Arc::new(Procedural::new(11, len, 40)), cfg, 5)
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn batch_layout_is_view_major_per_crop_size() {
    let b = builder(12);
    let idx = [4usize, 0, 9];
    let batch = b.build(1, &idx).unwrap();
    assert_eq!(batch.labels, [Some(4), Some(0), Some(9)]);
    assert_eq!(batch.crops.len(), 2);
    let (g, l) = (&batch.crops[0], &batch.crops[1]);
    assert_eq!(
        (g.size, g.views, g.data.len()),
        (32, 2, 2 * 3 * 3 * 32 * 32)
    );
    assert_eq!(
        (l.size, l.views, l.data.len()),
        (16, 3, 3 * 3 * 3 * 16 * 16)
    );
    // Image k of view v sits at (v * N + k): compare with the views made one sample at a time.
    let views = b
        .config
        .multi_crop(&b.dataset.get(9).unwrap().image, b.seed, 1, 9);
    let g_plane = 3 * 32 * 32;
    assert_eq!(
        &g.data[(3 + 2) * g_plane..(3 + 3) * g_plane],
        &views[1].data[..]
    );
    let l_plane = 3 * 16 * 16;
    assert_eq!(
        &l.data[(2 * 3 + 2) * l_plane..(2 * 3 + 3) * l_plane],
        &views[4].data[..]
    );
}

#[test]
fn batches_identical_with_one_and_two_threads() {
    let b = builder(16);
    let idx: Vec<usize> = (0..7).collect();
    let one = in_pool(1, || b.build(3, &idx).unwrap());
    let two = in_pool(2, || b.build(3, &idx).unwrap());
    assert_eq!(one, two);
    let other_epoch = b.build(4, &idx).unwrap();
    assert_ne!(one.crops[0].data, other_epoch.crops[0].data);
}

#[test]
fn epoch_batches_are_a_deterministic_permutation() {
    let b = builder(23);
    let e0 = b.epoch_batches(0, 5, false);
    assert_eq!(e0.len(), 5);
    let mut all: Vec<usize> = e0.concat();
    all.sort_unstable();
    assert_eq!(all, (0..23).collect::<Vec<_>>());
    assert_eq!(e0, b.epoch_batches(0, 5, false));
    assert_ne!(e0, b.epoch_batches(1, 5, false));
    assert!(b.epoch_batches(0, 5, true).iter().all(|x| x.len() == 5));
}

#[test]
fn prefetcher_yields_the_same_batches_in_order() {
    let b = Arc::new(builder(20));
    let batches = b.epoch_batches(2, 4, true);
    let direct: Vec<_> = batches.iter().map(|x| b.build(2, x).unwrap()).collect();
    let fetched: Vec<_> = Prefetcher::new(b.clone(), 2, batches.clone(), 2)
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(direct, fetched);
    // Dropping it early stops the worker without hanging.
    let mut p = Prefetcher::new(b, 2, batches, 1);
    assert!(p.next().is_some());
    drop(p);
}

/// Procedural data where some indices fail like unreadable files.
struct Flaky {
    inner: Procedural,
    bad: Vec<usize>,
}

impl Dataset for Flaky {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn get(&self, i: usize) -> Result<Sample> {
        if self.bad.contains(&i) {
            return Err(DataError::new(
                format!("flaky/{i}.png"),
                "cannot decode image",
            ));
        }
        self.inner.get(i)
    }
}

#[test]
fn unreadable_samples_skipped_by_default_and_stop_reports_path() {
    let data = Arc::new(Flaky {
        inner: Procedural::new(1, 10, 24),
        bad: vec![2, 3],
    });
    let mut b = BatchBuilder::new(
        data.clone(),
        MultiCropConfig {
            n_local: 2,
            ..MultiCropConfig::tiny()
        },
        0,
    );
    let batch = b.build(0, &[1, 2, 5]).unwrap();
    assert_eq!(
        batch.labels,
        [Some(1), Some(4), Some(5)],
        "2 and 3 unreadable: index 4 used instead"
    );
    assert_eq!(b.bad.count(), 2);
    assert_eq!(b.bad.errors().len(), 2);
    b.policy = ErrorPolicy::Stop;
    let e = b.build(0, &[1, 3]).unwrap_err();
    assert!(e.to_string().contains("flaky/3.png"), "{e}");
    let (x, labels) = eval_batch(
        data.as_ref(),
        &EvalTransform::square(8),
        &[3, 0],
        ErrorPolicy::Skip,
        &BadSamples::default(),
    )
    .unwrap();
    assert_eq!(x.len(), 2 * 3 * 8 * 8);
    assert_eq!(labels, [Some(4), Some(0)]);
}
