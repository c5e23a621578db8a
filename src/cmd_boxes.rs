//! `dinonat boxes --images DIR --labels DIR`: the share of the thresholded pooled-query attention that falls
//! inside YOLO boxes, against the chance level of the boxes' area (docs/attention-maps.md, "Attention inside
//! boxes").

use crate::cmd_embed::{progress, DeviceArg, WeightArgs};
use clap::Args;
use dinonat_eval::maps::boxes_eval::{run_boxes, BoxesConfig, BoxesReport, ShareSummary, PRIORS};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct BoxesArgs {
    #[command(flatten)]
    pub weights: WeightArgs,
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
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Where the backbone runs: cpu, or cuda (the process's GPU; images are uploaded per batch,
    /// features and attention weights downloaded for the host-side maps).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
}

/// Class names from the first `data.yaml` beside or above `labels` that has a one-line `names: [a, 'b', ...]`.
pub fn yaml_names(labels: &Path) -> Option<(PathBuf, Vec<String>)> {
    labels.ancestors().skip(1).take(2).find_map(|dir| {
        let file = dir.join("data.yaml");
        let text = std::fs::read_to_string(&file).ok()?;
        let list = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("names:"))?
            .trim();
        let inner = list.strip_prefix('[')?.strip_suffix(']')?;
        let names = inner
            .split(',')
            .map(|n| n.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
            .filter(|n| !n.is_empty())
            .collect();
        Some((file, names))
    })
}

fn write_csv(path: &Path, r: &BoxesReport, names: &[String]) -> Result<(), String> {
    let shown = path.display();
    let mut ids: Vec<usize> = r
        .per_image
        .iter()
        .flat_map(|i| i.per_class.keys().copied())
        .collect();
    ids.sort();
    ids.dedup();
    let name = |c: usize| names.get(c).cloned().unwrap_or_else(|| c.to_string());
    let mut text = String::from("image,boxes,box_fraction,share_masked,share_map,kept_tokens");
    for p in PRIORS {
        text += &format!(",{p}_share_masked");
    }
    for &c in &ids {
        let n = name(c);
        text += &format!(",{n}_boxes,{n}_box_fraction,{n}_share_masked,{n}_share_map");
    }
    text.push('\n');
    for i in &r.per_image {
        let p = i.path.display().to_string().replace('"', "\"\"");
        text += &format!(
            "\"{p}\",{},{:.6},{:.6},{:.6},{}",
            i.boxes, i.box_fraction, i.share_masked, i.share_map, i.kept_tokens
        );
        for v in i.priors {
            text += &format!(",{v:.6}");
        }
        for c in &ids {
            match i.per_class.get(c) {
                Some((n, v)) => text += &format!(",{n},{:.6},{:.6},{:.6}", v[0], v[1], v[2]),
                None => text += ",0,,,",
            }
        }
        text.push('\n');
    }
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("--csv {shown}: cannot write: {e}"))
}

fn line(s: &ShareSummary) -> String {
    format!(
        "{:<10} {:>6} {:>6}   {:>7.1}%  {:>7.1}%  {:>7.1}%   x{:.2}",
        s.name,
        s.images,
        s.boxes,
        100.0 * s.share_masked,
        100.0 * s.share_map,
        100.0 * s.chance,
        if s.chance > 0.0 {
            s.share_masked / s.chance
        } else {
            0.0
        }
    )
}

/// One row of the controls table: each map's mean masked share with its interval.
fn controls_line(s: &ShareSummary) -> String {
    let cells: Vec<String> = s
        .scores
        .iter()
        .map(|m| {
            format!(
                "{:>5.1}% [{:>4.1}, {:>4.1}]",
                100.0 * m.share_masked,
                100.0 * m.interval.low,
                100.0 * m.interval.high
            )
        })
        .collect();
    format!("{:<10} {}", s.name, cells.join("  "))
}

pub fn run(args: BoxesArgs) -> Result<(), String> {
    if let Some(f) = &args.csv {
        let mut inputs = args.weights.inputs();
        inputs.extend([
            ("--images", args.images.as_path()),
            ("--labels", &args.labels),
        ]);
        dinonat_train::guard::check_outputs(&[("--csv", f)], &inputs)?;
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
    };
    let r = run_boxes(&nat, &config, &mut progress("boxes (images)")).map_err(|e| e.to_string())?;
    if let Some(f) = &args.csv {
        write_csv(f, &r, &class_names)?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!(
        "{} images with boxes of {} ({} without a label file, {} with no boxes, {} with boxes outside the crop: skipped)",
        r.images_used, r.images_found, r.skipped_no_label_file, r.skipped_no_boxes, r.skipped_outside_crop
    );
    println!(
        "{} at {} px, pooled-query map (head mean) at level {} ({}x{}), threshold {:.0}% of the mass",
        r.arch,
        r.size,
        r.level,
        r.grid[0],
        r.grid[1],
        100.0 * r.mass
    );
    println!(
        "{:<10} {:>6} {:>6}   {:>8}  {:>8}  {:>8}   masked/chance",
        "class", "images", "boxes", "masked", "map", "chance"
    );
    println!("{}", line(&r.all));
    for c in &r.classes {
        println!("{}", line(c));
    }
    println!(
        "masked share inside the boxes beside the controls (mean over images, 95% bootstrap interval):"
    );
    let names: Vec<String> = r
        .all
        .scores
        .iter()
        .map(|m| format!("{:<19}", m.map))
        .collect();
    println!("{:<10} {}", "class", names.join("  "));
    println!("{}", controls_line(&r.all));
    for c in &r.classes {
        println!("{}", controls_line(c));
    }
    Ok(())
}
