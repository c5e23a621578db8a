//! Backbone files: save -> load round trip, DINO prefixes, ignored heads, and errors that list
//! every missing / mis-shaped tensor.

use dinonat_engine::io::{load_safetensors, save_safetensors};
use dinonat_engine::{DType, Tensor};
use dinonat_model::checkpoint::{load_backbone_into, strip_prefixes};
use dinonat_model::{load_backbone, save_backbone, ModelError, Nat, NatConfig};
use std::path::PathBuf;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dinonat-model-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn bits(t: &Tensor) -> Vec<u64> {
    t.to_vec_f64().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn save_then_load_is_bitwise() {
    let dir = temp_dir("roundtrip");
    let path = dir.join("pico.safetensors");
    let cfg = NatConfig::nat_pico().with_classes(10);
    let a = Nat::new(&cfg, DType::F32, 1).unwrap();
    save_backbone(&a, &path).unwrap();
    let (b, notes) = load_backbone(&path, &cfg).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    for (name, p) in a.params.iter() {
        assert_eq!(bits(&p.tensor), bits(b.params.get(name).unwrap()), "{name}");
    }
    let file = load_safetensors(&path).unwrap();
    assert_eq!(
        file.metadata.get("arch").map(String::as_str),
        Some("nat_pico")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dino_prefixes_are_stripped_and_heads_ignored_with_a_note() {
    assert_eq!(strip_prefixes("module.backbone.norm.weight"), "norm.weight");
    assert_eq!(
        strip_prefixes("backbone.levels.0.blocks.0.attn.rpb"),
        "levels.0.blocks.0.attn.rpb"
    );
    let dir = temp_dir("prefix");
    let path = dir.join("dino.safetensors");
    let cfg = NatConfig::nat_pico();
    let src = Nat::new(&cfg, DType::F32, 2).unwrap();
    let mut tensors: Vec<(String, Tensor)> = src
        .params
        .named_tensors()
        .into_iter()
        .enumerate()
        .map(|(i, (n, t))| {
            (
                if i % 2 == 0 {
                    format!("module.backbone.{n}")
                } else {
                    format!("backbone.{n}")
                },
                t,
            )
        })
        .collect();
    tensors.push((
        "head.mlp.0.weight".into(),
        Tensor::zeros(&[3, 128], DType::F32),
    ));
    tensors.push((
        "module.head.last_layer.weight_v".into(),
        Tensor::zeros(&[5, 3], DType::F32),
    ));
    save_safetensors(&path, &tensors, None).unwrap();
    let dst = Nat::new(&cfg, DType::F32, 3).unwrap();
    let notes = load_backbone_into(&dst, &path).unwrap();
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].contains("ignored 2 head") && notes[0].contains("head.mlp.0.weight"),
        "{}",
        notes[0]
    );
    for (name, p) in src.params.iter() {
        assert_eq!(
            bits(&p.tensor),
            bits(dst.params.get(name).unwrap()),
            "{name}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_and_mis_shaped_tensors_are_all_listed_and_nothing_is_written() {
    let dir = temp_dir("errors");
    let path = dir.join("bad.safetensors");
    let cfg = NatConfig::nat_pico();
    let src = Nat::new(&cfg, DType::F32, 4).unwrap();
    let mut tensors = src.params.named_tensors();
    tensors.retain(|(n, _)| n != "norm.bias" && n != "levels.1.blocks.0.attn.rpb");
    for (n, t) in tensors.iter_mut() {
        if n == "levels.0.blocks.0.attn.qkv.weight" {
            *t = Tensor::zeros(&[96, 33], DType::F32);
        }
    }
    tensors.push(("levels.9.extra".into(), Tensor::zeros(&[1], DType::F32)));
    save_safetensors(&path, &tensors, None).unwrap();
    let dst = Nat::new(&cfg, DType::F32, 5).unwrap();
    let before = bits(dst.params.get("norm.weight").unwrap());
    let err = load_backbone_into(&dst, &path).unwrap_err();
    match &err {
        ModelError::Checkpoint {
            missing,
            mismatched,
            unexpected,
            ..
        } => {
            assert_eq!(missing, &["levels.1.blocks.0.attn.rpb", "norm.bias"]);
            assert_eq!(
                mismatched,
                &[(
                    "levels.0.blocks.0.attn.qkv.weight".to_string(),
                    vec![96, 32],
                    vec![96, 33]
                )]
            );
            assert_eq!(unexpected, &["levels.9.extra"]);
        }
        other => panic!("{other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("bad.safetensors") && msg.contains("nat_pico") && msg.contains("norm.bias"),
        "{msg}"
    );
    assert_eq!(before, bits(dst.params.get("norm.weight").unwrap()));
    // a backbone of another architecture
    let e = load_backbone(&path, &NatConfig::nat_nano())
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
