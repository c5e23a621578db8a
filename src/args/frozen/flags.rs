//! The flags of the frozen-feature commands (`knn`, `linear`): the labelled splits ([`DataArgs`])
//! and the features ([`FeatureArgs`]), and the library's parameter names mapped to them.

use crate::args::{DeviceArg, PrecisionArgs};
use clap::Args;
use dinonat_train::data::Procedural;
use std::path::PathBuf;

/// Where the images come from.
#[derive(Args, Debug)]
pub struct DataArgs {
    /// Training split (memory bank / probe training set): an ImageFolder with class sub-folders (or any layout
    /// `open_dataset` recognises: IDX, CIFAR-10, a folder with train/ and val/).
    #[arg(long, value_name = "DIR")]
    pub train: Option<PathBuf>,
    /// Validation split (queries / probe evaluation set), same layouts as --train.
    #[arg(long, value_name = "DIR")]
    pub val: Option<PathBuf>,
    /// Use the built-in procedural data set instead of folders: train = seed 1, val = seed 2.
    #[arg(long, conflicts_with_all = ["train", "val"])]
    pub builtin: bool,
    /// Number of built-in training images.
    #[arg(long, default_value_t = 2000)]
    pub builtin_train: usize,
    /// Number of built-in validation images.
    #[arg(long, default_value_t = 500)]
    pub builtin_val: usize,
    /// Side of the built-in images before the evaluation transform.
    #[arg(long, default_value_t = Procedural::DEFAULT_SIZE)]
    pub builtin_image_size: usize,
    /// Use only N training images, spread evenly over the split (keeps the class balance of sorted folders).
    #[arg(long, value_name = "N")]
    pub limit_train: Option<usize>,
    /// Use only N validation images, spread evenly over the split.
    #[arg(long, value_name = "N")]
    pub limit_val: Option<usize>,
}

/// Which features.
#[derive(Args, Clone, Debug)]
pub struct FeatureArgs {
    /// Raw normalised pixels of the transformed image as features (the baseline).
    #[arg(long, conflicts_with_all = ["weights", "random_init", "checkpoint"])]
    pub pixels: bool,
    /// A `dinonat train` checkpoint: its teacher backbone (`teacher.backbone.*`); the architecture comes from the
    /// checkpoint's config (an --arch must match it).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["weights", "random_init"])]
    pub checkpoint: Option<PathBuf>,
    /// Backbone weights (safetensors under NAT names; a DinoNetwork file's `backbone.*` also loads); the architecture
    /// is --arch, else the file's `arch` metadata.
    #[arg(long, value_name = "FILE", conflicts_with = "random_init")]
    pub weights: Option<PathBuf>,
    /// A randomly initialised backbone (seeded by --seed); needs --arch.
    #[arg(long)]
    pub random_init: bool,
    /// Backbone architecture (nat_pico, nat_nano, nat_mini, ...; dinat_ prefix / _full suffix allowed).
    #[arg(long, value_name = "NAME")]
    pub arch: Option<String>,
    /// Seed of --random-init and of the linear probe.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// With --random-init: repeat with N backbones (seeds --seed, --seed + 1, ...) and report mean +- std.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seeds: usize,
    /// Evaluation transform: resize the shorter side to N, centre-crop N x N [default: 32 for *pico*, else 64].
    #[arg(long, value_name = "N")]
    pub size: Option<usize>,
    /// Images per forward pass during extraction.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// One JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub precision: PrecisionArgs,
    /// Where the features are extracted: cpu, or cuda (the backbone moved to the GPU).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
}

/// The library's parameters as these commands' flags.
const FLAGS: &[(&str, &str)] = &[
    ("train", "--train"),
    ("val", "--val"),
    ("size", "--size"),
    ("batch_size", "--batch-size"),
    ("builtin_train", "--builtin-train"),
    ("builtin_val", "--builtin-val"),
    ("builtin_image_size", "--builtin-image-size"),
    ("limit_train", "--limit-train"),
    ("limit_val", "--limit-val"),
];

pub(super) fn flagged(e: impl ToString) -> String {
    crate::args::param_flags(e, FLAGS, true)
}
