//! Feature extraction for evaluation (docs/evaluation-commands.md): a data set, the evaluation transform and either
//! a frozen NAT backbone or nothing (raw pixels) -> an `[N, F]` f32 matrix plus the labels, ready for
//! [`crate::knn`] and [`crate::linear`].
//!
//! Backbone features are DINO's choice for NAT (../shared/docs/dino.md, "Evaluation"): the final LayerNorm of the
//! token map, mean-pooled over tokens ([`Nat::forward_features`] in inference mode, no graph recorded). Raw-pixel
//! features are the normalised, centre-cropped image flattened in CHW order: the baseline a learned feature must
//! beat.
//!
//! Images are decoded and transformed in parallel (rayon), one batch at a time; the backbone then runs on the whole
//! batch (its kernels are parallel themselves). Every row depends only on its image, so the matrix is the same for
//! any batch size and thread count up to the kernels' own rounding.
//!
//! Device: the backbone's (`Nat::to_device(Device::Cuda(0))` for the GPU, CPU by default); each
//! batch of images is uploaded to it and the features are downloaded.

use dinonat_engine::{no_grad, Rng, Tensor};
use dinonat_model::Nat;
use dinonat_train::augment::{EvalTransform, Planar};
use dinonat_train::data::Dataset;
use rayon::prelude::*;
use std::fmt;

/// What turns a transformed image into a feature vector.
#[derive(Clone, Copy, Debug)]
pub enum FeatureSource<'a> {
    /// The normalised pixels themselves, `3 * crop * crop` values.
    Pixels,
    /// Final LayerNorm + mean pool of a NAT backbone, `num_features` values.
    Backbone(&'a Nat),
}

impl FeatureSource<'_> {
    /// Length of one feature row for images cropped to `crop` pixels.
    pub fn dim(&self, crop: usize) -> usize {
        match self {
            FeatureSource::Pixels => 3 * crop * crop,
            FeatureSource::Backbone(nat) => nat.config.num_features(),
        }
    }
}

/// A feature matrix: row `i` is the feature of `indices[i]` of the data set, with its label.
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    /// `[rows, dim]`, row-major.
    pub values: Vec<f32>,
    pub dim: usize,
    pub labels: Vec<usize>,
}

impl Features {
    pub fn rows(&self) -> usize {
        self.labels.len()
    }
}

/// Why extraction failed; the message names the sample (file path) or the shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureError {
    pub message: String,
}

impl fmt::Display for FeatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "feature extraction: {}", self.message)
    }
}

impl std::error::Error for FeatureError {}

fn err(message: impl Into<String>) -> FeatureError {
    FeatureError {
        message: message.into(),
    }
}

/// `count` indices spread evenly over `0..len` (`i * len / count`), or all of them when `count >= len`. ImageFolder
/// sorts files by class, so an evenly spread subset keeps the class balance of the whole split.
pub fn spread_indices(len: usize, count: Option<usize>) -> Vec<usize> {
    match count {
        Some(c) if c < len => (0..c).map(|i| i * len / c).collect(),
        _ => (0..len).collect(),
    }
}

