//! DinoNAT's training side: the data path (sources [`data`], multi-crop [`augment`], batching and prefetching
//! [`batch`], contact sheets [`grid`]), DINO ([`dino`]: loss, centre, schedules, teacher EMA) and its training
//! loop ([`trainer`]), frozen-feature evaluation ([`features`], [`eval`]), attention maps ([`maps`]) and
//! dataset curation ([`curate`]).

pub mod augment;
pub mod batch;
pub mod curate;
pub mod data;
pub mod dino;
pub mod dist;
pub mod eval;
pub mod features;
pub mod grid;
pub mod guard;
pub mod maps;
pub mod trainer;
