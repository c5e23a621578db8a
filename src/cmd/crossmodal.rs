//! `dinonat crossmodal --rgb DIR --ir DIR`: IR <-> RGB retrieval and attention-mask IoU of pairs
//! with the same file name.

use crate::args::{BackboneArgs, DeviceArg};
use crate::progress::progress;
use clap::Args;
use dinonat_eval::curate::crossmodal::{run_crossmodal, CrossModalConfig};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CrossModalArgs {
    #[command(flatten)]
    pub weights: BackboneArgs,
    /// Folder of visible images.
    #[arg(long, value_name = "DIR")]
    pub rgb: PathBuf,
    /// Folder of infrared images (same file names).
    #[arg(long, value_name = "DIR")]
    pub ir: PathBuf,
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Level of the attention maps (default: the deepest with a grid of at least 14x14).
    #[arg(long)]
    pub level: Option<usize>,
    /// Attention mass kept by the masks.
    #[arg(long, default_value_t = 0.6)]
    pub mass: f64,
    /// Leave out names found in one folder only (default: an error listing them).
    #[arg(long)]
    pub skip_unmatched: bool,
    /// PNG of the first --figure-pairs pairs: RGB | map | mask | IR | map | mask per row.
    #[arg(long, value_name = "FILE")]
    pub figure: Option<PathBuf>,
    #[arg(long, default_value_t = 4)]
    pub figure_pairs: usize,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Where the backbone runs: cpu, or cuda (the process's GPU; images are uploaded per batch,
    /// features and attention weights downloaded for the host-side maps).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
}

pub fn run(args: CrossModalArgs) -> Result<(), String> {
    if let Some(f) = &args.figure {
        let mut inputs = args.weights.inputs();
        inputs.extend([("--rgb", args.rgb.as_path()), ("--ir", &args.ir)]);
        dinonat_train::guard::check_outputs(&[("--figure", f)], &inputs)?;
    }
    let nat = args.device.place(args.weights.load()?)?;
    let config = CrossModalConfig {
        rgb: args.rgb,
        ir: args.ir,
        size: args.size,
        batch: args.batch,
        level: args.level,
        mass: args.mass,
        skip_unmatched: args.skip_unmatched,
        figure: args.figure,
        figure_pairs: args.figure_pairs,
    };
    let r = run_crossmodal(&nat, &config, &mut progress("crossmodal (pairs)")).map_err(flagged)?;
    if args.json {
        println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!(
        "{} pairs, {} at {} px, maps at level {} ({}x{})",
        r.pairs, r.arch, r.size, r.level, r.grid[0], r.grid[1]
    );
    println!(
        "retrieval of the true partner among {} pairs (cosine; ties count against the partner):",
        r.pairs
    );
    println!(
        "{:<28} {:>8} {:>8} {:>7}   {:>8} {:>8} {:>7}",
        "features", "IR->RGB", "top-5", "MedR", "RGB->IR", "top-5", "MedR"
    );
    for x in &r.retrieval {
        let label = match x.features.as_str() {
            "network_pooled" => "network, pooled".to_string(),
            "network_layout" => format!("network, layout (level {})", r.level),
            other => format!("{other} ({}x{} cells)", r.grid[0], r.grid[1]),
        };
        println!(
            "{label:<28} {:>7.2}% {:>7.2}% {:>7.1}   {:>7.2}% {:>7.2}% {:>7.1}",
            x.top1_ir_to_rgb,
            x.top5_ir_to_rgb,
            x.median_rank_ir_to_rgb,
            x.top1_rgb_to_ir,
            x.top5_rgb_to_ir,
            x.median_rank_rgb_to_ir
        );
    }
    println!(
        "{:<28} {:>7.2}% {:>7.2}% {:>7.1}   {:>7.2}% {:>7.2}% {:>7.1}",
        "chance",
        r.chance_top1,
        r.chance_top5,
        r.chance_median_rank,
        r.chance_top1,
        r.chance_top5,
        r.chance_median_rank
    );
    println!(
        "IoU of the RGB and IR {:.0}%-mass masks, mean over pairs [95% bootstrap interval] (network per head {:.3}):",
        100.0 * r.mass,
        r.attention_iou_per_head
    );
    for x in &r.iou {
        println!(
            "  {:<16} {:.3} [{:.3}, {:.3}]",
            x.map, x.iou, x.interval.low, x.interval.high
        );
    }
    for (what, names) in [("--rgb", &r.skipped_rgb_only), ("--ir", &r.skipped_ir_only)] {
        if !names.is_empty() {
            println!("skipped {} names only in {what}", names.len());
        }
    }
    Ok(())
}

/// The library's parameters as this command's flags: size and batch where they lead the message,
/// the folders and options wherever they appear.
fn flagged(e: impl ToString) -> String {
    let names = [
        ("rgb", "--rgb"),
        ("ir", "--ir"),
        ("figure", "--figure"),
        ("mass", "--mass"),
        ("skip_unmatched", "--skip-unmatched"),
    ];
    crate::args::param_flags(crate::args::curate_flagged(e), &names, true)
}
