//! Opening a data set from a path given on a command line, by recognising its layout.

use super::{Cifar10, DataError, Dataset, IdxDataset, ImageFolder, Result};
use std::path::Path;

/// Open `path` as whichever source its layout says:
/// - a directory with `train-images-idx3-ubyte[.gz]` / `t10k-images-idx3-ubyte[.gz]`: IDX (MNIST, Fashion-MNIST),
///   the `train` or `t10k` split;
/// - a directory with `data_batch_1.bin` or `test_batch.bin`: CIFAR-10, the train or test split;
/// - a directory with both `train/` and `val/` sub-folders (Imagenette, thermset-mini): the ImageFolder
///   `train/` or `val/`;
/// - any other directory: an ImageFolder (class sub-folders or flat).
pub fn open_dataset(path: impl AsRef<Path>, train: bool) -> Result<Box<dyn Dataset>> {
    let path = path.as_ref();
    if !path.is_dir() {
        return Err(DataError::new(
            path.display().to_string(),
            "is not a directory",
        ));
    }
    let has = |f: &str| path.join(f).is_file() || path.join(format!("{f}.gz")).is_file();
    if has("train-images-idx3-ubyte") || has("t10k-images-idx3-ubyte") {
        return Ok(Box::new(IdxDataset::open_split(
            path,
            if train { "train" } else { "t10k" },
        )?));
    }
    if path.join("data_batch_1.bin").is_file() || path.join("test_batch.bin").is_file() {
        return Ok(Box::new(Cifar10::open_dir(path, train)?));
    }
    let split = path.join(if train { "train" } else { "val" });
    if split.is_dir() && (path.join("train").is_dir() && path.join("val").is_dir()) {
        return Ok(Box::new(ImageFolder::open(split)?));
    }
    Ok(Box::new(ImageFolder::open(path)?))
}
