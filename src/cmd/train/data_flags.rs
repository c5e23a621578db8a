//! `dinonat train`'s data and crop flags.

use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// Multi-crop presets: global x 2 + local x n.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Crops {
    /// 2 x 224 + 8 x 96 (DINO's default).
    Dino,
    /// 2 x 64 + 8 x 32.
    Small,
    /// 2 x 32 + 8 x 16 (the built-in set's defaults use 4 local crops).
    Tiny,
}

/// The training images, the multi-crop views of them and the batch.
#[derive(Args, Debug)]
pub struct DataFlags {
    /// Image folder, IDX or CIFAR-10 directory; omitted: the built-in procedural data set.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Images in the procedural set.
    #[arg(long, default_value_t = 4096)]
    pub procedural_len: usize,
    /// Side of the procedural images in pixels.
    #[arg(long, default_value_t = 64)]
    pub procedural_size: usize,
    /// Crop preset; --global-size / --local-size / --local-crops override its parts.
    #[arg(long, value_enum, default_value = "tiny")]
    pub crops: Crops,
    #[arg(long)]
    pub global_size: Option<usize>,
    #[arg(long)]
    pub local_size: Option<usize>,
    /// Number of local crops.
    #[arg(long)]
    pub local_crops: Option<usize>,
    /// Images per step (the peak lr scales with it: --lr). Default: 64 on the built-in set, 32 with
    /// --data (RunDefaults).
    #[arg(long)]
    pub batch_size: Option<usize>,
}
