//! Embeddings of a list of images: decode (in parallel), eval transform (resize the shorter side,
//! centre crop, ImageNet mean/std), then the backbone in batches; features = final LayerNorm +
//! mean over tokens (before any head), as DINO's k-NN evaluation uses.

use super::{err, CurateError, Result};
use dinonat_engine::io::save_safetensors;
use dinonat_engine::{no_grad, Rng, Tensor};
use dinonat_model::Nat;
use dinonat_train::augment::{EvalTransform, Planar};
use dinonat_train::data::read_image;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Decodes one file and applies `transform`; the error names the file.
pub fn load_view(path: &Path, transform: &EvalTransform) -> Result<Planar> {
    Ok(transform.apply(&read_image(path)?))
}

/// Decodes and transforms `paths` in parallel (results in the order of `paths`).
pub fn load_views(paths: &[PathBuf], transform: &EvalTransform) -> Result<Vec<Planar>> {
    paths.par_iter().map(|p| load_view(p, transform)).collect()
}

/// Planar views of one size as one batch tensor [B, 3, S, S].
pub fn batch_tensor(views: &[Planar]) -> Result<Tensor> {
    let Some(first) = views.first() else {
        return err("empty batch");
    };
    let (w, h) = (first.width, first.height);
    let mut data = Vec::with_capacity(views.len() * 3 * w * h);
    for v in views {
        data.extend_from_slice(&v.data);
    }
    Ok(Tensor::from_vec(data, &[views.len(), 3, h, w])?)
}

/// Features `[N, F]` of `paths` (row i = paths[i]) at `size` x `size`, `batch` images per
/// forward pass; `progress(done, total)` after each batch.
pub fn embed_paths(
    nat: &Nat,
    paths: &[PathBuf],
    size: usize,
    batch: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f32>> {
    dinonat_train::guard::image_side("size", size, 8).map_err(CurateError)?;
    if batch == 0 {
        return err("batch 0: must be at least 1");
    }
    let transform = EvalTransform::square(size);
    let mut out = Vec::new();
    for (i, chunk) in paths.chunks(batch).enumerate() {
        out.extend(embed_views(nat, &load_views(chunk, &transform)?, batch)?);
        progress((i * batch + chunk.len()).min(paths.len()), paths.len());
    }
    Ok(out)
}

/// Features `[N, F]` of views already decoded and transformed (one size), `batch` per forward
/// pass: for callers that also use the views' pixels, so each file is decoded once.
pub fn embed_views(nat: &Nat, views: &[Planar], batch: usize) -> Result<Vec<f32>> {
    if batch == 0 {
        return err("batch 0: must be at least 1");
    }
    let _guard = no_grad();
    let mut rng = Rng::new(0);
    let mut out = Vec::new();
    for chunk in views.chunks(batch) {
        let f = nat.forward_features(&batch_tensor(chunk)?, false, &mut rng)?;
        out.extend(f.to_vec::<f32>()?);
    }
    Ok(out)
}

/// Writes `features` `[N, dim]` as the safetensors tensor `embeddings` and the CSV `csv` of
/// `index,path` rows in the same order.
pub fn write_embeddings(
    out: &Path,
    csv: &Path,
    features: &[f32],
    dim: usize,
    paths: &[PathBuf],
    arch: &str,
) -> Result<()> {
    let n = paths.len();
    let t = Tensor::from_vec(features.to_vec(), &[n, dim])?;
    let meta = HashMap::from([
        ("arch".to_string(), arch.to_string()),
        (
            "features".to_string(),
            "final LayerNorm + mean pool".to_string(),
        ),
        ("rows".to_string(), "in the order of the CSV".to_string()),
    ]);
    save_safetensors(out, &[("embeddings".to_string(), t)], Some(&meta))
        .map_err(|e| CurateError(e.to_string()))?;
    let mut text = String::from("index,path\n");
    for (i, p) in paths.iter().enumerate() {
        text.push_str(&format!("{i},{}\n", csv_field(&p.display().to_string())));
    }
    std::fs::write(csv, text)
        .map_err(|e| CurateError(format!("{}: cannot write: {e}", csv.display())))
}

/// A CSV field, quoted when it holds a comma, quote or line break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The CSV written beside `out`: same stem, `.csv`.
pub fn csv_beside(out: &Path) -> PathBuf {
    out.with_extension("csv")
}
