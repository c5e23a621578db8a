//! The training error: its message names the parameter, file or shape at fault.

use std::fmt;

/// A training error; the message names the flag, file or shape at fault.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainError(pub String);

impl TrainError {
    /// An error of the parameter `param` (a `TrainConfig` field; the command line maps it to its flag).
    pub fn param(param: &str, e: impl fmt::Display) -> TrainError {
        TrainError(format!("{param}: {e}"))
    }
}
impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for TrainError {}

macro_rules! from_error {
    ($($t:ty),*) => {$(
        impl From<$t> for TrainError {
            fn from(e: $t) -> Self {
                TrainError(e.to_string())
            }
        }
    )*};
}
from_error!(
    dinonat_engine::EngineError,
    dinonat_engine::io::IoError,
    dinonat_model::ModelError,
    crate::data::DataError
);

pub type Result<T> = std::result::Result<T, TrainError>;
