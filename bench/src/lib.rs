//! The benchmarks of DinoNAT in one place: `dinonat bench ...` (this library: measured,
//! side-by-side timings, never timed unit tests), the criterion benches (benches/), and the timing
//! and diagnostic examples (examples/; README.md lists them). Every timing goes through
//! `timing` (median of repeats after a warm-up, process CPU time, GFLOP/s).

mod args;
pub mod attention;
pub mod attention_cuda;
pub mod gemm;
#[cfg(feature = "gemm-dev")]
pub mod gemm_cuda;
mod profile;
pub mod timing;
pub mod train_step;

pub use args::{AttentionArgs, Device, GemmArgs, TrainStepArgs};

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// SGEMM GFLOP/s over cubes 256..2048 and the NAT shapes.
    Gemm(GemmArgs),
    /// Neighborhood attention against full self-attention: time, GFLOP/s and extra memory per grid size.
    Attention(AttentionArgs),
    /// Whole DINO training steps: img/s, forward / backward / optimiser / EMA / data split, GFLOP/s.
    TrainStep(TrainStepArgs),
}

pub fn run(which: BenchCommand) -> Result<(), String> {
    match which {
        BenchCommand::Gemm(args) => match args.device {
            Device::Cpu => gemm::run(&args),
            #[cfg(feature = "gemm-dev")]
            Device::Cuda => gemm_cuda::run(&args),
            #[cfg(not(feature = "gemm-dev"))]
            Device::Cuda => Err(
                "bench gemm --device cuda times the GEMM dev corner: build with \
                                 `cargo build --release --features gemm-dev`"
                    .to_string(),
            ),
        },
        BenchCommand::Attention(args) => match args.device {
            Device::Cpu => attention::run(&args),
            Device::Cuda => attention_cuda::run(&args),
        },
        BenchCommand::TrainStep(args) => train_step::run(&args),
    }
}
