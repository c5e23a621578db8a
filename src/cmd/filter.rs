//! `dinonat filter`: near-duplicates, outliers, clusters and exemplar matches of a folder, as a
//! report (CSV + JSON), contact sheets and an optional list of kept files. The input folder is
//! only read.

use crate::args::{BackboneArgs, DeviceArg};
use crate::progress::progress;
use clap::Args;
use dinonat_eval::curate::filter::{run_filter, FilterConfig};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct FilterArgs {
    #[command(flatten)]
    pub weights: BackboneArgs,
    /// Folder to examine (never modified).
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,
    /// Output folder (report.csv, report.json, sheets/); must not lie inside --images.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Cosine similarity at or above which two images are near-duplicates.
    #[arg(long, default_value_t = 0.95)]
    pub dup_threshold: f32,
    /// Percent of images flagged as outliers (lowest k-NN density).
    #[arg(long, default_value_t = 5.0)]
    pub outlier_percentile: f64,
    /// Neighbours used for the density.
    #[arg(long, default_value_t = 10)]
    pub outlier_k: usize,
    /// k-means clusters (0 = no clustering).
    #[arg(long, default_value_t = 8)]
    pub clusters: usize,
    /// k-means seed.
    #[arg(long, default_value_t = 0)]
    pub cluster_seed: u64,
    /// Folder of exemplars: keep only images whose nearest neighbour is an exemplar.
    #[arg(long, value_name = "DIR")]
    pub keep_like: Option<PathBuf>,
    /// Folder of counter-exemplars (with --keep-like): keep the images whose nearest exemplar is a
    /// --keep-like one (s_keep > s_reject + margin) instead of comparing with the rest of the folder.
    #[arg(long, value_name = "DIR", requires = "keep_like")]
    pub reject_like: Option<PathBuf>,
    /// Margin of the exemplar rule (s_E > s_R + margin).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub exemplar_margin: f32,
    /// Write the kept files, one path per line.
    #[arg(long, value_name = "FILE")]
    pub keep_list: Option<PathBuf>,
    /// Thumbnails per contact sheet at most.
    #[arg(long, default_value_t = 100)]
    pub sheet_limit: usize,
    /// Where the backbone runs: cpu, or cuda (the process's GPU; images are uploaded per batch,
    /// features and attention weights downloaded for the host-side maps).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
}

pub fn run(args: FilterArgs) -> Result<(), String> {
    if args.outlier_k == 0 {
        return Err("--outlier-k 0: the density needs at least 1 neighbour".into());
    }
    let mut inputs = args.weights.inputs();
    inputs.push(("--images", &args.images));
    let likes = [
        ("--keep-like", &args.keep_like),
        ("--reject-like", &args.reject_like),
    ];
    inputs.extend(
        likes
            .iter()
            .filter_map(|(f, p)| p.as_deref().map(|p| (*f, p))),
    );
    let mut outputs = vec![("--out", args.out.as_path())];
    outputs.extend(args.keep_list.as_deref().map(|p| ("--keep-list", p)));
    dinonat_train::guard::check_outputs(&outputs, &inputs)?;
    let nat = args.device.place(args.weights.load()?)?;
    let config = FilterConfig {
        images: args.images,
        out: args.out,
        size: args.size,
        batch: args.batch,
        dup_threshold: args.dup_threshold,
        outlier_percentile: args.outlier_percentile,
        outlier_k: args.outlier_k,
        clusters: args.clusters,
        seed: args.cluster_seed,
        keep_like: args.keep_like,
        reject_like: args.reject_like,
        exemplar_margin: args.exemplar_margin,
        keep_list: args.keep_list,
        sheet_limit: args.sheet_limit,
        thumbnail: 96,
    };
    let r = run_filter(&nat, &config, &mut progress("filter (images)")).map_err(flagged)?;
    println!(
        "{} images: {} near-duplicate groups, {} outliers, {} clusters, {} kept; report in {}",
        r.images,
        r.duplicate_groups.len(),
        r.outliers.len(),
        r.clusters,
        r.kept,
        config.out.display()
    );
    Ok(())
}

/// The filter's parameters as this command's flags: a folder or value that leads the message, the
/// options (names with an underscore) wherever they appear; then size and batch.
fn flagged(e: impl ToString) -> String {
    let names = [
        ("images", "--images"),
        ("out", "--out"),
        ("keep_like", "--keep-like"),
        ("reject_like", "--reject-like"),
        ("keep_list", "--keep-list"),
        ("dup_threshold", "--dup-threshold"),
        ("outlier_percentile", "--outlier-percentile"),
    ];
    crate::args::param_flags(crate::args::curate_flagged(e), &names, false)
}
