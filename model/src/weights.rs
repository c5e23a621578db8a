//! Weight files from elsewhere onto the reference names of docs/nat.md: the one place that knows
//! other projects' names (docs/pth.md, "Name maps").
//!
//! [`read_weights`] reads safetensors or a PyTorch checkpoint (`dinonat_engine::io::pth`, told
//! apart by the first bytes) and recognises, in this order:
//! - a DINO training checkpoint (`student.*` / `teacher.*`): the teacher by default;
//! - a classification checkpoint that nests the state dict under `model.` (`state_dict.`,
//!   `model_ema.`), as SHI-Labs' and timm's training scripts save it;
//! - then DINO's `module.` and `backbone.` prefixes are removed ([`strip_prefixes`]);
//! - Hugging Face `transformers` NAT / DiNAT names (`nat.encoder.levels.N.layers.M...`, with the
//!   separate query / key / value fused into one qkv and `layer_scale_parameters` split into
//!   gamma1 / gamma2).
//!
//! What is left out is returned as notes (printed by the commands); whether every parameter is
//! there is the loader's check. [`infer_config`] builds the architecture from the shapes when no
//! `--arch` is given.

use crate::checkpoint::strip_prefixes;
use crate::config::{AttentionKind, DilationSchedule, NatConfig};
use crate::{ModelError, Result};
use dinonat_engine::io::{load_tensor_file, TensorFile};
use dinonat_engine::Tensor;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Which network of a DINO training checkpoint to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Network {
    #[default]
    Teacher,
    Student,
}

/// A weight file with its names mapped to the reference names.
#[derive(Debug)]
pub struct Weights {
    /// Reference names (docs/nat.md); anything the maps did not recognise keeps its name.
    pub tensors: BTreeMap<String, Tensor>,
    /// The `arch` of a DinoNAT file's metadata.
    pub arch: Option<String>,
    /// Hugging Face's `dinat.` prefix: the DiNAT dilation schedule.
    pub dinat: bool,
    /// What was read and what was left out.
    pub notes: Vec<String>,
}

/// Reads `path` (safetensors or `.pth`) and maps its names.
pub fn read_weights(path: &Path, network: Network) -> Result<Weights> {
    let file = load_tensor_file(path)?;
    map_names(file, network).map_err(|m| ModelError::Config(format!("{}: {m}", path.display())))
}

fn count_groups<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let mut groups: BTreeMap<&str, usize> = BTreeMap::new();
    for n in names {
        *groups.entry(n.split('.').next().unwrap_or(n)).or_default() += 1;
    }
    let list: Vec<String> = groups.iter().map(|(g, c)| format!("{g}.* ({c})")).collect();
    list.join(", ")
}

/// The tensors of `network` when the file holds a DINO checkpoint (`teacher.` / `student.`) or a
/// wrapped state dict (`model.`, `state_dict.`, `model_ema.`), that prefix removed; else all of them.
fn select_network(
    tensors: Named,
    network: Network,
    notes: &mut Vec<String>,
) -> std::result::Result<Named, String> {
    let names: Vec<&String> = tensors.iter().map(|(n, _)| n).collect();
    let has = |p: &str| names.iter().any(|n| n.starts_with(p));
    let chosen = if has("teacher.") || has("student.") {
        Some(match network {
            Network::Teacher => "teacher.",
            Network::Student => "student.",
        })
    } else {
        ["model.", "state_dict.", "model_ema."]
            .into_iter()
            .find(|p| has(p))
    };
    let Some(prefix) = chosen else {
        return Ok(tensors);
    };
    let (inside, outside): (Vec<_>, Vec<_>) = tensors
        .into_iter()
        .partition(|(n, _)| n.starts_with(prefix));
    if inside.is_empty() {
        return Err(format!("a DINO checkpoint without '{prefix}*' tensors"));
    }
    notes.push(format!(
        "read the {} tensors under '{prefix}'{}",
        inside.len(),
        if outside.is_empty() {
            String::new()
        } else {
            format!("; unused: {}", count_groups(outside.iter().map(|(n, _)| n)))
        }
    ));
    Ok(inside
        .into_iter()
        .map(|(n, t)| (n[prefix.len()..].to_string(), t))
        .collect())
}

