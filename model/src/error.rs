//! Errors as values: engine errors, file errors, and checkpoint mismatches that list every
//! missing or mis-shaped tensor at once.

use dinonat_engine::io::IoError;
use dinonat_engine::EngineError;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum ModelError {
    Engine(EngineError),
    Io(IoError),
    /// A config that cannot build a network (names the field).
    Config(String),
    /// A checkpoint that does not fit the architecture.
    Checkpoint {
        path: String,
        arch: String,
        missing: Vec<String>,
        /// (name, expected shape, shape in the file)
        mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
        unexpected: Vec<String>,
    },
}

impl From<EngineError> for ModelError {
    fn from(e: EngineError) -> Self {
        ModelError::Engine(e)
    }
}
impl From<IoError> for ModelError {
    fn from(e: IoError) -> Self {
        ModelError::Io(e)
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Engine(e) => write!(f, "{e}"),
            ModelError::Io(e) => write!(f, "{e}"),
            ModelError::Config(m) => write!(f, "config: {m}"),
            ModelError::Checkpoint {
                path,
                arch,
                missing,
                mismatched,
                unexpected,
            } => {
                let mut parts = Vec::new();
                if !missing.is_empty() {
                    parts.push(format!(
                        "{} missing tensor(s): {}",
                        missing.len(),
                        missing.join(", ")
                    ));
                }
                for (name, want, got) in mismatched {
                    parts.push(format!("{name} has shape {got:?}, expected {want:?}"));
                }
                if !unexpected.is_empty() {
                    parts.push(format!(
                        "{} unexpected tensor(s): {}",
                        unexpected.len(),
                        unexpected.join(", ")
                    ));
                }
                write!(f, "{path} does not fit {arch}: {}", parts.join("; "))
            }
        }
    }
}

impl std::error::Error for ModelError {}

pub type Result<T> = std::result::Result<T, ModelError>;
