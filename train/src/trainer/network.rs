//! Student and teacher: NAT backbone (pooled features) + DINO head.
//!
//! Crops of one resolution go through the backbone together, the features of all resolutions are
//! concatenated in view order and the head runs once, as DINO's `MultiCropWrapper` does.

use super::Result;
use crate::batch::MultiCropBatch;
use dinonat_engine::nn::ParamStore;
use dinonat_engine::optim::ParamGroup;
use dinonat_engine::{DType, Rng, Tensor};
use dinonat_model::{DinoHead, DinoHeadConfig, Nat, NatConfig};

pub struct DinoNetwork {
    pub backbone: Nat,
    pub head: DinoHead,
}

/// The two stores of a network under their checkpoint prefixes.
pub const PARTS: [&str; 2] = ["backbone", "head"];

impl DinoNetwork {
    pub fn new(backbone: &NatConfig, head: &DinoHeadConfig, seed: u64) -> Result<DinoNetwork> {
        Ok(DinoNetwork {
            backbone: Nat::new(backbone, DType::F32, seed)?,
            head: DinoHead::new(head, DType::F32, seed.wrapping_add(1))?,
        })
    }

    pub fn store(&self, part: &str) -> &ParamStore {
        match part {
            "backbone" => &self.backbone.params,
            _ => &self.head.params,
        }
    }

    /// images, one tensor per crop resolution [views * N, 3, S, S] -> logits [all views * N, K].
    pub fn forward(&self, crops: &[Tensor], training: bool, rng: &mut Rng) -> Result<Tensor> {
        let features = crops
            .iter()
            .map(|x| self.backbone.forward_features(x, training, rng))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let features = if features.len() == 1 {
            features[0].clone()
        } else {
            Tensor::cat(&features, 0)?
        };
        Ok(self.head.forward(&features)?)
    }

    /// AdamW's groups: decay / no decay for the backbone and the head.
    pub fn param_groups(&self) -> Vec<ParamGroup> {
        PARTS
            .iter()
            .flat_map(|p| ParamGroup::from_store(self.store(p), p))
            .collect()
    }

    /// Every entry, named `<prefix>.backbone.<name>` / `<prefix>.head.<name>`.
    pub fn named_tensors(&self, prefix: &str) -> Vec<(String, Tensor)> {
        PARTS
            .iter()
            .flat_map(|p| {
                self.store(p)
                    .named_tensors()
                    .into_iter()
                    .map(move |(n, t)| (format!("{prefix}.{p}.{n}"), t))
            })
            .collect()
    }

    /// Copies every entry of `other` into this network (the teacher starts as the student).
    pub fn copy_from(&self, other: &DinoNetwork) -> Result<()> {
        for p in PARTS {
            self.store(p).copy_from(other.store(p))?;
        }
        Ok(())
    }
}

/// The batch's crop buffers as tensors, and the teacher's input (the 2 global views, [2N, 3, S, S]).
pub fn batch_tensors(batch: &MultiCropBatch) -> Result<(Vec<Tensor>, Tensor)> {
    let n = batch.indices.len();
    let crops = batch
        .crops
        .iter()
        .map(|c| Tensor::from_slice(&c.data, &[c.views * n, 3, c.size, c.size]))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let global = crops[0].narrow(0, 0, 2 * n)?.contiguous();
    Ok((crops, global))
}
