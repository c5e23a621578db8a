//! Backbone files: safetensors under the reference weight names (docs/nat.md), and the files of
//! other projects through the name maps of [`crate::weights`]: PyTorch `.pth` checkpoints (official
//! NAT / DiNAT, DINO training checkpoints, Hugging Face NAT / DiNAT), told apart by their first
//! bytes (docs/pth.md).
//!
//! Loading strips the prefixes DINO adds (`module.` from distributed training, `backbone.`),
//! ignores `head.*` entries when the config has no classifier (a classifier or a DINO head;
//! returned as a note), and fails with one error that lists every missing, mis-shaped and
//! unexpected tensor.

use crate::config::NatConfig;
use crate::nat::Nat;
use crate::weights::{infer_config, read_weights, Network, Weights};
use crate::{ModelError, Result};
use dinonat_engine::io::save_safetensors;
use dinonat_engine::{DType, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The name a backbone tensor has once DINO's prefixes are removed.
pub fn strip_prefixes(name: &str) -> &str {
    let mut n = name;
    for p in ["module.", "backbone."] {
        n = n.strip_prefix(p).unwrap_or(n);
    }
    n
}

/// Builds `config` (f32) and fills it from `path`; returns the network and notes on what was
/// skipped.
pub fn load_backbone(path: &Path, config: &NatConfig) -> Result<(Nat, Vec<String>)> {
    let nat = Nat::new(config, DType::F32, 0)?;
    let notes = load_backbone_into(&nat, path)?;
    Ok((nat, notes))
}

/// Builds the network of `path` and fills it: the architecture is `arch` when given, else the
/// file's `arch` metadata, else inferred from the shapes ([`infer_config`]); a DINO checkpoint
/// gives its teacher. Returns the network and notes on what was read, inferred and skipped.
pub fn load_weights(path: &Path, arch: Option<&str>) -> Result<(Nat, Vec<String>)> {
    load_network_weights(path, arch, Network::Teacher)
}

/// [`load_weights`] with the network of a DINO checkpoint chosen.
pub fn load_network_weights(
    path: &Path,
    arch: Option<&str>,
    network: Network,
) -> Result<(Nat, Vec<String>)> {
    let weights = read_weights(path, network)?;
    let mut notes = Vec::new();
    let config = match arch.map(str::to_string).or_else(|| weights.arch.clone()) {
        Some(a) => NatConfig::from_name(&a)?,
        None => {
            let (c, note) = infer_config(&weights.tensors, weights.dinat)
                .map_err(|m| ModelError::Config(format!("{}: {m}", path.display())))?;
            notes.push(format!("{}: {note}", path.display()));
            c
        }
    };
    let nat = Nat::new(&config, DType::F32, 0)?;
    notes.extend(fill(&nat, weights, path)?);
    Ok((nat, notes))
}

/// Copies every tensor of `path` into `nat`'s parameters (in place). Nothing is written unless
/// every parameter is present with the right shape.
pub fn load_backbone_into(nat: &Nat, path: &Path) -> Result<Vec<String>> {
    fill(nat, read_weights(path, Network::Teacher)?, path)
}

fn fill(nat: &Nat, weights: Weights, path: &Path) -> Result<Vec<String>> {
    let mut found: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut ignored_head = Vec::new();
    let mut unexpected = Vec::new();
    for (name, t) in weights.tensors {
        let n = strip_prefixes(&name);
        if nat.params.contains(n) {
            found.insert(n.to_string(), t);
        } else if n.starts_with("head.") {
            ignored_head.push(name);
        } else {
            unexpected.push(name);
        }
    }
    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    for (name, p) in nat.params.iter() {
        match found.get(name) {
            None => missing.push(name.to_string()),
            Some(t) if t.shape() != p.tensor.shape() => mismatched.push((
                name.to_string(),
                p.tensor.shape().to_vec(),
                t.shape().to_vec(),
            )),
            Some(_) => {}
        }
    }
    if !missing.is_empty() || !mismatched.is_empty() || !unexpected.is_empty() {
        return Err(ModelError::Checkpoint {
            path: path.display().to_string(),
            arch: nat.config.name.clone(),
            missing,
            mismatched,
            unexpected,
        });
    }
    for (name, t) in &found {
        nat.params.assign(name, t)?;
    }
    let mut notes: Vec<String> = weights
        .notes
        .into_iter()
        .map(|n| format!("{}: {n}", path.display()))
        .collect();
    if !ignored_head.is_empty() {
        notes.push(format!(
            "{}: ignored {} head tensor(s) (a classifier or projection head; the backbone does not use them): {}",
            path.display(),
            ignored_head.len(),
            ignored_head.join(", ")
        ));
    }
    Ok(notes)
}

/// Writes every parameter of `nat` (and its classifier, if any) with `arch` in the metadata when
/// the config has a name [`NatConfig::from_name`] knows (an inferred one is inferred again).
pub fn save_backbone(nat: &Nat, path: &Path) -> Result<()> {
    let mut meta = HashMap::from([("format".to_string(), "dinonat-nat".to_string())]);
    if NatConfig::from_name(&nat.config.name).is_ok() {
        meta.insert("arch".to_string(), nat.config.name.clone());
    }
    Ok(save_safetensors(
        path,
        &nat.params.named_tensors(),
        Some(&meta),
    )?)
}
