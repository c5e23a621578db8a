//! The argument groups of the frozen-feature commands (`knn`, `linear`): the labelled splits
//! ([`DataArgs`]) and the features ([`FeatureArgs`]), and the loop over seeds they share; the
//! evaluation itself is `dinonat_eval::frozen`.

mod features;
mod flags;
mod seeds;

pub use flags::{DataArgs, FeatureArgs};
pub use seeds::run_seeds;
