//! Attention maps for NAT, a network without a [CLS] token (docs/attention-maps.md).
//!
//! DINO shows the [CLS] query's attention in the last block of a ViT. NAT has no such token, so
//! DinoNAT defines three maps on one level of the backbone:
//! - [`pooled`]: the pooled query (mean of the last block's queries) attending to every token of
//!   the level, per head, without positional bias;
//! - [`neighbourhood`]: the real k x k attention weights of one chosen token in each block;
//! - [`pca`]: the first three principal components of the level's token features as RGB.
//!
//! [`boxes`] measures how much of a map falls inside labelled boxes ([`boxes_eval`] over a folder), beside the
//! non-learned maps of [`priors`].
//!
//! [`render`] turns maps into pictures (upsampling, colour map, the 60%-mass mask overlay).
//!
//! The model runs its own forward (`Nat::forward_features_with`); a hook keeps the inputs of every
//! block of the chosen level and the level's output.

pub mod boxes;
pub mod boxes_eval;
pub mod boxes_figure;
pub mod boxes_report;
pub mod figure_files;
pub mod figures;
pub mod neighbourhood;
pub mod pca;
pub mod pooled;
pub mod priors;
pub mod render;

use dinonat_engine::{Rng, Tensor};
use dinonat_model::{ForwardPoint, ModelError, Nat, NatConfig};

pub type Result<T> = std::result::Result<T, ModelError>;

/// Grid side a level must reach to be the default level (14 = a ViT-S/16's grid at 224 px).
pub const DEFAULT_MIN_GRID: usize = 14;

/// The deepest level whose token grid is at least 14 x 14 for an `h` x `w` input; level 0 when
/// no level is that large (small inputs).
pub fn default_level(config: &NatConfig, h: usize, w: usize) -> usize {
    config
        .level_sizes(h, w)
        .iter()
        .rposition(|&(a, b)| a.min(b) >= DEFAULT_MIN_GRID)
        .unwrap_or(0)
}

/// `level`, else [`default_level`] of a `size` x `size` input; an error naming the parameter
/// `level` when the network has no such level.
pub fn choose_level(
    config: &NatConfig,
    level: Option<usize>,
    size: usize,
) -> std::result::Result<usize, String> {
    let levels = config.num_levels();
    let level = level.unwrap_or_else(|| default_level(config, size, size));
    if level >= levels {
        return Err(format!(
            "level {level}: {} has levels 0..{}",
            config.name,
            levels - 1
        ));
    }
    Ok(level)
}

/// What a forward pass kept of one level.
#[derive(Clone, Debug)]
pub struct LevelCapture {
    pub level: usize,
    /// Token grid (rows, columns) of the level.
    pub grid: (usize, usize),
    /// The input of each block of the level, [B, h, w, D].
    pub block_inputs: Vec<Tensor>,
    /// The output of the level's last block (before the downsampler), [B, h, w, D].
    pub tokens: Tensor,
}

/// Runs `nat` on `images` [B, in, H, W] (inference: no drop path) and returns the pooled
/// features [B, F] (`Nat::forward_features_with` itself) together with the inputs and output of
/// the blocks of `level`, kept by its hook.
pub fn forward_with_capture(
    nat: &Nat,
    images: &Tensor,
    level: usize,
) -> Result<(Tensor, LevelCapture)> {
    let levels = nat.levels.len();
    if level >= levels {
        return Err(ModelError::Config(format!(
            "level {level}: {} has levels 0..{}",
            nat.config.name,
            levels - 1
        )));
    }
    let mut block_inputs = Vec::new();
    let mut tokens = None;
    let features =
        nat.forward_features_with(images, false, &mut Rng::new(0), &mut |point| match point {
            ForwardPoint::BlockInput { level: l, x, .. } if l == level => {
                block_inputs.push(x.clone())
            }
            ForwardPoint::LevelOutput { level: l, x } if l == level => tokens = Some(x.clone()),
            _ => {}
        })?;
    let tokens = tokens.ok_or_else(|| ModelError::Config(format!("level {level} not run")))?;
    let capture = LevelCapture {
        level,
        grid: (tokens.shape()[1], tokens.shape()[2]),
        block_inputs,
        tokens,
    };
    Ok((features, capture))
}

/// The queries and keys of block `block` of the captured level: LN1 then the QKV projection of
/// its input, as the block computes them. Returns (q, k) as f32 `[B, n, D]` row-major each
/// (n = h * w, channels ordered [heads][head_dim]).
pub fn block_queries_keys(
    nat: &Nat,
    capture: &LevelCapture,
    block: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let blocks = &nat.levels[capture.level].blocks;
    let b = blocks.get(block).ok_or_else(|| {
        ModelError::Config(format!(
            "block {block}: level {} has {} blocks",
            capture.level,
            blocks.len()
        ))
    })?;
    let x = &capture.block_inputs[block];
    let qkv = b.attn.qkv.forward(&b.norm1.forward(x)?)?;
    let s = qkv.shape().to_vec();
    let (batch, n, d3) = (s[0], s[1] * s[2], s[3]);
    let d = d3 / 3;
    let all = qkv.to_dtype(dinonat_engine::DType::F32).to_vec::<f32>()?;
    let mut q = Vec::with_capacity(batch * n * d);
    let mut k = Vec::with_capacity(batch * n * d);
    for row in all.chunks_exact(d3) {
        q.extend_from_slice(&row[..d]);
        k.extend_from_slice(&row[d..2 * d]);
    }
    Ok((q, k))
}

/// Softmax of f64 scores in place (max subtracted), as f32 weights.
pub(crate) fn softmax_f64(scores: &[f64]) -> Vec<f32> {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|v| (v / z) as f32).collect()
}

#[cfg(test)]
mod tests;
