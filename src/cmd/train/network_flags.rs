//! `dinonat train`'s network flags.

use clap::Args;

/// The network: backbone and DINO head (each defaults to the --init checkpoint's when there is one).
#[derive(Args, Debug)]
pub struct NetworkFlags {
    /// Backbone config (nat_pico, nat_nano, nat_mini, ...; dinat_ prefix, _full suffix)
    /// [default: nat_pico, or the --init checkpoint's].
    #[arg(long)]
    pub arch: Option<String>,
    /// K, the DINO head's output dimension [default: 1024, or the --init checkpoint's].
    #[arg(long)]
    pub out_dim: Option<usize>,
    /// Hidden width of the DINO head's MLP (DINO: 2048) [default: 512, or the --init checkpoint's].
    #[arg(long)]
    pub head_hidden: Option<usize>,
    /// Bottleneck width of the DINO head (DINO: 256) [default: 128, or the --init checkpoint's].
    #[arg(long)]
    pub head_bottleneck: Option<usize>,
    /// BatchNorm in the DINO head's hidden layers (DINO's use_bn_in_head; with --init, the
    /// checkpoint's).
    #[arg(long)]
    pub head_bn: bool,
}
