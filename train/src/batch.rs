//! Batches of multi-crop views, built in parallel, and a prefetcher that builds the next batch while the current
//! one trains.
//!
//! Layout: one contiguous buffer per crop size, `[views_of_that_size * N, 3, S, S]`, view-major (all N images of
//! the first view of that size, then all N of the next), i.e. the concatenation DINO's student forward makes of
//! same-resolution crops. The teacher's input is the first `2 * N` images of the global buffer.

use crate::augment::{EvalTransform, MultiCropConfig};
use crate::data::{get_with_policy, BadSamples, Dataset, ErrorPolicy, Result};
use dinonat_engine::SplitMix64;
use rayon::prelude::*;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// All views of one crop size for a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct CropBatch {
    pub size: usize,
    /// Number of views of this size per image.
    pub views: usize,
    /// `[views * batch, 3, size, size]`, view-major.
    pub data: Vec<f32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MultiCropBatch {
    /// The data set indices that were requested.
    pub indices: Vec<usize>,
    /// Labels of the samples used (None for unlabelled sources).
    pub labels: Vec<Option<usize>>,
    /// One entry per distinct crop size, in view order (global first).
    pub crops: Vec<CropBatch>,
}

/// Builds batches of multi-crop views from a data set. Cheap to share (`Arc`) with a [`Prefetcher`].
pub struct BatchBuilder {
    pub dataset: Arc<dyn Dataset>,
    pub config: MultiCropConfig,
    pub seed: u64,
    pub policy: ErrorPolicy,
    /// Unreadable samples skipped so far (with `ErrorPolicy::Skip`).
    pub bad: Arc<BadSamples>,
}

impl BatchBuilder {
    pub fn new(dataset: Arc<dyn Dataset>, config: MultiCropConfig, seed: u64) -> Self {
        Self {
            dataset,
            config,
            seed,
            policy: ErrorPolicy::Skip,
            bad: Arc::new(BadSamples::default()),
        }
    }

    /// The epoch's shuffled index order cut into batches (a permutation drawn from (seed, epoch) alone).
    pub fn epoch_batches(&self, epoch: u64, batch_size: usize, drop_last: bool) -> Vec<Vec<usize>> {
        let order =
            SplitMix64::keyed(&[self.seed, epoch, u64::MAX]).permutation(self.dataset.len());
        order
            .chunks(batch_size.max(1))
            .filter(|c| !drop_last || c.len() == batch_size)
            .map(|c| c.to_vec())
            .collect()
    }

    /// Decode and augment `indices` in parallel. The result is identical for any number of threads.
    pub fn build(&self, epoch: u64, indices: &[usize]) -> Result<MultiCropBatch> {
        let per_item: Vec<(Option<usize>, Vec<crate::augment::Planar>)> = indices
            .par_iter()
            .map(|&i| {
                let (_, sample) =
                    get_with_policy(self.dataset.as_ref(), i, self.policy, &self.bad)?;
                Ok((
                    sample.label,
                    self.config
                        .multi_crop(&sample.image, self.seed, epoch, i as u64),
                ))
            })
            .collect::<Result<_>>()?;
        let n = indices.len();
        let specs = self.config.views();
        let mut sizes: Vec<usize> = Vec::new();
        for s in &specs {
            if !sizes.contains(&s.size) {
                sizes.push(s.size);
            }
        }
        let crops = sizes
            .iter()
            .map(|&size| {
                let view_ids: Vec<usize> = (0..specs.len())
                    .filter(|&v| specs[v].size == size)
                    .collect();
                let plane = 3 * size * size;
                let mut data = vec![0f32; view_ids.len() * n * plane];
                data.par_chunks_mut(plane).enumerate().for_each(|(k, dst)| {
                    dst.copy_from_slice(&per_item[k % n].1[view_ids[k / n]].data);
                });
                CropBatch {
                    size,
                    views: view_ids.len(),
                    data,
                }
            })
            .collect();
        Ok(MultiCropBatch {
            indices: indices.to_vec(),
            labels: per_item.iter().map(|p| p.0).collect(),
            crops,
        })
    }
}

/// Evaluation batch `[N, 3, S, S]` (no augmentation) with labels.
pub fn eval_batch(
    dataset: &dyn Dataset,
    transform: &EvalTransform,
    indices: &[usize],
    policy: ErrorPolicy,
    bad: &BadSamples,
) -> Result<(Vec<f32>, Vec<Option<usize>>)> {
    let items: Vec<(Option<usize>, Vec<f32>)> = indices
        .par_iter()
        .map(|&i| {
            let (_, s) = get_with_policy(dataset, i, policy, bad)?;
            Ok((s.label, transform.apply(&s.image).data))
        })
        .collect::<Result<_>>()?;
    let labels = items.iter().map(|x| x.0).collect();
    Ok((items.into_iter().flat_map(|x| x.1).collect(), labels))
}

/// Builds batches on a background thread, at most `depth` ahead of the consumer (a bounded channel).
/// Iterating yields the batches in order; dropping it stops the thread after the batch in progress.
pub struct Prefetcher {
    receiver: Option<Receiver<Result<MultiCropBatch>>>,
    worker: Option<JoinHandle<()>>,
}

impl Prefetcher {
    pub fn new(
        builder: Arc<BatchBuilder>,
        epoch: u64,
        batches: Vec<Vec<usize>>,
        depth: usize,
    ) -> Self {
        let (tx, rx) = sync_channel(depth.max(1));
        let worker = std::thread::spawn(move || {
            for b in batches {
                let result = builder.build(epoch, &b);
                let failed = result.is_err();
                if tx.send(result).is_err() || failed {
                    break; // consumer gone, or an error was delivered (Stop policy)
                }
            }
        });
        Self {
            receiver: Some(rx),
            worker: Some(worker),
        }
    }
}

impl Iterator for Prefetcher {
    type Item = Result<MultiCropBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.receiver.as_ref()?.recv().ok()
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.receiver.take(); // unblocks a worker waiting to send
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
