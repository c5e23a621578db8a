//! `dinonat boxes --images DIR --labels DIR`: the share of the thresholded pooled-query attention that falls
//! inside YOLO boxes, against the chance level of the boxes' area (docs/attention-maps.md, "Attention inside
//! boxes").

use crate::args::{BackboneArgs, DeviceArg};
use crate::progress::progress;
use clap::Args;
use dinonat_eval::maps::boxes_eval::{run_boxes, BoxesConfig, PRIORS};
use dinonat_eval::maps::boxes_figure::{boxes_figure, caption, strongest};
use dinonat_eval::maps::boxes_report::{text, write_csv, yaml_names};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct BoxesArgs {
    #[command(flatten)]
    pub weights: BackboneArgs,
    /// Folder of images (flat, or in sub-folders).
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,
    /// Folder of YOLO labels: `<relative path>.txt` or `<stem>.txt`, lines `class cx cy w h` normalised to the
    /// original image.
    #[arg(long, value_name = "DIR")]
    pub labels: PathBuf,
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Level of the maps (default: the deepest with a grid of at least 14x14).
    #[arg(long)]
    pub level: Option<usize>,
    /// Attention mass kept by the threshold.
    #[arg(long, default_value_t = 0.6)]
    pub mass: f64,
    /// Names of the class ids 0, 1, ... (comma separated), e.g. dog,person. Default: the one-line `names: [...]`
    /// of a `data.yaml` in the parent or grand-parent folder of --labels, when there is one.
    #[arg(long, value_name = "A,B,...", value_delimiter = ',')]
    pub class_names: Vec<String>,
    /// Per-image CSV (must not lie inside --images or --labels).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// A PNG of --figure-images images spread over the set: crop with its boxes | network map | its mask |
    /// the strongest prior's map | its mask (the prior with the highest mean share of this run; must not
    /// lie inside --images or --labels).
    #[arg(long, value_name = "FILE")]
    pub figure: Option<PathBuf>,
    /// Images in the --figure.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub figure_images: usize,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Where the backbone runs: cpu, or cuda (the process's GPU; images are uploaded per batch,
    /// features and attention weights downloaded for the host-side maps).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
}

pub fn run(args: BoxesArgs) -> Result<(), String> {
    let outputs: Vec<(&str, &std::path::Path)> = [("--csv", &args.csv), ("--figure", &args.figure)]
        .into_iter()
        .filter_map(|(flag, f)| f.as_deref().map(|f| (flag, f)))
        .collect();
    if !outputs.is_empty() {
        let mut inputs = args.weights.inputs();
        inputs.extend([
            ("--images", args.images.as_path()),
            ("--labels", &args.labels),
        ]);
        dinonat_train::guard::check_outputs(&outputs, &inputs)?;
    }
    if args.figure.is_some() && args.figure_images == 0 {
        return Err("--figure-images 0: a figure needs at least one image".into());
    }
    let mut class_names = args.class_names.clone();
    if class_names.is_empty() {
        if let Some((file, names)) = yaml_names(&args.labels) {
            eprintln!("class names from {}", file.display());
            class_names = names;
        }
    }
    let nat = args.device.place(args.weights.load()?)?;
    let config = BoxesConfig {
        images: args.images,
        labels: args.labels,
        size: args.size,
        batch: args.batch,
        level: args.level,
        mass: args.mass,
        class_names: class_names.clone(),
        figure_images: if args.figure.is_some() {
            args.figure_images
        } else {
            0
        },
    };
    let flags = [
        ("images", "--images"),
        ("labels", "--labels"),
        ("size", "--size"),
        ("batch", "--batch"),
        ("mass", "--mass"),
        ("level", "--level"),
    ];
    let r = run_boxes(&nat, &config, &mut progress("boxes (images)"))
        .map_err(|e| crate::args::param_flags(e, &flags, false))?;
    if let Some(f) = &args.csv {
        write_csv(f, &r, &class_names).map_err(|e| format!("--{e}"))?;
    }
    if let Some(f) = &args.figure {
        let share = |p: &str| {
            r.all
                .scores
                .iter()
                .find(|s| s.map == p)
                .map_or(0.0, |s| s.share_masked)
        };
        let prior = strongest(&PRIORS.map(share));
        let grid = (r.grid[0], r.grid[1]);
        dinonat_train::grid::write_png(f, &boxes_figure(&r.figure, grid, r.mass, prior))
            .map_err(|e| format!("--figure {}: {e}", f.display()))?;
        eprintln!(
            "figure {}: crop | network | its mask | {} | its mask",
            f.display(),
            PRIORS[prior]
        );
        caption(&r.figure, prior)
            .iter()
            .for_each(|l| eprintln!("  {l}"));
    }
    if args.json {
        println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!("{}", text(&r));
    Ok(())
}
