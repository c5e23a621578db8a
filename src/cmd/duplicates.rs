//! `dinonat duplicates --tune DIR --eval DIR`: near-duplicate detection of video frames measured
//! against their clips (the file-name stem before `--separator`): the network's cosine against
//! the pixels' cosine and a difference hash, thresholds chosen on --tune, scored on --eval.

use crate::args::{BackboneArgs, DeviceArg};
use crate::progress::progress;
use clap::Args;
use dinonat_eval::curate::duplicates::{run_duplicates, DuplicatesConfig};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DuplicatesArgs {
    #[command(flatten)]
    pub weights: BackboneArgs,
    /// Folder (flat or class sub-folders) whose pairs choose each method's threshold (a train
    /// split: no image of --eval).
    #[arg(long, value_name = "DIR")]
    pub tune: PathBuf,
    /// Folder whose pairs are scored at those thresholds.
    #[arg(long, value_name = "DIR")]
    pub eval: PathBuf,
    /// A file's clip is its name's stem up to the last occurrence of this (thermset: "__").
    #[arg(long, default_value = "__")]
    pub separator: String,
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

pub fn run(args: DuplicatesArgs) -> Result<(), String> {
    let nat = args.device.place(args.weights.load()?)?;
    let config = DuplicatesConfig {
        tune: args.tune,
        eval: args.eval,
        size: args.size,
        batch: args.batch,
        separator: args.separator,
    };
    let r =
        run_duplicates(&nat, &config, &mut progress("duplicates (folders)")).map_err(flagged)?;
    if args.json {
        println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!(
        "{} at {} px | tune: {} images, {} clips | eval: {} images, {} clips, {} pairs, {} of one clip (base rate {:.2}%)",
        r.arch,
        r.size,
        r.tune_images,
        r.tune_clips,
        r.eval_images,
        r.eval_clips,
        r.eval_pairs,
        r.eval_duplicate_pairs,
        100.0 * r.base_rate
    );
    println!(
        "{:<9} {:>10} {:>8}   {:>9} {:>7} {:>7} {:>7}",
        "method", "threshold", "tune F1", "precision", "recall", "F1", "AP"
    );
    for s in &r.scores {
        println!(
            "{:<9} {:>10.6} {:>8.3}   {:>8.2}% {:>6.2}% {:>7.3} {:>7.3}",
            s.method,
            s.threshold,
            s.tune_f1,
            100.0 * s.precision,
            100.0 * s.recall,
            s.f1,
            s.average_precision
        );
    }
    println!(
        "(threshold: best F1 on --tune; precision, recall, F1 at it and AP on --eval; \
         calling every pair a duplicate gives precision {:.2}%, AP {:.3})",
        100.0 * r.base_rate,
        r.base_rate
    );
    Ok(())
}

/// The library's parameters as this command's flags.
fn flagged(e: impl ToString) -> String {
    let names = [("tune", "--tune"), ("eval", "--eval")];
    crate::args::param_flags(crate::args::curate_flagged(e), &names, true)
}
