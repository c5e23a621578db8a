//! An in-memory cache of decoded samples, so JPEG decoding is paid once per file rather than once per epoch.

use super::{Dataset, Result, Sample};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Wraps a source and keeps decoded samples up to `max_bytes` of pixel data; beyond the budget samples are decoded
/// on every `get`. Errors are not cached (a file fixed on disk is read again).
pub struct CachedDataset<D: Dataset> {
    inner: D,
    slots: Vec<OnceLock<Sample>>,
    max_bytes: usize,
    used_bytes: AtomicUsize,
}

impl<D: Dataset> CachedDataset<D> {
    pub fn new(inner: D, max_bytes: usize) -> Self {
        let slots = (0..inner.len()).map(|_| OnceLock::new()).collect();
        Self {
            inner,
            slots,
            max_bytes,
            used_bytes: AtomicUsize::new(0),
        }
    }

    /// Bytes of pixel data held.
    pub fn cached_bytes(&self) -> usize {
        self.used_bytes.load(Ordering::Relaxed)
    }

    pub fn inner(&self) -> &D {
        &self.inner
    }
}

impl<D: Dataset> Dataset for CachedDataset<D> {
    fn len(&self) -> usize {
        self.slots.len()
    }

    fn get(&self, i: usize) -> Result<Sample> {
        if let Some(s) = self.slots[i].get() {
            return Ok(s.clone());
        }
        let s = self.inner.get(i)?;
        let bytes = s.image.pixels.len();
        // Reserve the bytes first so concurrent callers never overshoot the budget.
        let reserved = self
            .used_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                (u + bytes <= self.max_bytes).then_some(u + bytes)
            })
            .is_ok();
        if reserved && self.slots[i].set(s.clone()).is_err() {
            self.used_bytes.fetch_sub(bytes, Ordering::Relaxed); // another thread cached it first
        }
        Ok(s)
    }

    fn class_names(&self) -> Option<Vec<String>> {
        self.inner.class_names()
    }

    fn describe(&self, i: usize) -> String {
        self.inner.describe(i)
    }
}
