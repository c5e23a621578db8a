//! The `dinonat` command line: subcommands that call the library crates, nothing else.

mod args;
mod cmd;

use clap::{Parser, Subcommand};
use cmd::{
    attention, boxes, builtin, convert, crossmodal, duplicates, embed, exemplars, export, filter,
    info, knn, linear, train,
};
use dinonat_report::{plot, progress};
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
    /// Decoded-pixel budget per image, in megapixels, checked from the header before decoding
    /// (a larger image is an unreadable file).
    #[arg(long, global = true, value_name = "MP", default_value_t = 64.0)]
    max_megapixels: f64,
}

// Parsed once per process: boxing the larger argument structs would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// CPU features, the kernel path chosen for each kernel, threads, and the GPU if any.
    Info,
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        which: dinonat_bench::BenchCommand,
    },
    /// DINO self-supervised training of a NAT (docs/training.md).
    Train(train::TrainArgs),
    /// Writes the teacher backbone of a training checkpoint as a backbone file.
    Export(export::ExportArgs),
    /// Writes a PyTorch `.pth` (official NAT / DiNAT, DINO, Hugging Face names) as a backbone file.
    Convert(convert::ConvertArgs),
    /// Embeddings of a folder of images (safetensors + CSV of paths).
    Embed(embed::EmbedArgs),
    /// Near-duplicates, outliers, clusters and exemplar matches of a folder (report + contact sheets).
    Filter(filter::FilterArgs),
    /// RGB <-> IR retrieval and attention-mask IoU of image pairs with the same file name.
    Crossmodal(crossmodal::CrossModalArgs),
    /// Near-duplicate detection measured against the clips of video frames (network, pixels, hash).
    Duplicates(duplicates::DuplicatesArgs),
    /// The filter's two-sided exemplar rule scored as a retrieval of one class (network and pixels).
    Exemplars(exemplars::ExemplarsArgs),
    /// Attention maps of NAT (pooled query, neighbourhood, PCA) as PNGs.
    Attention(attention::AttentionArgs),
    /// Share of the thresholded attention inside YOLO boxes, against the boxes' area (chance).
    Boxes(boxes::BoxesArgs),
    /// Writes the built-in procedural set (RGB, thermal twins, YOLO boxes) to folders.
    Builtin(builtin::BuiltinArgs),
    /// Weighted k-NN (k = 20, T = 0.07) on frozen features: top-1 / top-5 on a val split.
    Knn(knn::KnnArgs),
    /// Linear probe on cached frozen features: top-1 / top-5 on a val split.
    Linear(linear::LinearArgs),
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse_from(train::expand_recipe(std::env::args_os().collect()));
    if !(cli.max_megapixels > 0.0 && cli.max_megapixels <= 1024.0) {
        eprintln!(
            "error: --max-megapixels {}: must be in (0, 1024]",
            cli.max_megapixels
        );
        return ExitCode::FAILURE;
    }
    dinonat_train::data::read::set_max_pixels((cli.max_megapixels * 1e6) as u64);
    let result = match cli.command {
        Command::Info => info::run(),
        Command::Bench { which } => dinonat_bench::run(which),
        Command::Train(args) => train::train(args),
        Command::Export(args) => export::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Embed(args) => embed::run(args),
        Command::Filter(args) => filter::run(args),
        Command::Crossmodal(args) => crossmodal::run(args),
        Command::Duplicates(args) => duplicates::run(args),
        Command::Exemplars(args) => exemplars::run(args),
        Command::Attention(args) => attention::run(args),
        Command::Boxes(args) => boxes::run(args),
        Command::Builtin(args) => builtin::run(args),
        Command::Knn(args) => knn::run(args),
        Command::Linear(args) => linear::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // The one parameter every command shares (the decoded-pixel budget of the image reader).
            let global = [("max_megapixels", "--max-megapixels")];
            eprintln!("error: {}", args::param_flags(message, &global, true));
            ExitCode::FAILURE
        }
    }
}

/// `dinonat info | head` ends quietly when the reader goes away, as other Unix tools do, instead of
/// panicking on the next print (Rust ignores SIGPIPE, so a print to a closed pipe fails). Not under
/// an MPI launcher: there a write to a dead peer's socket must stay an error that names the rank
/// (docs/distributed.md, "Faults"), not a silent kill.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    if dinonat_train::dist::launcher().is_none() {
        // SAFETY: restores the default disposition of one signal at start-up, before any thread.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
}
