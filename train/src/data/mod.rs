//! Data sources behind one trait (docs/data.md).
//!
//! A source yields [`Sample`]s: an 8-bit RGB image of any size plus an optional class label. Decoding happens in
//! `get`, so opening a folder of thousands of files is cheap; a file that fails to decode is reported by path and
//! handled by an [`ErrorPolicy`] in [`get_with_policy`].

mod cache;
mod cifar;
mod idx;
mod image_folder;
mod open;
pub mod procedural;
pub mod read;

pub use cache::CachedDataset;
pub use cifar::{Cifar10, CIFAR10_CLASSES};
pub use idx::{parse_idx_file, IdxDataset};
pub use image_folder::ImageFolder;
pub use open::open_dataset;
pub use procedural::{ObjectBox, Procedural, ProceduralPair, PROCEDURAL_CLASSES};
pub use read::{decode_image, read_image, warn};

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// An 8-bit RGB image, interleaved (r, g, b, r, g, b, ...), row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl RgbImage {
    pub fn new(width: usize, height: usize, pixels: Vec<u8>) -> Self {
        assert_eq!(
            pixels.len(),
            width * height * 3,
            "RgbImage {width}x{height} needs {} bytes",
            width * height * 3
        );
        Self {
            width,
            height,
            pixels,
        }
    }

    /// Gray (one byte per pixel) replicated to three channels.
    pub fn from_gray(width: usize, height: usize, gray: &[u8]) -> Self {
        assert_eq!(
            gray.len(),
            width * height,
            "gray image {width}x{height} needs {} bytes",
            width * height
        );
        Self::new(
            width,
            height,
            gray.iter().flat_map(|&g| [g, g, g]).collect(),
        )
    }

    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let o = (y * self.width + x) * 3;
        [self.pixels[o], self.pixels[o + 1], self.pixels[o + 2]]
    }
}

/// One item of a data set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub image: RgbImage,
    /// Class id, when the source has labels.
    pub label: Option<usize>,
}

/// A data error; `source_name` names the file (or data set and index) it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataError {
    pub source_name: String,
    pub message: String,
}

impl DataError {
    pub fn new(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            source_name: source_name.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source_name, self.message)
    }
}

impl std::error::Error for DataError {}

pub type Result<T> = std::result::Result<T, DataError>;

/// A random-access collection of samples. Implementations are shared across worker threads.
pub trait Dataset: Send + Sync {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decode sample `i` (0 <= i < len). Errors name the file.
    fn get(&self, i: usize) -> Result<Sample>;

    /// Class names in id order, when the source is labelled.
    fn class_names(&self) -> Option<Vec<String>> {
        None
    }

    /// Where sample `i` comes from (a path, or "set[i]"), for messages.
    fn describe(&self, i: usize) -> String {
        format!("sample {i}")
    }
}

impl<D: Dataset + ?Sized> Dataset for std::sync::Arc<D> {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn get(&self, i: usize) -> Result<Sample> {
        (**self).get(i)
    }
    fn class_names(&self) -> Option<Vec<String>> {
        (**self).class_names()
    }
    fn describe(&self, i: usize) -> String {
        (**self).describe(i)
    }
}

/// What to do when a sample cannot be read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorPolicy {
    /// Count it, warn once, remember it, and use the next readable sample instead (the default).
    #[default]
    Skip,
    /// Return the error (which names the file).
    Stop,
}

/// The unreadable samples met so far (shared by the loader threads). Each is read once: a sample
/// that failed is skipped without being decoded again in later epochs.
#[derive(Debug, Default)]
pub struct BadSamples {
    count: AtomicUsize,
    errors: Mutex<(HashSet<usize>, Vec<DataError>)>,
}

impl BadSamples {
    /// How many reads were skipped (a bad file met twice counts twice).
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// The distinct errors, sorted by source for a stable report.
    pub fn errors(&self) -> Vec<DataError> {
        let mut e = self.lock().1.clone();
        e.sort_by(|a, b| a.source_name.cmp(&b.source_name));
        e
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (HashSet<usize>, Vec<DataError>)> {
        self.errors.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_known(&self, i: usize) -> bool {
        let known = self.lock().0.contains(&i);
        if known {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        known
    }

    /// Counts the failure of sample `i`; the first failure of each sample is a warning on stderr.
    fn record(&self, i: usize, e: DataError) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.lock();
        if errors.0.insert(i) {
            warn(format!(
                "{e}; skipped (a strict run stops at the first unreadable file)"
            ));
            errors.1.push(e);
        }
    }
}

/// Read sample `i` under `policy`. With [`ErrorPolicy::Skip`] an unreadable sample is recorded in `bad` and the
/// next index (cyclically) is tried, so the result depends only on which files are bad, never on timing. Returns
/// the index actually used with its sample.
pub fn get_with_policy(
    dataset: &dyn Dataset,
    i: usize,
    policy: ErrorPolicy,
    bad: &BadSamples,
) -> Result<(usize, Sample)> {
    let n = dataset.len();
    if n == 0 {
        return Err(DataError::new("data set", "is empty"));
    }
    for step in 0..n {
        let j = (i + step) % n;
        if policy == ErrorPolicy::Skip && bad.is_known(j) {
            continue;
        }
        match dataset.get(j) {
            Ok(s) => return Ok((j, s)),
            Err(e) if policy == ErrorPolicy::Skip => bad.record(j, e),
            Err(e) => return Err(e),
        }
    }
    Err(DataError::new(
        "data set",
        format!(
            "none of its {n} samples could be read ({} errors)",
            bad.count()
        ),
    ))
}
