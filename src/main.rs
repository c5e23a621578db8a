//! The `dinonat` command line: subcommands that call the library crates, nothing else.

mod bench;
mod cmd_eval;
mod info;
#[allow(dead_code)] // used by `dinonat bench attention` and training reports once they land
mod plot;

use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "dinonat",
    version,
    about = "Neighborhood Attention Transformers trained with DINO, from scratch in Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// CPU features, the kernel path chosen for each kernel, threads, and the GPU if any.
    Info,
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        which: bench::BenchCommand,
    },
    /// Weighted k-NN (k = 20, T = 0.07) on frozen features: top-1 / top-5 on a val split.
    Knn(cmd_eval::KnnArgs),
    /// Linear probe on cached frozen features: top-1 / top-5 on a val split.
    Linear(cmd_eval::LinearArgs),
}

/// Where a command computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Device {
    Cpu,
    Cuda,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info::run(),
        Command::Bench { which } => bench::run(which),
        Command::Knn(args) => cmd_eval::run_knn(args),
        Command::Linear(args) => cmd_eval::run_linear(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
