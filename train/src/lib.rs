//! DinoNAT's training side. This crate holds the data path: sources ([`data`]), multi-crop augmentation
//! ([`augment`]), batching and prefetching ([`batch`]) and contact sheets ([`grid`]). It works on plain f32
//! buffers so it can be tested without the engine.

pub mod augment;
pub mod batch;
pub mod curate;
pub mod data;
pub mod dino;
pub mod eval;
pub mod features;
pub mod grid;
pub mod maps;
pub mod rng;
pub mod trainer;