/// The name maps, on a file already read.
pub fn map_names(file: TensorFile, network: Network) -> std::result::Result<Weights, String> {
    let mut notes = Vec::new();
    let skipped = file.metadata.get("skipped").filter(|s| !s.is_empty());
    if let Some(s) = skipped {
        notes.push(format!("integer / boolean tensors not loaded: {s}"));
    }
    let tensors = select_network(file.tensors, network, &mut notes)?;
    let hf = tensors.iter().any(|(n, _)| {
        let n = strip_prefixes(n);
        n.starts_with("nat.") || n.starts_with("dinat.") || n.starts_with("encoder.levels.")
    });
    let dinat = tensors.iter().any(|(n, _)| n.starts_with("dinat."));
    let mut out = BTreeMap::new();
    let mut qkv: HashMap<String, [Option<Tensor>; 3]> = HashMap::new();
    for (name, t) in tensors {
        let n = strip_prefixes(&name);
        let mapped = if hf {
            match hf_name(n, &t, &mut qkv)? {
                Some(list) => list,
                None => continue,
            }
        } else {
            vec![(n.to_string(), t)]
        };
        for (m, t) in mapped {
            if out.insert(m.clone(), t).is_some() {
                return Err(format!("two tensors map to '{m}' (from '{name}')"));
            }
        }
    }
    for (target, parts) in qkv {
        let [Some(q), Some(k), Some(v)] = parts else {
            return Err(format!(
                "'{target}': Hugging Face query, key and value are not all present"
            ));
        };
        let fused = Tensor::cat(&[q, k, v], 0).map_err(|e| format!("'{target}': {e}"))?;
        out.insert(target, fused);
    }
    if hf {
        notes.push(format!(
            "Hugging Face {} names mapped to the reference names (query, key, value fused into qkv)",
            if dinat { "DiNAT" } else { "NAT" }
        ));
    }
    Ok(Weights {
        tensors: out,
        arch: file.metadata.get("arch").cloned(),
        dinat,
        notes,
    })
}

type Named = Vec<(String, Tensor)>;

/// One Hugging Face name -> reference name(s); q / k / v go to `qkv` to be fused. None: a
/// tensor fused later.
fn hf_name(
    name: &str,
    t: &Tensor,
    qkv: &mut HashMap<String, [Option<Tensor>; 3]>,
) -> std::result::Result<Option<Named>, String> {
    let n = name
        .strip_prefix("nat.")
        .or_else(|| name.strip_prefix("dinat."))
        .unwrap_or(name);
    let one = |s: String| Ok(Some(vec![(s, t.clone())]));
    if let Some(rest) = n.strip_prefix("embeddings.patch_embeddings.projection.") {
        return one(format!("patch_embed.proj.{rest}"));
    }
    if let Some(rest) = n.strip_prefix("embeddings.norm.") {
        return one(format!("patch_embed.norm.{rest}"));
    }
    if let Some(rest) = n.strip_prefix("layernorm.") {
        return one(format!("norm.{rest}"));
    }
    if let Some(rest) = name.strip_prefix("classifier.") {
        return one(format!("head.{rest}"));
    }
    let Some(rest) = n.strip_prefix("encoder.levels.") else {
        return one(n.to_string());
    };
    let (level, rest) = rest.split_once('.').unwrap_or((rest, ""));
    if let Some(d) = rest.strip_prefix("downsample.") {
        return one(format!("levels.{level}.downsample.{d}"));
    }
    let Some(rest) = rest.strip_prefix("layers.") else {
        return one(n.to_string());
    };
    let (block, tail) = rest.split_once('.').unwrap_or((rest, ""));
    let base = format!("levels.{level}.blocks.{block}");
    if tail == "layer_scale_parameters" {
        if t.shape().len() != 2 || t.shape()[0] != 2 {
            return Err(format!(
                "'{name}' has shape {:?}, expected [2, D]",
                t.shape()
            ));
        }
        let row = |i| {
            t.narrow(0, i, 1)
                .and_then(|r| r.reshape(&[t.shape()[1]]))
                .map(|r| r.contiguous())
                .map_err(|e| format!("'{name}': {e}"))
        };
        return Ok(Some(vec![
            (format!("{base}.gamma1"), row(0)?),
            (format!("{base}.gamma2"), row(1)?),
        ]));
    }
    for (i, part) in ["query", "key", "value"].iter().enumerate() {
        if let Some(kind) = tail.strip_prefix(&format!("attention.self.{part}.")) {
            qkv.entry(format!("{base}.attn.qkv.{kind}")).or_default()[i] = Some(t.clone());
            return Ok(None);
        }
    }
    const TAILS: [(&str, &str); 6] = [
        ("layernorm_before.", "norm1."),
        ("layernorm_after.", "norm2."),
        ("attention.self.rpb", "attn.rpb"),
        ("attention.output.dense.", "attn.proj."),
        ("intermediate.dense.", "mlp.fc1."),
        ("output.dense.", "mlp.fc2."),
    ];
    for (from, to) in TAILS {
        if let Some(r) = tail.strip_prefix(from) {
            return one(format!("{base}.{to}{r}"));
        }
    }
    one(n.to_string())
}

