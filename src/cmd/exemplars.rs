//! `dinonat exemplars --keep-like DIR --reject-like DIR --images DIR --positive CLASS`: the
//! two-sided exemplar rule of `filter` scored as a retrieval of one class folder of --images,
//! beside the same rule on raw pixels (docs/curation.md, "Retrieval with exemplars, measured").

use crate::args::{BackboneArgs, DeviceArg};
use clap::Args;
use dinonat_eval::curate::exemplars::{run_exemplars, ExemplarsConfig};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ExemplarsArgs {
    #[command(flatten)]
    pub weights: BackboneArgs,
    /// Examples of what to keep (a train split's folder).
    #[arg(long, value_name = "DIR")]
    pub keep_like: PathBuf,
    /// Examples of what to drop (a train split's folder).
    #[arg(long, value_name = "DIR")]
    pub reject_like: PathBuf,
    /// The images scored (flat or class sub-folders; no exemplar among them).
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,
    /// The class folder of --images holding what should be kept.
    #[arg(long, value_name = "NAME")]
    pub positive: String,
    /// A file's clip is its name's stem up to the last occurrence of this; exemplars of a clip are
    /// left out when an exemplar of that clip is scored to choose the threshold.
    #[arg(long, default_value = "__")]
    pub separator: String,
    /// The recall the threshold chosen on the exemplars must reach there.
    #[arg(long, default_value_t = 0.5)]
    pub min_recall: f64,
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Where the backbone runs: cpu, or cuda.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
}

pub fn run(args: ExemplarsArgs) -> Result<(), String> {
    let nat = args.device.place(args.weights.load()?)?;
    let config = ExemplarsConfig {
        keep_like: args.keep_like,
        reject_like: args.reject_like,
        images: args.images,
        positive: args.positive,
        size: args.size,
        batch: args.batch,
        separator: args.separator,
        min_recall: args.min_recall,
    };
    let r = run_exemplars(&nat, &config).map_err(flagged)?;
    if args.json {
        println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!(
        "{} at {} px | {} keep and {} reject exemplars | {} images, {} positive (base rate {:.2}%)",
        r.arch,
        r.size,
        r.keep_exemplars,
        r.reject_exemplars,
        r.images,
        r.positives,
        100.0 * r.base_rate
    );
    println!(
        "{:<9} {:>7}   {:>14} {:>11}   {:>10} {:>14} {:>11}",
        "features", "AP", "rule precision", "rule recall", "threshold", "precision", "recall"
    );
    for s in &r.scores {
        println!(
            "{:<9} {:>7.3}   {:>13.2}% {:>10.2}%   {:>10.3e} {:>13.2}% {:>10.2}%",
            s.features,
            s.average_precision,
            100.0 * s.rule_precision,
            100.0 * s.rule_recall,
            s.threshold,
            100.0 * s.precision,
            100.0 * s.recall
        );
    }
    println!(
        "(rule: keep when the margin > 0, as filter does; threshold: the most precise margin reaching \
         recall {} on the exemplars, each without its own clip's)",
        r.min_recall
    );
    Ok(())
}

/// The library's parameters as this command's flags.
fn flagged(e: impl ToString) -> String {
    let names = [
        ("keep_like", "--keep-like"),
        ("reject_like", "--reject-like"),
        ("images", "--images"),
        ("positive", "--positive"),
        ("min_recall", "--min-recall"),
    ];
    crate::args::param_flags(crate::args::curate_flagged(e), &names, true)
}
