//! Backbone + DINO head as one network (DINO's `MultiCropWrapper`): crops of different sizes go
//! through the backbone in groups of equal resolution, their features are concatenated, and the
//! head runs once on all of them. Parameters are named as in DINO's checkpoints: `backbone.*`
//! and `head.*`.

use crate::dino_head::{DinoHead, DinoHeadConfig};
use crate::nat::Nat;
use crate::{ModelError, NatConfig, Result};
use dinonat_engine::io::{load_safetensors, save_safetensors};
use dinonat_engine::nn::Param;
use dinonat_engine::{DType, Device, Rng, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Student or teacher of DINO.
#[derive(Clone, Debug)]
pub struct DinoNetwork {
    pub backbone: Nat,
    pub head: DinoHead,
}

impl DinoNetwork {
    /// A fresh network; the head's input width is the backbone's feature width.
    pub fn new(
        nat: &NatConfig,
        head: &DinoHeadConfig,
        dtype: DType,
        seed: u64,
    ) -> Result<DinoNetwork> {
        if head.in_dim != nat.num_features() {
            return Err(ModelError::Config(format!(
                "DINO head in_dim {} does not match {}'s feature width {}",
                head.in_dim,
                nat.name,
                nat.num_features()
            )));
        }
        let mut seeds = Rng::new(seed);
        let (a, b) = (seeds.below(u64::MAX), seeds.below(u64::MAX));
        Ok(DinoNetwork {
            backbone: Nat::new(nat, dtype, a)?,
            head: DinoHead::new(head, dtype, b)?,
        })
    }

    /// The same network with every parameter copied to `device` (new leaves; the original is
    /// unchanged). Without a GPU, `Device::Cuda` is an error value (see [`Nat::to_device`]).
    pub fn to_device(&self, device: Device) -> Result<DinoNetwork> {
        Ok(DinoNetwork {
            backbone: self.backbone.to_device(device)?,
            head: self.head.to_device(device)?,
        })
    }

    /// The device of the parameters.
    pub fn device(&self) -> Device {
        self.backbone.device()
    }

    /// Crops (each [B, 3, H_i, W_i]) -> logits [sum of B, K], in the order given. Consecutive
    /// crops of one resolution run through the backbone as one batch.
    pub fn forward_crops(&self, crops: &[Tensor], training: bool, rng: &mut Rng) -> Result<Tensor> {
        let features = self.features_crops(crops, training, rng)?;
        self.head.forward(&features)
    }

    /// Crops -> backbone features [sum of B, F] (before the head).
    pub fn features_crops(
        &self,
        crops: &[Tensor],
        training: bool,
        rng: &mut Rng,
    ) -> Result<Tensor> {
        let mut outputs = Vec::new();
        let mut start = 0;
        while start < crops.len() {
            let size = &crops[start].shape()[2..];
            let mut end = start + 1;
            while end < crops.len() && crops[end].shape()[2..] == *size {
                end += 1;
            }
            let batch = if end - start == 1 {
                crops[start].clone()
            } else {
                Tensor::cat(&crops[start..end], 0)?
            };
            outputs.push(self.backbone.forward_features(&batch, training, rng)?);
            start = end;
        }
        match outputs.len() {
            0 => Err(ModelError::Config("forward_crops: no crops given".into())),
            1 => Ok(outputs.pop().expect("one output")),
            _ => Ok(Tensor::cat(&outputs, 0)?),
        }
    }

    /// Every entry as (`backbone.<name>` / `head.<name>`, entry), backbone first, each sorted.
    pub fn named_parameters(&self) -> Vec<(String, Param)> {
        let b = self
            .backbone
            .params
            .iter()
            .map(|(n, p)| (format!("backbone.{n}"), p.clone()));
        let h = self
            .head
            .params
            .iter()
            .map(|(n, p)| (format!("head.{n}"), p.clone()));
        b.chain(h).collect()
    }

    /// Copies every value of `other` into this network (the teacher starts as the student).
    pub fn copy_from(&self, other: &DinoNetwork) -> Result<()> {
        self.backbone.params.copy_from(&other.backbone.params)?;
        self.head.params.copy_from(&other.head.params)?;
        Ok(())
    }

    /// Writes backbone and head under DINO's names (atomic), with `metadata`.
    pub fn save(&self, path: &Path, metadata: &HashMap<String, String>) -> Result<()> {
        let tensors: Vec<(String, Tensor)> = self
            .named_parameters()
            .into_iter()
            .map(|(n, p)| (n, p.tensor))
            .collect();
        Ok(save_safetensors(path, &tensors, Some(metadata))?)
    }

    /// Reads a file written by [`DinoNetwork::save`] (or a converted DINO checkpoint: `module.`
    /// is removed); every tensor must be present with its shape. Returns the file's metadata.
    pub fn load(&self, path: &Path) -> Result<HashMap<String, String>> {
        let file = load_safetensors(path)?;
        let mut by_name: HashMap<String, Tensor> = HashMap::new();
        for (n, t) in file.tensors {
            let n = n.strip_prefix("module.").unwrap_or(&n).to_string();
            by_name.insert(n, t);
        }
        let mut missing = Vec::new();
        let mut mismatched = Vec::new();
        let entries = self.named_parameters();
        for (name, p) in &entries {
            match by_name.get(name) {
                None => missing.push(name.clone()),
                Some(t) if t.shape() != p.tensor.shape() => {
                    mismatched.push((name.clone(), p.tensor.shape().to_vec(), t.shape().to_vec()))
                }
                Some(_) => {}
            }
        }
        let known: std::collections::HashSet<&str> =
            entries.iter().map(|(n, _)| n.as_str()).collect();
        let mut unexpected: Vec<String> = by_name
            .keys()
            .filter(|n| !known.contains(n.as_str()))
            .cloned()
            .collect();
        unexpected.sort();
        if !missing.is_empty() || !mismatched.is_empty() || !unexpected.is_empty() {
            return Err(ModelError::Checkpoint {
                path: path.display().to_string(),
                arch: format!("{} + DINO head", self.backbone.config.name),
                missing,
                mismatched,
                unexpected,
            });
        }
        for (name, p) in &entries {
            p.tensor.assign(&by_name[name].to_dtype(p.tensor.dtype()))?;
        }
        Ok(file.metadata)
    }
}
