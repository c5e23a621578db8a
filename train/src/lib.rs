//! DinoNAT's training side: the data path (sources [`data`], multi-crop [`augment`], batching and prefetching
//! [`batch`], contact sheets [`grid`]), DINO ([`dino`]: loss, centre, schedules, teacher EMA) and its training
//! loop ([`trainer`]) with its checkpoints, and the policy of a run around it ([`run_policy`]: data-dependent
//! defaults, collapse warnings, the k-NN schedule, the deadline). Evaluation, attention maps and curation live in `dinonat-eval`, which
//! builds on the data path here.

pub mod augment;
pub mod batch;
pub mod data;
pub mod dino;
pub mod dist;
pub mod grid;
pub mod guard;
pub mod run_policy;
pub mod trainer;
