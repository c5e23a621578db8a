//! `dinonat bench ...`: measured, side-by-side timings (never timed unit tests).

pub mod gemm;
pub mod gemm_cuda;

use crate::Device;
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// SGEMM GFLOP/s over cubes 256..2048 and the NAT shapes.
    Gemm(GemmArgs),
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
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
}

pub fn run(which: BenchCommand) -> Result<(), String> {
    match which {
        BenchCommand::Gemm(args) => match args.device {
            Device::Cpu => gemm::run(&args),
            Device::Cuda => gemm_cuda::run(&args),
        },
    }
}
