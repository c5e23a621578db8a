//! `dinonat attention`: attention maps of NAT (docs/attention-maps.md) as PNGs, per image and,
//! with --pair-dir, per pair of images with the same file name.

use crate::args::{BackboneArgs, DeviceArg};
use clap::Args;
use dinonat_eval::curate::list_images;
use dinonat_eval::maps::choose_level;
use dinonat_eval::maps::figure_files::{write_figures, FigureFiles};
use dinonat_eval::maps::figures::FigureOptions;
use dinonat_train::grid::write_png;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct AttentionArgs {
    #[command(flatten)]
    pub weights: BackboneArgs,
    /// An image file or a folder of images.
    #[arg(long, value_name = "PATH")]
    pub images: PathBuf,
    /// Output folder (must not lie inside --images).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A second folder: images with the same path relative to --images (e.g. rgb/<class>/x.png and
    /// ir/<class>/x.png) get a side-by-side figure (<stem>_pair.png).
    #[arg(long, value_name = "DIR")]
    pub pair_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Level of the maps (default: the deepest with a grid of at least 14x14).
    #[arg(long)]
    pub level: Option<usize>,
    /// Pixel X,Y of the input crop whose neighbourhood map is drawn (<stem>_neighbourhood.png).
    #[arg(long, value_name = "X,Y", value_parser = parse_pixel)]
    pub pixel: Option<(usize, usize)>,
    /// Attention mass kept by the mask.
    #[arg(long, default_value_t = 0.6)]
    pub mass: f64,
    /// No mask panel.
    #[arg(long)]
    pub no_mask: bool,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Also one PNG with the pooled-query figures (image | heads | mask) of the first
    /// --sheet-images images stacked, e.g. for a README figure.
    #[arg(long, value_name = "FILE")]
    pub sheet: Option<PathBuf>,
    #[arg(long, default_value_t = 4)]
    pub sheet_images: usize,
    /// Where the backbone runs: cpu, or cuda (the process's GPU; images are uploaded per batch,
    /// features and attention weights downloaded for the host-side maps).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
}

fn parse_pixel(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("--pixel {s}: expected X,Y (two non-negative integers)");
    let (x, y) = s.split_once(',').ok_or_else(bad)?;
    Ok((
        x.trim().parse().map_err(|_| bad())?,
        y.trim().parse().map_err(|_| bad())?,
    ))
}

pub fn run(args: AttentionArgs) -> Result<(), String> {
    let paths = if args.images.is_file() {
        vec![args.images.clone()]
    } else {
        list_images(&args.images, "--images").map_err(|e| e.to_string())?
    };
    let input_dir = if args.images.is_file() {
        args.images
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    } else {
        args.images.clone()
    };
    check(&args, &input_dir)?;
    let nat = args.device.place(args.weights.load()?)?;
    let level = choose_level(&nat.config, args.level, args.size).map_err(|e| format!("--{e}"))?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("--out {}: cannot create: {e}", args.out.display()))?;
    let options = FigureOptions {
        level,
        mass: (!args.no_mask).then_some(args.mass),
        pixel: args.pixel,
    };
    if args.sheet.is_some() && args.sheet_images == 0 {
        return Err("--sheet-images 0: the sheet needs at least 1 image".into());
    }
    let job = FigureFiles {
        out: &args.out,
        input_dir: &input_dir,
        pair_dir: args.pair_dir.as_deref(),
        size: args.size,
        batch: args.batch,
        options,
        sheet_images: if args.sheet.is_some() {
            args.sheet_images
        } else {
            0
        },
    };
    let (written, sheet_rows) = write_figures(&nat, &paths, &job, &mut |written| {
        eprint!("\rattention: {written} figures")
    })?;
    eprintln!();
    if let Some(sheet) = &args.sheet {
        let grid = dinonat_train::grid::image_grid(&sheet_rows, 1, 4, [255, 255, 255]);
        write_png(sheet, &grid).map_err(|e| format!("--sheet: {e}"))?;
        println!("sheet of {} images: {}", sheet_rows.len(), sheet.display());
    }
    println!(
        "{} images, level {level}: {written} figures in {}",
        paths.len(),
        args.out.display()
    );
    Ok(())
}

/// The flags that need no backbone: outputs apart from inputs, the pixel inside the crop, sizes.
fn check(args: &AttentionArgs, input_dir: &Path) -> Result<(), String> {
    let mut inputs = args.weights.inputs();
    inputs.push(("--images", input_dir));
    inputs.extend(args.pair_dir.as_deref().map(|p| ("--pair-dir", p)));
    let mut outputs = vec![("--out", args.out.as_path())];
    outputs.extend(args.sheet.as_deref().map(|p| ("--sheet", p)));
    dinonat_train::guard::check_outputs(&outputs, &inputs)?;
    if let Some((x, y)) = args.pixel {
        if x >= args.size || y >= args.size {
            return Err(format!(
                "--pixel {x},{y}: outside the {0} x {0} input crop (--size {0})",
                args.size
            ));
        }
    }
    if let Some(d) = &args.pair_dir {
        if !d.is_dir() {
            return Err(format!("--pair-dir {}: no such folder", d.display()));
        }
    }
    if args.size < 8 || args.batch == 0 || !(args.mass > 0.0 && args.mass <= 1.0) {
        return Err(format!(
            "--size {} (at least 8), --batch {} (at least 1), --mass {} (in (0, 1]): out of range",
            args.size, args.batch, args.mass
        ));
    }
    Ok(())
}
