//! `dinonat bench ...`: measured, side-by-side timings (never timed unit tests).

pub mod attention;
pub mod attention_cuda;
pub mod gemm;
#[cfg(feature = "gemm-dev")]
pub mod gemm_cuda;
mod profile;
pub mod train_step;

use crate::Device;
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// SGEMM GFLOP/s over cubes 256..2048 and the NAT shapes.
    Gemm(GemmArgs),
    /// Neighborhood attention against full self-attention: time, GFLOP/s and extra memory per grid size.
    Attention(AttentionArgs),
    /// Whole DINO training steps: img/s, forward / backward / optimiser / EMA / data split, GFLOP/s.
    TrainStep(TrainStepArgs),
}

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
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
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

/// Seconds of CPU (user + system) this process has used, all threads, from
/// `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)` (nanosecond resolution: the scheduler's own run-time
/// accounting); the one CPU-time helper of the benchmarks.
#[cfg(target_os = "linux")]
pub(crate) fn process_cpu_seconds() -> Option<f64> {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut t = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec (two 64-bit fields on 64-bit Linux) into `t`.
    let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    (rc == 0).then_some(t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn process_cpu_seconds() -> Option<f64> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::process_cpu_seconds;

    #[test]
    fn process_cpu_time_advances_with_work() {
        let start = process_cpu_seconds().expect("CLOCK_PROCESS_CPUTIME_ID on Linux");
        assert!(start > 0.0, "{start}");
        let (mut x, mut now) = (1u64, start);
        for _ in 0..1000 {
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
            }
            now = process_cpu_seconds().expect("clock");
            if now > start {
                break;
            }
        }
        assert!(
            now > start,
            "no CPU time counted after the work ({start} -> {now}, {x})"
        );
    }
}
