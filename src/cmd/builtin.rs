//! `dinonat builtin --out DIR`: writes the built-in procedural set with its thermal twins to folders, so every
//! folder command runs on it (docs/data.md, "Writing the built-in set to folders"):
//!
//! ```text
//! DIR/rgb/<k>-<class>/<nnnnn>.png   visible images, ImageFolder layout (class k = folder order)
//! DIR/ir/<k>-<class>/<nnnnn>.png    thermal twins, same relative names (pairs)
//! DIR/labels/<nnnnn>.txt            YOLO line "k cx cy w h" of the object's box
//! DIR/data.yaml                     class count and names of the labels
//! ```

use clap::Args;
use dinonat_train::data::{Procedural, PROCEDURAL_CLASSES};
use dinonat_train::grid::write_png;
use dinonat_train::guard;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct BuiltinArgs {
    /// Output folder (must be empty or missing, unless --force).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Number of samples (classes cycle: sample i has class i % 10).
    #[arg(long, default_value_t = 200)]
    pub n: usize,
    /// Side of the square images in pixels.
    #[arg(long, default_value_t = Procedural::DEFAULT_SIZE)]
    pub size: usize,
    /// Seed of the set (`knn --builtin` uses 1 for train, 2 for val).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write into a non-empty folder (files of the same name are overwritten, others left alone).
    #[arg(long)]
    pub force: bool,
}

/// The class folder of class k: its index first, so the sorted folder order is the class order.
pub fn class_folder(k: usize) -> String {
    format!("{k}-{}", PROCEDURAL_CLASSES[k])
}

fn create(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("--out: cannot create {}: {e}", dir.display()))
}

pub fn run(args: BuiltinArgs) -> Result<(), String> {
    if args.n == 0 {
        return Err("--n 0: at least 1 image".into());
    }
    guard::at_most("--n", args.n, guard::MAX_BUILTIN_IMAGES, "images")?;
    guard::image_side("--size", args.size, 8)?;
    guard::check_outputs(&[("--out", &args.out)], &[])?;
    let out = &args.out;
    if out.exists() {
        if !out.is_dir() {
            return Err(format!(
                "--out {}: exists and is not a folder",
                out.display()
            ));
        }
        let non_empty = std::fs::read_dir(out)
            .map_err(|e| format!("--out {}: cannot list: {e}", out.display()))?
            .next()
            .is_some();
        if non_empty && !args.force {
            return Err(format!(
                "--out {}: folder is not empty; pass --force to write into it",
                out.display()
            ));
        }
    }
    for k in 0..PROCEDURAL_CLASSES.len().min(args.n) {
        create(&out.join("rgb").join(class_folder(k)))?;
        create(&out.join("ir").join(class_folder(k)))?;
    }
    create(&out.join("labels"))?;
    let digits = (args.n - 1).to_string().len().max(5);
    let set = Procedural::new(args.seed, args.n, args.size);
    (0..args.n)
        .into_par_iter()
        .try_for_each(|i| -> Result<(), String> {
            let pair = set.pair(i);
            let name = format!("{i:0digits$}");
            let class = class_folder(pair.label);
            let png = |what: &str, img| {
                let path = out.join(what).join(&class).join(format!("{name}.png"));
                write_png(&path, img).map_err(|e| format!("--out: {e}"))
            };
            png("rgb", &pair.rgb)?;
            png("ir", &pair.thermal)?;
            let [cx, cy, w, h] = pair.object_box.yolo(args.size);
            let label = out.join("labels").join(format!("{name}.txt"));
            std::fs::write(
                &label,
                format!("{} {cx:.6} {cy:.6} {w:.6} {h:.6}\n", pair.label),
            )
            .map_err(|e| format!("--out: cannot write {}: {e}", label.display()))
        })?;
    let names: Vec<String> = PROCEDURAL_CLASSES
        .iter()
        .map(|c| format!("'{c}'"))
        .collect();
    let yaml = out.join("data.yaml");
    std::fs::write(
        &yaml,
        format!(
            "# dinonat builtin --n {} --size {} --seed {}\nnc: {}\nnames: [{}]\n",
            args.n,
            args.size,
            args.seed,
            PROCEDURAL_CLASSES.len(),
            names.join(", ")
        ),
    )
    .map_err(|e| format!("--out: cannot write {}: {e}", yaml.display()))?;
    println!(
        "{} pairs of {} px (seed {}) in {}: rgb/ and ir/ (class folders, same names), labels/ (YOLO), data.yaml",
        args.n,
        args.size,
        args.seed,
        out.display()
    );
    Ok(())
}
