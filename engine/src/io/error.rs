//! The error of a tensor file read or write: it names the file and, where there is one, the tensor.

use std::fmt;
use std::path::{Path, PathBuf};

/// A failed read or write of a tensor file.
#[derive(Clone, Debug, PartialEq)]
pub struct IoError {
    pub path: PathBuf,
    /// The tensor concerned, when the problem is with one tensor.
    pub tensor: Option<String>,
    pub message: String,
}

impl IoError {
    pub(super) fn new(path: &Path, tensor: Option<&str>, message: impl Into<String>) -> IoError {
        IoError {
            path: path.to_path_buf(),
            tensor: tensor.map(str::to_string),
            message: message.into(),
        }
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tensor {
            Some(t) => write!(f, "{}: tensor '{t}': {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for IoError {}
