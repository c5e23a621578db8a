//! Student and teacher are `dinonat_model::DinoNetwork`s (NAT backbone + DINO head; crops of one
//! resolution go through the backbone together, the head runs once). This file adds what the
//! loop needs around them: the optimiser's parameter groups, checkpoint names, batch tensors.

use super::error::Result;
use crate::batch::MultiCropBatch;
use dinonat_engine::nn::ParamStore;
use dinonat_engine::optim::ParamGroup;
use dinonat_engine::{Device, Tensor};
pub use dinonat_model::DinoNetwork;

/// The two stores of a network under their checkpoint prefixes.
pub const PARTS: [&str; 2] = ["backbone", "head"];

pub fn store<'a>(net: &'a DinoNetwork, part: &str) -> &'a ParamStore {
    match part {
        "backbone" => &net.backbone.params,
        _ => &net.head.params,
    }
}

/// AdamW's groups: decay / no decay for the backbone and for the head.
pub fn param_groups(net: &DinoNetwork) -> Vec<ParamGroup> {
    PARTS
        .iter()
        .flat_map(|p| ParamGroup::from_store(store(net, p), p))
        .collect()
}

/// Every entry, named `<prefix>.backbone.<name>` / `<prefix>.head.<name>`.
pub fn named_tensors(net: &DinoNetwork, prefix: &str) -> Vec<(String, Tensor)> {
    net.named_parameters()
        .into_iter()
        .map(|(n, p)| (format!("{prefix}.{n}"), p.tensor))
        .collect()
}

/// The batch's crop buffers as tensors on `device` (one upload per resolution), and the teacher's
/// input (the 2 global views, [2N, 3, S, S]).
pub fn batch_tensors(batch: &MultiCropBatch, device: Device) -> Result<(Vec<Tensor>, Tensor)> {
    let n = batch.indices.len();
    let crops = batch
        .crops
        .iter()
        .map(|c| Tensor::from_slice(&c.data, &[c.views * n, 3, c.size, c.size])?.to(device))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let global = crops[0].narrow(0, 0, 2 * n)?.contiguous();
    Ok((crops, global))
}
