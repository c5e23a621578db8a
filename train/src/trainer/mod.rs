//! The DINO training loop (`dinonat train`; docs/training.md). One step reads like Algorithm 1 of
//! the paper (../shared/docs/dino.md):
//!
//!   crops -> teacher(global views), student(all views) -> loss -> backward -> clip per tensor ->
//!   drop the last layer's gradient while frozen -> AdamW -> teacher EMA -> centre update -> log.
//!
//! [`config`] says what a run is, [`network`] builds student and teacher, [`state`] holds them
//! and starts a run (fresh, `--init` or resumed), [`step`] is one iteration, [`run`] the loop over
//! the steps, [`checkpoint`] saves and restores everything a resumed run needs, [`log`] writes the
//! per-step diagnostics, [`parallel`] the data-parallel parts. Every child imports its siblings,
//! never this facade.

pub mod checkpoint;
pub mod config;
mod error;
pub mod log;
pub mod network;
pub mod overlap;
pub mod parallel;
mod run;
mod state;
mod step;

pub use checkpoint::checkpoint_path;
pub use error::{Result, TrainError};
pub use state::{Control, StepTimings, Trainer, DEFAULT_BUCKET_BYTES};
