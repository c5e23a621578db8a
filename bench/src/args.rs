//! The flags of each `dinonat bench` command.

use clap::Args;

/// Where a benchmark computes: the one device flag of the command line.
pub use dinonat_report::args::DeviceArg as Device;

#[derive(Args, Clone, Debug)]
pub struct TrainStepArgs {
    /// Backbone config.
    #[arg(long, default_value = "nat_mini")]
    pub arch: String,
    /// Side of the (procedural) source images.
    #[arg(long, default_value_t = 64)]
    pub image_size: usize,
    /// Global crop size (2 global crops).
    #[arg(long, default_value_t = 64)]
    pub global_size: usize,
    /// Local crop size.
    #[arg(long, default_value_t = 32)]
    pub local_size: usize,
    /// Number of local crops.
    #[arg(long, default_value_t = 6)]
    pub local_crops: usize,
    /// Source images per step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// K, the DINO head's output dimension.
    #[arg(long, default_value_t = 4096)]
    pub out_dim: usize,
    /// Hidden width of the DINO head.
    #[arg(long, default_value_t = 2048)]
    pub head_hidden: usize,
    /// Bottleneck width of the DINO head.
    #[arg(long, default_value_t = 256)]
    pub head_bottleneck: usize,
    /// Unmeasured warm-up steps.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Measured steps.
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// Threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also time each kind of kernel (GEMM, NA, layer norm, copies, ...) in each phase of the
    /// measured steps, and what lies outside the kernels: a table of where the step goes.
    #[arg(long)]
    pub profile: bool,
    #[command(flatten)]
    pub precision: dinonat_report::args::PrecisionArgs,
    /// Where the steps run: cpu, or cuda (the whole step on the GPU; the kernels are timed after a
    /// device synchronisation at each phase's end).
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
    /// Activation checkpointing per NAT level of the student (`dinonat train --checkpoint-levels`).
    #[arg(long)]
    pub checkpoint_levels: bool,
}

#[derive(Args, Clone, Debug)]
pub struct AttentionArgs {
    /// Batch size.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 2)]
    pub heads: usize,
    /// Head dim.
    #[arg(long, default_value_t = 32)]
    pub dim: usize,
    /// Square grid sides to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![14usize, 28, 56, 112, 224])]
    pub sizes: Vec<usize>,
    /// Neighborhood kernel sizes (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![3usize, 7, 13])]
    pub kernels: Vec<usize>,
    /// Dilation of the neighborhood (both axes).
    #[arg(long, default_value_t = 1)]
    pub dilation: usize,
    /// Relative positional bias on (true) or off (false).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub rpb: bool,
    /// Which passes to time: fwd, fwd+bwd, or both.
    #[arg(long, default_value = "both")]
    pub pass: String,
    /// Skip full-attention cases above this many GFLOP per pass (listed as skipped).
    #[arg(long, default_value_t = 20.0)]
    pub flop_budget: f64,
    /// Threads (CPU; default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON object per case instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write a CSV of all cases here.
    #[arg(long)]
    pub csv: Option<std::path::PathBuf>,
    /// Draw time against tokens (log-log) into this PNG.
    #[arg(long)]
    pub png: Option<std::path::PathBuf>,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
    /// Element type on the GPU: f32 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

#[derive(Args, Clone, Debug)]
pub struct GemmArgs {
    /// Threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON object per shape instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only these shapes, as MxKxN (repeatable), e.g. --shape 1024x1024x1024.
    #[arg(long = "shape")]
    pub shapes: Vec<String>,
    /// `bf16`: also time the BF16 GEMM (CPU) beside f32, shape by shape in the same run.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Which operands are read transposed (CPU): `nn` (C = A B), `tn` (C = A^T B, a linear layer's
    /// weight gradient), `nt` (C = A B^T, its data gradient against a row-major weight).
    #[arg(long, default_value = "nn")]
    pub layout: String,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
}