/// The named config (or its `dinat_` twin when `dinat`) whose parameter shapes, the head left
/// out, are exactly those of `tensors`, with the note that says so.
fn named_config(
    tensors: &BTreeMap<String, Tensor>,
    dinat: bool,
) -> std::result::Result<Option<(NatConfig, String)>, String> {
    let wanted: Vec<(String, Vec<usize>)> = tensors
        .iter()
        .filter(|(n, _)| !n.starts_with("head."))
        .map(|(n, t)| (n.clone(), t.shape().to_vec()))
        .collect();
    for base in NatConfig::NAMES {
        let name = if dinat {
            base.replacen("nat_", "dinat_", 1)
        } else {
            base.to_string()
        };
        let c = NatConfig::from_name(&name).map_err(|e| e.to_string())?;
        let mut shapes = c.parameter_shapes();
        shapes.sort();
        if shapes == wanted {
            let note = format!("architecture {name}: the shapes are exactly its own");
            return Ok(Some((c, note)));
        }
    }
    Ok(None)
}

/// The architecture the reference-named `tensors` describe. A named config (or its `dinat_`
/// twin when `dinat`) when the shapes are exactly its own; otherwise a config built from the
/// shapes (named `inferred`), with the paper's tokenizer stride 4 and NAT's dilation 1 (neither
/// shows in the shapes: the note says so). Global-attention networks have no rpb to count heads
/// by and need `--arch`.
pub fn infer_config(
    tensors: &BTreeMap<String, Tensor>,
    dinat: bool,
) -> std::result::Result<(NatConfig, String), String> {
    let shape = |n: &str| tensors.get(n).map(|t| t.shape().to_vec());
    let bad = |m: &str| format!("cannot infer the architecture from the shapes ({m}); pass --arch");
    let proj1 =
        shape("patch_embed.proj.1.weight").ok_or_else(|| bad("no patch_embed.proj.1.weight"))?;
    let proj0 =
        shape("patch_embed.proj.0.weight").ok_or_else(|| bad("no patch_embed.proj.0.weight"))?;
    let (mut depths, mut heads, mut kernel, mut mlp_ratio) = (Vec::new(), Vec::new(), 0, 0.0);
    while tensors.contains_key(&format!("levels.{}.blocks.0.norm1.weight", depths.len())) {
        let i = depths.len();
        let d = (0..)
            .take_while(|j| tensors.contains_key(&format!("levels.{i}.blocks.{j}.norm1.weight")))
            .count();
        let rpb = shape(&format!("levels.{i}.blocks.0.attn.rpb"))
            .ok_or_else(|| bad("no rpb: global attention"))?;
        let fc1 = shape(&format!("levels.{i}.blocks.0.mlp.fc1.weight"))
            .ok_or_else(|| bad("no mlp.fc1"))?;
        if rpb.len() != 3 || fc1.len() != 2 || fc1[1] == 0 {
            return Err(bad("rpb or fc1 of an unexpected rank"));
        }
        depths.push(d);
        heads.push(rpb[0]);
        kernel = rpb[1].div_ceil(2);
        mlp_ratio = fc1[0] as f64 / fc1[1] as f64;
    }
    if depths.is_empty() || proj1.len() != 4 || proj0.len() != 4 {
        return Err(bad("no levels.0.blocks.0"));
    }
    let layer_scale = tensors
        .contains_key("levels.0.blocks.0.gamma1")
        .then_some(1e-5);
    if let Some(named) = named_config(tensors, dinat)? {
        return Ok(named);
    }
    let config = NatConfig {
        name: "inferred".into(),
        in_channels: proj0[1],
        embed_dim: proj1[0],
        depths: depths.clone(),
        heads: heads.clone(),
        mlp_ratio,
        attention: AttentionKind::Neighborhood {
            kernel,
            dilation: if dinat {
                DilationSchedule::DiNat
            } else {
                DilationSchedule::Constant(1)
            },
        },
        drop_path: 0.0,
        layer_scale,
        patch_stride: 4,
        num_classes: 0,
        layer_norm_eps: 1e-5,
    };
    config.validate().map_err(|e| bad(&e.to_string()))?;
    let note = format!(
        "architecture inferred from the shapes: C {}, depths {depths:?}, heads {heads:?}, kernel {kernel}, mlp ratio {mlp_ratio}, layer scale {}; tokenizer stride 4 and {} assumed (they do not show in the shapes; --arch NAME overrides)",
        config.embed_dim,
        layer_scale.is_some(),
        if dinat { "DiNAT dilation" } else { "dilation 1 (NAT; a DiNAT checkpoint has the same shapes)" }
    );
    Ok((config, note))
}
