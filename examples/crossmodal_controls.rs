//! Non-learned controls for `dinonat crossmodal` (docs/curation.md, "Why retrieval fails"): IR <-> RGB
//! retrieval of pixel-aligned pairs by two hand-made descriptors of the luminance, through the same
//! eval transform and the same retrieval rule (cosine in f64, ties against the partner) as the command:
//! - `intensity`: the luminance averaged over g x g cells;
//! - `gradient`: the gradient magnitude |∇Y| (central differences) averaged over g x g cells, blind to
//!   the sign of a contrast;
//! - `signed-gradient`: the magnitudes of the positive and negative parts of ∂Y/∂x and ∂Y/∂y, each
//!   averaged over the cells (4 g² values): the same edges, but a dark-to-bright step and a bright-to-dark
//!   one land in different values.
//!
//! Each image's luminance is standardised (mean 0, std 1) first, and so is each descriptor.
//!
//!     cargo run --release --example crossmodal_controls [RGB_DIR IR_DIR]
//!
//! Default folders: ../shared/data/roadscene/{rgb,ir}; prints why it skips when they are missing.

use dinonat_train::augment::{EvalTransform, IMAGENET_MEAN, IMAGENET_STD};
use dinonat_train::curate::crossmodal::pair_by_name;
use dinonat_train::curate::embed::load_view;
use dinonat_train::eval::retrieval::cross_modal_retrieval;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Luminance (ITU-R 601) of an eval-transformed view, back in [0, 1] units, standardised.
fn luminance(path: &Path, t: &EvalTransform) -> Result<(Vec<f32>, usize), String> {
    let v = load_view(path, t).map_err(|e| e.to_string())?;
    let n = v.width * v.height;
    let unnorm = |c: usize, i: usize| v.data[c * n + i] * IMAGENET_STD[c] + IMAGENET_MEAN[c];
    let mut y: Vec<f32> = (0..n)
        .map(|i| 0.299 * unnorm(0, i) + 0.587 * unnorm(1, i) + 0.114 * unnorm(2, i))
        .collect();
    standardise(&mut y);
    Ok((y, v.width))
}

fn standardise(x: &mut [f32]) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / var.sqrt().max(1e-6);
    x.iter_mut().for_each(|v| *v = (*v - mean) * inv);
}

/// |∇x| by central differences on a w x w image (0 on the border).
fn gradient_magnitude(x: &[f32], w: usize) -> Vec<f32> {
    let mut out = vec![0.0; w * w];
    for r in 1..w - 1 {
        for c in 1..w - 1 {
            let gx = x[r * w + c + 1] - x[r * w + c - 1];
            let gy = x[(r + 1) * w + c] - x[(r - 1) * w + c];
            out[r * w + c] = (gx * gx + gy * gy).sqrt();
        }
    }
    out
}

/// max(±∂x/∂c, 0) and max(±∂x/∂r, 0) (central differences; 0 on the border): four w x w maps, one
/// after the other.
fn signed_gradients(x: &[f32], w: usize) -> Vec<f32> {
    let mut out = vec![0.0; 4 * w * w];
    for r in 1..w - 1 {
        for c in 1..w - 1 {
            let gx = x[r * w + c + 1] - x[r * w + c - 1];
            let gy = x[(r + 1) * w + c] - x[(r - 1) * w + c];
            for (k, v) in [gx.max(0.0), (-gx).max(0.0), gy.max(0.0), (-gy).max(0.0)]
                .into_iter()
                .enumerate()
            {
                out[k * w * w + r * w + c] = v;
            }
        }
    }
    out
}

/// Means over a g x g grid of equal cells (w divisible by g).
fn cell_means(x: &[f32], w: usize, g: usize) -> Vec<f32> {
    let cell = w / g;
    let mut out = vec![0.0; g * g];
    for r in 0..w {
        for c in 0..w {
            out[(r / cell) * g + c / cell] += x[r * w + c];
        }
    }
    out.iter_mut().for_each(|v| *v /= (cell * cell) as f32);
    out
}

fn descriptor(path: &Path, t: &EvalTransform, kind: &str, g: usize) -> Result<Vec<f32>, String> {
    let (y, w) = luminance(path, t)?;
    let mut d = match kind {
        "gradient" => cell_means(&gradient_magnitude(&y, w), w, g),
        "signed-gradient" => signed_gradients(&y, w)
            .chunks(w * w)
            .flat_map(|m| cell_means(m, w, g))
            .collect(),
        _ => cell_means(&y, w, g),
    };
    standardise(&mut d);
    Ok(d)
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (rgb, ir) = match args.as_slice() {
        [a, b] => (PathBuf::from(a), PathBuf::from(b)),
        _ => (
            PathBuf::from("../shared/data/roadscene/rgb"),
            PathBuf::from("../shared/data/roadscene/ir"),
        ),
    };
    if !rgb.is_dir() || !ir.is_dir() {
        println!(
            "skip: {} or {} is not a folder (pass RGB_DIR IR_DIR)",
            rgb.display(),
            ir.display()
        );
        return Ok(());
    }
    let list = |dir: &Path| -> Result<Vec<PathBuf>, String> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        v.sort();
        Ok(v)
    };
    let (pairs, _, _) = pair_by_name(&rgb, &list(&rgb)?, &ir, &list(&ir)?);
    let n = pairs.len();
    println!(
        "{n} pairs; chance top-1 {:.2} %, median rank {:.1}",
        100.0 / n as f64,
        (n + 1) as f64 / 2.0
    );
    println!("| size | descriptor | cells | IR->RGB top-1 % | RGB->IR top-1 % | median rank IR->RGB / RGB->IR |");
    println!("|---|---|---|---|---|---|");
    for size in [64usize, 128] {
        let t = EvalTransform::square(size);
        for (kind, g) in [
            ("intensity", 8),
            ("intensity", 16),
            ("signed-gradient", 8),
            ("signed-gradient", 16),
            ("gradient", 8),
            ("gradient", 16),
        ] {
            let side = |m: usize| -> Result<Vec<f32>, String> {
                let rows: Vec<Vec<f32>> = pairs
                    .par_iter()
                    .map(|p| descriptor(if m == 0 { &p.0 } else { &p.1 }, &t, kind, g))
                    .collect::<Result<_, _>>()?;
                Ok(rows.concat())
            };
            let (f_rgb, f_ir) = (side(0)?, side(1)?);
            let dim = f_rgb.len() / n;
            let r = cross_modal_retrieval(&f_ir, &f_rgb, dim).map_err(|e| e.to_string())?;
            println!(
                "| {size} | {kind} | {g}x{g} | {:.2} | {:.2} | {} / {} |",
                r.a_to_b_top1, r.b_to_a_top1, r.a_to_b_median_rank, r.b_to_a_median_rank
            );
        }
    }
    Ok(())
}
