//! CIFAR-10 binary batches (data_batch_1..5.bin, test_batch.bin): records of 1 label byte followed by a 32x32
//! image stored planar (1024 red, 1024 green, 1024 blue bytes, rows top to bottom).

use super::read::{read_maybe_gz, MAX_DATA_FILE_BYTES};
use super::{DataError, Dataset, Result, RgbImage, Sample};
use std::path::{Path, PathBuf};

pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];
const SIDE: usize = 32;
const RECORD: usize = 1 + 3 * SIDE * SIDE;

pub struct Cifar10 {
    names: Vec<String>,
    /// (file, records in it) to map an index back to its file in messages.
    spans: Vec<usize>,
    records: Vec<u8>,
}

impl Cifar10 {
    pub fn open(files: &[PathBuf]) -> Result<Self> {
        let batches = files
            .iter()
            .map(|f| {
                Ok((
                    f.display().to_string(),
                    read_maybe_gz(f, MAX_DATA_FILE_BYTES)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Self::from_batches(batches)
    }

    /// The records of batch files already read, as (name, bytes); each is checked whole.
    pub fn from_batches(batches: Vec<(String, Vec<u8>)>) -> Result<Self> {
        let mut records = Vec::new();
        let mut names = Vec::new();
        let mut spans = Vec::new();
        for (name, bytes) in batches {
            if bytes.is_empty() || bytes.len() % RECORD != 0 {
                return Err(DataError::new(
                    name,
                    format!(
                        "{} bytes is not a multiple of the {RECORD}-byte CIFAR-10 record",
                        bytes.len()
                    ),
                ));
            }
            if let Some(r) = bytes.chunks(RECORD).position(|r| r[0] >= 10) {
                return Err(DataError::new(
                    name,
                    format!(
                        "record {r} has label {} (CIFAR-10 labels are 0..9)",
                        bytes[r * RECORD]
                    ),
                ));
            }
            spans.push(bytes.len() / RECORD);
            names.push(name);
            records.extend_from_slice(&bytes);
        }
        if records.is_empty() {
            return Err(DataError::new("CIFAR-10", "no batch files given"));
        }
        Ok(Self {
            names,
            spans,
            records,
        })
    }

    /// The train split (data_batch_1.bin .. data_batch_5.bin, those present) or the test split (test_batch.bin).
    pub fn open_dir(dir: impl AsRef<Path>, train: bool) -> Result<Self> {
        let dir = dir.as_ref();
        let files: Vec<PathBuf> = if train {
            (1..=5)
                .map(|k| dir.join(format!("data_batch_{k}.bin")))
                .filter(|p| p.is_file())
                .collect()
        } else {
            vec![dir.join("test_batch.bin")]
                .into_iter()
                .filter(|p| p.is_file())
                .collect()
        };
        if files.is_empty() {
            let want = if train {
                "data_batch_*.bin"
            } else {
                "test_batch.bin"
            };
            return Err(DataError::new(
                dir.display().to_string(),
                format!("holds no {want}"),
            ));
        }
        Self::open(&files)
    }
}

impl Dataset for Cifar10 {
    fn len(&self) -> usize {
        self.records.len() / RECORD
    }

    fn get(&self, i: usize) -> Result<Sample> {
        let r = &self.records[i * RECORD..(i + 1) * RECORD];
        let plane = SIDE * SIDE;
        let pixels = (0..plane)
            .flat_map(|p| [r[1 + p], r[1 + plane + p], r[1 + 2 * plane + p]])
            .collect();
        Ok(Sample {
            image: RgbImage::new(SIDE, SIDE, pixels),
            label: Some(r[0] as usize),
        })
    }

    fn class_names(&self) -> Option<Vec<String>> {
        Some(CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect())
    }

    fn describe(&self, i: usize) -> String {
        let mut k = i;
        for (name, &n) in self.names.iter().zip(&self.spans) {
            if k < n {
                return format!("{name}[{k}]");
            }
            k -= n;
        }
        format!("CIFAR-10[{i}]")
    }
}
