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
//! The model is run here block by block with its public parts, so the inputs of every block of
//! the chosen level can be kept (the model's own forward keeps nothing).

pub mod boxes;
pub mod boxes_eval;
pub mod figures;
pub mod neighbourhood;
pub mod pca;
pub mod pooled;
pub mod priors;
pub mod render;

use dinonat_engine::{Rng, Tensor};
use dinonat_model::{ModelError, Nat, NatConfig};

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
/// features [B, F] (final LayerNorm, mean over tokens: the same ops as `Nat::forward_features`)
/// together with the inputs and output of the blocks of `level`.
pub fn forward_with_capture(
    nat: &Nat,
    images: &Tensor,
    level: usize,
) -> Result<(Tensor, LevelCapture)> {
    let levels = nat.levels.len();
    if level >= levels {
        return Err(ModelError::Config(format!(
            "--level {level}: {} has levels 0..{}",
            nat.config.name,
            levels - 1
        )));
    }
    if images.rank() != 4 || images.shape()[1] != nat.config.in_channels {
        return Err(ModelError::Config(format!(
            "{}: images must be [batch, {}, height, width], got {:?}",
            nat.config.name,
            nat.config.in_channels,
            images.shape()
        )));
    }
    let mut rng = Rng::new(0);
    let mut x = nat.patch_embed.forward(images)?;
    let mut capture = None;
    for (i, lv) in nat.levels.iter().enumerate() {
        let mut inputs = Vec::new();
        for block in &lv.blocks {
            if i == level {
                inputs.push(x.clone());
            }
            x = block.forward(&x, false, &mut rng)?;
        }
        if i == level {
            capture = Some(LevelCapture {
                level,
                grid: (x.shape()[1], x.shape()[2]),
                block_inputs: inputs,
                tokens: x.clone(),
            });
        }
        if let Some(down) = &lv.downsample {
            x = down.forward(&x)?;
        }
    }
    let x = nat.norm.forward(&x)?;
    let (b, h, w, f) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let features = x.reshape(&[b, h * w, f])?.mean_tokens()?;
    let capture = capture.ok_or_else(|| ModelError::Config(format!("level {level} not run")))?;
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
