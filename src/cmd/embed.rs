//! `dinonat embed`: a folder of images -> embeddings (safetensors tensor `embeddings`, [N, F]) and
//! a CSV of the paths in row order (sorted by path).

use crate::args::{BackboneArgs, DeviceArg, PrecisionArgs};
use crate::progress::progress;
use clap::Args;
use dinonat_eval::curate::embed::{csv_beside, embed_paths, write_embeddings};
use dinonat_eval::curate::list_images;
use dinonat_train::guard::check_outputs;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub weights: BackboneArgs,
    /// Folder of .jpg/.jpeg/.png images (flat, or class sub-folders).
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,
    /// Output safetensors file (tensor `embeddings`, [N, F]).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// CSV of `index,path` rows (default: --out with the extension .csv).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Input size: shorter side resized to it, centre crop SIZE x SIZE.
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Where the backbone runs: cpu, or cuda (the process's GPU; images are uploaded per batch,
    /// embeddings downloaded).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    #[command(flatten)]
    pub precision: PrecisionArgs,
}

pub fn run(args: EmbedArgs) -> Result<(), String> {
    let csv = args.csv.clone().unwrap_or_else(|| csv_beside(&args.out));
    let mut inputs = args.weights.inputs();
    inputs.push(("--images", &args.images));
    check_outputs(&[("--out", &args.out), ("--csv", &csv)], &inputs)?;
    let precision = args.precision.resolve(Some(args.device))?;
    let paths = list_images(&args.images, "--images").map_err(|e| e.to_string())?;
    let nat = args.device.place(args.weights.load()?)?;
    let features = precision
        .scope(|| {
            embed_paths(
                &nat,
                &paths,
                args.size,
                args.batch,
                &mut progress("embed (images)"),
            )
        })
        .map_err(crate::args::curate_flagged)?;
    let dim = features.len() / paths.len();
    write_embeddings(&args.out, &csv, &features, dim, &paths, &nat.config.name)
        .map_err(|e| e.to_string())?;
    eprintln!(
        "embeddings [{}, {dim}] -> {} (paths: {})",
        paths.len(),
        args.out.display(),
        csv.display()
    );
    Ok(())
}