/// Features of `dataset[indices]`: decoded and transformed with `transform` (in parallel), then fed through
/// `source` in batches of `batch_size`. `progress(done, total)` is called after each batch. Every sample must have a
/// label (an unlabelled sample is an error naming it), and the transform must produce square `crop` images.
pub fn extract_features(
    dataset: &dyn Dataset,
    indices: &[usize],
    transform: &EvalTransform,
    source: FeatureSource<'_>,
    batch_size: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Features, FeatureError> {
    if batch_size == 0 {
        return Err(err("batch size must be positive"));
    }
    if transform.crop == 0 {
        return Err(err("the evaluation transform's crop size is 0"));
    }
    if let Some(&bad) = indices.iter().find(|&&i| i >= dataset.len()) {
        return Err(err(format!(
            "index {bad} is outside the data set of {} samples",
            dataset.len()
        )));
    }
    let crop = transform.crop;
    let dim = source.dim(crop);
    let total = indices.len();
    let mut values = Vec::with_capacity(total * dim);
    let mut labels = Vec::with_capacity(total);
    // One forward pass records nothing; the guard covers every batch.
    let _guard = no_grad();
    let mut rng = Rng::new(0);
    for chunk in indices.chunks(batch_size) {
        let prepared: Vec<Result<(Planar, usize), FeatureError>> = chunk
            .par_iter()
            .map(|&i| {
                let sample = dataset.get(i).map_err(|e| err(e.to_string()))?;
                let label = sample.label.ok_or_else(|| {
                    err(format!(
                        "{} has no class label (evaluation needs class sub-folders)",
                        dataset.describe(i)
                    ))
                })?;
                Ok((transform.apply(&sample.image), label))
            })
            .collect();
        let mut pixels = Vec::with_capacity(chunk.len() * 3 * crop * crop);
        for item in prepared {
            let (planar, label) = item?;
            pixels.extend_from_slice(&planar.data);
            labels.push(label);
        }
        match source {
            FeatureSource::Pixels => values.extend_from_slice(&pixels),
            FeatureSource::Backbone(nat) => {
                // Uploaded to the backbone's device (Nat::to_device); `to_vec` downloads the rows.
                let images = Tensor::from_vec(pixels, &[chunk.len(), 3, crop, crop])
                    .and_then(|t| t.to(nat.device()))
                    .map_err(|e| err(e.to_string()))?;
                let out = nat
                    .forward_features(&images, false, &mut rng)
                    .map_err(|e| err(format!("{}: {e}", nat.config.name)))?;
                let rows: Vec<f32> = out.to_vec().map_err(|e| err(e.to_string()))?;
                if rows.len() != chunk.len() * dim {
                    return Err(err(format!(
                        "{} returned {} values for {} images of dimension {dim}",
                        nat.config.name,
                        rows.len(),
                        chunk.len()
                    )));
                }
                values.extend_from_slice(&rows);
            }
        }
        progress(labels.len(), total);
    }
    Ok(Features {
        values,
        dim,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dinonat_engine::DType;
    use dinonat_model::NatConfig;
    use dinonat_train::data::Procedural;

    #[test]
    fn spread_indices_are_even_and_capped() {
        assert_eq!(spread_indices(10, Some(5)), vec![0, 2, 4, 6, 8]);
        assert_eq!(spread_indices(3, Some(5)), vec![0, 1, 2]);
        assert_eq!(spread_indices(4, None), vec![0, 1, 2, 3]);
    }

    #[test]
    fn pixel_features_are_the_transformed_images() {
        let data = Procedural::new(3, 7, 20);
        let t = EvalTransform::square(16);
        let idx = [0, 3, 6];
        let mut calls = Vec::new();
        let f = extract_features(&data, &idx, &t, FeatureSource::Pixels, 2, &mut |d, n| {
            calls.push((d, n))
        })
        .unwrap();
        assert_eq!(f.dim, 3 * 16 * 16);
        assert_eq!(f.labels, vec![0, 3, 6]);
        assert_eq!(calls, vec![(2, 3), (3, 3)]);
        let want = t.apply(&data.get(3).unwrap().image).data;
        assert_eq!(&f.values[f.dim..2 * f.dim], &want[..]);
    }

    #[test]
    fn backbone_features_do_not_depend_on_the_batch_size() {
        let nat = Nat::new(&NatConfig::nat_pico(), DType::F32, 5).unwrap();
        let data = Procedural::new(1, 5, 32);
        let t = EvalTransform::square(32);
        let idx: Vec<usize> = (0..5).collect();
        let src = FeatureSource::Backbone(&nat);
        let a = extract_features(&data, &idx, &t, src, 5, &mut |_, _| {}).unwrap();
        let b = extract_features(&data, &idx, &t, src, 2, &mut |_, _| {}).unwrap();
        assert_eq!(a.dim, nat.config.num_features());
        assert_eq!(a.values.len(), 5 * a.dim);
        assert!(a.values.iter().all(|v| v.is_finite()));
        for (x, y) in a.values.iter().zip(&b.values) {
            assert!((x - y).abs() <= 1e-4, "{x} vs {y}");
        }
    }

    #[test]
    fn backbone_features_on_cuda_match_the_cpu() {
        let nat = Nat::new(&NatConfig::nat_pico(), DType::F32, 5).unwrap();
        let gpu = match nat.to_device(dinonat_engine::Device::Cuda(0)) {
            Ok(g) => g,
            Err(e) => {
                assert!(
                    e.to_string().contains("no CUDA device: use --device cpu"),
                    "{e}"
                );
                dinonat_engine::kernels::cuda::skip_gpu_test(&e.to_string());
                return;
            }
        };
        let data = Procedural::new(1, 3, 32);
        let t = EvalTransform::square(32);
        let idx = [0, 1, 2];
        let a = extract_features(
            &data,
            &idx,
            &t,
            FeatureSource::Backbone(&nat),
            2,
            &mut |_, _| {},
        );
        let b = extract_features(
            &data,
            &idx,
            &t,
            FeatureSource::Backbone(&gpu),
            2,
            &mut |_, _| {},
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let num: f64 = a
            .values
            .iter()
            .zip(&b.values)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum();
        let den: f64 = a.values.iter().map(|x| (*x as f64).powi(2)).sum();
        let rel = (num / den).sqrt();
        println!("features cuda vs cpu: rel err {rel:.2e}");
        assert!(rel < 1e-4, "rel err {rel:.3e}");
    }

    #[test]
    fn bad_inputs_are_errors() {
        let data = Procedural::new(1, 3, 16);
        let t = EvalTransform::square(16);
        let e = extract_features(&data, &[5], &t, FeatureSource::Pixels, 2, &mut |_, _| {});
        assert!(e.unwrap_err().message.contains("index 5"));
        let e = extract_features(&data, &[0], &t, FeatureSource::Pixels, 0, &mut |_, _| {});
        assert!(e.unwrap_err().message.contains("batch size"));
    }
}
