//! The figure files of `dinonat attention` (docs/attention-maps.md, "Figures"): for each image of
//! a list, `<stem>_pooled.png`, `<stem>_pca.png`, `<stem>_neighbourhood.png` (with a pixel) and,
//! when a folder of pairs has the same relative path, `<stem>_pair.png`.

use super::figures::{image_maps, pair_figure, FigureOptions};
use crate::curate::embed::load_views;
use dinonat_model::Nat;
use dinonat_train::augment::EvalTransform;
use dinonat_train::data::RgbImage;
use dinonat_train::grid::write_png;
use std::path::{Path, PathBuf};

/// Where the figures go and what they show.
pub struct FigureFiles<'a> {
    /// Output folder (exists).
    pub out: &'a Path,
    /// The folder the images' relative paths start from (for their pairs).
    pub input_dir: &'a Path,
    /// Folder of paired images with the same relative paths.
    pub pair_dir: Option<&'a Path>,
    /// Side of the evaluation transform.
    pub size: usize,
    /// Images per forward pass.
    pub batch: usize,
    pub options: FigureOptions,
    /// Pooled-query figures kept for a sheet (0: none).
    pub sheet_images: usize,
}

/// The image of `pair_dir` that pairs with `path`: the same path relative to the input folder
/// (class sub-folders included), when that file exists.
fn pair_path(pair_dir: &Path, path: &Path, input_dir: &Path) -> Option<PathBuf> {
    let relative = match path.strip_prefix(input_dir) {
        Ok(r) if !r.as_os_str().is_empty() => r.to_path_buf(),
        _ => PathBuf::from(path.file_name()?),
    };
    Some(pair_dir.join(relative)).filter(|p| p.is_file())
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into())
}

/// Writes the figures of every image of `paths` (and of its pair); `progress(written)` after each
/// batch. Returns how many files were written and the pooled-query figures kept for a sheet.
pub fn write_figures(
    nat: &Nat,
    paths: &[PathBuf],
    job: &FigureFiles<'_>,
    progress: &mut dyn FnMut(usize),
) -> Result<(usize, Vec<RgbImage>), String> {
    let transform = EvalTransform::square(job.size);
    let options = &job.options;
    let mut sheet_rows = Vec::new();
    let mut written = 0;
    for chunk in paths.chunks(job.batch.max(1)) {
        let views = load_views(chunk, &transform).map_err(|e| e.to_string())?;
        let maps = image_maps(nat, &views, options).map_err(|e| e.to_string())?;
        for (path, m) in chunk.iter().zip(&maps) {
            let s = stem(path);
            let save =
                |name: String, img| write_png(&job.out.join(name), img).map_err(|e| e.to_string());
            save(format!("{s}_pooled.png"), &m.pooled_figure)?;
            if sheet_rows.len() < job.sheet_images {
                sheet_rows.push(m.pooled_figure.clone());
            }
            save(format!("{s}_pca.png"), &m.pca_figure)?;
            written += 2;
            if let Some(f) = &m.neighbourhood_figure {
                save(format!("{s}_neighbourhood.png"), f)?;
                written += 1;
            }
            if let Some(other) = job.pair_dir.and_then(|d| pair_path(d, path, job.input_dir)) {
                let v = load_views(&[other], &transform).map_err(|e| e.to_string())?;
                let om = image_maps(nat, &v, options).map_err(|e| e.to_string())?;
                save(
                    format!("{s}_pair.png"),
                    &pair_figure(m, &om[0], options.mass),
                )?;
                written += 1;
            }
        }
        progress(written);
    }
    Ok((written, sheet_rows))
}
