//! `dinonat crossmodal --rgb DIR --ir DIR`: IR <-> RGB retrieval and attention-mask IoU of pairs
//! with the same file name.

use crate::cmd_embed::{progress, DeviceArg, WeightArgs};
use clap::Args;
use dinonat_train::curate::crossmodal::{run_crossmodal, CrossModalConfig};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CrossModalArgs {
    #[command(flatten)]
    pub weights: WeightArgs,
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
    let r = run_crossmodal(&nat, &config, &mut progress("crossmodal (pairs)"))
        .map_err(|e| e.to_string())?;
    if args.json {
        println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!(
        "{} pairs, {} at {} px, maps at level {} ({}x{})",
        r.pairs, r.arch, r.size, r.level, r.grid[0], r.grid[1]
    );
    println!(
        "retrieval IR->RGB top-1 {:.2}%  top-5 {:.2}%   RGB->IR top-1 {:.2}%  top-5 {:.2}%   (chance {:.2}% / {:.2}%)",
        r.retrieval_top1_ir_to_rgb,
        r.retrieval_top5_ir_to_rgb,
        r.retrieval_top1_rgb_to_ir,
        r.retrieval_top5_rgb_to_ir,
        r.chance_top1,
        r.chance_top5
    );
    println!(
        "median rank of the true partner IR->RGB {:.1}   RGB->IR {:.1}   (chance {:.1} of {})",
        r.retrieval_median_rank_ir_to_rgb,
        r.retrieval_median_rank_rgb_to_ir,
        r.chance_median_rank,
        r.pairs
    );
    println!(
        "layout retrieval (level {} token maps) IR->RGB top-1 {:.2}%  top-5 {:.2}%   RGB->IR top-1 {:.2}%  top-5 {:.2}%   median rank {:.1} / {:.1}",
        r.level,
        r.layout_retrieval_top1_ir_to_rgb,
        r.layout_retrieval_top5_ir_to_rgb,
        r.layout_retrieval_top1_rgb_to_ir,
        r.layout_retrieval_top5_rgb_to_ir,
        r.layout_retrieval_median_rank_ir_to_rgb,
        r.layout_retrieval_median_rank_rgb_to_ir
    );
    println!(
        "attention mask IoU {:.3} (per head {:.3}; shifted pairs {:.3})",
        r.attention_iou, r.attention_iou_per_head, r.attention_iou_shifted
    );
    for (what, names) in [("--rgb", &r.skipped_rgb_only), ("--ir", &r.skipped_ir_only)] {
        if !names.is_empty() {
            println!("skipped {} names only in {what}", names.len());
        }
    }
    Ok(())
}
