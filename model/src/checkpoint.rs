//! Backbone files: safetensors under the reference weight names (docs/nat.md), so converted
//! official NAT checkpoints and DINO checkpoints load as they are.
//!
//! Loading strips the prefixes DINO adds (`module.` from distributed training, `backbone.`),
//! ignores `head.*` entries when the config has no classifier (a classifier or a DINO head;
//! returned as a note), and fails with one error that lists every missing, mis-shaped and
//! unexpected tensor.

use crate::config::NatConfig;
use crate::nat::Nat;
use crate::{ModelError, Result};
use dinonat_engine::io::{load_safetensors, save_safetensors};
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

/// Copies every tensor of `path` into `nat`'s parameters (in place). Nothing is written unless
/// every parameter is present with the right shape.
pub fn load_backbone_into(nat: &Nat, path: &Path) -> Result<Vec<String>> {
    let file = load_safetensors(path)?;
    let mut found: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut ignored_head = Vec::new();
    let mut unexpected = Vec::new();
    for (name, t) in file.tensors {
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
    let mut notes = Vec::new();
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

/// Writes every parameter of `nat` (and its classifier, if any) with `arch` in the metadata.
pub fn save_backbone(nat: &Nat, path: &Path) -> Result<()> {
    let meta = HashMap::from([
        ("format".to_string(), "dinonat-nat".to_string()),
        ("arch".to_string(), nat.config.name.clone()),
    ]);
    Ok(save_safetensors(
        path,
        &nat.params.named_tensors(),
        Some(&meta),
    )?)
}
